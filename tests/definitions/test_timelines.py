"""Crontabs with seconds and intervals with a phase: their times, across DST changes, and what is refused."""

from __future__ import annotations

import itertools
import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from celery import Celery

from celerybeatredis.definitions.codec import Codec
from celerybeatredis.definitions.kinds import ZonedCrontab, parse_crontab
from celerybeatredis.definitions.timelines import phased_interval, seconds_crontab
from celerybeatredis.exceptions import InvalidDefinition

UTC = timezone.utc


def schedule_of(member: str, spec: dict, relative: bool = False) -> object:
    doc = {"task": "t.a", member: spec, **({"relative": True} if relative else {})}
    return Codec(Celery(set_as_current=False)).parse(json.dumps(doc)).schedule


def times(sched: object, after: datetime, count: int) -> list[datetime]:
    assert isinstance(sched, (seconds_crontab, phased_interval))
    return list(itertools.islice(sched.occurrences(after), count))


def celery_times(cron: ZonedCrontab, after: datetime, count: int) -> list[datetime]:
    """Celery's own crontab times: each the time left from the last, as its beat reads them."""
    found: list[datetime] = []
    at = after
    for _ in range(count):
        moment = at
        cron.nowfun = lambda moment=moment: moment
        at = (moment + cron.remaining_estimate(moment)).astimezone(UTC)
        found.append(at)
    return found


@pytest.mark.parametrize("fields,zone,after", [
    ({"minute": "30", "hour": "2"}, "Europe/Berlin", datetime(2026, 3, 27, tzinfo=UTC)),
    ({"minute": "*/20", "hour": "1-3"}, "Europe/Berlin", datetime(2026, 10, 24, 20, tzinfo=UTC)),
    ({"minute": "5-55/10", "hour": "1-3"}, "Australia/Lord_Howe", datetime(2026, 4, 4, 13, tzinfo=UTC)),
    ({"minute": "0", "hour": "9", "day_of_week": "mon-fri", "day_of_month": "1-7"}, "America/New_York",
     datetime(2026, 1, 1, tzinfo=UTC)),
])
def test_second_zero_gives_celerys_crontab_times(fields: dict, zone: str, after: datetime) -> None:
    ours = schedule_of("crontab", {**fields, "second": "0", "timezone": zone})
    assert isinstance(ours, seconds_crontab)
    assert times(ours, after, 12) == celery_times(parse_crontab({**fields, "timezone": zone}), after, 12)


def test_seconds_run_within_each_minute_across_lord_howes_half_hour_jump() -> None:
    sched = schedule_of("crontab", {"second": "0,30", "minute": "*/10", "hour": "2", "timezone": "Australia/Lord_Howe"})
    howe = ZoneInfo("Australia/Lord_Howe")
    # 4 October 2026: 02:00 -> 02:30. 02:00-02:29 are in the gap: late by the jump, as a crontab's minutes.
    found = [t.astimezone(howe).strftime("%H:%M:%S") for t in times(sched, datetime(2026, 10, 3, 15, 29, tzinfo=UTC), 6)]
    assert found == ["02:30:00", "02:30:30", "02:40:00", "02:40:30", "02:50:00", "02:50:30"]


def test_a_seconds_crontab_is_due_by_the_second() -> None:
    now = datetime(2026, 1, 1, 12, 0, 31, tzinfo=UTC)
    sched = schedule_of("crontab", {"second": "*/15", "timezone": "UTC"})
    assert isinstance(sched, seconds_crontab)
    sched.nowfun = lambda: now
    assert sched.is_due(datetime(2026, 1, 1, 12, 0, 15, tzinfo=UTC)) == (True, 14.0)
    assert sched.is_due(datetime(2026, 1, 1, 12, 0, 30, tzinfo=UTC)) == (False, 14.0)


def test_without_second_a_crontab_is_celerys() -> None:
    assert type(schedule_of("crontab", {"minute": "0"})) is ZonedCrontab


def test_phase_slots_in_berlin_across_both_changes() -> None:
    sched = schedule_of("interval", {"every": 6, "period": "hours", "offset": 5, "timezone": "Europe/Berlin"})
    berlin = ZoneInfo("Europe/Berlin")
    for after in (datetime(2026, 3, 28, tzinfo=UTC), datetime(2026, 10, 24, tzinfo=UTC)):
        found = [t.astimezone(berlin) for t in times(sched, after, 12)]
        assert {t.strftime("%H:%M") for t in found} == {"05:00", "11:00", "17:00", "23:00"}
        assert all(b > a for a, b in itertools.pairwise(found))


def test_phase_in_lord_howe_and_the_slots_agree_from_any_moment() -> None:
    sched = schedule_of("interval", {"every": 90, "period": "minutes", "offset": 40, "timezone": "Australia/Lord_Howe"})
    howe = ZoneInfo("Australia/Lord_Howe")
    start = datetime(2026, 10, 3, 10, tzinfo=UTC)
    found = times(sched, start, 20)
    walls = [t.astimezone(howe) for t in found]
    # On the wall clock, 00:40 plus multiples of 90 minutes; 02:10 on 4 October is in the 02:00-02:30 gap and
    # runs late by the jump, at 02:40.
    jumped = [w for w in walls if (w.hour * 60 + w.minute - 40) % 90]
    assert [w.isoformat() for w in jumped] == ["2026-10-04T02:40:00+11:00"]
    # A beat that starts at any moment (a restart) finds the next slot of the same grid.
    for moment in (start + timedelta(minutes=m) for m in range(0, 1500, 7)):
        assert sched.next_after(moment) == next(t for t in found if t > moment)


def test_phase_in_utc_is_epoch_based_and_fractional_offsets_read_in_the_period() -> None:
    sched = schedule_of("interval", {"every": 6, "period": "hours", "offset": 5})
    assert [t.hour for t in times(sched, datetime(2026, 1, 1, tzinfo=UTC), 4)] == [5, 11, 17, 23]
    half = schedule_of("interval", {"every": 1, "period": "hours", "offset": 0.25, "timezone": "UTC"})
    assert times(half, datetime(2026, 1, 1, tzinfo=UTC), 1) == [datetime(2026, 1, 1, 0, 15, tzinfo=UTC)]


@pytest.mark.parametrize("member,spec,relative,field", [
    ("crontab", {"second": "61"}, False, "crontab.second"),
    ("crontab", {"second": True}, False, "crontab.second"),
    ("crontab", {"second": "*/0"}, False, "crontab.second"),
    ("interval", {"every": 6, "offset": 6}, False, "interval.offset"),
    ("interval", {"every": 6, "offset": -1}, False, "interval.offset"),
    ("interval", {"every": 6, "offset": "5"}, False, "interval.offset"),
    ("interval", {"every": 6, "timezone": "UTC"}, False, "interval.timezone"),
    ("interval", {"every": 6, "offset": 1, "timezone": "Mars/Olympus"}, False, "interval.timezone"),
    ("interval", {"every": 6, "offset": 1}, True, "interval.offset"),
])
def test_refused_members_are_named(member: str, spec: dict, relative: bool, field: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        schedule_of(member, spec, relative)
    assert caught.value.field == field
    assert "\n" not in str(caught.value)


def test_stored_back_as_written() -> None:
    from celerybeatredis.definitions.registry import kind_to_json
    cron = {"second": "*/10", "minute": "*", "timezone": "UTC"}
    assert kind_to_json(schedule_of("crontab", cron)) == {"crontab": cron}
    interval = {"every": 6, "period": "hours", "offset": 5, "timezone": "Europe/Berlin"}
    assert kind_to_json(schedule_of("interval", interval)) == {"interval": interval}
