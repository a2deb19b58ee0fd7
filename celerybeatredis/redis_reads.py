"""The plain reads of one schedule under one hash tag: the half of :class:`~celerybeatredis.redis_store.RedisStore`
that runs no script. Many names are read in one pipelined round trip; replies are bytes, decoded here."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any

from .connection import RedisClient
from .keys import Keys, name_text
from .runstate import parse_last_run_at
from .wire import StoredEntry


class RedisReads:
    """Reads of the keys under one hash tag (``keys``) through ``client``; see :class:`~celerybeatredis.redis_store.RedisStore`."""

    client: RedisClient
    keys: Keys

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

    def due_score(self, name: str) -> float | None:
        """The entry's score in the due index, or None."""
        score: Any = self.client.zscore(self.keys.due, name)
        return score

    def invalid_reason(self, name: str) -> str | None:
        """Why ``name`` is quarantined, or None."""
        value: Any = self.client.hget(self.keys.invalid, name)
        return value.decode() if value is not None else None

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
        return [None if raw is None else _stored(name, raw, *state)
                for name, raw, *state in zip(names, *replies)]

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


def _stored(name: str, raw: bytes, score: float | None, count: bytes | None, last: bytes | None,
            reason: bytes | None, static: int) -> StoredEntry:
    """A :class:`StoredEntry` from the replies of :meth:`RedisReads.entry_states`."""
    return StoredEntry(
        name=name,
        raw=raw,
        score=score,
        total_run_count=int(count) if count is not None else 0,
        last_run_at=last.decode() if last is not None else None,
        invalid_reason=reason.decode() if reason is not None else None,
        static=bool(static),
    )
