"""What happens to one claimed entry: a pure function of the entry, its definition, its last run and the batch's time.

:func:`decide` reads no Redis and keeps no state of its own, so it is tested
with records built by hand. It runs once for every claimed entry, so it builds
as few objects as it can: what entries of a batch share is worked out once,
in the :class:`~.batches.Batch` and its :class:`~.timings.Timing` answers,
and each run policy (jitter, pause, calendars, catch-up, overlap) is a step
that only the entries having it take.

The records and helpers a decision is made of live in :mod:`.outcomes`,
:mod:`.batches`, :mod:`.timings` and :mod:`.anchors`; they are named here too,
where the rest of the package has always found them.
"""

from __future__ import annotations

from datetime import datetime

from .anchors import stamp
from .batches import Batch
from .catchup import CatchUp, catch_up
from .codec import Definition
from .exceptions import InvalidDefinition
from .history import record, task_id
from .jitter import jittered
from .keys import NEVER
from .outcomes import (
    REASON_LIMIT,
    Decision,
    Outcome,
    Run,
    log_quarantined,
    make,
    not_run,
    quarantine,
    quarantine_reason,
    skip_record,
)
from .overlap import HOLD, busy
from .timings import SLOT_STEPS, Timing, latest_slot
from .wire import Claimed, Plan

__all__ = ["REASON_LIMIT", "SLOT_STEPS", "Batch", "Decision", "Outcome", "Run", "decide", "finished", "latest_slot",
           "log_quarantined", "quarantine", "quarantine_reason", "skip_record", "stamp"]


