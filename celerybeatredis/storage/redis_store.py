"""One schedule under one hash tag: its entries, written through Lua scripts, and the plain reads of them.

Every write that changes the due index, run state or digests goes through a
script of ``lua/`` (:mod:`.scripts`; the tick's own are :class:`~.runs.Runs`);
the reads are plain commands, pipelined where they cover many names.
:class:`~.sharded_store.ShardedStore` holds one of these per shard. Replies
are bytes (no ``decode_responses``); redis-py annotates them as decoded text,
so a reply read here is typed ``Any`` and decoded by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import redis

from . import wire
from .connection import RedisClient, make_client
from .keys import Keys, key_tag, name_bytes, name_text
from .runs import Runs
from .scripts import Scripts
from .wire import Adopted, Exported, StoredEntry, Upserted, parse_last_run_at


class RedisStore:
    """A schedule in Redis: keys under one hash tag, changed through Lua scripts.

    The tick's scripts (claim, commit, revert, ...) are its :attr:`runs`.

    Args:
        client: A ``redis.Redis`` (or ``RedisCluster``) client; replies must be bytes
            (no ``decode_responses``).
        key_prefix: The schedule's key prefix, e.g. ``tasks:meta:``.
    """

    def __init__(self, client: RedisClient, key_prefix: str) -> None:
        self.client = client
        self.keys = Keys(key_tag(key_prefix))
        self.scripts = Scripts(client, self.keys)
        #: Claim, commit, revert and the other scripts of the tick.
        self.runs = Runs(self.scripts)

    @classmethod
    def from_url(cls, url: str, key_prefix: str, **options: Any) -> RedisStore:
        """A store on a new client for ``url`` (single server, cluster or sentinel URL; see :mod:`.connection`)."""
        return cls(make_client(url, options), key_prefix)

    # --- writing definitions: upsert, remove, run_now, replace, restore_state, export, adopt ----------------------

    def put_raw(self, definitions: Mapping[str, str], static: bool = False, only_new: bool = False) -> Upserted:
        """Store definition JSON texts as they are (callers validate first).

        Args:
            static: Write them as ``beat_schedule`` entries (see upsert.lua).
            only_new: Write nothing if any of the names exists (they come back as skipped).
        """
        if not definitions:
            return Upserted(written=0, unchanged=0, skipped=[], overwritten=[])
        return wire.decode_upsert(self.scripts.run("upsert", wire.upsert_args(definitions, static, only_new)))

    def remove_names(self, names: Iterable[str]) -> int:
        """Remove entries and all their state; returns how many existed."""
        wire_names = [name_bytes(n) for n in names]
        return int(self.scripts.run("remove", wire_names)) if wire_names else 0

    def run_now_names(self, names: Iterable[str]) -> list[bool]:
        """Make entries due at once, as a run; one flag per name (False = no such entry)."""
        names = list(names)
        return wire.decode_flags(self.scripts.run("run_now", names)) if names else []

    def replace_raw(self, changes: Sequence[tuple[str, bytes | str, str]]) -> list[int]:
        """Compare-and-set definitions, ``(name, expected text, new text)`` each; per change 1 replaced, 0 changed
        meanwhile, -1 no such entry."""
        return wire.decode_codes(self.scripts.run("replace", wire.triples(changes))) if changes else []

    def restore_state(self, states: Sequence[tuple[str, int | None, str | None]]) -> int:
        """Set ``(name, total_run_count, last_run_at)`` where an entry has no run state yet."""
        return int(self.scripts.run("restore_state", wire.restore_state_args(states))) if states else 0

    def export_names(self, names: Iterable[str]) -> list[Exported]:
        """Take entries out of service here (due score inf) and return all they carry; missing names are skipped."""
        wire_names = [name_bytes(n) for n in names]
        return wire.decode_export(self.scripts.run("export", wire_names)) if wire_names else []

    def adopt(self, entries: Sequence[Exported]) -> Adopted:
        """Bring exported entries into this store: how many are new here, how many merged with an existing one."""
        if not entries:
            return Adopted(adopted=0, merged=0)
        return wire.decode_adopt(self.scripts.run("adopt", wire.adopt_args(entries)))

    def mark_synced(self) -> None:
        """Set ``{T}:synced`` (field ``at``: the server's time): ``beat_schedule`` is in this schedule; see reconcile.lua."""
        self.client.hset(self.keys.synced, "at", repr(self.server_time()))

    def drop(self) -> int:
        """Delete the whole schedule (every key of it); returns how many keys existed."""
        return int(self.client.delete(*self.keys.all()))

    # --- reading entries --------------------------------------------------------------------------------------------

    def server_time(self) -> float:
        """Redis server time in Unix seconds (the clock every beat shares)."""
        seconds, micros = self.client.time()
        return seconds + micros / 1_000_000

    def get_raw(self, name: str) -> bytes | None:
        """The stored definition text of ``name``, or None."""
        value: Any = self.client.hget(self.keys.schedule, name)
        return value

    def exists(self, name: str) -> bool:
        """Whether an entry of that name exists."""
        return bool(self.client.hexists(self.keys.schedule, name))

    def run_state(self, name: str) -> tuple[int, datetime | None]:
        """``(total_run_count, last_run_at)`` of ``name``."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.total_run_count, name)
        pipe.hget(self.keys.last_run_at, name)
        count, last = pipe.execute()
        return int(count or 0), parse_last_run_at(last)

    def last_runs(self, names: Sequence[str]) -> list[bytes | None]:
        """The stored ``last_run_at`` of each name, as stored (None where there is none), one round trip."""
        value: Any = self.client.hmget(self.keys.last_run_at, [name_bytes(n) for n in names])
        return list(value)

    def digest_state(self, name: str) -> tuple[str | None, bool]:
        """What beat reads of ``name`` besides its definition and run state: its ``{T}:digest`` value (when beat
        first saw this version), and whether a run count is stored."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.digest, name_bytes(name))
        pipe.hexists(self.keys.total_run_count, name_bytes(name))
        stamped, count_stored = pipe.execute()
        return (stamped.decode() if isinstance(stamped, bytes) else None), bool(count_stored)

    def due_score(self, name: str) -> float | None:
        """The entry's score in the due index, or None."""
        score: Any = self.client.zscore(self.keys.due, name)
        return score

    def invalid_reason(self, name: str) -> str | None:
        """Why ``name`` is quarantined, or None."""
        value: Any = self.client.hget(self.keys.invalid, name)
        return value.decode() if value is not None else None

    def history_raw(self, name: str) -> bytes | None:
        """The stored run history of ``name`` (:mod:`.history`), or None; None too when the key is not a hash."""
        try:
            value: Any = self.client.hget(self.keys.history, name_bytes(name))
        except redis.ResponseError:  # WRONGTYPE: history that cannot be read is no history
            return None
        return value

    def entry_states(self, names: Sequence[str]) -> list[StoredEntry | None]:
        """Definition and state of each name (None where there is no definition), one round trip."""
        if not names:
            return []
        k, names = self.keys, list(names)
        pipe = self.client.pipeline(transaction=False)
        pipe.hmget(k.schedule, names)
        pipe.zmscore(k.due, names)
        pipe.hmget(k.total_run_count, names)
        pipe.hmget(k.last_run_at, names)
        pipe.hmget(k.invalid, names)
        pipe.smismember(k.statics, names)
        replies = pipe.execute()
        return [None if raw is None else _stored(name, raw, *state) for name, raw, *state in zip(names, *replies)]

    # --- reading the whole schedule ---------------------------------------------------------------------------------

    def scan_definitions(self, cursor: int = 0, count: int = 500, match: str | None = None) -> tuple[int, list[tuple[str, bytes]]]:
        """One HSCAN page of ``{T}:schedule``: ``(next cursor, [(name, definition)])``; cursor 0 = done."""
        reply: Any = self.client.hscan(self.keys.schedule, cursor, match=match, count=count)
        next_cursor, page = reply
        return int(next_cursor), [(name.decode(), raw) for name, raw in page.items()]

    def scan_invalid(self, cursor: int = 0, count: int = 500, match: str | None = None) -> tuple[int, list[tuple[str, str]]]:
        """One HSCAN page of ``{T}:invalid``: ``(next cursor, [(name, reason)])``; cursor 0 = done."""
        reply: Any = self.client.hscan(self.keys.invalid, cursor, match=match, count=count)
        next_cursor, page = reply
        return int(next_cursor), [(name.decode(), reason.decode()) for name, reason in page.items()]

    def iter_static_names(self) -> Iterator[str]:
        """Names in ``{T}:statics``, scanned incrementally."""
        for name in self.client.sscan_iter(self.keys.statics, count=500):
            yield name_text(name)

    def next_due(self, count: int, offset: int = 0) -> list[tuple[str, float]]:
        """Up to ``count`` entries with a finite score, soonest first (a bounded ZRANGE)."""
        reply: Any = self.client.zrangebyscore(self.keys.due, "-inf", "(inf", start=offset, num=count, withscores=True)
        return [(name.decode(), float(score)) for name, score in reply]

    def lowest_score(self) -> float | None:
        """The lowest score in the due index (the next entry to look at), or None when it is empty."""
        reply: Any = self.client.zrange(self.keys.due, 0, 0, withscores=True)
        return float(reply[0][1]) if reply else None

    def count(self) -> int:
        """Number of entries (O(1))."""
        return int(self.client.hlen(self.keys.schedule))

    def count_scores(self, low: float | str, high: float | str) -> int:
        """How many entries have a score in ``[low, high]`` (ZCOUNT syntax for exclusive bounds)."""
        return int(self.client.zcount(self.keys.due, low, high))

    def invalid_count(self) -> int:
        """Number of quarantined entries."""
        return int(self.client.hlen(self.keys.invalid))

    def beats_raw(self) -> list[bytes]:
        """The heartbeat records of ``{T}:beats`` (:mod:`~celerybeatredis.observe.heartbeat`), as stored."""
        value: Any = self.client.hgetall(self.keys.beats)
        return list(value.values())

    def wrong_types(self) -> list[str]:
        """The schedule's keys that hold another Redis type than the one they need, described for a log line."""
        expected = self.keys.types()
        pipe = self.client.pipeline(transaction=False)
        for key in expected:
            pipe.type(key)
        found = [t.decode() if isinstance(t, bytes) else str(t) for t in pipe.execute()]
        return [f"{key} is a {kind}, not a {want}" for (key, want), kind in zip(expected.items(), found)
                if kind not in ("none", want)]

    def memory_usage(self) -> dict[str, int]:
        """Bytes each existing key of the schedule uses (Redis' MEMORY USAGE estimate)."""
        names = self.keys.all()
        pipe = self.client.pipeline(transaction=False)
        for key in names:
            pipe.memory_usage(key)
        return {key: int(used) for key, used in zip(names, pipe.execute()) if used is not None}

    # --- calendars (kept on the first shard's tag) ---------------------------------------------------------------

    def calendars_raw(self) -> dict[str, bytes]:
        """Every calendar's stored text by name (``{T}:calendars``)."""
        stored: Any = self.client.hgetall(self.keys.calendars)
        return {name_text(k): v for k, v in stored.items()}

    def put_calendar(self, name: str, text: str) -> bool:
        """Store a calendar's text; True if it is new."""
        return bool(self.client.hset(self.keys.calendars, name_bytes(name), text))

    def remove_calendar(self, name: str) -> bool:
        """Delete a calendar; True if it existed."""
        return bool(self.client.hdel(self.keys.calendars, name_bytes(name)))


def _stored(name: str, raw: bytes, score: float | None, count: bytes | None, last: bytes | None,
            reason: bytes | None, static: int) -> StoredEntry:
    """A :class:`StoredEntry` from the replies of :meth:`RedisStore.entry_states`."""
    return StoredEntry(
        name=name,
        raw=raw,
        score=score,
        total_run_count=int(count) if count is not None else 0,
        last_run_at=last.decode() if last is not None else None,
        invalid_reason=reason.decode() if reason is not None else None,
        static=bool(static),
    )
