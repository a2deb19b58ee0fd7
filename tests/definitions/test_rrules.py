"""The ``rrule`` kind: its times are python-dateutil's expansion of the same rule, placed in the rule's zone.

Each case checks the schedule's successive times against dateutil's own
expansion (from ``dtstart``, on wall times, each put on the time line as a
crontab's would be), across DST changes in Berlin (an hour) and Lord Howe (half
an hour), and that a refused member is named.
"""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from dateutil import rrule as du

from celerybeatredis.definitions.codec import Codec
from celerybeatredis.definitions.rrules import parse_rrule, rrule_from_redbeat
from celerybeatredis.exceptions import InvalidDefinition

UTC = timezone.utc


def dateutil_times(rule: str, dtstart: datetime, zone: str, after: datetime, count: int) -> list[datetime]:
    """dateutil's expansion of ``rule`` from the wall time ``dtstart``, each occurrence read in ``zone`` (its first
    pass in a repeated hour), those after ``after``, without repeats, in UTC."""
    times: list[datetime] = []
    for wall in du.rrulestr(rule, dtstart=dtstart):
        at = wall.replace(tzinfo=ZoneInfo(zone)).astimezone(UTC)
        if at > after and (not times or at > times[-1]):
            times.append(at)
        if len(times) == count:
            break
    return times


def schedule_times(spec: dict, after: datetime, count: int) -> list[datetime]:
    return list(itertools.islice(parse_rrule(spec, app=Celery(set_as_current=False)).occurrences(after), count))


