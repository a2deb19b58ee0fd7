"""The schedule store: the only code that talks to Redis keys.

Keys of one schedule share the hash tag ``{T}`` (see README.rst), so the
whole schedule lives in one Redis Cluster slot. Every write that changes the
due index, run state or digests goes through a Lua script in ``lua/``.
``RedisStore`` serves one hash tag; ``ShardedStore`` spreads a schedule over
``K`` of them (see shards.py); ``ScheduleStore``, the management API, builds
on ``ShardedStore``.
"""

from __future__ import annotations

import heapq
import math
import zlib
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from importlib import resources
from itertools import islice
from operator import itemgetter
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

import redis
from celery import Celery
from redis.commands.core import Script

from .codec import Codec, dump_document, load_document
from .connection import client_from_settings, close_client, is_cluster, make_client
from .entries import (
    BulkResult,
    Entry,
    InvalidEntry,
    Page,
    ScheduleLike,
    Stats,
    apply_changes,
    build_definition,
    decode,
    status_of,
    timestamp_to_datetime,
)
from .exceptions import CeleryBeatRedisError, EntryExists, EntryNotFound, InvalidDefinition
from .settings import Settings, key_tag

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis comes with redis[hiredis], a dependency
    _hiredis_pack = None

SCRIPT_NAMES = ("claim", "commit", "revert", "reconcile", "upsert", "remove", "run_now", "replace", "restore_state",
                "export", "adopt")
