"""Beats on a schedule: each beat's heartbeat in ``{T}:beats``, and reading it back for ``status`` and ``/metrics``.

The hash lives on the first shard's tag (``{T}`` or ``{T:0}``): one small
write a second per beat, from the tick beat already makes. heartbeat.lua
stamps it with the Redis server's clock and drops beats silent for
:data:`FORGET_SECONDS`, so the hash stays as small as the number of beats.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from typing import Any

from . import __version__
from .beatstats import BeatStats
from .redis_store import RedisStore
from .sharded_store import ShardedStore

#: Beat logs under the name of the module users configure it by, whichever of its modules speaks.
logger = logging.getLogger("celerybeatredis.schedulers")

#: Seconds between two heartbeats of one beat (at most).
HEARTBEAT_SECONDS = 1.0
#: A beat silent this long is removed from ``{T}:beats``.
FORGET_SECONDS = 300
#: ``status`` and ``celerybeatredis_beats_alive`` count a beat alive while its last tick is this recent.
ALIVE_SECONDS = 30.0


class Heartbeat:
    """Writes this beat's record to ``{T}:beats`` at most once every :data:`HEARTBEAT_SECONDS`."""

    def __init__(self, stats: BeatStats) -> None:
        self.stats = stats
        self.host = socket.gethostname()
        self.pid = os.getpid()
        #: Unique even for two beats with the same host and pid (containers): a random suffix.
        self.id = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:6]}"
        self.started = time.time()
        self._next = 0.0
        self._announced = False

    def beat(self, store: RedisStore) -> None:
        """Record a tick on ``store`` (the first shard), unless the last record is less than a second old."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + HEARTBEAT_SECONDS
        record = {"id": self.id, "host": self.host, "pid": self.pid, "version": __version__, "started": self.started,
                  **self.stats.summary()}
        args: list[str | int] = [self.id, json.dumps(record, separators=(",", ":")), FORGET_SECONDS]
        store.scripts["heartbeat"](keys=store.script_keys["heartbeat"], args=args)
        if not self._announced:
            self._announced = True
            logger.info("beat: heartbeat in %s as %s (see: celerybeatredis status)", store.keys.beats, self.id)


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
    for raw in store.client.hgetall(store.keys.beats).values():
        try:
            data = json.loads(raw)
            last = float(data["last_tick"])
            beat = BeatRecord(str(data["id"]), str(data.get("host", "")), int(data.get("pid", 0)), str(data.get("version", "")),
                              float(data.get("started", 0)), last, max(0.0, now - last), int(data.get("sent", 0)),
                              int(data.get("publish_errors", 0)), data.get("lateness_p99"))
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
    return Status(now, read_beats(store.stores[0], now), store.count(), store.count_scores("-inf", now), store.invalid_count())


class _TimedScript:
    """A registered script that reports how long each call took (round trip included) to :class:`BeatStats`."""

    def __init__(self, script: Any, name: str, stats: BeatStats) -> None:
        self.script = script
        self.name = name
        self.stats = stats
        self.sha = script.sha

    def __call__(self, keys: Any = (), args: Any = (), client: Any = None) -> Any:
        started = time.perf_counter()
        try:
            return self.script(keys=keys, args=args, client=client)
        finally:
            self.stats.lua_call(self.name, time.perf_counter() - started)


def time_scripts(store: ShardedStore, stats: BeatStats) -> None:
    """Have every script call made one at a time on ``store`` timed into ``stats`` (streamed calls are not)."""
    for shard in store.stores:
        scripts: dict[str, Any] = shard.scripts
        for name, script in list(scripts.items()):
            if not isinstance(script, _TimedScript):
                scripts[name] = _TimedScript(script, name, stats)
