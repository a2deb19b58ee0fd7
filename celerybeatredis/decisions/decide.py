"""What happens to one claimed entry: a pure function of the entry, its definition, its last run and the batch's time.

:func:`decide` reads no Redis and keeps no state of its own, so it is tested
with records built by hand. It runs once for every claimed entry, so it builds
as few objects as it can: what entries of a batch share is worked out once,
in the :class:`~.batch.Batch` and its :class:`~.batch.Timing` answers, and
each run policy (jitter, pause, calendars, catch-up, overlap) is a step that
only the entries having it take. Its answer is a :class:`Decision`: what the
commit writes, the run to send if any, and why.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, NamedTuple

from ..definitions.codec import Definition
from ..exceptions import InvalidDefinition
from ..observe.log import logger
from ..policies.catchup import CatchUp, catch_up
from ..policies.jitter import jittered
from ..policies.overlap import HOLD, busy
from ..storage.history import record, task_id
from ..storage.keys import NEVER
from ..storage.wire import PLAN_FIELDS, Claimed, Plan
from .batch import Batch, Timing

#: Longest reason kept in ``{T}:invalid`` and the log; a reason quotes what it rejects, which may be long.
REASON_LIMIT = 1000

#: run: to publish once committed; wait: not due yet; held: its start_time is ahead; retired: disabled or finished;
#: paused: due, not sent while the entry is paused (due again at its next time); excluded: due on a day a calendar
#: of its ``exclude`` excludes, not sent either;
#: overlapped: due while its last run has not finished, skipped (overlap "skip");
#: buffered: due while its last run has not finished, held until it ends (overlap "buffer_one");
#: missed: due, its missed runs let go as its catchup says, none sent;
#: quarantined: its definition (or its run state) cannot be used.
Outcome = Literal["run", "wait", "held", "retired", "paused", "excluded", "overlapped", "buffered", "missed",
                  "quarantined"]

#: The history letter (:mod:`~celerybeatredis.storage.history`) of each outcome that skips a run once it was due.
SKIP_LETTERS: dict[Outcome, str] = {"retired": "d", "held": "h", "paused": "p", "excluded": "x", "overlapped": "o",
                                    "quarantined": "q"}

_new = object.__new__


class Run(NamedTuple):
    """A run to publish: the definition to send, the entry's run count with this run, and the time it was due when
    it is sent for that time (a missed run caught up: ``"all"``), else ``""``; the time the schedule gave for it
    (its slot, before jitter, ISO-8601; ``""`` when not known) and its history stamp (``""`` with history off)."""

    definition: Definition
    total_run_count: int
    scheduled_at: str = ""
    fire_time: str = ""
    stamp: str = ""


class Decision(Plan):
    """What happens to one claimed entry: the plan its commit writes (a :class:`~celerybeatredis.storage.wire.Plan`,
    so commit.lua takes it as it is), the run to send if any, and why.

    Made by :func:`begin`, never called: each step of :func:`decide` then sets the fields it decides, by name.
    """

    __slots__ = ("entry", "outcome", "run")
    #: The claimed entry decided.
    entry: Claimed
    outcome: Outcome
    run: Run | None

    @property
    def plan(self) -> Plan:
        """The plan alone (for tools and tests)."""
        return Plan(**{name: getattr(self, name) for name in PLAN_FIELDS})


def decide(entry: Claimed, defn: Definition, last_run: datetime | None, digested: tuple[str, float], batch: Batch) -> Decision:
    """The decision for ``entry`` (a valid ``defn``, its parsed ``last_run``, its
    :func:`~.anchors.digest_and_anchor`) at the batch's time.

    A run-now request (a negative score) runs even a disabled, finished or paused entry, and is not jittered.
    A definition whose schedule cannot say when it runs next is quarantined.
    ``defn``'s schedule must read the batch's time as now (beat's codec reads
    its :class:`~.planner.TickClock`, which the planner sets to it).
    """
    digest, anchor = digested
    made = begin(entry, batch, digest)
    count = entry.total_run_count
    if count is None and defn.seed_total_run_count is not None:
        count = made.seed_total_run_count = defn.seed_total_run_count
    if last_run is None and defn.seed_last_run_at is not None:
        last_run = defn.seed_last_run_at
        made.seed_last_run_at = last_run.isoformat()
    count = count or 0
    run_now = entry.score < 0
    limited = defn.runs_once or defn.max_run_count is not None or defn.expires is not None
    retired = not defn.enabled or (limited and finished(defn, count, batch.now))
    if retired and not run_now:
        return skip(made, batch, "retired", NEVER)
    if not run_now and defn.start_time is not None and batch.now < defn.start_time:
        return skip(made, batch, "held", defn.start_time.timestamp())
    timing = None  # a run-now is not timed from its last run: none of the policies that ask for the slot apply
    try:
        if run_now:
            is_due, next_in = True, batch.is_due(defn.schedule, batch.now)[1]
        else:
            timing = batch.timing(defn.schedule, last_run or batch.anchor(anchor))
            is_due, next_in = timing.due
    except Exception as exc:  # noqa: BLE001 - one entry's schedule must not stop beat
        return quarantined(made, batch, InvalidDefinition(defn.kind, f"cannot compute the next run: {exc}"))
    if not is_due:
        wait = batch.at + max(float(next_in), 0.0)
        return skip(made, batch, "wait", jittered(entry.name, wait, defn.jitter) if defn.jitter and timing is not None else wait)
    if (timing is not None and (defn.jitter or defn.exclude or defn.paused is not None)
            and _skipped_by_policy(made, defn, timing, next_in, batch)):
        return made
    caught = None
    if timing is not None and last_run is not None and (defn.catchup != "latest" or defn.catchup_window is not None):
        caught = catch_up(defn.schedule, last_run, batch.now, defn.catchup, defn.catchup_window)
        if caught.send is None:
            return _let_go(made, defn, caught, batch)
    if defn.overlap != "allow" and not _marked(made, defn, next_in, run_now, batch):
        return made
    return _ran(made, defn, count + 1, next_in, timing, caught, retired or (limited and finished(defn, count + 1, batch.now)),
                batch)


def begin(entry: Claimed, batch: Batch, digest: str) -> Decision:
    """A decision for ``entry`` in ``batch`` of which nothing is decided yet: it sends nothing and writes only
    ``digest`` (the ``{T}:digest`` value, ``""`` to leave it); the steps of :func:`decide` set the rest."""
    made: Decision = _new(Decision)
    made.entry = entry
    made.name = entry.name
    made.lease = batch.lease
    made.score = entry.score
    made.ran = False
    made.run_at = ""
    made.digest = digest
    made.invalid_reason = ""
    made.seed_total_run_count = None
    made.seed_last_run_at = None
    made.history = ""
    made.running = ""
    made.outcome = "wait"
    made.run = None
    return made


def skip(made: Decision, batch: Batch, outcome: Outcome, score: float) -> Decision:
    """``made`` as an entry that does not run now, due again at ``score``; a skipped run is noted in its history when
    a due time had passed (:func:`skip_record`)."""
    made.outcome = outcome
    made.score = score
    letter = SKIP_LETTERS.get(outcome)
    if letter is not None:
        made.history = skip_record(made.entry, batch, letter)
    return made


def skip_record(entry: Claimed, batch: Batch, letter: str) -> str:
    """The history record of a due run not sent (``letter``: its reason), "" with history off or nothing due (a
    score of 0 or less: a look after an edit, a run-now)."""
    if not batch.stamp or entry.score <= 0:
        return ""
    return record(letter, batch.stamp, batch.at - entry.score)


def quarantined(made: Decision, batch: Batch, problem: InvalidDefinition) -> Decision:
    """``made`` as the decision that takes its entry out of service (score inf) until its definition or run state is
    fixed; its run state is not seeded."""
    made.seed_total_run_count = made.seed_last_run_at = None
    made.invalid_reason = quarantine_reason(made.name, problem)
    return skip(made, batch, "quarantined", NEVER)


def quarantine_reason(name: str, problem: InvalidDefinition) -> str:
    """The one text a quarantined entry gets in ``{T}:invalid`` and the log: ``entry 'n': field 'f': why``, cut short."""
    return problem.for_entry(name).reason[:REASON_LIMIT]


def log_quarantined(reason: str, tag: str, error: BaseException | None = None) -> None:
    """Say once (the entry is not claimed again until fixed) why an entry was quarantined; ``error`` adds its traceback."""
    logger.error("beat: %s; entry quarantined in {%s}:invalid", reason, tag, exc_info=error)


def finished(defn: Definition, runs: int, now: datetime) -> bool:
    """Whether an entry that has run ``runs`` times is done: one run of a one-off, ``max_run_count``, ``expires``."""
    if defn.runs_once and runs >= 1:
        return True
    if defn.max_run_count is not None and runs >= defn.max_run_count:
        return True
    return defn.expires is not None and now >= defn.expires


def _skipped_by_policy(made: Decision, defn: Definition, timing: Timing, next_in: float, batch: Batch) -> bool:
    """For a due entry with jitter, a pause or calendars: whether it does not run now (its jittered time is ahead;
    paused; its slot's day excluded; a calendar it names cannot be used: quarantined), ``made`` then settled."""
    name, jitter = made.name, defn.jitter
    if jitter:
        slot = timing.slot(batch)
        if slot is not None:
            # The score beat stored for this slot is its jittered time; worked out afresh after an edit or a look-now.
            score = made.entry.score
            at = score if slot <= score < slot + jitter else jittered(name, slot, jitter)
            if batch.at < at:
                skip(made, batch, "wait", at)
                return True
    try:
        outcome: Outcome | None = ("paused" if defn.paused is not None
                                   else "excluded" if defn.exclude and timing.excluded(defn.exclude, batch) else None)
    except InvalidDefinition as exc:  # a calendar that does not exist or does not read
        quarantined(made, batch, exc)
        return True
    if outcome is None:
        return False
    # The run is skipped, not made: no run count, no last run; the schedule says when it is due next.
    wait = batch.at + max(float(next_in), 0.0)
    if jitter:  # the next slot after this one, as a run would have it, jittered
        slot_run = timing.slot_run(batch)
        wait = jittered(name, wait if slot_run is None else slot_run[1], jitter)
    skip(made, batch, outcome, wait)
    return True


def _let_go(made: Decision, defn: Definition, caught: CatchUp, batch: Batch) -> Decision:
    """Every missed run let go (catch-up): the schedule goes on from the newest, written as the last run, no run counted."""
    newest = caught.newest or batch.now
    score = made.entry.score
    made.outcome = "missed"
    made.score = batch.at + max(defn.schedule.remaining_estimate(newest).total_seconds(), 0)
    made.run_at = newest.isoformat()
    made.history = caught.records(batch.stamp, batch.at - score if score > 0 else 0.0)
    return made


def _marked(made: Decision, defn: Definition, next_in: float, run_now: bool, batch: Batch) -> bool:
    """For an entry with an overlap mode: True with the run marker to commit set on ``made``; False with ``made``
    settled while its last run is in progress (skipped, ``"skip"``; held behind it, ``"buffer_one"``).

    A run-now request runs even then (and writes its own marker).
    """
    entry = made.entry
    if entry.running is not None and not run_now:
        in_progress = busy(entry.running, batch.at)
        if in_progress is not None:
            if defn.overlap == "skip":
                skip(made, batch, "overlapped", batch.at + max(float(next_in), 0.0))
            else:  # held: the worker that ends the run in progress makes the entry due; its marker's lapse at the latest
                made.outcome = "buffered"
                made.score = in_progress.expires
                made.running = HOLD
            return False
    made.running = task_id(batch.tag, entry.name, batch.task_stamp) + batch.marker_tail(defn.overlap_timeout)
    return True


def _ran(made: Decision, defn: Definition, runs: int, next_in: float, timing: Timing | None, caught: CatchUp | None,
         ends: bool, batch: Batch) -> Decision:
    """``made`` as the entry's ``runs``-th run, sent now; ``ends`` when it is the last (the entry is retired after it)."""
    scheduled = caught.send.isoformat() if caught is not None and caught.send is not None and defn.catchup == "all" else ""
    ran_at, next_score = batch.run_at, batch.at + float(next_in)
    if ends:
        next_score = NEVER
    elif scheduled and caught is not None:  # the next decision goes on from this run's due time
        ran_at = scheduled
        next_score = batch.at if caught.more else batch.at + max(defn.schedule.remaining_estimate(caught.send).total_seconds(), 0)
    elif defn.jitter:  # a run-now is sent at once; the run after it is jittered as any other (from its own time)
        slot_run = timing.slot_run(batch) if timing is not None else None
        if slot_run is not None:
            ran_at, next_score = slot_run
        next_score = jittered(made.name, next_score, defn.jitter)
    score = made.entry.score
    late = batch.at - score if score > 0 else 0.0
    missed = late >= float(next_in) > 0
    if batch.stamp:
        made.history = record("m" if missed else "s", batch.stamp, late)
        if caught is not None:
            made.history += caught.records(batch.stamp, late)
    made.outcome = "run"
    made.score = next_score
    made.ran = True
    made.run_at = ran_at
    made.run = Run(definition=defn, total_run_count=runs, scheduled_at=scheduled,
                   fire_time=scheduled or _fire_time(score, missed, defn.jitter, timing, batch), stamp=batch.stamp)
    return made


def _fire_time(score: float, missed: bool, jitter: float, timing: Timing | None, batch: Batch) -> str:
    """The time the schedule gave for a run sent now (its slot, before jitter), ISO-8601: the due score an unjittered
    entry that missed no run was stored with, else the slot worked out (a run-now's, or one the schedule cannot
    say: the batch's time)."""
    if score > 0 and not missed and not jitter:
        return batch.iso(score)
    slot = timing.slot(batch) if timing is not None else None
    return batch.iso(slot) if slot is not None else batch.run_at
