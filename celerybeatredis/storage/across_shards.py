"""Reads that cover every shard of a schedule: counts, listings merged in due order, and scans with one cursor.

:class:`~.sharded_store.ShardedStore` holds one (its ``across``) beside the
routing of calls on names to their shards.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator
from itertools import islice
from operator import itemgetter
from typing import TypeVar

from .redis_store import RedisStore

_Item = TypeVar("_Item")


class AcrossShards:
    """Whole-schedule reads over ``stores``, one ``RedisStore`` per shard.

    A scan walks the shards in order with a cursor that encodes both
    (``HSCAN cursor * shards + shard``, so with one shard it is the HSCAN
    cursor itself, and 0 means start or done).
    """

    def __init__(self, stores: list[RedisStore]) -> None:
        self.stores = stores
        self.shards = len(stores)

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
