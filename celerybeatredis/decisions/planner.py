"""Deciding a claimed batch: each definition parsed (cached by its digest) and admitted, then :func:`~.decide.decide`."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from types import MappingProxyType
from typing import NamedTuple

from ..definitions.calendars import Calendar, InvalidCalendar
from ..definitions.codec import SHORT_DIGEST, Codec, Definition, digest
from ..exceptions import InvalidDefinition
from ..settings import Settings
from ..storage.wire import Claim, Claimed
from .anchors import digest_and_anchor
from .batch import Batch
from .decide import Decision, begin, decide, quarantined


class TickClock:
    """The time of the batch being decided, taken from Redis so every beat agrees on it; schedules read it as now."""

    def __init__(self) -> None:
        self.current = datetime.now(timezone.utc)

    def now(self) -> datetime:
        """The batch's time (aware, UTC)."""
        return self.current


class Planned(NamedTuple):
    """A claimed batch, decided: what happens to each entry (each a plan for commit.lua), its time, and how long
    deciding took."""

    claim: Claim
    decisions: list[Decision]
    now: datetime
    seconds: float
    #: ``time.monotonic()`` when it was decided: a batch published long after is checked for newer runs
    #: (:mod:`~celerybeatredis.beat.freshness`).
    decided_at: float = 0.0
    #: The unforeseen error that quarantined an entry, by name: its traceback goes with the quarantine's ERROR,
    #: which only the beat whose commit quarantines the entry logs (:mod:`~celerybeatredis.beat.dispatch`).
    errors: Mapping[str, BaseException] = MappingProxyType({})


class Planner:
    """Decides claimed batches; the codec's parsed definitions outlive batches, the :class:`~.batch.Batch` answers do not."""

    def __init__(self, codec: Codec, clock: TickClock, settings: Settings) -> None:
        self.codec = codec
        self.clock = clock
        self.settings = settings
        #: The schedule's calendars (beat gives it a :class:`~celerybeatredis.policies.exclude.CalendarCache`: read
        #: when looked up, at most once a second).
        self.calendars: Mapping[str, Calendar | InvalidCalendar] = {}
        #: Called with each admitted entry's name and task (beat's warns of tasks its app does not register).
        self.on_admit: Callable[[str, str], None] | None = None

    def plan(self, claim: Claim) -> Planned:
        """What happens to each entry of ``claim``, decided at the claim's time (the Redis server's)."""
        started = time.perf_counter()
        batch = Batch(claim.lease, claim.now, self.settings.history > 0, self.calendars, self.settings.tag)
        self.clock.current = batch.now
        errors: dict[str, BaseException] = {}
        decisions = [self.decide(entry, batch, errors) for entry in claim.entries]
        return Planned(claim=claim, decisions=decisions, now=batch.now, seconds=time.perf_counter() - started,
                       decided_at=time.monotonic(), errors=errors)

    def decide(self, entry: Claimed, batch: Batch, errors: dict[str, BaseException] | None = None) -> Decision:
        """:func:`~.decide.decide` for one entry, quarantining it (not the batch) if it cannot be used or if anything
        unforeseen goes wrong (that error is put in ``errors``, by name). Nothing is logged yet: the quarantine is
        said once committed, by the beat whose commit made it."""
        try:
            sha = digest(entry.definition)
            last_run = batch.last_run(entry.last_run_at) if entry.last_run_at else None
            digested = digest_and_anchor(entry.digest, sha, last_run is not None, batch.at)
            try:
                defn = self.admit(entry, self.codec.parse(entry.definition, sha))
            except InvalidDefinition as exc:
                decision = quarantined(begin(entry, batch, digested[0]), batch, exc)
            else:
                decision = decide(entry, defn, last_run, digested, batch)
        except Exception as exc:  # noqa: BLE001 - one entry must not stop the others
            problem = InvalidDefinition("", f"cannot be scheduled: {type(exc).__name__}: {exc}")
            made = begin(entry, batch, f"{digest(entry.definition)[:SHORT_DIGEST]} {batch.at:.6f}")
            decision = quarantined(made, batch, problem)
            if errors is not None:
                errors[entry.name] = exc
        return decision

    def admit(self, entry: Claimed, defn: Definition) -> Definition:
        """``defn``, if beat may send its task and the entry's stored run count is an integer.

        Raises:
            InvalidDefinition: naming ``task`` or ``total_run_count``.
        """
        if not self.settings.task_allowed(defn.task):
            raise InvalidDefinition("task", f"{defn.task!r} is not in redis_scheduler_task_allowlist")
        if entry.bad_run_count is not None:
            raise InvalidDefinition(
                "total_run_count",
                f"{{{self.settings.tag}}}:total_run_count holds {entry.bad_run_count[:40]!r}, not an integer; "
                "set it right (or HDEL it), then make the entry due (ZADD ... 0)",
            )
        if self.on_admit is not None:
            self.on_admit(entry.name, defn.task)
        return defn
