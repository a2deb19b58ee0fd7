"""The beats of a schedule and its backlog, as ``celerybeatredis status`` and ``/metrics`` report them.

Read from the heartbeats beats write (:mod:`.heartbeat`) and a few counts of
the schedule, by the Redis server's clock: a few commands per shard, no scan.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ..storage.redis_store import RedisStore
from ..storage.sharded_store import ShardedStore
from .heartbeat import FORGET_SECONDS

#: ``status`` and ``celerybeatredis_beats_alive`` count a beat alive while its last tick is this recent.
ALIVE_SECONDS = 30.0


@dataclass(frozen=True)
class BeatRecord:
    """One beat as its last heartbeat described it; ``age`` is seconds since its last tick, by the Redis clock."""

    id: str
    host: str
    pid: int
    version: str
    started: float
    last_tick: float
    age: float
    sent: int
    publish_errors: int
    lateness_p99: float | None

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def read_beats(store: RedisStore, now: float) -> list[BeatRecord]:
    """The beats ``{T}:beats`` of ``store`` lists and heard from within :data:`FORGET_SECONDS` of ``now``, latest first."""
    beats = []
    for raw in store.beats_raw():
        try:
            data = json.loads(raw)
            last = float(data["last_tick"])
            beat = BeatRecord(id=str(data["id"]), host=str(data.get("host", "")), pid=int(data.get("pid", 0)),
                              version=str(data.get("version", "")), started=float(data.get("started", 0)), last_tick=last,
                              age=max(0.0, now - last), sent=int(data.get("sent", 0)),
                              publish_errors=int(data.get("publish_errors", 0)), lateness_p99=data.get("lateness_p99"))
        except (ValueError, KeyError, TypeError):
            continue  # not written by a beat: ignored, and pruned by the next heartbeat
        if beat.age <= FORGET_SECONDS:
            beats.append(beat)
    return sorted(beats, key=lambda b: b.age)


@dataclass(frozen=True)
class Status:
    """The beats of a schedule and its backlog, as ``celerybeatredis status`` and ``/metrics`` report them."""

    now: float
    beats: list[BeatRecord]
    entries: int
    #: Entries past due now (run-now and new or edited entries included): beat has not caught up with them.
    due_backlog: int
    quarantined: int

    def alive(self, max_age: float = ALIVE_SECONDS) -> list[BeatRecord]:
        """Beats whose last tick is at most ``max_age`` seconds old."""
        return [beat for beat in self.beats if beat.age <= max_age]

    def to_json(self, max_age: float = ALIVE_SECONDS) -> dict[str, Any]:
        return {"now": self.now, "alive": len(self.alive(max_age)), "max_age": max_age, "entries": self.entries,
                "due_backlog": self.due_backlog, "quarantined": self.quarantined,
                "beats": [beat.to_json() for beat in self.beats]}


def schedule_status(store: ShardedStore) -> Status:
    """Read the status of the schedule ``store`` holds (a few commands per shard; no scan)."""
    now = store.server_time()
    across = store.across
    return Status(now=now, beats=read_beats(store.first, now), entries=across.count(), due_backlog=across.count_scores("-inf", now),
                  quarantined=across.invalid_count())
