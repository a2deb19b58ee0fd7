"""Relative intervals against Celery's own ``celery.beat.Scheduler``, in several app time zones, across DST changes.

Celery rounds a relative interval in the zone of ``app.now()`` (its last run
time's zone); beat keeps its times in UTC, so it must round them in the app's
zone too. Both sides are driven by a simulated clock over ten days: Celery's
scheduler ticking whenever it asks to, beat's decisions replayed by
:func:`~celerybeatredis.decisions.firetimes.fire_times` (beat's own code). No Redis.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from celery import Celery
from celery.beat import ScheduleEntry, Scheduler
from celery.schedules import schedule

from celerybeatredis.decisions.firetimes import fire_times
from celerybeatredis.definitions.kinds import parse_interval
from celerybeatredis.storage.wire import Claimed

DAYS = 10
ZONES_BERLIN = ZoneInfo("Europe/Berlin")
KOLKATA = ZoneInfo("Asia/Kolkata")


class Clock:
    """The simulated time (UTC); Celery reads it in the app's zone, as ``app.now()`` gives it."""

    def __init__(self, at: datetime, app: Celery) -> None:
        self.at = at
        self.app = app

    def app_now(self) -> datetime:
        return self.at.astimezone(self.app.timezone)


class Recording(Scheduler):
    """Celery's scheduler, recording the time of each run instead of sending it."""

    def __init__(self, app: Celery, clock: Clock, **kwargs: Any) -> None:
        self.clock = clock
        self.runs: list[datetime] = []
        super().__init__(app, **kwargs)

    def install_default_entries(self, data: Any) -> None:
        """No celery.backend_cleanup: only the entry under test."""

    def apply_entry(self, entry: ScheduleEntry, producer: Any = None) -> None:
        self.runs.append(self.clock.at)

    def adjust(self, n: float, drift: float = 0.0) -> float:
        """Sleep exactly as long as asked: the simulated clock has no drift to make up for."""
        return n


def celery_runs(spec: dict[str, Any], zone: str, start: datetime) -> list[datetime]:
    """The runs Celery's scheduler sends in :data:`DAYS` days from ``start``."""
    app = Celery("celery-side", set_as_current=False)
    app.conf.timezone = zone
    clock = Clock(start, app)
    sched = schedule(parse_interval(spec), relative=True, nowfun=clock.app_now, app=app)
    app.conf.beat_schedule = {"e": {"task": "tasks.e", "schedule": sched}}
    scheduler = Recording(app, clock, max_interval=DAYS * 86400)
    end = start + timedelta(days=DAYS)
    while clock.at < end:
        wait = scheduler.tick()
        if wait:
            clock.at += timedelta(seconds=wait)
    return [r for r in scheduler.runs if r < end]


def beat_runs(spec: dict[str, Any], zone: str, start: datetime, count: int) -> list[datetime]:
    """Beat's first ``count`` runs of a new entry that it first sees at ``start``."""
    app = Celery("beat-side", set_as_current=False)
    app.conf.timezone = zone
    raw = json.dumps({"task": "tasks.e", "interval": spec, "relative": True}).encode()
    times = fire_times(Claimed("e", 0.0, raw, None, None, None), app, start.timestamp(), count)
    return [t.at for t in times if t.run is not None]


#: Zones with DST changes inside the ten days after their start, a half-hour offset, a half-hour DST change, and UTC.
ZONES = [
    ("Europe/Berlin", datetime(2026, 3, 24, 13, 17, 11, tzinfo=timezone.utc)),
    ("Europe/Berlin", datetime(2026, 10, 20, 22, 40, 3, tzinfo=timezone.utc)),
    ("America/New_York", datetime(2026, 10, 28, 3, 5, 0, tzinfo=timezone.utc)),
    ("Asia/Kolkata", datetime(2026, 6, 1, 0, 10, 0, tzinfo=timezone.utc)),
    ("Australia/Lord_Howe", datetime(2026, 3, 31, 9, 59, 30, tzinfo=timezone.utc)),
    ("UTC", datetime(2026, 3, 24, 13, 17, 11, tzinfo=timezone.utc)),
]
SPECS = [
    {"every": 2, "period": "days"},
    {"every": 1, "period": "days"},
    {"every": 0.5, "period": "days"},
    {"every": 3, "period": "hours"},
    {"every": 90, "period": "minutes"},
    {"every": 1, "period": "hours"},
]


@pytest.mark.parametrize(("zone", "start"), ZONES, ids=[f"{z}-{s:%m%d}" for z, s in ZONES])
@pytest.mark.parametrize("spec", SPECS, ids=[f"{s['every']}{s['period']}" for s in SPECS])
def test_relative_intervals_run_when_celerys_scheduler_runs_them(spec: dict[str, Any], zone: str,
                                                                   start: datetime) -> None:
    expected = celery_runs(spec, zone, start)
    assert len(expected) >= DAYS * 86400 // parse_interval(spec).total_seconds() - 1  # it covers the ten days
    got = beat_runs(spec, zone, start, len(expected))
    assert [t.isoformat() for t in got] == [t.astimezone(timezone.utc).isoformat() for t in expected]


def test_two_days_relative_in_berlin_runs_at_local_midnight() -> None:
    """The case that was wrong: rounded in UTC it ran at 01:00 / 02:00 Berlin time."""
    got = beat_runs({"every": 2, "period": "days"}, "Europe/Berlin", ZONES[0][1], 4)
    assert {t.astimezone(ZONES_BERLIN).strftime("%H:%M") for t in got} == {"00:00"}


def test_half_days_relative_in_kolkata_run_on_the_hour() -> None:
    """Rounded in UTC, they ran at half past (Kolkata is UTC+05:30)."""
    got = beat_runs({"every": 0.5, "period": "days"}, "Asia/Kolkata", ZONES[3][1], 6)
    assert {t.astimezone(KOLKATA).minute for t in got} == {0}
