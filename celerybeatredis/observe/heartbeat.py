"""Each beat's heartbeat in ``{T}:beats``: what ``status`` and ``/metrics`` read back (:mod:`.status`).

The hash lives on the first shard's tag (``{T}`` or ``{T:0}``): one small
write a second per beat, pipelined with a claim the tick makes anyway, so it
costs no round trip of its own (:meth:`Heartbeat.claim`). heartbeat.lua
stamps it with the Redis server's clock and drops beats silent for
:data:`FORGET_SECONDS`, so the hash stays as small as the number of beats.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid

from .. import __version__
from ..storage.redis_store import RedisStore
from ..storage.wire import Claim
from .log import logger
from .stats import BeatStats

#: Seconds between two heartbeats of one beat (at most).
HEARTBEAT_SECONDS = 1.0
#: A beat silent this long is removed from ``{T}:beats``.
FORGET_SECONDS = 300


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
            store.runs.heartbeat(self.args())
            self.announce(store)

    def announce(self, store: RedisStore) -> None:
        """Say where the heartbeat is written, once."""
        if not self._announced:
            self._announced = True
            logger.info("beat: heartbeat in %s as %s (see: celerybeatredis status)", store.keys.beats, self.id)

    def claim(self, store: RedisStore, batch: int, lease_seconds: float, now: float | None) -> Claim:
        """``store.runs.claim(...)``, with a heartbeat due on this shard sent in the same round trip."""
        if store.keys.tag != self.tag or not self.due():
            return store.runs.claim(batch, lease_seconds, now)
        claim, problem = store.runs.claim_with_heartbeat(self.args(), batch, lease_seconds, now)
        if problem is not None:
            logger.warning("beat: could not write the heartbeat to %s: %s", store.keys.beats, problem)
        else:
            self.announce(store)
        return claim
