"""What every decision of one claimed batch shares: its time and lease, and answers worked out once for it.

Entries of a batch mostly share a schedule and a last run (they ran
together: one batch writes one run time), so each answer here is kept for
the batch and dropped with it.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone, tzinfo

from celery.schedules import BaseSchedule

from .calendars import Calendar, InvalidCalendar, excluded_day
from .exceptions import InvalidDefinition
from .history import stamp as history_stamp
from .overlap import marker_tail
from .runstate import parse_last_run_at
from .timings import Timing


class Batch:
    """A claimed batch's time, lease and history stamp, and what its entries' decisions share."""

    __slots__ = ("_anchors", "_days", "_last_runs", "_tails", "_texts", "_timings", "_zones", "at", "calendars",
                 "lease", "now", "run_at", "stamp", "tag", "task_stamp")

    def __init__(self, lease: str, at: float, history: bool = False,
                 calendars: Mapping[str, Calendar | InvalidCalendar] | None = None, tag: str = "") -> None:
        self.lease = lease
        #: The schedule's tag, which names its task ids (history.task_id).
        self.tag = tag
        #: The schedule's calendars by name, as beat last read them (``exclude`` refers to them).
        self.calendars: Mapping[str, Calendar | InvalidCalendar] = calendars if calendars is not None else {}
        #: The batch's time (Unix seconds, from Redis), as a datetime, and as written to last_run_at.
        self.at = at
        self.now = datetime.fromtimestamp(at, timezone.utc)
        self.run_at = self.now.isoformat()
        #: Its history stamp (history.py), "" with history off: no records, no task ids chosen.
        self.stamp = history_stamp(at) if history else ""
        #: The stamp that names this batch's task ids: its history stamp, made even with history off (run markers).
        self.task_stamp = self.stamp or history_stamp(at)
        #: By (schedule id, last run, its zone); each timing keeps its schedule, so the id stays its own.
        self._timings: dict[tuple[int, datetime, object], Timing] = {}
        self._last_runs: dict[str, datetime | None] = {}
        self._anchors: dict[float, datetime] = {}
        self._texts: dict[float, str] = {}
        self._zones: dict[int, tuple[BaseSchedule, tzinfo]] = {}
        self._tails: dict[float, str] = {}
        #: Whether a day is excluded, by (Unix second, zone, calendar names): timings of the same slot share it.
        self._days: dict[tuple[int, tzinfo, tuple[str, ...]], bool | InvalidDefinition] = {}

    def timing(self, sched: BaseSchedule, base: datetime) -> Timing:
        """The schedule's answers timed from the last run ``base``, at this batch's time, made once per pair."""
        key = (id(sched), base, base.tzinfo)  # crontab reads the last run's local fields: equal instants may differ
        found = self._timings.get(key)
        if found is None:
            found = self._timings[key] = Timing(sched, base, self)
        return found

    def is_due(self, sched: BaseSchedule, base: datetime) -> tuple[bool, float]:
        """``sched.is_due(base)`` at this batch's time, computed once per (schedule, last run)."""
        return self.timing(sched, base).due

    def last_run(self, value: str) -> datetime | None:
        """A stored ``last_run_at`` as a datetime, None if it is not a time."""
        runs = self._last_runs
        if value in runs:
            return runs[value]
        parsed = runs[value] = parse_last_run_at(value)
        return parsed

    def zone(self, sched: BaseSchedule) -> tzinfo:
        """The schedule's time zone (its own, else the app's), looked up once per schedule in a batch."""
        hit = self._zones.get(id(sched))
        if hit is None:
            hit = self._zones[id(sched)] = (sched, sched.tz)  # the schedule is kept so its id stays its own
        return hit[1]

    def iso(self, value: float) -> str:
        """A Unix time as ISO-8601 UTC text, as a last run is written (entries of a batch mostly share their slot)."""
        text = self._texts.get(value)
        if text is None:
            text = self._texts[value] = self.anchor(value).isoformat()
        return text

    def anchor(self, value: float) -> datetime:
        """An anchor's Unix time as a UTC datetime."""
        moment = self._anchors.get(value)
        if moment is None:
            moment = self._anchors[value] = datetime.fromtimestamp(value, timezone.utc)
        return moment

    def excluded(self, at: float, zone: tzinfo, names: tuple[str, ...]) -> bool | InvalidDefinition:
        """Whether a calendar of ``names`` excludes the day of ``at`` in ``zone``; the error for one that cannot be used."""
        key = (int(at // 1), zone, names)  # a day starts on a whole second in every zone
        found = self._days.get(key)
        if found is None:
            found = self._days[key] = excluded_day(names, self.calendars, datetime.fromtimestamp(key[0], zone).date())
        return found

    def marker_tail(self, timeout: float) -> str:
        """What follows the task id in the run markers this batch writes for ``timeout`` (overlap.marker_tail)."""
        tail = self._tails.get(timeout)
        if tail is None:
            tail = self._tails[timeout] = marker_tail(self.at, timeout)
        return tail
