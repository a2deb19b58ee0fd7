"""What happens to one claimed entry: a pure function of the entry, its definition, its last run and the batch's time.

:func:`decide` reads no Redis and keeps no state of its own, so it is tested
with records built by hand. It runs once for every claimed entry, so it builds
as few objects as it can; what entries of a batch share (``is_due`` answers,
parsed last runs and anchors) is worked out once, in the :class:`Batch`.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from datetime import date, datetime, timezone, tzinfo
from typing import Literal, NamedTuple

from celery.schedules import BaseSchedule
from celery.schedules import schedule as interval_schedule

from .calendars import Calendar, InvalidCalendar
from .catchup import catch_up
from .codec import SHORT_DIGEST, Definition, interval_is_due, time_left
from .exceptions import InvalidDefinition
from .history import record, task_id
from .history import stamp as history_stamp
from .jitter import jittered
from .keys import NEVER
from .overlap import HOLD, busy, marker
from .runstate import parse_last_run_at
from .wire import Claimed, Plan

#: Beat logs under the name of the module users configure it by, whichever of its modules speaks.
logger = logging.getLogger("celerybeatredis.schedulers")

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


class Run(NamedTuple):
    """A run to publish: the definition to send, the entry's run count with this run, and the time it was due when
    it is sent for that time (a missed run caught up: ``"all"``), else ``""``."""

    definition: Definition
    total_run_count: int
    scheduled_at: str = ""


class Decision(NamedTuple):
    """What happens to one claimed entry: its plan for commit.lua, the run to publish if any, and why."""

    plan: Plan
    run: Run | None
    outcome: Outcome


#: Most schedule times :func:`latest_slot` steps over (skipped runs since the last run) before taking the batch's time.
SLOT_STEPS = 100

#: Makes the named tuples of the hot path without their Python-level ``__new__`` (half the cost); every field is given.
_make = tuple.__new__


class Batch:
    """What every decision of one claimed batch shares: its time and lease, and answers worked out once for it.

    Entries of a batch mostly share a schedule and a last run (they ran
    together: one batch writes one run time), so each answer below is kept
    for the batch and dropped with it.
    """

    __slots__ = ("_anchors", "_due", "_last_runs", "_texts", "_zones", "at", "calendars", "excluded", "lease", "now",
                 "run_at", "stamp", "tag")

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
        #: By (schedule id, last run, its zone); the schedule is kept so its id stays its own.
        self._due: dict[tuple[int, datetime, object], tuple[BaseSchedule, tuple[bool, float]]] = {}
        self._last_runs: dict[str, datetime | None] = {}
        self._anchors: dict[float, datetime] = {}
        self._texts: dict[float, str] = {}
        self._zones: dict[int, tuple[BaseSchedule, tzinfo]] = {}
        #: Whether a day is excluded, by (Unix second, zone, calendar names): :func:`excluded`'s answers.
        self.excluded: dict[tuple[int, tzinfo, tuple[str, ...]], bool | InvalidDefinition] = {}

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
            is_due, next_in = True, batch.is_due(sched, now)[1]
        else:
            is_due, next_in = batch.is_due(sched, last_run or batch.anchor(anchor))
    except Exception as exc:  # noqa: BLE001 - one entry's schedule must not stop beat
        return quarantine(entry.name, batch.lease, InvalidDefinition(defn.kind, f"cannot compute the next run: {exc}"),
                          digest_field)
    jitter = 0.0 if run_now else defn.jitter
    if not is_due:
        wait = batch.at + max(float(next_in), 0.0)
        if jitter:
            wait = jittered(entry.name, wait, jitter)
        return _not_run(entry, batch, wait, digest_field, seed_count, seed_last, "wait")
    slot = None
    if not run_now and (jitter or defn.exclude):
        slot = latest_slot(sched, last_run or batch.anchor(anchor), batch)
        if jitter and slot is not None:
            # The score beat stored for this slot is its jittered time; worked out afresh after an edit or a look-now.
            at = entry.score if slot <= entry.score < slot + jitter else jittered(entry.name, slot, jitter)
            if batch.at < at:
                return _not_run(entry, batch, at, digest_field, seed_count, seed_last, "wait")
    skip = ""
    if defn.paused is not None and not run_now:
        skip = "p"
    elif defn.exclude and not run_now:
        try:
            skip = "x" if excluded(defn, batch, batch.at if slot is None else slot) else ""
        except InvalidDefinition as exc:
            return quarantine(entry.name, batch.lease, exc, digest_field)
    if skip:
        # The run is skipped, not made: no run count, no last run; the schedule says when it is due next.
        wait = batch.at + max(float(next_in), 0.0)
        if jitter:  # the next slot after this one, as a run would have it, jittered
            wait = _jittered(entry.name, defn, batch, slot, wait)[1]
        return _not_run(entry, batch, wait, digest_field, seed_count, seed_last, "paused" if skip == "p" else "excluded",
                        skip)
    scheduled, caught = "", None
    if (defn.catchup != "latest" or defn.catchup_window is not None) and last_run is not None and not run_now:
        caught = catch_up(sched, last_run, now, defn.catchup, defn.catchup_window)
        if caught.send is None:
            # Every missed run let go: the schedule goes on from the newest (written as the last run, no run counted).
            newest = caught.newest or now
            plan = _make(Plan, (entry.name, batch.lease, batch.at + max(sched.remaining_estimate(newest).total_seconds(), 0),
                                False, newest.isoformat(), digest_field, "", seed_count, seed_last,
                                caught.records(batch.stamp, batch.at - entry.score if entry.score > 0 else 0.0), ""))
            return _make(Decision, (plan, None, "missed"))
        if defn.catchup == "all":
            scheduled = caught.send.isoformat()  # the next decision goes on from this run's due time
    mark = ""
    if defn.overlap != "allow":
        in_progress = busy(entry.running, batch.at)
        if in_progress is not None and not run_now:
            if defn.overlap == "skip":
                return _not_run(entry, batch, batch.at + max(float(next_in), 0.0), digest_field, seed_count, seed_last,
                                "overlapped", "o")
            # Held: the worker that ends the run in progress makes the entry due; its marker's lapse at the latest.
            plan = _make(Plan, (entry.name, batch.lease, in_progress.expires, False, "", digest_field, "", seed_count,
                                seed_last, "", HOLD))
            return _make(Decision, (plan, None, "buffered"))
        run_stamp = batch.stamp or history_stamp(batch.at)
        mark = marker(task_id(batch.tag, entry.name, run_stamp), batch.at, defn.overlap_timeout)
    runs = count + 1
    ran_at = batch.run_at
    if retired or (limited and finished(defn, runs, now)):
        next_score = NEVER
    elif caught is not None and scheduled:
        ran_at = scheduled
        next_score = batch.at if caught.more else batch.at + max(sched.remaining_estimate(caught.send).total_seconds(), 0)
    else:
        next_score = batch.at + float(next_in)
        if jitter:
            ran_at, next_score = _jittered(entry.name, defn, batch, slot, next_score)
        elif defn.jitter:  # a run-now is sent at once; the run after it is jittered as any other
            next_score = jittered(entry.name, next_score, defn.jitter)
    noted = ""
    if batch.stamp:
        late = batch.at - entry.score if entry.score > 0 else 0.0
        noted = record("m" if late >= float(next_in) > 0 else "s", batch.stamp, late)
        if caught is not None:
            noted += caught.records(batch.stamp, batch.at - entry.score if entry.score > 0 else 0.0)
    plan = _make(Plan, (entry.name, batch.lease, next_score, True, ran_at, digest_field, "", seed_count, seed_last,
                        noted, mark))
    return _make(Decision, (plan, _make(Run, (defn, runs, scheduled)), "run"))


def _jittered(name: str, defn: Definition, batch: Batch, slot: float | None, next_score: float) -> tuple[str, float]:
    """The last run to record for a jittered run, and its next score.

    The slot is recorded as the last run when the schedule, timed from it, is
    not due again at once: an interval then keeps its period instead of
    adding each run's delay to the next. Otherwise (a late run) the run's own
    time is, as without jitter.
    """
    ran_at = batch.run_at
    if slot is not None and slot < batch.at:
        sched = defn.schedule
        if type(sched) is interval_schedule and not sched.relative:  # the slot is the latest: the next is one period on
            ran_at, next_score = batch.iso(slot), slot + sched.run_every.total_seconds()
        else:
            due, left = batch.is_due(sched, batch.anchor(slot))
            if not due:
                ran_at, next_score = batch.iso(slot), batch.at + float(left)
    return ran_at, jittered(name, next_score, defn.jitter)


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


def excluded(defn: Definition, batch: Batch, slot: float) -> bool:
    """Whether a calendar of ``defn``'s ``exclude`` has the slot's day, in the entry's time zone.

    Answered once per (second, zone, calendars) in a batch: entries due together share it.

    Raises:
        InvalidDefinition: naming ``exclude``, for a calendar that does not exist or does not read.
    """
    zone = batch.zone(defn.schedule)
    key = (int(slot // 1), zone, defn.exclude)  # a day starts on a whole second in every zone
    found = batch.excluded.get(key)
    if found is None:
        found = batch.excluded[key] = _excluded_day(defn.exclude, batch.calendars,
                                                    datetime.fromtimestamp(key[0], zone).date())
    if found is True or found is False:
        return found
    raise found


def _excluded_day(names: tuple[str, ...], calendars: Mapping[str, Calendar | InvalidCalendar],
                  day: date) -> bool | InvalidDefinition:
    for name in names:
        calendar = calendars.get(name)
        if calendar is None:
            return InvalidDefinition("exclude", f"unknown calendar {name!r} (create it with: celerybeatredis calendar set)")
        if isinstance(calendar, InvalidCalendar):
            return InvalidDefinition("exclude", f"cannot use {calendar}")
        if calendar.excludes(day):
            return True
    return False


def _not_run(entry: Claimed, batch: Batch, score: float, digest_field: str, seed_count: int | None, seed_last: str | None,
             outcome: Outcome, skipped: str = "") -> Decision:
    """The decision for an entry that does not run now: due again at ``score``.

    A ``skipped`` run (its outcome letter) is noted in the history when a due time had passed (score > 0, not a
    look-now after an edit).
    """
    noted = skip_record(entry, batch, skipped) if skipped else ""
    plan = _make(Plan, (entry.name, batch.lease, score, False, "", digest_field, "", seed_count, seed_last, noted, ""))
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
