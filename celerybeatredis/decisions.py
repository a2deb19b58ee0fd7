"""What happens to one claimed entry: a pure function of the entry, its definition, its last run and the batch's time.

:func:`decide` reads no Redis and keeps no state of its own, so it is tested
with records built by hand. It runs once for every claimed entry, so it builds
as few objects as it can; what entries of a batch share (``is_due`` answers,
parsed last runs and anchors) is worked out once, in the :class:`Batch`.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from typing import Literal, NamedTuple

from celery.schedules import BaseSchedule
from celery.schedules import schedule as interval_schedule

from .codec import SHORT_DIGEST, Definition, interval_is_due
from .exceptions import InvalidDefinition
from .history import record
from .history import stamp as history_stamp
from .keys import NEVER
from .runstate import parse_last_run_at
from .wire import Claimed, Plan

#: Beat logs under the name of the module users configure it by, whichever of its modules speaks.
logger = logging.getLogger("celerybeatredis.schedulers")

#: Longest reason kept in ``{T}:invalid`` and the log; a reason quotes what it rejects, which may be long.
REASON_LIMIT = 1000

#: run: to publish once committed; wait: not due yet; held: its start_time is ahead; retired: disabled or finished;
#: paused: due, not sent while the entry is paused (due again at its next time);
#: quarantined: its definition (or its run state) cannot be used.
Outcome = Literal["run", "wait", "held", "retired", "paused", "quarantined"]


class Run(NamedTuple):
    """A run to publish: the definition to send, and the entry's run count with this run."""

    definition: Definition
    total_run_count: int


class Decision(NamedTuple):
    """What happens to one claimed entry: its plan for commit.lua, the run to publish if any, and why."""

    plan: Plan
    run: Run | None
    outcome: Outcome


#: Makes the named tuples of the hot path without their Python-level ``__new__`` (half the cost); every field is given.
_make = tuple.__new__


class Batch:
    """What every decision of one claimed batch shares: its time and lease, and answers worked out once for it.

    Entries of a batch mostly share a schedule and a last run (they ran
    together: one batch writes one run time), so each answer below is kept
    for the batch and dropped with it.
    """

    __slots__ = ("_anchors", "_due", "_last_runs", "at", "lease", "now", "run_at", "stamp")

    def __init__(self, lease: str, at: float, history: bool = False) -> None:
        self.lease = lease
        #: The batch's time (Unix seconds, from Redis), as a datetime, and as written to last_run_at.
        self.at = at
        self.now = datetime.fromtimestamp(at, timezone.utc)
        self.run_at = self.now.isoformat()
        #: Its history stamp (history.py), "" with history off: no records, no task ids chosen.
        self.stamp = history_stamp(at) if history else ""
        #: By (schedule id, last run, its zone); the schedule is kept so its id stays its own.
        self._due: dict[tuple[int, datetime, object], tuple[BaseSchedule, tuple[bool, float]]] = {}
        self._last_runs: dict[str, datetime | None] = {}
        self._anchors: dict[float, datetime] = {}

    def is_due(self, sched: BaseSchedule, base: datetime) -> tuple[bool, float]:
        """``sched.is_due(base)`` at this batch's time, computed once per (schedule, last run)."""
        key = (id(sched), base, base.tzinfo)  # crontab reads the last run's local fields: equal instants may differ
        hit = self._due.get(key)
        if hit is None:
            answer = interval_is_due(sched, base, self.now) if type(sched) is interval_schedule else sched.is_due(base)
            hit = self._due[key] = (sched, answer)
        return hit[1]

    def last_run(self, value: str) -> datetime | None:
        """A stored ``last_run_at`` as a datetime, None if it is not a time."""
        runs = self._last_runs
        if value in runs:
            return runs[value]
        parsed = runs[value] = parse_last_run_at(value)
        return parsed

    def anchor(self, value: float) -> datetime:
        """An anchor's Unix time as a UTC datetime."""
        moment = self._anchors.get(value)
        if moment is None:
            moment = self._anchors[value] = datetime.fromtimestamp(value, timezone.utc)
        return moment


def stamp(stored: str | None, sha: str, has_run: bool, now: float) -> tuple[str, float]:
    """The ``{T}:digest`` value to commit (``""``: leave it as stored) and the anchor to time a never-run entry from.

    The anchor (when beat first saw this version of the definition) is kept
    until the entry has a last run to time its runs from; a revert puts a
    last run back, never removes it, so it is not needed after that. A stored
    full SHA-1 (older data) is honoured, and shortened.
    """
    stored = stored or ""
    stored_sha, _, stored_anchor = stored.partition(" ")
    fresh = len(stored_sha) >= SHORT_DIGEST and sha.startswith(stored_sha)
    anchor = _finite(stored_anchor) if fresh and stored_anchor else None
    if has_run:
        value = sha[:SHORT_DIGEST]
    elif anchor is not None and len(stored_sha) == SHORT_DIGEST:
        value = stored  # the stored anchor stays as written
    else:
        if anchor is None:
            anchor = now
        value = f"{sha[:SHORT_DIGEST]} {anchor:.6f}"
    return "" if value == stored else value, now if anchor is None else anchor


