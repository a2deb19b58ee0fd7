"""Beats on a schedule: each beat's heartbeat in ``{T}:beats``, and reading it back for ``status`` and ``/metrics``.

The hash lives on the first shard's tag (``{T}`` or ``{T:0}``): one small
write a second per beat, pipelined with a claim the tick makes anyway, so it
costs no round trip of its own (:meth:`Heartbeat.claim`). heartbeat.lua
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

import redis

from . import __version__
from .beatstats import BeatStats
from .connection import is_cluster
from .redis_store import RedisStore
from .sharded_store import ShardedStore
from .wire import Claim

#: Beat logs under the name of the module users configure it by, whichever of its modules speaks.
logger = logging.getLogger("celerybeatredis.schedulers")

#: Seconds between two heartbeats of one beat (at most).
HEARTBEAT_SECONDS = 1.0
#: A beat silent this long is removed from ``{T}:beats``.
FORGET_SECONDS = 300
#: ``status`` and ``celerybeatredis_beats_alive`` count a beat alive while its last tick is this recent.
ALIVE_SECONDS = 30.0


class Heartbeat:
    """Writes this beat's record to ``{T}:beats`` at most once every :data:`HEARTBEAT_SECONDS`.

    Args:
        stats: What the record reports.
        tag: Hash tag of the shard that holds ``{T}:beats`` (the first one).
    """

    def __init__(self, stats: BeatStats, tag: str = "") -> None:
        self.stats = stats
        self.tag = tag
        self.host = socket.gethostname()
        self.pid = os.getpid()
        #: Unique even for two beats with the same host and pid (containers): a random suffix.
        self.id = f"{self.host}:{self.pid}:{uuid.uuid4().hex[:6]}"
        self.started = time.time()
        self._next = 0.0
        self._announced = False

    def due(self) -> bool:
        """Whether a heartbeat is due now; if so, the next is not due for :data:`HEARTBEAT_SECONDS`."""
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + HEARTBEAT_SECONDS
        return True

    def args(self) -> list[str | int]:
        """heartbeat.lua's ARGV for a record of this beat now."""
        record = {"id": self.id, "host": self.host, "pid": self.pid, "version": __version__, "started": self.started,
                  **self.stats.summary()}
        return [self.id, json.dumps(record, separators=(",", ":")), FORGET_SECONDS]

    def beat(self, store: RedisStore) -> None:
        """Record a tick on ``store`` (the first shard) in a call of its own, unless one was recorded less than a second ago."""
        if self.due():
            self.write(store, self.args())

    def write(self, store: RedisStore, args: list[str | int]) -> None:
        store.scripts["heartbeat"](keys=store.script_keys["heartbeat"], args=args)
        self.announce(store)

    def announce(self, store: RedisStore) -> None:
        if not self._announced:
            self._announced = True
            logger.info("beat: heartbeat in %s as %s (see: celerybeatredis status)", store.keys.beats, self.id)

    def claim(self, store: RedisStore, batch: int, lease_seconds: float, now: float | None) -> Claim:
        """``store.claim(...)``, with a heartbeat due on this shard sent in the same round trip (pipelined).

        Both go as plain ``EVALSHA``: a script Redis does not know (``NOSCRIPT``) did
        not run, and is run again the usual way, which loads it. On a cluster
        (no scripts in its pipelines) the heartbeat is a call of its own.
        """
        if store.keys.tag != self.tag or not self.due():
            return store.claim(batch, lease_seconds, now)
        beat_args = self.args()
        if is_cluster(store.client):
            self.write(store, beat_args)
            return store.claim(batch, lease_seconds, now)
        started = time.perf_counter()
        pipe = store.client.pipeline(transaction=False)
        for script, args in (("heartbeat", beat_args), ("claim", store.claim_args(batch, lease_seconds, now))):
            keys = store.script_keys[script]
            pipe.execute_command("EVALSHA", store.scripts[script].sha, len(keys), *keys, *args)
        beat_reply, claim_reply = pipe.execute(raise_on_error=False)
        self.stats.lua_call("claim", time.perf_counter() - started)
        if isinstance(beat_reply, redis.exceptions.NoScriptError):
            self.write(store, beat_args)
        elif isinstance(beat_reply, redis.RedisError):
            logger.warning("beat: could not write the heartbeat to %s: %s", store.keys.beats, beat_reply)
        else:
            self.announce(store)
        if isinstance(claim_reply, redis.exceptions.NoScriptError):
            return store.claim(batch, lease_seconds, now)
        if isinstance(claim_reply, Exception):
            raise claim_reply
        return store.claim_from_reply(claim_reply)


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