def decide(entry: Claimed, defn: Definition, last_run: datetime | None, stamped: tuple[str, float], batch: Batch) -> Decision:
    """The plan for ``entry`` (a valid ``defn``, its parsed ``last_run``, its :func:`~.anchors.stamp`) at the batch's time.

    A run-now request (a negative score) runs even a disabled, finished or paused entry, and is not jittered.
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
        return not_run(entry, batch, NEVER, digest_field, seed_count, seed_last, "retired", "d")
    if not run_now and defn.start_time is not None and now < defn.start_time:
        return not_run(entry, batch, defn.start_time.timestamp(), digest_field, seed_count, seed_last, "held", "h")
    timing = None  # a run-now is not timed from its last run: none of the policies that ask for the slot apply
    try:
        if run_now:
            is_due, next_in = True, batch.is_due(defn.schedule, now)[1]
        else:
            timing = batch.timing(defn.schedule, last_run or batch.anchor(anchor))
            is_due, next_in = timing.due
    except Exception as exc:  # noqa: BLE001 - one entry's schedule must not stop beat
        return quarantine(entry.name, batch.lease, InvalidDefinition(defn.kind, f"cannot compute the next run: {exc}"),
                          digest_field)
    if not is_due:
        wait = batch.at + max(float(next_in), 0.0)
        if defn.jitter and timing is not None:
            wait = jittered(entry.name, wait, defn.jitter)
        return not_run(entry, batch, wait, digest_field, seed_count, seed_last, "wait")
    if timing is not None and (defn.jitter or defn.exclude or defn.paused is not None):
        try:
            skipped = _not_yet_or_skipped(entry, defn, timing, next_in, batch)
        except InvalidDefinition as exc:
            return quarantine(entry.name, batch.lease, exc, digest_field)
        if skipped is not None:
            return not_run(entry, batch, skipped[1], digest_field, seed_count, seed_last, skipped[0], skipped[2])
    caught = None
    if timing is not None and last_run is not None and (defn.catchup != "latest" or defn.catchup_window is not None):
        caught = catch_up(defn.schedule, last_run, now, defn.catchup, defn.catchup_window)
        if caught.send is None:
            return _let_go(entry, defn, caught, batch, digest_field, seed_count, seed_last)
    mark = ""
    if defn.overlap != "allow":
        marked = _marker_or_held(entry, defn, next_in, timing is None, batch, digest_field, seed_count, seed_last)
        if not isinstance(marked, str):
            return marked
        mark = marked
    runs = count + 1
    scheduled = caught.send.isoformat() if caught is not None and caught.send is not None and defn.catchup == "all" else ""
    ran_at, next_score = batch.run_at, batch.at + float(next_in)
    if retired or (limited and finished(defn, runs, now)):
        next_score = NEVER
    elif scheduled and caught is not None:  # the next decision goes on from this run's due time
        ran_at = scheduled
        next_score = batch.at if caught.more else batch.at + max(defn.schedule.remaining_estimate(caught.send).total_seconds(), 0)
    elif defn.jitter:  # a run-now is sent at once; the run after it is jittered as any other (from its own time)
        slot_run = timing.slot_run(batch) if timing is not None else None
        if slot_run is not None:
            ran_at, next_score = slot_run
        next_score = jittered(entry.name, next_score, defn.jitter)
    noted = ""
    if batch.stamp:
        late = batch.at - entry.score if entry.score > 0 else 0.0
        noted = record("m" if late >= float(next_in) > 0 else "s", batch.stamp, late)
        if caught is not None:
            noted += caught.records(batch.stamp, late)
    plan = make(Plan, (entry.name, batch.lease, next_score, True, ran_at, digest_field, "", seed_count, seed_last, noted,
                       mark))
    return make(Decision, (plan, make(Run, (defn, runs, scheduled)), "run"))


def _not_yet_or_skipped(entry: Claimed, defn: Definition, timing: Timing, next_in: float,
                        batch: Batch) -> tuple[Outcome, float, str] | None:
    """For a due entry with jitter, a pause or calendars: ``(outcome, score, history letter)`` when it does not run
    now (its jittered time is ahead; paused; its slot's day excluded), None when it runs.

    Raises:
        InvalidDefinition: naming ``exclude``, for a calendar that does not exist or does not read.
    """
    jitter = defn.jitter
    if jitter:
        slot = timing.slot(batch)
        if slot is not None:
            # The score beat stored for this slot is its jittered time; worked out afresh after an edit or a look-now.
            at = entry.score if slot <= entry.score < slot + jitter else jittered(entry.name, slot, jitter)
            if batch.at < at:
                return "wait", at, ""
    if defn.paused is not None:
        outcome: Outcome = "paused"
    elif defn.exclude and timing.excluded(defn.exclude, batch):
        outcome = "excluded"
    else:
        return None
    # The run is skipped, not made: no run count, no last run; the schedule says when it is due next.
    wait = batch.at + max(float(next_in), 0.0)
    if jitter:  # the next slot after this one, as a run would have it, jittered
        slot_run = timing.slot_run(batch)
        wait = jittered(entry.name, wait if slot_run is None else slot_run[1], jitter)
    return outcome, wait, "p" if outcome == "paused" else "x"


def _let_go(entry: Claimed, defn: Definition, caught: CatchUp, batch: Batch, digest_field: str, seed_count: int | None,
            seed_last: str | None) -> Decision:
    """Every missed run let go (catch-up): the schedule goes on from the newest, written as the last run, no run counted."""
    newest = caught.newest or batch.now
    plan = make(Plan, (entry.name, batch.lease, batch.at + max(defn.schedule.remaining_estimate(newest).total_seconds(), 0),
                       False, newest.isoformat(), digest_field, "", seed_count, seed_last,
                       caught.records(batch.stamp, batch.at - entry.score if entry.score > 0 else 0.0), ""))
    return make(Decision, (plan, None, "missed"))


def _marker_or_held(entry: Claimed, defn: Definition, next_in: float, run_now: bool, batch: Batch, digest_field: str,
                    seed_count: int | None, seed_last: str | None) -> str | Decision:
    """For an entry with an overlap mode: the run marker to commit with its run, or, while its last run is in
    progress, the decision that skips the run ("skip") or holds it behind that one ("buffer_one").

    A run-now request runs even then (and writes its own marker).
    """
    if entry.running is not None and not run_now:
        in_progress = busy(entry.running, batch.at)
        if in_progress is not None:
            if defn.overlap == "skip":
                return not_run(entry, batch, batch.at + max(float(next_in), 0.0), digest_field, seed_count, seed_last,
                               "overlapped", "o")
            # Held: the worker that ends the run in progress makes the entry due; its marker's lapse at the latest.
            plan = make(Plan, (entry.name, batch.lease, in_progress.expires, False, "", digest_field, "", seed_count,
                               seed_last, "", HOLD))
            return make(Decision, (plan, None, "buffered"))
    return task_id(batch.tag, entry.name, batch.task_stamp) + batch.marker_tail(defn.overlap_timeout)


def finished(defn: Definition, runs: int, now: datetime) -> bool:
    """Whether an entry that has run ``runs`` times is done: one run of a one-off, ``max_run_count``, ``expires``."""
    if defn.runs_once and runs >= 1:
        return True
    if defn.max_run_count is not None and runs >= defn.max_run_count:
        return True
    return defn.expires is not None and now >= defn.expires