def decide(entry: Claimed, defn: Definition, last_run: datetime | None, stamped: tuple[str, float], batch: Batch) -> Decision:
    """The plan for ``entry`` (a valid ``defn``, its parsed ``last_run``, its :func:`stamp`) at the batch's time.

    A run-now request (a negative score) runs even a disabled, finished or paused entry.
    A definition whose schedule cannot say when it runs next is quarantined.
    ``defn``'s schedule must read the batch's time as now (beat's codec reads
    its :class:`~.planning.TickClock`, which the planner sets to it).
    """
    digest_field, anchor = stamped
    count = entry.total_run_count
    seed_count = None
    if count is None and defn.seed_total_run_count is not None:
        count = seed_count = defn.seed_total_run_count
    count = count or 0
    seed_last = None
    if last_run is None and defn.seed_last_run_at is not None:
        last_run = defn.seed_last_run_at
        seed_last = last_run.isoformat()
    now = batch.now
    run_now = entry.score < 0
    limited = defn.runs_once or defn.max_run_count is not None or defn.expires is not None
    retired = not defn.enabled or (limited and finished(defn, count, now))
    if retired and not run_now:
        return _not_run(entry, batch, NEVER, digest_field, seed_count, seed_last, "retired", "d")
    if not run_now and defn.start_time is not None and now < defn.start_time:
        return _not_run(entry, batch, defn.start_time.timestamp(), digest_field, seed_count, seed_last, "held", "h")
    try:
        sched = defn.schedule
        if run_now:
            is_due, next_in = True, sched.is_due(now)[1]
        else:
            is_due, next_in = batch.is_due(sched, last_run or batch.anchor(anchor))
    except Exception as exc:  # noqa: BLE001 - one entry's schedule must not stop beat
        return quarantine(entry.name, batch.lease, InvalidDefinition(defn.kind, f"cannot compute the next run: {exc}"),
                          digest_field)
    if not is_due:
        return _not_run(entry, batch, batch.at + max(float(next_in), 0.0), digest_field, seed_count, seed_last, "wait")
    if defn.paused is not None and not run_now:
        # The run is skipped, not made: no run count, no last run; the schedule says when it is due next.
        return _not_run(entry, batch, batch.at + max(float(next_in), 0.0), digest_field, seed_count, seed_last,
                        "paused", "p")
    runs = count + 1
    next_score = NEVER if retired or (limited and finished(defn, runs, now)) else batch.at + float(next_in)
    noted = ""
    if batch.stamp:
        late = batch.at - entry.score if entry.score > 0 else 0.0
        noted = record("m" if late >= float(next_in) > 0 else "s", batch.stamp, late)
    plan = _make(Plan, (entry.name, batch.lease, next_score, True, batch.run_at, digest_field, "", seed_count, seed_last,
                        noted))
    return _make(Decision, (plan, _make(Run, (defn, runs)), "run"))


def _not_run(entry: Claimed, batch: Batch, score: float, digest_field: str, seed_count: int | None, seed_last: str | None,
             outcome: Outcome, skipped: str = "") -> Decision:
    """The decision for an entry that does not run now: due again at ``score``.

    A ``skipped`` run (its outcome letter) is noted in the history when a due time had passed (score > 0, not a
    look-now after an edit).
    """
    noted = skip_record(entry, batch, skipped) if skipped else ""
    plan = _make(Plan, (entry.name, batch.lease, score, False, "", digest_field, "", seed_count, seed_last, noted))
    return _make(Decision, (plan, None, outcome))


def skip_record(entry: Claimed, batch: Batch, code: str) -> str:
    """The history record of a due run not sent (``code``: its reason), "" with history off or nothing due."""
    if not batch.stamp or entry.score <= 0:
        return ""
    return record(code, batch.stamp, batch.at - entry.score)


def finished(defn: Definition, runs: int, now: datetime) -> bool:
    """Whether an entry that has run ``runs`` times is done: one run of a one-off, ``max_run_count``, ``expires``."""
    if defn.runs_once and runs >= 1:
        return True
    if defn.max_run_count is not None and runs >= defn.max_run_count:
        return True
    return defn.expires is not None and now >= defn.expires


def quarantine_reason(name: str, problem: InvalidDefinition) -> str:
    """The one text a quarantined entry gets in ``{T}:invalid`` and the log: ``entry 'n': field 'f': why``, cut short."""
    return problem.for_entry(name).reason[:REASON_LIMIT]


def quarantine(name: str, lease: str, problem: InvalidDefinition, digest_field: str) -> Decision:
    """The decision that takes an entry out of service (score inf) until its definition or run state is fixed."""
    return Decision(Plan(name, lease, NEVER, digest=digest_field, invalid_reason=quarantine_reason(name, problem)), None,
                    "quarantined")


def log_quarantined(reason: str, tag: str, error: BaseException | None = None) -> None:
    """Say once (the entry is not claimed again until fixed) why an entry was quarantined; ``error`` adds its traceback."""
    logger.error("beat: %s; entry quarantined in {%s}:invalid", reason, tag, exc_info=error)


def _finite(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
