"""Catch-up: which of the runs an entry missed (beat down, Redis down) are sent once beat can send again.

Pure: the due times an entry's schedule had since its last run are worked
out from its Celery schedule, whose clock reads the batch's time. An entry
without ``catchup`` / ``catchup_window`` never comes here and keeps Celery's
rule: one run, at once, however many were missed (``"latest"``).

* Runs due more than ``catchup_window`` seconds ago are skipped and counted.
* ``"latest"`` sends one run for the rest (the newest); ``"all"`` sends each,
  oldest first, one per claim, each with its due time; ``"none"`` sends only
  a run that is not late (late by less than the time to the next one, the
  history's own rule for "missed").
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import NamedTuple

from celery.schedules import BaseSchedule
from celery.schedules import schedule as interval_schedule

from ..storage.history import record

#: Most due times listed for one decision: ``"all"`` sends at most this many of the newest missed runs.
MOST_TIMES = 1000
#: Most due times counted one by one (a crontab over a long outage); past it, the count says "at least".
MOST_COUNTED = 10_000


class CatchUp(NamedTuple):
    """What to do with an entry's missed runs, decided at the batch's time.

    Attributes:
        send: The due time of the run to send now, None for none.
        more: With ``"all"``: missed runs are left after this one (the entry is due again at once).
        too_old: Runs skipped as older than the window.
        not_sent: Runs skipped by ``"none"`` (or left out beyond :data:`MOST_TIMES` by ``"all"``).
        newest: The newest due time: with nothing sent, the schedule goes on from it.
    """

    send: datetime | None
    more: bool
    too_old: int
    not_sent: int
    newest: datetime | None

    def records(self, stamp: str, late: float) -> str:
        """The history records of the runs let go (batch ``stamp``, ``late`` seconds): one per reason, then ``+N``."""
        if not stamp:
            return ""
        skipped = [(code, n) for code, n in (("w", self.too_old), ("c", self.not_sent)) if n]
        extra = sum(n for _, n in skipped) - len(skipped)
        return "".join(record(code, stamp, late) for code, _ in skipped) + (f"+{extra}" if extra else "")


def catch_up(sched: BaseSchedule, last_run: datetime, now: datetime, mode: str, window: float | None) -> CatchUp:
    """What to send of the runs ``sched`` had after ``last_run`` up to ``now`` (which the schedule's clock reads)."""
    cutoff = now - timedelta(seconds=window) if window is not None else None
    too_old, old = 0, list[datetime]()
    since = last_run
    if cutoff is not None and cutoff > last_run:
        since = cutoff - _TICK
        old, too_old = due_times(sched, last_run, last_run, since, 1)
    recent, count = due_times(sched, last_run, since, now, MOST_TIMES)
    if not recent:
        return CatchUp(send=None, more=False, too_old=too_old, not_sent=0, newest=old[-1] if old else None)
    newest = recent[-1]
    if mode == "all":
        return CatchUp(send=recent[0], more=len(recent) > 1, too_old=too_old, not_sent=count - len(recent), newest=newest)
    if mode == "none":
        if (now - newest).total_seconds() >= sched.remaining_estimate(newest).total_seconds() > 0:
            # late: missed, as the history counts it
            return CatchUp(send=None, more=False, too_old=too_old, not_sent=count, newest=newest)
        return CatchUp(send=newest, more=False, too_old=too_old, not_sent=count - 1, newest=newest)
    return CatchUp(send=newest, more=False, too_old=too_old, not_sent=0, newest=newest)


def due_times(sched: BaseSchedule, origin: datetime, since: datetime, until: datetime,
              most: int) -> tuple[list[datetime], int]:
    """The due times of ``sched`` (last run at ``origin``) in (``since``, ``until``], and how many there are.

    At most the newest ``most`` are listed, oldest first. An interval is
    worked out exactly (its times are ``origin`` plus whole intervals); other
    schedules are stepped through, at most :data:`MOST_COUNTED` times (the
    count then says "at least").
    """
    if type(sched) is interval_schedule and not sched.relative:
        step = sched.run_every
        seconds = step.total_seconds()
        if seconds <= 0 or until <= since:
            return [], 0
        first = int((since - origin).total_seconds() // seconds) + 1
        last = int((until - origin).total_seconds() // seconds)
        total = max(last - first + 1, 0)
        return [origin + step * k for k in range(max(first, last - most + 1), last + 1)], total
    times: list[datetime] = []
    total, at = 0, since
    clock = sched.now()
    stepped = copy.copy(sched)
    stepped.nowfun = lambda: clock  # one clock for every step: the answers are times, not "in so long"
    while total < MOST_COUNTED:
        after = clock + stepped.remaining_estimate(at)
        if after <= at or after > until:
            break
        total += 1
        times.append(after)
        at = after
    return times[-most:], total


#: Due times are compared to the microsecond; a run due exactly ``window`` seconds ago is still in it.
_TICK = timedelta(microseconds=1)
