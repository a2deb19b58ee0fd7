"""When an entry runs next: beat's own decisions replayed on a simulated clock.

Nothing here reads Redis. :func:`fire_times` takes an entry as beat claims it
(definition, due score, run count, last run, ``{T}:digest``) and calls
:func:`~.decide.decide` at the entry's due score, then at the score that
decision stores, and so on: the times are those of a beat that ticks on time,
by the same code, so they cannot drift from what beat does. Times that
``start_time``, ``expires``, ``max_run_count``, ``one_off`` or ``enabled``
rule out are replayed with those limits lifted, and marked.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import NamedTuple

from celery import Celery

from ..definitions.calendars import Calendar, InvalidCalendar
from ..definitions.codec import Codec, Definition, digest
from ..exceptions import CeleryBeatRedisError
from ..storage.wire import Claimed, parse_last_run_at
from .anchors import digest_and_anchor
from .batch import Batch
from .decide import decide
from .planner import TickClock

#: The field behind each outcome that skips a due run: the time is listed, marked with it.
SKIPPED_BY = {"paused": "paused", "excluded": "exclude"}
#: Decisions replayed per time asked for, at most: a schedule that keeps saying "not yet" ends the replay.
STEPS_PER_TIME = 20


class FireTime(NamedTuple):
    """One time the entry's schedule fires."""

    #: When (UTC), as a beat that ticks on time sends it.
    at: datetime
    #: The entry's run count once it ran then; None for a time ruled out.
    run: int | None
    #: None when beat sends it, else the field that stops it: ``start_time``, ``expires``, ``max_run_count``,
    #: ``one_off``, ``enabled``, or ``paused`` (beat skips it).
    ruled_out: str | None = None

    def to_json(self) -> dict[str, object]:
        """The record as ``next --json`` prints it."""
        return {"at": self.at.isoformat(), "run": self.run, "ruled_out": self.ruled_out}


class _State(NamedTuple):
    """Where a replay stands: the time beat decides next, the due score it finds there, the run count and last run."""

    at: float
    score: float
    total: int | None
    last: datetime | None


def fire_times(entry: Claimed, app: Celery, now: float, count: int = 10,
               calendars: Mapping[str, Calendar | InvalidCalendar] | None = None) -> list[FireTime]:
    """Up to ``count`` times of ``entry`` from ``now`` (Unix seconds), soonest first.

    First the runs beat makes; if they are fewer than ``count`` (a limit stops
    them), the times the limits rule out fill the rest, marked: those after
    the last run, then those just before ``start_time``. ``calendars`` are
    those an ``exclude`` names (the times they exclude are listed, marked).

    Raises:
        InvalidDefinition: naming the field, when beat could not use the definition.
        CeleryBeatRedisError: when the schedule cannot say when it runs next (beat quarantines such an entry).
    """
    clock = TickClock()
    defn = Codec(app, nowfun=clock.now).parse(entry.definition)
    score = entry.score if entry.score is not None else 0.0
    at = now if not math.isfinite(score) or score < now else score
    last = parse_last_run_at(entry.last_run_at)
    anchor = digest_and_anchor(entry.digest, digest(entry.definition), last is not None, at)[1]
    start = _State(at=at, score=score, total=entry.total_run_count, last=last)
    runs, stopped, halt = _replay(entry.name, defn, clock, anchor, start, count, calendars)
    room = count - len(runs)
    if room <= 0:
        return runs
    lifted = defn._replace(enabled=True, start_time=None, expires=None, max_run_count=None, one_off=False)
    marked: list[FireTime] = []
    if stopped is not None and halt is not None:  # lifted, a clocked entry still runs once: it is of a kind that does
        later, _, _ = _replay(entry.name, lifted, clock, anchor, halt, room + 1, calendars)
        marked += [FireTime(at=t.at, run=None, ruled_out=stopped) for t in later if not runs or t.at > runs[-1].at][:room]
    if defn.start_time is not None and defn.enabled and len(marked) < room:
        early, _, _ = _replay(entry.name, lifted, clock, anchor, start, count, calendars)
        held = [FireTime(at=t.at, run=None, ruled_out="start_time") for t in early if t.at < defn.start_time]
        marked += held[len(held) - (room - len(marked)):]
    return sorted(runs + marked, key=lambda t: t.at)


def _replay(name: str, defn: Definition, clock: TickClock, anchor: float, state: _State, count: int,
            calendars: Mapping[str, Calendar | InvalidCalendar] | None) -> tuple[list[FireTime], str | None, _State | None]:
    """Beat's decisions for ``defn`` from ``state`` on: its runs, the field that retired it (if one did, before
    ``count`` runs), and the state before the decision that retired it (to replay on from without the limit)."""
    runs: list[FireTime] = []
    at, score, total, last = state
    for _ in range(STEPS_PER_TIME * count + 10):
        before = _State(at=at, score=score, total=total, last=last)
        batch = Batch("", at, calendars=calendars)
        clock.current = batch.now
        entry = Claimed(name=name, score=score, definition=b"", total_run_count=total)
        decision = decide(entry, defn, last, ("", anchor), batch)
        if decision.outcome == "quarantined":
            raise CeleryBeatRedisError(decision.invalid_reason)
        if decision.run is not None:
            total, last = decision.run.total_run_count, parse_last_run_at(decision.run_at) or batch.now
            runs.append(FireTime(at=batch.now, run=total))
        elif decision.outcome in SKIPPED_BY:
            runs.append(FireTime(at=batch.now, run=None, ruled_out=SKIPPED_BY[decision.outcome]))
        if len(runs) >= count:
            return runs, None, None
        score = decision.score
        if not math.isfinite(score):
            return runs, _why_retired(defn, total or 0, batch.now), before
        at = max(score, at + 0.001)
    return runs, None, None


def _why_retired(defn: Definition, runs: int, now: datetime) -> str:
    """The field that retired an entry (see :func:`~.decide.finished`)."""
    if not defn.enabled:
        return "enabled"
    if defn.max_run_count is not None and runs >= defn.max_run_count:
        return "max_run_count"
    if defn.expires is not None and now >= defn.expires:
        return "expires"
    return "one_off"
