"""When a schedule is due, timed from one last run at a batch's time, and the *slot* of the run it makes.

Jitter and calendars time a run by its slot, the latest time the schedule
gives at or before the batch's (the time it was due, before jitter). A
:class:`Timing` holds one (schedule, last run) pair's answers for one batch:
entries of a batch mostly share a schedule and a last run, so each answer is
worked out once, the slot only when an entry asks for it.
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import TYPE_CHECKING

from celery.schedules import BaseSchedule
from celery.schedules import schedule as interval_schedule

from .codec import interval_is_due, time_left
from .exceptions import InvalidDefinition

if TYPE_CHECKING:
    from .batches import Batch

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
