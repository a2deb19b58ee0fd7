"""The Redis keys of a schedule, the due scores with a meaning, and which shard an entry lives in.

Keys of one schedule share the hash tag ``{T}`` (see README.rst), so the
whole schedule lives in one Redis Cluster slot; a schedule spread over ``K``
shards uses the tags ``{T:0}`` .. ``{T:K-1}`` (see :mod:`~celerybeatredis.moving.reshard`). Entry names
travel as bytes: a name that is not UTF-8 comes back as the same bytes.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass, field, fields

#: Where a schedule is when nothing else says: its Redis URL and key prefix (kept here, with the key names, so
#: that the command line reads them without loading a Redis client).
DEFAULT_URL = "redis://localhost:6379/0"
DEFAULT_PREFIX = "tasks:meta:"
#: Due score of an entry that never runs again (disabled, finished, quarantined).
NEVER = math.inf
#: Due score meaning "dispatch now, as a run" (run_now).
RUN_NOW = -1.0
#: Field of ``{T}:meta`` that records how many shards the schedule is laid out in.
LAYOUT_FIELD = "shards"
#: Field of ``{T}:meta`` that records the schema version: what the schedule's keys hold and how their values read.
SCHEMA_FIELD = "schema"
#: The schema version this code reads and writes. A beat refuses a schedule recorded at another version: beats of
#: two releases may share a schedule only while they share its schema (docs/deploying.rst, upgrading).
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one schedule (or of one shard of it): ``{tag}:<name>`` each."""

    tag: str
    #: Hash: entry name -> definition JSON.
    schedule: str = field(init=False)
    #: Sorted set: entry name -> next due time (Unix seconds).
    due: str = field(init=False)
    #: Hash: entry name -> number of runs.
    total_run_count: str = field(init=False)
    #: Hash: entry name -> ISO-8601 time of the last run.
    last_run_at: str = field(init=False)
    #: Set: names that came from ``beat_schedule``.
    statics: str = field(init=False)
    #: Hash: static entry name -> first 12 hex of the SHA-1 of the definition ``beat_schedule`` last wrote.
    static_digest: str = field(init=False)
    #: Hash: entry name -> why its definition was rejected.
    invalid: str = field(init=False)
    #: Hash: entry name -> ``"<first 12 hex of the definition's sha1> <anchor>"`` as last planned. The anchor
    #: (when beat first saw this version) is dropped once the entry has a ``last_run_at`` to time its runs
    #: from. A full 40-hex SHA-1 (older data) is read too.
    digest: str = field(init=False)
    #: Hash: reconciler cursors, the schema version and the shard layout.
    meta: str = field(init=False)
    #: Hash: beat id -> JSON heartbeat (:mod:`~celerybeatredis.observe.heartbeat`); used on the first shard only, pruned by heartbeat.lua.
    beats: str = field(init=False)
    #: Hash: entry name -> its run history, ``"<sent>,<skipped>,<missed>;"`` then the last runs as fixed-width
    #: records (see :mod:`.history`). Not in :meth:`types`: history that cannot be read never stops beat.
    history: str = field(init=False)
    #: Hash: entry name -> ``"<task id> <expires>[ h]"``, the run in progress of an entry with an ``overlap`` mode
    #: (:mod:`~celerybeatredis.policies.overlap`): written by commit.lua, moved on and deleted by the worker
    #: integration (:mod:`celerybeatredis.worker`).
    running: str = field(init=False)
    #: Hash: entry name -> consecutive failed runs of an entry with ``pause_after_failures``, counted by the worker integration.
    failures: str = field(init=False)
    #: Hash (field ``at``: Unix time): set when beat syncs ``beat_schedule``, never deleted by beat. Gone means the schedule's Redis
    #: lost its data (restarted without persistence, flushed): beat logs an ERROR and syncs again at once.
    synced: str = field(init=False)
    #: Hash: calendar name -> JSON document of excluded days (:mod:`~celerybeatredis.definitions.calendars`); used on the first shard only.
    calendars: str = field(init=False)
    #: Sorted set: entry name -> when its committed run is sent again unless the broker is known to have taken
    #: it first (``at-least-once`` delivery, see :mod:`~celerybeatredis.delivery.modes`).
    pending: str = field(init=False)
    #: Hash: entry name -> ``"<task id> <fire time> <stamp>"`` of that run (sent again with the same id and headers).
    pending_ids: str = field(init=False)
    #: Hash: result letter (``k``, ``f``, ``r``, ``v``: :data:`~.history.RESULTS`) -> runs the worker integration
    #: reported so, and ``ms`` -> their runtime in milliseconds, summed (``/metrics``).
    outcomes: str = field(init=False)

    def __post_init__(self) -> None:
        for key in fields(self)[1:]:
            object.__setattr__(self, key.name, f"{{{self.tag}}}:{key.name}")

    def all(self) -> list[str]:
        """Every key the schedule may use."""
        return [self.schedule, self.due, self.total_run_count, self.last_run_at, self.statics, self.static_digest,
                self.invalid, self.digest, self.meta, self.beats, self.history, self.running, self.failures, self.synced,
                self.calendars, self.pending, self.pending_ids, self.outcomes]

    def types(self) -> dict[str, str]:
        """The Redis type each key beat checks at start must have, when it exists."""
        return {
            self.schedule: "hash", self.due: "zset", self.total_run_count: "hash", self.last_run_at: "hash",
            self.statics: "set", self.invalid: "hash", self.digest: "hash", self.meta: "hash", self.beats: "hash",
            self.running: "hash", self.failures: "hash", self.calendars: "hash",
        }


def key_tag(prefix: str) -> str:
    """Turn a key prefix such as ``tasks:meta:`` into the tag ``tasks:meta``."""
    return prefix.rstrip(":")


def score_arg(score: float) -> str:
    """A score as text Redis and Lua read back to the same double."""
    if score == math.inf:
        return "inf"
    return repr(float(score))


def name_text(raw: bytes) -> str:
    """An entry name as read from Redis; bytes that are not UTF-8 survive the round trip (see :func:`name_bytes`)."""
    return raw.decode("utf-8", "surrogateescape")


def name_bytes(name: str) -> bytes:
    """An entry name as sent to Redis: the exact bytes it was read as."""
    return name.encode("utf-8", "surrogateescape")


def shard_for(name: str, shards: int) -> int:
    """The shard of entry ``name`` among ``shards``: ``crc32(name as UTF-8) % shards``.

    A name read from Redis that is not valid UTF-8 is hashed as the bytes it was read as.
    """
    if shards == 1:
        return 0
    return zlib.crc32(name_bytes(name)) % shards


def shard_tag(tag: str, index: int, shards: int) -> str:
    """The hash tag of shard ``index``: ``T`` when there is one shard, else ``T:index``."""
    return tag if shards == 1 else f"{tag}:{index}"
