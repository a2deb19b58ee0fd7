"""Calendars: documents (pure), excluded days in the entry's time zone across DST (pure), beat's skips in history,
the API's and the command line's calendar management, unknown calendars quarantined."""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from celery import Celery

from celerybeatredis.decisions.anchors import digest_and_anchor
from celerybeatredis.decisions.batch import Batch
from celerybeatredis.decisions.decide import decide
from celerybeatredis.decisions.firetimes import fire_times
from celerybeatredis.definitions.calendars import Calendar, CalendarNotFound, InvalidCalendar, parse_calendar, parse_exclude
from celerybeatredis.exceptions import InvalidDefinition
from celerybeatredis.policies.jitter import jittered
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.wire import Claimed
from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli
from ..support.decider import Decider, iso
from ..support.helpers import put, run_ticks, sent

BERLIN = ZoneInfo("Europe/Berlin")


def ts(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


# --- documents, pure -----------------------------------------------------------------------


def test_a_calendar_excludes_its_dates_ranges_and_weekdays() -> None:
    cal = parse_calendar("c", {"dates": ["2026-12-25"], "ranges": [["2026-12-28", "2026-12-30"]],
                               "weekdays": ["sat", "Sunday"]})
    assert cal.excludes(date(2026, 12, 25)) and cal.excludes(date(2026, 12, 28)) and cal.excludes(date(2026, 12, 30))
    assert cal.excludes(date(2026, 12, 26)) and cal.excludes(date(2026, 12, 27))  # Saturday, Sunday
    assert not cal.excludes(date(2026, 12, 24)) and not cal.excludes(date(2026, 12, 31))
    assert parse_calendar("c", cal.to_json()) == cal


@pytest.mark.parametrize(("doc", "field"), [
    ([], ""), ({"dates": "2026-12-25"}, "dates"), ({"dates": ["25.12.2026"]}, "dates"),
    ({"ranges": [["2026-12-30", "2026-12-28"]]}, "ranges"), ({"ranges": [["2026-12-28"]]}, "ranges"),
    ({"weekdays": ["funday"]}, "weekdays"), ({"weekdays": [1]}, "weekdays"), ({"holidays": []}, "holidays"),
    ({"description": 5}, "description"),
])
def test_a_bad_calendar_is_refused_naming_the_calendar_and_field(doc: Any, field: str) -> None:
    with pytest.raises(InvalidCalendar) as err:
        parse_calendar("holidays-de", doc)
    assert err.value.field == field and str(err.value).startswith("calendar 'holidays-de': ")


@pytest.mark.parametrize("bad", ["holidays-de", [], [""], [3], {"a": 1}])
def test_a_bad_exclude_names_the_field(bad: Any) -> None:
    if bad == []:
        assert parse_exclude(bad) == ()
        return
    with pytest.raises(InvalidDefinition) as err:
        parse_exclude(bad)
    assert err.value.field == "exclude"


# --- decisions across time zones and DST, pure ------------------------------------------------


class Planner:
    """``decide`` with calendars, at given times, for an entry that last ran at ``last``."""

    def __init__(self, calendars: dict[str, Calendar | InvalidCalendar], timezone_name: str = "UTC") -> None:
        self.decider = Decider(timezone=timezone_name)
        self.calendars = calendars

    def decide(self, doc: dict[str, Any], last: float, at: float, score: float | None = None) -> Any:
        raw = json.dumps(doc).encode()
        entry = Claimed("e", score if score is not None else at, raw, 1, iso(last), None)
        batch = Batch("lease", at, history=True, calendars=self.calendars)
        self.decider.clock.current = batch.now
        defn = self.decider.codec.parse(raw)
        return decide(entry, defn, batch.last_run(iso(last)), digest_and_anchor(None, "0" * 40, True, at), batch)


#: 29 March 2026: Europe/Berlin goes from +01:00 to +02:00 at 02:00.
DST_DAY = {"dst": parse_calendar("dst", {"dates": ["2026-03-29"]})}


def test_a_crontab_slot_on_an_excluded_day_in_its_own_zone_is_skipped_across_dst() -> None:
    planner = Planner(DST_DAY)
    doc = {"task": "t", "crontab": {"minute": "30", "hour": "0", "timezone": "Europe/Berlin"}, "exclude": ["dst"]}
    slot = ts("2026-03-29T00:30:00+01:00")  # 23:30 UTC the day before: excluded by the Berlin date, not the UTC one
    skipped = planner.decide(doc, ts("2026-03-28T00:30:00+01:00"), slot)
    assert skipped.outcome == "excluded" and skipped.run is None and skipped.plan.history.startswith("x")
    assert skipped.plan.score == pytest.approx(ts("2026-03-30T00:30:00+02:00"))  # next day, after the change
    ran = planner.decide(doc, ts("2026-03-28T00:30:00+01:00"), ts("2026-03-30T00:30:00+02:00"))
    assert ran.outcome == "run"


def test_an_entry_without_a_zone_of_its_own_uses_the_apps() -> None:
    doc = {"task": "t", "interval": {"every": 1, "period": "hours"}, "exclude": ["dst"]}
    late_evening_utc = ts("2026-03-28T23:10:00+00:00")  # 29 March in Berlin, 28 March in UTC
    assert Planner(DST_DAY, "Europe/Berlin").decide(doc, late_evening_utc - 3600, late_evening_utc).outcome == "excluded"
    assert Planner(DST_DAY, "UTC").decide(doc, late_evening_utc - 3600, late_evening_utc).outcome == "run"


def test_the_day_is_the_slots_not_the_jittered_time() -> None:
    doc = {"task": "t", "crontab": {"minute": "50", "hour": "23"}, "jitter": 1800, "exclude": ["dst"]}
    planner = Planner(DST_DAY)
    slot = ts("2026-03-28T23:50:00+00:00")
    due = jittered("e", slot, 1800)
    assert planner.decide(doc, slot - 86400, due).outcome == "run"  # the slot is on the 28th, whenever it is sent
    day_slot = ts("2026-03-29T23:50:00+00:00")
    assert planner.decide(doc, slot, jittered("e", day_slot, 1800)).outcome == "excluded"


@pytest.mark.parametrize(("calendars", "words"), [
    ({}, "unknown calendar 'dst'"),
    ({"dst": InvalidCalendar("dst", "dates", "'x' is not a date like 2026-12-25")}, "calendar 'dst': field 'dates'"),
])
def test_an_unknown_or_bad_calendar_quarantines_the_entry_naming_exclude(calendars: Any, words: str) -> None:
    doc = {"task": "t", "interval": {"every": 1, "period": "hours"}, "exclude": ["dst"]}
    decision = Planner(calendars).decide(doc, ts("2026-03-28T10:00:00+00:00"), ts("2026-03-28T11:00:00+00:00"))
    assert decision.outcome == "quarantined"
    assert "entry 'e': field 'exclude'" in decision.plan.invalid_reason and words in decision.plan.invalid_reason


def test_next_marks_the_excluded_times() -> None:
    weekend = {"weekend": parse_calendar("weekend", {"weekdays": ["sat", "sun"]})}
    doc = {"task": "t", "crontab": {"minute": "0", "hour": "9"}, "exclude": ["weekend"]}
    entry = Claimed("e", 0.0, json.dumps(doc).encode(), 1, iso(ts("2026-03-05T09:00:00+00:00")), None)
    times = fire_times(entry, Celery("t", set_as_current=False), ts("2026-03-05T10:00:00+00:00"), 4, weekend)
    assert [(t.at.strftime("%a"), t.ruled_out) for t in times] == [
        ("Fri", None), ("Sat", "exclude"), ("Sun", "exclude"), ("Mon", None)]


# --- the API, beat and the command line ---------------------------------------------------


def test_calendars_through_the_api(api: ScheduleStore) -> None:
    assert api.set_calendar("holidays-de", dates=[date(2026, 12, 25), "2026-12-26"], ranges=[("2026-12-31", "2027-01-01")],
                            weekdays=["sun", 5], description="Germany") is True
    cal = api.calendar("holidays-de")
    assert cal.dates == {date(2026, 12, 25), date(2026, 12, 26)} and cal.weekdays == {5, 6}
    assert cal.ranges == ((date(2026, 12, 31), date(2027, 1, 1)),) and cal.description == "Germany"
    assert api.set_calendar("holidays-de", dates=["2026-12-25"]) is False
    assert list(api.calendars()) == ["holidays-de"]
    with pytest.raises(InvalidCalendar, match="calendar 'x': field 'dates'"):
        api.set_calendar("x", dates=["tomorrow"])
    api.add("report", "tasks.report", 60, exclude=["holidays-de"])
    with pytest.raises(InvalidDefinition, match="entry 'r2': field 'exclude': unknown calendar 'nope'"):
        api.add("r2", "tasks.report", 60, exclude=["nope"])
    assert api.remove_calendar("holidays-de", force=True) is True  # "report" names it: refused unless forced
    with pytest.raises(CalendarNotFound):
        api.remove_calendar("holidays-de")
    with pytest.raises(CalendarNotFound):
        api.calendar("holidays-de")


def test_beat_skips_runs_on_excluded_days_and_counts_them(app: Celery, store: RedisStore, broker: redis.Redis,
                                                           api: ScheduleStore) -> None:
    api.set_calendar("weekend", weekdays=["sat", "sun"])
    doc = {"task": "tasks.add", "crontab": {"minute": "0", "hour": "9"}, "exclude": ["weekend"]}
    put(store, "daily", doc, score=ts("2026-03-06T09:00:00+00:00"))  # a Friday
    store.client.hset(store.keys.last_run_at, "daily", iso(ts("2026-03-05T09:00:00+00:00")))
    sched = RedisScheduler(app)
    try:
        for day in ("06", "07", "08", "09"):  # Friday .. Monday at 09:00 UTC
            sched.tick(now=ts(f"2026-03-{day}T09:00:00+00:00"))
    finally:
        sched.close()
    assert len(sent(broker, app)) == 2
    history = api.history("daily")
    assert (history.sent, history.skipped) == (2, 2)
    assert [r.outcome for r in history.runs] == ["sent", "skipped: excluded by a calendar",
                                                 "skipped: excluded by a calendar", "sent"]


def test_beat_quarantines_an_entry_whose_calendar_is_gone(app: Celery, store: RedisStore, api: ScheduleStore) -> None:
    put(store, "orphan", {"task": "tasks.add", "interval": {"every": 10}, "exclude": ["gone"]}, score=1.0)
    store.client.hset(store.keys.last_run_at, "orphan", iso(0.0))
    run_ticks(app, [100.0])
    reason = store.invalid_reason("orphan")
    assert reason is not None and "entry 'orphan': field 'exclude': unknown calendar 'gone'" in reason


def test_cli_calendar_commands(cli: Cli, api: ScheduleStore) -> None:
    assert cli.ok("calendar", "set", "holidays-de", "--date", "2026-12-25", "--range", "2026-12-31:2027-01-01",
                  "--weekday", "sun", "--description", "Germany") == "created calendar holidays-de\n"
    assert cli.ok("calendar", "list") == "holidays-de: 1 date; 1 range; sun; Germany\n"
    shown = cli.ok("calendar", "show", "holidays-de")
    assert "dates:       2026-12-25" in shown and "ranges:      2026-12-31..2027-01-01" in shown
    assert json.loads(cli.ok("calendar", "show", "holidays-de", "--json"))["weekdays"] == ["sun"]
    assert "field 'dates'" in cli.fails("calendar", "set", "bad", "--date", "soon")
    cli.ok("add", "report", "--task", "tasks.report", "--cron", "0 9 * * *", "--exclude", '["holidays-de"]')
    assert "excludes:  holidays-de" in cli.ok("show", "report") and "except holidays-de" in cli.ok("list")
    assert "unknown calendar 'nope'" in cli.fails("edit", "report", "--exclude", '["nope"]')
    assert "named in the exclude of entry 'report'" in cli.fails("calendar", "remove", "holidays-de")
    cli.ok("edit", "report", "--unset", "exclude")
    assert cli.ok("calendar", "remove", "holidays-de") == "removed calendar holidays-de\n"
    assert "no calendar named 'holidays-de'" in cli.fails("calendar", "remove", "holidays-de")


def test_a_jittered_interval_keeps_its_grid_across_excluded_days() -> None:
    weekend = {"weekend": parse_calendar("weekend", {"weekdays": ["sat", "sun"]})}
    doc = {"task": "t", "interval": {"every": 1, "period": "days"}, "jitter": 600, "exclude": ["weekend"]}
    first = ts("2026-03-05T06:00:00+00:00")  # a Thursday
    entry = Claimed("e", 0.0, json.dumps(doc).encode(), 1, iso(first - 86400), None)
    times = fire_times(entry, Celery("t", set_as_current=False), first - 3600, 6, weekend)
    slots = [first + 86400 * i for i in range(6)]
    assert [t.at.timestamp() for t in times] == pytest.approx([jittered("e", s, 600) for s in slots])
    assert [t.ruled_out for t in times] == [None, None, "exclude", "exclude", None, None]


def test_beat_reads_the_calendars_only_when_an_entry_looks_one_up_and_at_most_once_a_refresh() -> None:
    from celerybeatredis.policies.exclude import CalendarCache

    reads: list[int] = []
    now = [100.0]

    def read() -> dict[str, str]:
        reads.append(1)
        return {"weekend": '{"weekdays": ["sat", "sun"]}'}

    cache = CalendarCache(read, 1.0, clock=lambda: now[0])
    assert reads == []  # made, not read: an idle beat spends no round trip on calendars
    assert "weekend" in cache and cache.get("holidays") is None
    assert len(reads) == 1
    now[0] += 0.5
    cache.get("weekend")
    assert len(reads) == 1
    now[0] += 0.6
    cache.get("weekend")
    assert len(reads) == 2
