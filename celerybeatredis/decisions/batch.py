"""What every decision of one claimed batch shares: its time and lease, and answers worked out once for it.

Entries of a batch mostly share a schedule and a last run (they ran
together: one batch writes one run time), so each answer here is kept for
the batch and dropped with it: a :class:`Timing` per (schedule, last run)
says when the schedule is due and the *slot* of the run it makes (the latest
time the schedule gives at or before the batch's: the time it was due, before
jitter), which jitter and calendars time a run by.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone, tzinfo

from celery.schedules import BaseSchedule
from celery.schedules import schedule as interval_schedule

from ..definitions.calendars import Calendar, InvalidCalendar
from ..exceptions import InvalidDefinition
from ..policies.exclude import excluded_day
from ..policies.overlap import marker_tail
from ..storage.history import stamp as history_stamp
from ..storage.wire import parse_last_run_at


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
        #: Its history stamp (:mod:`~celerybeatredis.storage.history`), "" with history off: no records, no task ids chosen.
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


#: Most schedule times :func:`latest_slot` steps over (skipped runs since the last run) before taking the batch's time.
SLOT_STEPS = 100


class Timing:
    """A schedule's answers timed from the last run ``base`` at a batch's time.

    ``due`` is ``sched.is_due(base)`` (due now, seconds to the next time);
    the rest is worked out when first asked. A timing keeps no reference to
    its batch (which keeps it), so the two are freed without the cycle collector.
    """

    __slots__ = ("_days", "_ran", "_slot", "_slot_run", "_slotted", "base", "due", "sched")

    def __init__(self, sched: BaseSchedule, base: datetime, batch: Batch) -> None:
        self.sched = sched
        self.base = base
        self.due: tuple[bool, float] = (interval_is_due(sched, base, batch.now) if type(sched) is interval_schedule
                                        else sched.is_due(base))
        self._slotted = False
        self._slot: float | None = None
        self._ran = False
        self._slot_run: tuple[str, float] | None = None
        #: Whether the slot's day is excluded, by the calendar names asked about (an error: one that cannot be used);
        #: made on the first ask.
        self._days: dict[tuple[str, ...], bool | InvalidDefinition] | None = None

    def slot(self, batch: Batch) -> float | None:
        """The run's slot (:func:`latest_slot`), None when the schedule cannot say."""
        if not self._slotted:
            self._slot = latest_slot(self.sched, self.base, batch)
            self._slotted = True
        return self._slot

    def slot_run(self, batch: Batch) -> tuple[str, float] | None:
        """The last run to record for a run in the slot, and the (unjittered) next time after it; None to record the
        run's own time and take the schedule's next time from it, as without jitter.

        The slot is recorded when the schedule, timed from it, is not due
        again at once: an interval then keeps its period instead of adding
        each run's delay to the next. Otherwise (a late run) it is not.
        """
        if not self._ran:
            found = None
            slot = self.slot(batch)
            if slot is not None and slot < batch.at:
                sched = self.sched
                if type(sched) is interval_schedule and not sched.relative:  # the slot is the latest: one period on
                    found = (batch.iso(slot), slot + sched.run_every.total_seconds())
                else:
                    due, left = batch.is_due(sched, batch.anchor(slot))
                    if not due:
                        found = (batch.iso(slot), batch.at + float(left))
            self._slot_run, self._ran = found, True
        return self._slot_run

    def excluded(self, names: tuple[str, ...], batch: Batch) -> bool:
        """Whether a calendar of ``names`` excludes the slot's day (the batch's, without a slot), in the schedule's zone.

        Raises:
            InvalidDefinition: naming ``exclude``, for a calendar that does not exist or does not read.
        """
        days = self._days
        if days is None:
            days = self._days = {}
        found = days.get(names)
        if found is None:
            slot = self.slot(batch)
            found = days[names] = batch.excluded(batch.at if slot is None else slot, batch.zone(self.sched), names)
        if found is True or found is False:
            return found
        raise found