CASES = [
    # (rule, dtstart, zone, after): each crosses a DST change of its zone.
    ("FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0", "2026-01-05T09:00:00", "Europe/Berlin", "2026-03-20T00:00:00"),
    ("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "2026-01-01T00:00:00", "Europe/Berlin", "2026-03-27T00:00:00"),
    ("FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "2026-01-01T00:00:00", "Europe/Berlin", "2026-10-23T00:00:00"),
    ("FREQ=MINUTELY;INTERVAL=10;BYHOUR=1,2,3", "2020-01-01T00:00:00", "Europe/Berlin", "2026-10-24T22:00:00"),
    ("FREQ=MINUTELY;INTERVAL=10;BYHOUR=1,2,3", "2020-01-01T00:05:00", "Australia/Lord_Howe", "2026-10-03T13:00:00"),
    ("FREQ=MINUTELY;INTERVAL=10;BYHOUR=1,2,3", "2020-01-01T00:05:00", "Australia/Lord_Howe", "2026-04-04T13:00:00"),
    ("FREQ=HOURLY;INTERVAL=5", "2001-02-03T04:05:06", "Australia/Lord_Howe", "2026-10-02T00:00:00"),
    ("FREQ=MONTHLY;BYDAY=-1FR;BYHOUR=17", "2000-01-01T00:00:00", "Australia/Lord_Howe", "2026-03-01T00:00:00"),
    ("FREQ=YEARLY;BYMONTH=2;BYMONTHDAY=29", "2000-01-01T06:00:00", "Europe/Berlin", "2026-01-01T00:00:00"),
    ("FREQ=WEEKLY;INTERVAL=3;WKST=SU;BYDAY=SU,TU", "2010-06-01T08:00:00", "America/New_York", "2026-03-01T00:00:00"),
    ("FREQ=MONTHLY;BYMONTHDAY=31;BYSETPOS=1", "2003-01-31T12:00:00", "Europe/Berlin", "2026-01-01T00:00:00"),
]


@pytest.mark.parametrize("rule,dtstart,zone,after", CASES)
def test_times_are_dateutils_expansion_in_the_zone(rule: str, dtstart: str, zone: str, after: str) -> None:
    start = datetime.fromisoformat(dtstart)
    moment = datetime.fromisoformat(after).replace(tzinfo=UTC)
    expected = dateutil_times(rule, start, zone, moment, 40)
    assert schedule_times({"rule": rule, "dtstart": dtstart, "timezone": zone}, moment, 40) == expected


def test_berlin_spring_forward_and_fall_back() -> None:
    spec = {"rule": "FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "timezone": "Europe/Berlin"}
    berlin = ZoneInfo("Europe/Berlin")
    spring = [t.astimezone(berlin).isoformat() for t in schedule_times(spec, datetime(2026, 3, 28, tzinfo=UTC), 3)]
    # 02:30 does not exist on 29 March: it runs at the same offset as before the jump, 03:30 summer time.
    assert spring == ["2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00"]
    autumn = [t.astimezone(berlin).isoformat() for t in schedule_times(spec, datetime(2026, 10, 24, tzinfo=UTC), 3)]
    # 02:30 comes twice on 25 October: it runs once, on the first pass.
    assert autumn == ["2026-10-24T02:30:00+02:00", "2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]


def test_lord_howe_half_hour_changes() -> None:
    howe = ZoneInfo("Australia/Lord_Howe")
    spec = {"rule": "FREQ=MINUTELY;INTERVAL=10;BYHOUR=2", "dtstart": "2026-01-01T00:05:00", "timezone": "Australia/Lord_Howe"}
    # 4 October 2026: 02:00 -> 02:30. 02:05, 02:15, 02:25 are in the gap (run at the offset before it, 30 minutes
    # late); 02:35 ... 02:55 exist.
    spring = schedule_times(spec, datetime(2026, 10, 3, 14, tzinfo=UTC), 6)
    assert [t.astimezone(howe).strftime("%H:%M%z") for t in spring] == [
        "02:35+1100", "02:45+1100", "02:55+1100", "02:05+1100", "02:15+1100", "02:25+1100"]
    assert [t - spring[0] for t in spring[:3]] == [timedelta(0), timedelta(minutes=10), timedelta(minutes=20)]
    # 5 April 2026: 02:00 -> 01:30; 01:30-01:59 come twice. A rule in that half hour runs once there.
    spec = {"rule": "FREQ=DAILY;BYHOUR=1;BYMINUTE=45", "timezone": "Australia/Lord_Howe"}
    autumn = schedule_times(spec, datetime(2026, 4, 3, 14, tzinfo=UTC), 3)
    assert [t.astimezone(howe).isoformat() for t in autumn] == [
        "2026-04-04T01:45:00+11:00", "2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]


def test_count_and_until_end_the_rule() -> None:
    after = datetime(2026, 1, 1, tzinfo=UTC)
    counted = {"rule": "FREQ=DAILY;BYHOUR=9", "dtstart": "2026-01-02T00:00:00", "count": 3, "timezone": "UTC"}
    assert [t.day for t in schedule_times(counted, after, 10)] == [2, 3, 4]
    until = {"rule": "FREQ=DAILY;BYHOUR=9", "dtstart": "2026-01-02T00:00:00", "until": "2026-01-03T12:00:00+00:00",
             "timezone": "UTC"}
    assert [t.day for t in schedule_times(until, after, 10)] == [2, 3]
    in_rule = {"rule": "FREQ=DAILY;BYHOUR=9;UNTIL=20260103T120000Z", "dtstart": "2026-01-02T00:00:00", "timezone": "UTC"}
    assert [t.day for t in schedule_times(in_rule, after, 10)] == [2, 3]
    sched = parse_rrule(counted, nowfun=lambda: datetime(2026, 2, 1, tzinfo=UTC))
    assert sched.is_due(datetime(2026, 1, 4, 9, tzinfo=UTC)) == (False, float("inf"))


def test_fixed_offset_dtstart_sets_the_zone_and_bare_string_is_the_rule() -> None:
    spec = {"rule": "FREQ=DAILY", "dtstart": "2026-01-01T09:00:00+05:30"}
    assert schedule_times(spec, datetime(2026, 1, 1, tzinfo=UTC), 2) == [
        datetime(2026, 1, 1, 3, 30, tzinfo=UTC), datetime(2026, 1, 2, 3, 30, tzinfo=UTC)]
    app = Celery(set_as_current=False)
    app.conf.timezone = "America/New_York"
    sched = parse_rrule("FREQ=DAILY;BYHOUR=9", app=app)
    assert sched.next_after(datetime(2026, 7, 1, tzinfo=UTC)) == datetime(2026, 7, 1, 13, tzinfo=UTC)


def test_is_due_and_remaining_estimate() -> None:
    now = datetime(2026, 3, 23, 8, 0, 30, tzinfo=UTC)  # Monday 09:00:30 in Berlin
    sched = parse_rrule({"rule": "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0", "timezone": "Europe/Berlin"},
                        nowfun=lambda: now)
    due, next_in = sched.is_due(datetime(2026, 3, 20, tzinfo=UTC))
    assert due and next_in == pytest.approx(2 * 86400 - 30)
    assert sched.is_due(now) == (False, pytest.approx(2 * 86400 - 30))
    assert sched.remaining_estimate(now) == timedelta(days=2, seconds=-30)


@pytest.mark.parametrize("spec,field", [
    ({"rule": "FREQ=FORTNIGHTLY"}, "rrule.rule"),
    ({"rule": ""}, "rrule.rule"),
    ({"rule": "DTSTART:20260101T000000\nRRULE:FREQ=DAILY"}, "rrule.rule"),
    ({"rule": "FREQ=DAILY", "cnt": 3}, "rrule.cnt"),
    ({"rule": "FREQ=DAILY", "count": 0}, "rrule.count"),
    ({"rule": "FREQ=DAILY", "count": True}, "rrule.count"),
    ({"rule": "FREQ=DAILY", "count": 2, "until": "2027-01-01T00:00:00"}, "rrule.count"),
    ({"rule": "FREQ=DAILY;COUNT=2", "count": 3}, "rrule.rule"),
    ({"rule": "FREQ=DAILY", "timezone": "Mars/Olympus"}, "rrule.timezone"),
    ({"rule": "FREQ=DAILY", "dtstart": "yesterday"}, "rrule.dtstart"),
    ({"rule": "FREQ=DAILY", "until": 5}, "rrule.until"),
    (7, "rrule"),
])
def test_refused_members_are_named(spec: object, field: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        Codec(Celery(set_as_current=False)).parse(json.dumps({"task": "t.a", "rrule": spec}))
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


def test_stored_back_as_written() -> None:
    from celerybeatredis.definitions.registry import kind_to_json
    spec = {"rule": "FREQ=DAILY;BYHOUR=9", "timezone": "Europe/Berlin", "count": 4}
    assert kind_to_json(parse_rrule(spec)) == {"rrule": spec}


def test_redbeat_stored_form() -> None:
    stored = {"__type__": "rrule", "freq": 2, "interval": 2, "wkst": None, "count": None, "bysetpos": None,
              "bymonth": None, "bymonthday": None, "byyearday": None, "byeaster": None, "byweekno": None,
              "byweekday": [{"__type__": "weekday", "wkday": 0}, {"__type__": "weekday", "wkday": 2}],
              "byhour": [9], "byminute": [0], "bysecond": None, "dtstart": 1767254400, "dtstart_tz": 60}
    assert rrule_from_redbeat(stored) == {"rule": "FREQ=WEEKLY;INTERVAL=2;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0",
                                          "dtstart": "2026-01-01T09:00:00+01:00"}
    with pytest.raises(InvalidDefinition, match=r"schedule\.freq"):
        rrule_from_redbeat({"freq": 9})


def test_a_finished_rule_steps_through_catch_up_and_backfill_without_overflow() -> None:
    from celerybeatredis.policies.catchup import due_times
    now = datetime(2026, 2, 1, tzinfo=UTC)
    sched = parse_rrule({"rule": "FREQ=DAILY;BYHOUR=9", "dtstart": "2026-01-02T00:00:00", "count": 3, "timezone": "UTC"},
                        nowfun=lambda: now)
    times, total = due_times(sched, datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC), now, 10)
    assert [t.day for t in times] == [2, 3, 4] and total == 3