NEVER = math.inf
#: Field of ``{T}:meta`` that records how many shards the schedule is laid out in.
LAYOUT_FIELD = "shards"
#: Score meaning "look at this entry now" (new, edited, poked).
LOOK_NOW = 0.0
#: Score meaning "dispatch now, as a run" (run_now).
RUN_NOW = -1.0

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one schedule."""

    tag: str

    def _key(self, name: str) -> str:
        return f"{{{self.tag}}}:{name}"

    @property
    def schedule(self) -> str:
        """Hash: entry name -> definition JSON."""
        return self._key("schedule")

    @property
    def due(self) -> str:
        """Sorted set: entry name -> next due time (Unix seconds)."""
        return self._key("due")

    @property
    def total_run_count(self) -> str:
        """Hash: entry name -> number of runs."""
        return self._key("total_run_count")

    @property
    def last_run_at(self) -> str:
        """Hash: entry name -> ISO-8601 time of the last run."""
        return self._key("last_run_at")

    @property
    def statics(self) -> str:
        """Set: names that came from ``beat_schedule``."""
        return self._key("statics")

    @property
    def static_digest(self) -> str:
        """Hash: static entry name -> first 12 hex of the SHA-1 of the definition ``beat_schedule`` last wrote."""
        return self._key("static_digest")

    @property
    def invalid(self) -> str:
        """Hash: entry name -> why its definition was rejected."""
        return self._key("invalid")

    @property
    def digest(self) -> str:
        """Hash: entry name -> ``"<first 12 hex of the definition's sha1> <anchor>"`` as last planned.

        The anchor (when beat first saw this version) is dropped once the entry has a
        ``last_run_at`` to time its runs from. A full 40-hex SHA-1 (older data) is read too.
        """
        return self._key("digest")

    @property
    def meta(self) -> str:
        """Hash: reconciler cursors and the schema version."""
        return self._key("meta")

    def for_script(self, script: str) -> list[str]:
        """KEYS for ``script``, in the order its header declares."""
        layout = {
            "claim": [self.due, self.schedule, self.total_run_count, self.last_run_at, self.digest, self.invalid],
            "commit": [self.due, self.total_run_count, self.last_run_at, self.digest, self.invalid],
            "revert": [self.due, self.total_run_count, self.last_run_at, self.invalid],
            "reconcile": [
                self.schedule, self.due, self.digest, self.meta, self.total_run_count, self.last_run_at, self.invalid,
            ],
            "upsert": [self.schedule, self.due, self.statics, self.static_digest],
            "remove": [
                self.schedule, self.due, self.total_run_count, self.last_run_at, self.digest, self.invalid,
                self.statics, self.static_digest,
            ],
            "run_now": [self.schedule, self.due],
            "replace": [self.schedule, self.due],
            "restore_state": [self.total_run_count, self.last_run_at],
            "export": [self.schedule, self.due, self.total_run_count, self.last_run_at, self.digest, self.statics],
            "adopt": [self.schedule, self.due, self.total_run_count, self.last_run_at, self.digest, self.statics],
        }
        return layout[script]


class Upserted(NamedTuple):
    """What upsert.lua did with a batch of definitions."""

    written: int
    unchanged: int
    #: Not written: a dynamic entry of that name (static mode), or an existing name ("new" mode).
    skipped: list[str]
    #: Static entries whose definition had been changed in Redis since beat_schedule wrote it, now overwritten.
    overwritten: list[str]


class Claimed(NamedTuple):
    """An entry claimed for this tick, with its stored state (a tuple: one is made per dispatch).

    ``bad_run_count`` holds the stored ``total_run_count`` when it is not an integer.
    """

    name: str
    score: float
    definition: bytes
    total_run_count: int | None
    last_run_at: str | None
    digest: str | None
    bad_run_count: str | None = None


@dataclass(frozen=True)
class Claim:
    """What one claim call returned."""

    now: float
    lease: str
    next_score: float | None
    removed: int
    entries: list[Claimed]


class Plan(NamedTuple):
    """What the scheduler decided for one claimed entry, for commit.lua (a tuple: one is made per entry)."""

    name: str
    lease: str
    score: float
    ran: bool = False
    run_at: str = ""
    digest: str = ""
    invalid_reason: str = ""
    seed_total_run_count: int | None = None
    seed_last_run_at: str | None = None


@dataclass(frozen=True)
class Revert:
    """A committed run to undo because its publish failed."""

    name: str
    committed_score: float
    retry_score: float
    previous_last_run_at: str | None
    invalid_reason: str = ""


@dataclass(frozen=True)
class Exported:
    """An entry taken out of service in one shard (export.lua), to be adopted by another."""

    name: str
    definition: bytes
    total_run_count: bytes | None
    last_run_at: bytes | None
    digest: bytes | None
    static: bool
    run_now: bool


@dataclass(frozen=True)
class ReconcileStep:
    """Counts from one reconciler step."""

    seen: int
    poked: int
    due_seen: int
    dropped: int
    wrapped: bool


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


def _redis_integer(raw: bytes) -> bool:
    """Whether Redis takes ``raw`` as a 64-bit integer (HINCRBY does), e.g. not ``00`` or ``1.5``."""
    try:
        value = int(raw)
    except ValueError:
        return False
    return str(value).encode() == raw and -(2**63) <= value < 2**63 - 1  # room for one more run


def load_script_text(name: str) -> str:
    """Text of ``lua/<name>.lua``, from the installed package or a source checkout."""
    packaged = resources.files("celerybeatredis").joinpath("lua", f"{name}.lua")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source = Path(__file__).resolve().parent.parent / "lua" / f"{name}.lua"
    return source.read_text(encoding="utf-8")


class ScriptStream:
    """Scripts sent on one connection without waiting for each reply; replies are read in the order sent.

    The scheduler sends the next claim and a batch's commit, then decides the
    next batch while Redis runs them, so Redis and Python work at the same
    time. Only for a single server (or Sentinel's primary): a cluster client
    routes and redirects each command itself. A script Redis did not know
    (``NOSCRIPT``, after ``SCRIPT FLUSH`` or a restart) did not run, and a
    reply lost with the connection may or may not have run: the caller deals
    with both (commit.lua may be sent again; a claim's entries wait out the lease).
    """

    def __init__(self, store: RedisStore) -> None:
        self.store = store
        self.connection: Any = store.client.connection_pool.get_connection()
        encoder = getattr(self.connection, "encoder", None)
        # hiredis encodes text as UTF-8, as redis-py does unless the client was given another encoding.
        utf8 = encoder is not None and encoder.encoding.lower().replace("-", "") == "utf8" and encoder.encoding_errors == "strict"
        self.pack = _hiredis_pack if utf8 else None
        self.unread = 0
        self.broken = False

    def send(self, script: str, args: Sequence[Any]) -> None:
        """Send ``script`` with ``args`` and return at once (on a broken connection: nothing)."""
        self.unread += 1
        if self.broken:
            return
        keys = self.store.keys.for_script(script)
        command = ("EVALSHA", self.store.scripts[script].sha, len(keys), *keys, *args)
        try:
            # hiredis packs a batch's thousands of arguments as they are; redis-py's packer first copies them.
            packed = [self.pack(command)] if self.pack is not None else self.connection.pack_command(*command)
            self.connection.send_packed_command(packed)
        except (redis.ConnectionError, redis.TimeoutError):
            self.broken = True

    def read(self) -> Any:
        """The reply to the oldest script not read yet; raised if it is an error.

        Raises:
            redis.ConnectionError: the connection broke, now or before; replies still due are lost.
        """
        self.unread -= 1
        if self.broken:
            raise redis.ConnectionError("the connection broke before this reply came")
        try:
            return self.connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            self.broken = True
            raise

    def close(self) -> None:
        """Give the connection back; one that broke or has replies left unread is dropped first."""
        if self.connection is None:
            return
        if self.broken or self.unread:
            self.connection.disconnect()
        self.store.client.connection_pool.release(self.connection)
        self.connection = None


class RedisStore:
    """A schedule in Redis: keys under one hash tag, changed through Lua scripts.

    Args:
        client: A ``redis.Redis`` (or ``RedisCluster``) client; replies must be bytes
            (no ``decode_responses``).
        key_prefix: The schedule's key prefix, e.g. ``tasks:meta:``.
    """

    def __init__(self, client: Any, key_prefix: str) -> None:
        self.client = client
        self.keys = Keys(key_tag(key_prefix))

    @classmethod
    def from_url(cls, url: str, key_prefix: str, **options: Any) -> RedisStore:
        """A store on a new client for ``url`` (single server, cluster or sentinel URL; see connection.py)."""
        return cls(make_client(url, options), key_prefix)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        """A store on a new client made from scheduler settings."""
        return cls(client_from_settings(settings), settings.key_prefix)

    @classmethod
    def from_app(cls, app: Celery) -> RedisStore:
        """A store for the schedule ``app``'s configuration names."""
        return cls.from_settings(Settings.from_app(app))

    @cached_property
    def scripts(self) -> dict[str, Script]:
        """Registered scripts by name (registered once per store)."""
        return {name: self.client.register_script(load_script_text(name)) for name in SCRIPT_NAMES}

    def _run(self, script: str, args: Sequence[Any]) -> Any:
        return self.scripts[script](keys=self.keys.for_script(script), args=list(args))

    def _run_resending(self, script: str, args: Sequence[Any]) -> Any:
        """Run an idempotent script, sending it once more if the connection drops (its reply may be lost)."""
        try:
            return self._run(script, args)
        except (redis.ConnectionError, redis.TimeoutError):
            return self._run(script, args)

    # --- the tick ------------------------------------------------------------

    def claim(self, batch: int, lease_seconds: float, now: float | None = None) -> Claim:
        """Claim up to ``batch`` entries due at ``now`` (default: Redis server time)."""
        return self.claim_from_reply(self._run("claim", self.claim_args(batch, lease_seconds, now)))

    @staticmethod
    def claim_args(batch: int, lease_seconds: float, now: float | None) -> list[Any]:
        """ARGV of claim.lua."""
        return [batch, lease_seconds, "" if now is None else repr(now)]

    @staticmethod
    def claim_from_reply(reply: list[Any]) -> Claim:
        """A :class:`Claim` from claim.lua's reply."""
        entries: list[Claimed] = []
        append = entries.append
        for i in range(4, len(reply), 6):
            raw_name, score, definition, count, last, dig = reply[i : i + 6]
            bad_count = None
            if count is not None:
                if _redis_integer(count):
                    count = int(count)
                else:
                    bad_count = count.decode("utf-8", "replace")
                    count = None
            append(Claimed(
                raw_name.decode("utf-8", "surrogateescape"),
                float(score),
                definition,
                count,
                last.decode("utf-8", "replace") if last is not None else None,
                dig.decode("utf-8", "replace") if dig is not None else None,
                bad_count,
            ))
        next_score = float(reply[2]) if reply[2] else None
        return Claim(float(reply[0]), reply[1].decode(), next_score, int(reply[3]), entries)

    def stream(self) -> ScriptStream | None:
        """A :class:`ScriptStream` on this store's server, or None where there is none (Redis Cluster)."""
        return None if is_cluster(self.client) else ScriptStream(self)

    def commit(self, plans: Sequence[Plan]) -> list[bool]:
        """Write the plans whose lease still holds; one flag per plan."""
        args = self.commit_args(plans)
        return [bool(flag) for flag in self._run_resending("commit", args)] if plans else []

    @staticmethod
    def commit_args(plans: Sequence[Plan]) -> list[Any]:
        args: list[Any] = []
        extend = args.extend
        for name, lease, score, ran, run_at, dig, reason, seed_count, seed_last in plans:
            extend((
                name.encode("utf-8", "surrogateescape"), lease, "inf" if score == NEVER else repr(float(score)),
                "1" if ran else "0", run_at, dig, reason, "" if seed_count is None else seed_count, seed_last or "",
            ))
        return args

    def commit_replicated(self, plans: Sequence[Plan], replicas: int, timeout: float) -> tuple[list[bool], int]:
        """``commit``, then ``WAIT`` on the same connection: ``(flags, replicas that acknowledged it)``.

        Sent once more if the connection drops, as ``commit`` is (commit.lua reports a
        resent run as committed; the ``WAIT`` then covers the first send too).
        """
        if not plans:
            return [], replicas
        args = self.commit_args(plans)
        try:
            return self._commit_and_wait(args, replicas, timeout)
        except (redis.ConnectionError, redis.TimeoutError):
            return self._commit_and_wait(args, replicas, timeout)

    def _commit_and_wait(self, args: list[Any], replicas: int, timeout: float) -> tuple[list[bool], int]:
        keys = self.keys.for_script("commit")
        wait = ("WAIT", replicas, max(1, int(timeout * 1000)))
        if is_cluster(self.client):
            # No scripts in cluster pipelines; the node's pool hands this single-threaded caller the same connection.
            reply = self.scripts["commit"](keys=keys, args=args)
            acked = self.client.execute_command(*wait, target_nodes=self.client.get_node_from_key(self.keys.due))
        else:
            pipe = self.client.pipeline(transaction=False)
            self.scripts["commit"](keys=keys, args=args, client=pipe)
            pipe.execute_command(*wait)
            reply, acked = pipe.execute()
        return [bool(flag) for flag in reply], int(acked)

    def revert(self, reverts: Sequence[Revert]) -> list[bool]:
        """Undo committed runs that were never published; one flag per entry."""
        args: list[Any] = []
        for r in reverts:
            args += [
                name_bytes(r.name), score_arg(r.committed_score), score_arg(r.retry_score), r.previous_last_run_at or "",
                r.invalid_reason,
            ]
        return [bool(flag) for flag in self._run_resending("revert", args)] if reverts else []

    def reconcile_step(self, count: int) -> ReconcileStep:
        """One bounded reconciler step (see ``lua/reconcile.lua``)."""
        seen, poked, due_seen, dropped, wrapped = self._run("reconcile", [count])
        return ReconcileStep(int(seen), int(poked), int(due_seen), int(dropped), bool(wrapped))

    def server_time(self) -> float:
        """Redis server time in Unix seconds (the clock every beat shares)."""
        seconds, micros = self.client.time()
        return seconds + micros / 1_000_000

    # --- writing definitions ---------------------------------------------------

    def put_raw(self, definitions: Mapping[str, str], static: bool = False, only_new: bool = False) -> Upserted:
        """Store definition JSON texts as they are (callers validate first).

        Args:
            static: Write them as ``beat_schedule`` entries (see upsert.lua).
            only_new: Write nothing if any of the names exists (they come back as skipped).
        """
        args: list[str] = ["new" if only_new else "static" if static else "dynamic"]
        for name, text in definitions.items():
            args += [name, text]
        if len(args) == 1:
            return Upserted(0, 0, [], [])
        written, unchanged, skipped, overwritten = self._run("upsert", args)
        return Upserted(int(written), int(unchanged), [name_text(n) for n in skipped], [name_text(n) for n in overwritten])

    def remove_names(self, names: Iterable[str]) -> int:
        """Remove entries and all their state; returns how many existed."""
        wire = [name_bytes(n) for n in names]
        return int(self._run("remove", wire)) if wire else 0

    def run_now_names(self, names: Iterable[str]) -> list[bool]:
        """Make entries due at once, as a run; one flag per name (False = no such entry)."""
        names = list(names)
        return [bool(flag) for flag in self._run("run_now", names)] if names else []

    # --- reading ----------------------------------------------------------------

    def get_raw(self, name: str) -> bytes | None:
        """The stored definition text of ``name``, or None."""
        value: bytes | None = self.client.hget(self.keys.schedule, name)
        return value

    def run_state(self, name: str) -> tuple[int, datetime | None]:
        """``(total_run_count, last_run_at)`` of ``name``."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.total_run_count, name)
        pipe.hget(self.keys.last_run_at, name)
        count, last = pipe.execute()
        return int(count or 0), datetime.fromisoformat(last.decode()) if last else None

    def due_score(self, name: str) -> float | None:
        """The entry's score in the due index, or None."""
        score: float | None = self.client.zscore(self.keys.due, name)
        return score

    def invalid_reason(self, name: str) -> str | None:
        """Why ``name`` is quarantined, or None."""
        value = self.client.hget(self.keys.invalid, name)
        return value.decode() if value is not None else None

    def wrong_types(self) -> list[str]:
        """The schedule's keys that hold another Redis type than the one they need, described for a log line."""
        expected = {
            self.keys.schedule: "hash", self.keys.due: "zset", self.keys.total_run_count: "hash",
            self.keys.last_run_at: "hash", self.keys.statics: "set", self.keys.invalid: "hash",
            self.keys.digest: "hash", self.keys.meta: "hash",
        }
        pipe = self.client.pipeline(transaction=False)
        for key in expected:
            pipe.type(key)
        found = [t.decode() if isinstance(t, bytes) else str(t) for t in pipe.execute()]
        return [f"{key} is a {kind}, not a {want}" for (key, want), kind in zip(expected.items(), found)
                if kind not in ("none", want)]

    def count(self) -> int:
        """Number of entries (O(1))."""
        return int(self.client.hlen(self.keys.schedule))

    def iter_static_names(self) -> Iterator[str]:
        """Names in ``{T}:statics``, scanned incrementally."""
        for name in self.client.sscan_iter(self.keys.statics, count=500):
            yield name_text(name)

    # --- managing schedules: the reads and writes the API needs ---------------------

    def replace_raw(self, changes: Sequence[tuple[str, bytes | str, str]]) -> list[int]:
        """Compare-and-set definitions: ``(name, expected text, new text)`` each.

        Returns:
            One code per change: 1 replaced, 0 changed meanwhile, -1 no such entry.
        """
        args = [value for change in changes for value in change]
        return [int(code) for code in self._run("replace", args)] if changes else []

    def restore_state(self, states: Sequence[tuple[str, int | None, str | None]]) -> int:
        """Set ``(name, total_run_count, last_run_at)`` where an entry has no run state yet."""
        args: list[Any] = []
        for name, count, last in states:
            args += [name, "" if count is None else int(count), last or ""]
        return int(self._run("restore_state", args)) if states else 0

    def exists(self, name: str) -> bool:
        """Whether an entry of that name exists."""
        return bool(self.client.hexists(self.keys.schedule, name))

    def entry_states(self, names: Sequence[str]) -> list[StoredEntry | None]:
        """Definition and state of each name (None where there is no definition), one round trip."""
        if not names:
            return []
        k = self.keys
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(k.schedule, names)
        pipe.zmscore(k.due, names)
        pipe.hmget(k.total_run_count, names)
        pipe.hmget(k.last_run_at, names)
        pipe.hmget(k.invalid, names)
        pipe.smismember(k.statics, names)
        raws, scores, counts, lasts, reasons, statics = pipe.execute()
        out: list[StoredEntry | None] = []
        for i, name in enumerate(names):
            if raws[i] is None:
                out.append(None)
                continue
            out.append(StoredEntry(
                name=name,
                raw=raws[i],
                score=scores[i],
                total_run_count=int(counts[i]) if counts[i] is not None else 0,
                last_run_at=lasts[i].decode() if lasts[i] is not None else None,
                invalid_reason=reasons[i].decode() if reasons[i] is not None else None,
                static=bool(statics[i]),
            ))
        return out

    def scan_definitions(self, cursor: int = 0, count: int = 500, match: str | None = None) -> tuple[int, list[tuple[str, bytes]]]:
        """One HSCAN page of ``{T}:schedule``: ``(next cursor, [(name, definition)])``; cursor 0 = done."""
        next_cursor, page = self.client.hscan(self.keys.schedule, cursor, match=match, count=count)
        return int(next_cursor), [(name.decode(), raw) for name, raw in page.items()]

    def scan_invalid(self, cursor: int = 0, count: int = 500, match: str | None = None) -> tuple[int, list[tuple[str, str]]]:
        """One HSCAN page of ``{T}:invalid``: ``(next cursor, [(name, reason)])``; cursor 0 = done."""
        next_cursor, page = self.client.hscan(self.keys.invalid, cursor, match=match, count=count)
        return int(next_cursor), [(name.decode(), reason.decode()) for name, reason in page.items()]

    def next_due(self, count: int, offset: int = 0) -> list[tuple[str, float]]:
        """Up to ``count`` entries with a finite score, soonest first (a bounded ZRANGE)."""
        reply = self.client.zrangebyscore(self.keys.due, "-inf", "(inf", start=offset, num=count, withscores=True)
        return [(name.decode(), float(score)) for name, score in reply]

    def count_scores(self, low: float | str, high: float | str) -> int:
        """How many entries have a score in ``[low, high]`` (ZCOUNT syntax for exclusive bounds)."""
        return int(self.client.zcount(self.keys.due, low, high))

    def invalid_count(self) -> int:
        """Number of quarantined entries."""
        return int(self.client.hlen(self.keys.invalid))

    def memory_usage(self) -> dict[str, int]:
        """Bytes each existing key of the schedule uses (Redis' MEMORY USAGE estimate)."""
        names = self.all_keys()
        pipe = self.client.pipeline(transaction=False)
        for key in names:
            pipe.memory_usage(key)
        return {key: int(used) for key, used in zip(names, pipe.execute()) if used is not None}

    def all_keys(self) -> list[str]:
        """Every key the schedule may use."""
        k = self.keys
        return [k.schedule, k.due, k.total_run_count, k.last_run_at, k.statics, k.static_digest, k.invalid, k.digest,
                k.meta]

    def drop(self) -> int:
        """Delete the whole schedule (every key of it); returns how many keys existed."""
        return int(self.client.delete(*self.all_keys()))

    # --- moving entries between shards --------------------------------------------

    def export_names(self, names: Iterable[str]) -> list[Exported]:
        """Take entries out of service here (due score inf) and return all they carry; missing names are skipped."""
        wire = [name_bytes(n) for n in names]
        if not wire:
            return []
        reply = self._run("export", wire)
        return [
            Exported(name_text(reply[i]), reply[i + 1], reply[i + 2], reply[i + 3], reply[i + 4],
                     bool(reply[i + 5]), bool(reply[i + 6]))
            for i in range(0, len(reply), 7)
        ]

    def adopt(self, entries: Sequence[Exported]) -> tuple[int, int]:
        """Bring exported entries into this store; returns ``(new here, merged with an existing one)``."""
        args: list[Any] = []
        for e in entries:
            args += [name_bytes(e.name), e.definition, e.total_run_count or "", e.last_run_at or "", e.digest or "",
                     "1" if e.static else "0", "1" if e.run_now else "0"]
        if not args:
            return 0, 0
        adopted, merged = self._run("adopt", args)
        return int(adopted), int(merged)


@dataclass(frozen=True)
class StoredEntry:
    """An entry's definition and state as Redis holds them."""

    name: str
    raw: bytes
    score: float | None
    total_run_count: int
    last_run_at: str | None
    invalid_reason: str | None
    static: bool


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


class ShardedStore:
    """One schedule over ``shards`` hash tags: a ``RedisStore`` per shard, with calls routed by entry name.

    Calls on one name go to its shard; calls on many names make one call per
    shard touched; scans walk the shards in order with a cursor that encodes
    both (``HSCAN cursor * shards + shard``, so with one shard it is the HSCAN
    cursor itself, and 0 means start or done).

    Args:
        client: A ``redis.Redis`` or ``RedisCluster`` client (bytes replies).
        key_prefix: The schedule's key prefix, e.g. ``tasks:meta:``.
        shards: Number of shards (1 = the unsharded layout).
    """

    def __init__(self, client: Any, key_prefix: str, shards: int = 1) -> None:
        if shards < 1:
            raise ValueError("redis_scheduler_shards must be at least 1")
        self.client = client
        self.tag = key_tag(key_prefix)
        #: The unsharded keys ``{T}:...``: the schedule's keys when there is one shard; ``meta`` records the layout.
        self.keys = Keys(self.tag)
        self.shards = shards
        self.stores = [RedisStore(client, shard_tag(self.tag, i, shards)) for i in range(shards)]
        self._reconcile_turn = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ShardedStore:
        """A sharded store on a new client made from scheduler settings."""
        return cls(client_from_settings(settings), settings.key_prefix, shards=settings.shards)

    @classmethod
    def from_app(cls, app: Celery) -> ShardedStore:
        """A sharded store for ``app``'s configuration."""
        return cls.from_settings(Settings.from_app(app))

    @classmethod
    def from_url(cls, url: str, key_prefix: str, *, shards: int = 1, cluster: bool = False, **options: Any) -> ShardedStore:
        """A sharded store on a new client for ``url`` (``cluster``: a ``redis://`` URL names a cluster node)."""
        return cls(make_client(url, options, cluster), key_prefix, shards=shards)

    @property
    def tags(self) -> str:
        """The hash tags in use, for messages: ``{T}``, or ``{T:0} .. {T:K-1}``."""
        last = self.shards - 1
        return f"{{{self.stores[0].keys.tag}}}" + (f" .. {{{self.stores[last].keys.tag}}}" if last else "")

    # --- routing -------------------------------------------------------------------

    def index_for(self, name: str) -> int:
        """The shard number of entry ``name``."""
        return shard_for(name, self.shards)

    def store_for(self, name: str) -> RedisStore:
        """The ``RedisStore`` that holds entry ``name``."""
        return self.stores[shard_for(name, self.shards)]

    def in_turn(self, start: int) -> list[RedisStore]:
        """All shard stores, beginning with shard ``start % shards`` (rotate ``start`` for fairness)."""
        first = start % self.shards
        return self.stores[first:] + self.stores[:first]

    def group(self, items: Iterable[_Item], name_of: Callable[[_Item], str] = str) -> dict[int, list[_Item]]:
        """Items (entry names, or records whose entry name ``name_of`` gives) by shard number, in the order given."""
        groups: dict[int, list[_Item]] = defaultdict(list)
        for item in items:
            groups[self.index_for(name_of(item))].append(item)
        return groups

    def _routed(self, items: Sequence[_Item], name_of: Callable[[_Item], str],
                call: Callable[[RedisStore, list[_Item]], Sequence[_Result]]) -> list[_Result]:
        """``call`` once per shard touched, with that shard's items; one result per item, in the order given."""
        positions: dict[int, list[int]] = defaultdict(list)
        for position, item in enumerate(items):
            positions[self.index_for(name_of(item))].append(position)
        results: dict[int, _Result] = {}
        for index, chosen in positions.items():
            results.update(zip(chosen, call(self.stores[index], [items[p] for p in chosen])))
        return [results[p] for p in range(len(items))]

    def _scan(self, cursor: int, scan: Callable[[RedisStore, int], tuple[int, list[_Item]]]) -> tuple[int, list[_Item]]:
        """One page of a per-shard scan, across shards (see the class docstring for the cursor)."""
        index, inner = cursor % self.shards, cursor // self.shards
        while True:
            inner, page = scan(self.stores[index], inner)
            if inner:
                return inner * self.shards + index, page
            index += 1
            if index == self.shards:
                return 0, page
            if page:
                return index, page

    def _before_write(self) -> None:
        """Called before every write; the management API checks the layout here."""

    # --- writing -------------------------------------------------------------------

    def put_raw(self, definitions: Mapping[str, str], static: bool = False, only_new: bool = False) -> Upserted:
        """``RedisStore.put_raw`` for entries of any shard; one script call per shard touched.

        With ``only_new`` on several shards, existing names are looked up on every shard
        first, so a refused batch writes nothing on any shard.
        """
        self._before_write()
        if only_new and self.shards > 1:
            existing = [n for n, e in zip(definitions, self.entry_states(list(definitions))) if e is not None]
            if existing:
                return Upserted(0, 0, existing, [])
        total = Upserted(0, 0, [], [])
        for index, names in self.group(definitions).items():
            part = self.stores[index].put_raw({n: definitions[n] for n in names}, static=static, only_new=only_new)
            total = Upserted(total.written + part.written, total.unchanged + part.unchanged,
                             total.skipped + part.skipped, total.overwritten + part.overwritten)
        return total

    def remove_names(self, names: Iterable[str]) -> int:
        """Remove entries and all their state; returns how many existed."""
        self._before_write()
        return sum(self.stores[i].remove_names(group) for i, group in self.group(names).items())

    def run_now_names(self, names: Iterable[str]) -> list[bool]:
        """Make entries due at once, as a run; one flag per name, in the order given."""
        self._before_write()
        return self._routed(list(names), str, RedisStore.run_now_names)

    def replace_raw(self, changes: Sequence[tuple[str, bytes | str, str]]) -> list[int]:
        """``RedisStore.replace_raw`` (compare-and-set) for entries of any shard; one code per change."""
        self._before_write()
        return self._routed(changes, itemgetter(0), RedisStore.replace_raw)

    def restore_state(self, states: Sequence[tuple[str, int | None, str | None]]) -> int:
        """Set ``(name, total_run_count, last_run_at)`` where an entry has no run state yet."""
        self._before_write()
        return sum(self.stores[i].restore_state(group) for i, group in self.group(states, itemgetter(0)).items())

    # --- reading -------------------------------------------------------------------

    def get_raw(self, name: str) -> bytes | None:
        """The stored definition text of ``name``, or None."""
        return self.store_for(name).get_raw(name)

    def exists(self, name: str) -> bool:
        """Whether an entry of that name exists."""
        return self.store_for(name).exists(name)

    def run_state(self, name: str) -> tuple[int, datetime | None]:
        """``(total_run_count, last_run_at)`` of ``name``."""
        return self.store_for(name).run_state(name)

    def due_score(self, name: str) -> float | None:
        """The entry's score in its shard's due index, or None."""
        return self.store_for(name).due_score(name)

    def invalid_reason(self, name: str) -> str | None:
        """Why ``name`` is quarantined, or None."""
        return self.store_for(name).invalid_reason(name)

    def entry_states(self, names: Sequence[str]) -> list[StoredEntry | None]:
        """Definition and state of each name (None where there is none); one round trip per shard touched."""
        return self._routed(names, str, RedisStore.entry_states)

    def scan_definitions(self, cursor: int = 0, count: int = 500, match: str | None = None) -> tuple[int, list[tuple[str, bytes]]]:
        """One HSCAN page of the shards' ``schedule`` hashes: ``(next cursor, [(name, definition)])``; 0 = done."""
        return self._scan(cursor, lambda store, inner: store.scan_definitions(inner, count, match))

    def scan_invalid(self, cursor: int = 0, count: int = 500, match: str | None = None) -> tuple[int, list[tuple[str, str]]]:
        """One HSCAN page of the shards' ``invalid`` hashes: ``(next cursor, [(name, reason)])``; 0 = done."""
        return self._scan(cursor, lambda store, inner: store.scan_invalid(inner, count, match))

    def next_due(self, count: int, offset: int = 0) -> list[tuple[str, float]]:
        """Up to ``count`` entries with a finite score, soonest first, merged from every shard's due index."""
        if self.shards == 1:
            return self.stores[0].next_due(count, offset)
        merged = heapq.merge(*(store.next_due(offset + count) for store in self.stores), key=itemgetter(1))
        return list(islice(merged, offset, offset + count))

    def count(self) -> int:
        """Number of entries in all shards (one O(1) call per shard)."""
        return sum(store.count() for store in self.stores)

    def count_scores(self, low: float | str, high: float | str) -> int:
        """How many entries of all shards have a due score in ``[low, high]`` (ZCOUNT syntax)."""
        return sum(store.count_scores(low, high) for store in self.stores)

    def invalid_count(self) -> int:
        """Number of quarantined entries in all shards."""
        return sum(store.invalid_count() for store in self.stores)

    def memory_usage(self) -> dict[str, int]:
        """Bytes each existing key of every shard uses (Redis' MEMORY USAGE estimate)."""
        return {key: used for store in self.stores for key, used in store.memory_usage().items()}

    def iter_static_names(self) -> Iterator[str]:
        """Names in every shard's ``statics`` set, scanned incrementally."""
        for store in self.stores:
            yield from store.iter_static_names()

    def wrong_types(self) -> list[str]:
        """Keys of any shard that hold another Redis type than the one they need, described for a log line."""
        return [found for store in self.stores for found in store.wrong_types()]

    def reconcile_step(self, count: int) -> ReconcileStep:
        """One reconciler step on the next shard in turn (so the work per step does not grow with K)."""
        store = self.stores[self._reconcile_turn % self.shards]
        self._reconcile_turn += 1
        return store.reconcile_step(count)

    def server_time(self) -> float:
        """Redis server time in Unix seconds."""
        return self.stores[0].server_time()

    def drop(self) -> int:
        """Delete the whole schedule, every shard and the recorded layout; returns how many keys existed."""
        dropped = sum(store.drop() for store in self.stores)
        return dropped + (int(self.client.delete(self.keys.meta)) if self.shards > 1 else 0)

    def close(self) -> None:
        """Release the client's connections (and a Sentinel's)."""
        close_client(self.client)

    # --- layout --------------------------------------------------------------------------

    def recorded_shards(self) -> int | None:
        """The shard count recorded in ``{T}:meta``, or None when nothing is recorded."""
        value = self.client.hget(self.keys.meta, LAYOUT_FIELD)
        return int(value) if value is not None else None

    def check_layout(self, record: bool = True) -> str | None:
        """Record the layout if none is (and ``record``), or describe how it differs from this store's; None if it agrees."""
        recorded = self.recorded_shards()
        fix = f"run: celerybeatredis --url URL --prefix {self.tag}: reshard --to {self.shards}"
        if recorded is None:
            if self.shards > 1 and self.client.exists(self.keys.schedule):
                return (f"entries exist under {{{self.tag}}} (1 shard) but redis_scheduler_shards is {self.shards}; "
                        f"they do not run until moved; {fix}")
            if record:
                self.client.hsetnx(self.keys.meta, LAYOUT_FIELD, self.shards)
            return None
        if recorded != self.shards:
            return (f"schedule {{{self.tag}}} is laid out in {recorded} shards but redis_scheduler_shards is "
                    f"{self.shards}; entries outside this layout do not run until moved; {fix}")
        return None


class ScheduleStore(ShardedStore):
    """The schedule as users manage it: add, change, inspect and remove entries.

    Every definition is validated before it is written, and every write goes
    through the Lua scripts, so the due index, digests and run state stay
    consistent and a running beat sees the change within a second.

    On a sharded schedule (``shards`` above 1, as ``redis_scheduler_shards``)
    each entry is read and written in its own shard, and listings, counts and
    bulk calls cover every shard. Writes are refused while the layout recorded
    in Redis differs from ``shards``, so nothing lands where beat does not look.

    Args:
        client: A ``redis.Redis`` or ``RedisCluster`` client (bytes replies).
        key_prefix: The schedule's key prefix, e.g. ``tasks:meta:``.
        app: Celery app whose time zone validation uses; a bare app when None.
        shards: Number of shards the schedule is spread over.
    """

    #: Attempts at an edit whose entry keeps changing underneath it.
    EDIT_ATTEMPTS = 5

    def __init__(self, client: Any, key_prefix: str, app: Celery | None = None, shards: int = 1) -> None:
        super().__init__(client, key_prefix, shards)
        self.codec = Codec(app or Celery("celerybeatredis", set_as_current=False))

    @classmethod
    def from_url(cls, url: str, key_prefix: str, app: Celery | None = None, *, shards: int = 1, cluster: bool = False,
                 **options: Any) -> ScheduleStore:
        """A store on a new client for ``url`` (single server, cluster or sentinel URL; see connection.py)."""
        return cls(make_client(url, options, cluster), key_prefix, app, shards)

    @classmethod
    def from_app(cls, app: Celery) -> ScheduleStore:
        """The store of the schedule ``app``'s beat uses (same settings as the scheduler, shards included)."""
        settings = Settings.from_app(app)
        return cls(client_from_settings(settings), settings.key_prefix, app, settings.shards)

    def _before_write(self) -> None:
        """Refuse to write while the schedule is laid out in another number of shards than this store's."""
        problem = self.check_layout(record=self.shards > 1)  # one shard is what an unrecorded layout means
        if problem:
            raise CeleryBeatRedisError(f"nothing written: {problem}")

    # --- writing ----------------------------------------------------------------------

    def add(self, name: str, task: str | Mapping[str, Any], schedule: ScheduleLike | None = None, *,
            replace: bool = False, **fields: Any) -> bool:
        """Add an entry; an entry of that name is an error unless ``replace`` is true.

        ``task`` is a task name with a ``schedule`` and optional fields (``args``,
        ``kwargs``, ``options``, ``enabled``, ...), or a whole definition in its
        JSON form. With ``replace=True`` an existing entry's definition is
        replaced and its run state kept, as the command line's ``add --replace``.

        Returns:
            True if the stored definition changed.

        Raises:
            EntryExists: the name exists and ``replace`` is false; nothing is written.
            InvalidDefinition: naming the entry and field, before anything is written.
        """
        try:
            doc = self._document(task, schedule, fields)
        except InvalidDefinition as exc:
            raise exc.for_entry(name) from None
        return self.bulk_add({name: doc}, replace=replace).written > 0

    def update(self, name: str, **changes: Any) -> bool:
        """Change some fields of an entry and keep the rest (``schedule=`` replaces the schedule).

        A value of None drops an optional field. Returns True if the definition changed.

        Raises:
            EntryNotFound: no entry of that name.
            InvalidDefinition: the result is not a valid definition; nothing is written.
        """
        return self._edit(name, lambda doc: apply_changes(doc, changes))

    def replace(self, name: str, definition: Mapping[str, Any]) -> bool:
        """Replace an existing entry's definition as a whole; True if it changed.

        Raises:
            EntryNotFound: no entry of that name.
            InvalidDefinition: naming the field; nothing is written.
        """
        return self._edit(name, lambda doc: dict(definition), need_valid=False)

    def enable(self, name: str) -> bool:
        """Set ``enabled`` to true (every other field is kept as it is); True if it changed."""
        return self._edit(name, lambda doc: {**doc, "enabled": True})

    def disable(self, name: str) -> bool:
        """Set ``enabled`` to false (every other field is kept as it is); True if it changed."""
        return self._edit(name, lambda doc: {**doc, "enabled": False})

    def remove(self, name: str) -> None:
        """Remove an entry with its run state.

        Raises:
            EntryNotFound: no entry of that name.
        """
        if not self.remove_names([name]):
            raise EntryNotFound(name)

    def run_now(self, name: str) -> None:
        """Have beat dispatch the entry at once (within a second); it counts as a run.

        Raises:
            EntryNotFound: no entry of that name.
        """
        if not self.run_now_names([name])[0]:
            raise EntryNotFound(name)

    def bulk_add(self, entries: Iterable[tuple[str, Mapping[str, Any]]] | Mapping[str, Mapping[str, Any]],
                 batch_size: int = 1000, *, replace: bool = False) -> BulkResult:
        """Add many definitions (JSON form), one Lua call per batch; as :meth:`add`, ``replace`` allows existing names.

        Each batch is checked as a whole before it is written, so an invalid
        definition, or an existing name without ``replace``, stops the call
        with nothing of its batch written (earlier batches stay written).

        Raises:
            EntryExists: naming the first existing entry of a batch, when ``replace`` is false.
            InvalidDefinition: naming the first invalid entry and field.
        """
        items = entries.items() if isinstance(entries, Mapping) else entries
        result = BulkResult(0, 0)
        batch: dict[str, str] = {}
        for name, definition in items:
            batch[name] = self.validate(name, definition)
            if len(batch) >= batch_size:
                result, batch = self._add_batch(batch, replace, result), {}
        return self._add_batch(batch, replace, result) if batch else result

    def _add_batch(self, batch: Mapping[str, str], replace: bool, result: BulkResult) -> BulkResult:
        done = self.put_raw(batch, only_new=not replace)
        if done.skipped:
            raise EntryExists(done.skipped[0])
        return BulkResult(result.written + done.written, result.unchanged + done.unchanged)

    def bulk_remove(self, names: Iterable[str], batch_size: int = 1000) -> int:
        """Remove many entries, one Lua call per batch; returns how many existed."""
        removed = 0
        batch: list[str] = []
        for name in names:
            batch.append(name)
            if len(batch) >= batch_size:
                removed, batch = removed + self.remove_names(batch), []
        return removed + self.remove_names(batch)

    def validate(self, name: str, definition: Mapping[str, Any]) -> str:
        """Check a definition and return the JSON text to store.

        Raises:
            InvalidDefinition: naming ``name`` and the field at fault.
        """
        if not isinstance(name, str) or not name:
            raise InvalidDefinition("name", "an entry needs a non-empty name")
        try:
            self.codec.from_document(definition)
            return dump_document(definition)
        except InvalidDefinition as exc:
            raise exc.for_entry(name) from None

    # --- reading ----------------------------------------------------------------------

    def get(self, name: str) -> Entry:
        """The entry's definition, run state, next run and status.

        Raises:
            EntryNotFound: no entry of that name.
        """
        found = self.entry_states([name])[0]
        if found is None:
            raise EntryNotFound(name)
        return self._entry(found)

    def find(self, names: Sequence[str]) -> list[Entry | None]:
        """Entries for ``names`` in one round trip (None where there is none)."""
        return [self._entry(s) if s is not None else None for s in self.entry_states(names)]

    def upcoming(self, count: int = 10, offset: int = 0) -> list[Entry]:
        """The next ``count`` entries in due order (due-now ones first), from a bounded ZRANGE."""
        names = [name for name, _ in self.next_due(count, offset)]
        return [e for e in self.find(names) if e is not None]

    def list(self, cursor: int = 0, count: int = 100, match: str | None = None) -> Page:
        """One page of entries (HSCAN order; ``count`` is a hint); pass ``page.cursor`` back for more.

        ``match`` is a Redis glob on the entry name. An entry may appear twice
        if the hash is resized during the listing.
        """
        next_cursor, page = self.scan_definitions(cursor, count, match)
        return Page([e for e in self.find([n for n, _ in page]) if e is not None], next_cursor)

    def iter_entries(self, match: str | None = None, page_size: int = 500) -> Iterator[Entry]:
        """Every entry, fetched a page at a time (never all at once)."""
        cursor = 0
        while True:
            page = self.list(cursor, page_size, match)
            yield from page.items
            if page.done:
                return
            cursor = page.cursor

    def invalid(self, cursor: int = 0, count: int = 100) -> Page:
        """One page of quarantined entries (:class:`InvalidEntry`) with beat's reasons."""
        next_cursor, page = self.scan_invalid(cursor, count)
        return Page([InvalidEntry(name, reason) for name, reason in page], next_cursor)

    def stats(self, scan: bool = True, overdue_after: float = 60.0) -> Stats:
        """Counts and memory of the schedule; ``scan`` reads every definition to count enabled ones."""
        now = self.server_time()
        enabled = None
        if scan:
            enabled = sum(1 for _, raw in self.iter_raw() if _is_enabled(raw))
        return Stats(
            entries=self.count(),
            scheduled=self.count_scores("(0", "(inf"),
            never=self.count_scores("inf", "inf"),
            due_now=self.count_scores("-inf", now),
            overdue=self.count_scores("(0", now - overdue_after),
            pending=self.count_scores("-inf", 0),
            invalid=self.invalid_count(),
            enabled=enabled,
            memory_bytes=self.memory_usage(),
            overdue_after=overdue_after,
        )

    def iter_raw(self, match: str | None = None, page_size: int = 1000) -> Iterator[tuple[str, bytes]]:
        """Every ``(name, definition text)``, an HSCAN page at a time."""
        cursor = 0
        while True:
            cursor, page = self.scan_definitions(cursor, page_size, match)
            yield from page
            if cursor == 0:
                return

    # --- helpers ------------------------------------------------------------------------

    def _document(self, task: str | Mapping[str, Any], schedule: ScheduleLike | None, fields: Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(task, Mapping):
            if schedule is not None or fields:
                raise InvalidDefinition("schedule", "give either a whole definition or a task with a schedule, not both")
            return dict(task)
        if schedule is None:
            raise InvalidDefinition("schedule", "is required")
        return build_definition(task, schedule, **fields)

    def _edit(self, name: str, change: Callable[[dict[str, Any]], dict[str, Any]], need_valid: bool = True) -> bool:
        """Read, change and compare-and-set one definition, retrying if it changes meanwhile."""
        self._before_write()  # before the read, which would look in the wrong shard
        for _ in range(self.EDIT_ATTEMPTS):
            raw = self.get_raw(name)
            if raw is None:
                raise EntryNotFound(name)
            _, doc = decode(raw)
            if doc is None and need_valid:
                raise InvalidDefinition("", "the stored definition is not a JSON object; replace it as a whole", name)
            try:
                new_doc = change(doc or {})
            except InvalidDefinition as exc:
                raise exc.for_entry(name) from None
            new_text = self.validate(name, new_doc)
            if new_doc == doc:
                return False
            code = self.replace_raw([(name, raw, new_text)])[0]
            if code == -1:
                raise EntryNotFound(name)
            if code == 1:
                return True
        raise CeleryBeatRedisError(f"entry {name!r} kept changing while being edited; try again")

    def _entry(self, stored: StoredEntry) -> Entry:
        text, doc = decode(stored.raw)
        reason = stored.invalid_reason
        if reason is None:
            try:
                self.validate(stored.name, doc if doc is not None else load_document(text))
            except InvalidDefinition as exc:
                reason = exc.reason
        last = None
        if stored.last_run_at:
            try:
                last = datetime.fromisoformat(stored.last_run_at)
            except ValueError:
                last = None
        return Entry(
            name=stored.name, raw=text, definition=doc, total_run_count=stored.total_run_count, last_run_at=last,
            next_run_at=timestamp_to_datetime(stored.score), status=status_of(stored.score, doc, reason),
            invalid_reason=reason, static=stored.static,
        )


def _is_enabled(raw: bytes) -> bool:
    _, doc = decode(raw)
    return doc is not None and doc.get("enabled", True) is not False