def latest_slot(sched: BaseSchedule, base: datetime, batch: Batch) -> float | None:
    """The latest time, at or before the batch's, that the schedule gives after ``base``: the run's *slot*.

    After skipped runs (the last run stays as it was) that is the newest of the
    times since, found by stepping from one to the next, at most
    :data:`SLOT_STEPS` times (then the batch's own time stands for it). None
    when the schedule cannot say (a kind without ``remaining_estimate``).
    """
    if type(sched) is interval_schedule and not sched.relative:  # Celery's arithmetic in closed form, for speed
        every = sched.run_every.total_seconds()
        first = base.timestamp() + every
        if every <= 0 or first >= batch.at:
            return min(first, batch.at)
        return first + math.floor((batch.at - first) / every) * every
    left = time_left(sched, base)
    if left is None:
        return None
    slot = batch.at + min(left, 0.0)
    for _ in range(SLOT_STEPS):
        left = time_left(sched, batch.anchor(slot))
        if left is None or left > 0:
            return slot
        if batch.at + left <= slot:  # no step forward: take what there is
            return slot
        slot = batch.at + left
    return batch.at


def interval_is_due(sched: interval_schedule, last_run_at: datetime, now: datetime) -> tuple[bool, float]:
    """``sched.is_due(last_run_at)`` for a plain interval when the schedule's clock reads ``now``.

    The same answer as Celery's :meth:`celery.schedules.schedule.is_due` (same
    arithmetic: the interval is added as Celery adds it, in UTC), without its
    per-call overhead. Falls back to Celery for what the shortcut does not cover:
    a relative schedule, a naive or non-fixed-offset ``last_run_at``, overflow.

    Celery rounds a relative interval in the zone of its last run, which its
    beat keeps in the app's time zone (``app.now()``); beat keeps UTC, so the
    last run is read in the app's zone first.
    """
    if sched.relative:
        return _celery_is_due(sched, last_run_at.astimezone(sched.tz) if last_run_at.tzinfo else last_run_at)
    seconds = sched.run_every.total_seconds()
    last_tz, now_tz = last_run_at.tzinfo, now.tzinfo
    try:
        if last_tz is _UTC and now_tz is _UTC:  # as beat keeps its times: no conversions to make
            left = (last_run_at + timedelta(seconds=seconds) - now).total_seconds()
        elif type(last_tz) is timezone and type(now_tz) is timezone:
            end = (last_run_at.astimezone(_UTC) + timedelta(seconds=seconds)).astimezone(last_tz)
            left = (end.astimezone(_UTC) - now.astimezone(_UTC)).total_seconds()
        else:
            return _celery_is_due(sched, last_run_at)
    except (OverflowError, ValueError):
        return _celery_is_due(sched, last_run_at)
    if left <= 0:
        return True, max(seconds, 0)
    return False, left


def time_left(sched: BaseSchedule, last_run_at: datetime) -> float | None:
    """Seconds from the schedule's now to the time ``last_run_at`` makes it due (negative: past), None if it cannot say.

    What jitter and calendars call the run's slot: the schedule's own time, read the way :func:`interval_is_due` reads it.
    """
    if type(sched) is interval_schedule and sched.relative and last_run_at.tzinfo:
        last_run_at = last_run_at.astimezone(sched.tz)
    try:
        left = sched.remaining_estimate(last_run_at)
    except Exception:  # noqa: BLE001 - a schedule of its own kind may not know; it then runs unjittered
        return None
    seconds = left.total_seconds() if isinstance(left, timedelta) else None
    return seconds if seconds is not None and math.isfinite(seconds) else None


def _celery_is_due(sched: BaseSchedule, last_run_at: datetime) -> tuple[bool, float]:
    is_due, next_in = sched.is_due(last_run_at)
    return is_due, next_in


_UTC = timezone.utc
