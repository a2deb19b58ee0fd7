"""A schedule spread over several hash tags, so one schedule can span many Redis Cluster nodes.

With ``redis_scheduler_shards = K`` the entries of schedule ``T`` live under
the hash tags ``{T:0}`` ... ``{T:K-1}``; entry ``name`` belongs to shard
``shard_for(name, K) = crc32(name as UTF-8) % K``. Each shard is a complete
schedule with the usual keys (``{T:i}:schedule``, ``{T:i}:due``, ...) served
by its own ``RedisStore``, so every Lua script still touches one slot only.
``K = 1`` keeps the unsharded keys ``{T}:...`` exactly.

The layout in use is recorded in ``{T}:meta`` (field ``shards``); beat warns
at start when it differs from its setting. ``reshard`` moves entries, with
their run state, to a new K; ``python -m celerybeatredis.shards`` runs it.
"""

from __future__ import annotations

import argparse
import logging
import sys
import zlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from celery import Celery

from .connection import client_from_settings, close_client, make_client
from .settings import Settings, key_tag
from .store import Keys, ReconcileStep, RedisStore, name_bytes, name_text

logger = logging.getLogger(__name__)

#: Field of ``{T}:meta`` that records how many shards the schedule is laid out in.
LAYOUT_FIELD = "shards"


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
        self.shards = shards
        self.stores = [RedisStore(client, shard_tag(self.tag, i, shards)) for i in range(shards)]
        self._reconcile_turn = 0

    @classmethod
    def from_settings(cls, settings: Settings) -> ShardedStore:
        """A sharded store on a new client made from scheduler settings."""
        return cls(client_from_settings(settings), settings.key_prefix, settings.shards)

    @classmethod
    def from_app(cls, app: Celery) -> ShardedStore:
        """A sharded store for ``app``'s configuration."""
        return cls.from_settings(Settings.from_app(app))

    @classmethod
    def from_url(cls, url: str, key_prefix: str, shards: int = 1, **options: Any) -> ShardedStore:
        """A sharded store on a new client for ``url``."""
        return cls(make_client(url, options), key_prefix, shards)

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

    def group(self, names: Iterable[str]) -> dict[int, list[str]]:
        """Names by shard number, in the order given."""
        groups: dict[int, list[str]] = defaultdict(list)
        for name in names:
            groups[self.index_for(name)].append(name)
        return groups

    # --- the RedisStore interface, across shards --------------------------------------

    def put_raw(self, definitions: Mapping[str, str], static: bool = False) -> tuple[int, int, list[str]]:
        """``RedisStore.put_raw`` for entries of any shard; one script call per shard touched."""
        written = unchanged = 0
        skipped: list[str] = []
        for index, names in self.group(definitions).items():
            w, u, s = self.stores[index].put_raw({n: definitions[n] for n in names}, static=static)
            written, unchanged = written + w, unchanged + u
            skipped += s
        return written, unchanged, skipped

    def remove_names(self, names: Iterable[str]) -> int:
        """Remove entries and all their state; returns how many existed."""
        return sum(self.stores[i].remove_names(group) for i, group in self.group(names).items())

    def run_now_names(self, names: Iterable[str]) -> list[bool]:
        """Make entries due at once, as a run; one flag per name, in the order given."""
        names = list(names)
        flags: dict[str, bool] = {}
        for index, group in self.group(names).items():
            flags.update(zip(group, self.stores[index].run_now_names(group)))
        return [flags[n] for n in names]

    def get_raw(self, name: str) -> bytes | None:
        """The stored definition text of ``name``, or None."""
        return self.store_for(name).get_raw(name)

    def run_state(self, name: str) -> tuple[int, datetime | None]:
        """``(total_run_count, last_run_at)`` of ``name``."""
        return self.store_for(name).run_state(name)

    def due_score(self, name: str) -> float | None:
        """The entry's score in its shard's due index, or None."""
        return self.store_for(name).due_score(name)

    def invalid_reason(self, name: str) -> str | None:
        """Why ``name`` is quarantined, or None."""
        return self.store_for(name).invalid_reason(name)

    def count(self) -> int:
        """Number of entries in all shards (one O(1) call per shard)."""
        return sum(store.count() for store in self.stores)

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

    def close(self) -> None:
        """Release the client's connections (and a Sentinel's)."""
        close_client(self.client)

    # --- layout --------------------------------------------------------------------------

    def recorded_shards(self) -> int | None:
        """The shard count recorded in ``{T}:meta``, or None when nothing is recorded."""
        value = self.client.hget(Keys(self.tag).meta, LAYOUT_FIELD)
        return int(value) if value is not None else None

    def check_layout(self) -> str | None:
        """Record the layout if none is, or describe how it differs from this store's; None when it agrees."""
        recorded = self.recorded_shards()
        fix = f"run: python -m celerybeatredis.shards --url URL --prefix {self.tag}: --to {self.shards}"
        if recorded is None:
            if self.shards > 1 and self.client.exists(Keys(self.tag).schedule):
                return (f"entries exist under {{{self.tag}}} (1 shard) but redis_scheduler_shards is {self.shards}; "
                        f"they do not run until moved; {fix}")
            self.client.hsetnx(Keys(self.tag).meta, LAYOUT_FIELD, self.shards)
            return None
        if recorded != self.shards:
            return (f"schedule {{{self.tag}}} is laid out in {recorded} shards but redis_scheduler_shards is "
                    f"{self.shards}; entries outside this layout do not run until moved; {fix}")
        return None


@dataclass(frozen=True)
class ReshardReport:
    """What ``reshard`` did."""

    shards_before: int
    shards_after: int
    moved: int
    merged: int
    scanned: int


def reshard(client: Any, key_prefix: str, shards: int, from_shards: int | None = None, batch: int = 500,
            progress: Any = None) -> ReshardReport:
    """Move every entry of a schedule to its shard under a new shard count, with its run state.

    Each batch is taken out of service in its old shard (export.lua: due score
    inf, so no beat claims or commits it there), adopted by its new shard
    (adopt.lua: definition, total_run_count, last_run_at, digest, static mark;
    the due time is re-derived by beat), then removed from the old shard.
    Nothing is deleted before it is stored in its new place, so an
    interrupted run loses nothing, and running it again finishes the move.
    Beats must run with ``redis_scheduler_shards = shards`` afterwards.

    Args:
        client: Redis or RedisCluster client.
        key_prefix: The schedule's key prefix.
        shards: The new shard count.
        from_shards: The current shard count; default: the recorded one, else 1.
        batch: Entries per script call.
        progress: Called with the number of entries moved so far, after each batch.
    """
    if shards < 1:
        raise ValueError("shards must be at least 1")
    target = ShardedStore(client, key_prefix, shards)
    before = from_shards or target.recorded_shards() or 1
    tags = {shard_tag(target.tag, i, before) for i in range(before)}
    tags |= {shard_tag(target.tag, i, shards) for i in range(shards)}
    moved = merged = scanned = 0
    for tag in sorted(tags):
        source = RedisStore(client, tag)
        cursor = 0
        while True:
            cursor, page = client.hscan(source.keys.schedule, cursor, count=batch)
            names = [name_text(n) for n in page]
            scanned += len(names)
            leaving = [n for n in names if shard_tag(target.tag, target.index_for(n), shards) != tag]
            m, g = _move(source, target, leaving)
            moved, merged = moved + m, merged + g
            if progress is not None and leaving:
                progress(moved + merged)
            if cursor == 0:
                break
    client.hset(Keys(target.tag).meta, LAYOUT_FIELD, shards)
    return ReshardReport(before, shards, moved, merged, scanned)


def _move(source: RedisStore, target: ShardedStore, names: Sequence[str]) -> tuple[int, int]:
    if not names:
        return 0, 0
    exported = source.export_names(names)
    moved = merged = 0
    by_shard: dict[int, list[Any]] = defaultdict(list)
    for entry in exported:
        by_shard[target.index_for(entry.name)].append(entry)
    for index, entries in by_shard.items():
        m, g = target.stores[index].adopt(entries)
        moved, merged = moved + m, merged + g
    source.remove_names([e.name for e in exported])
    return moved, merged


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m celerybeatredis.shards --url URL --prefix P --to K``: reshard a schedule."""
    parser = argparse.ArgumentParser(prog="python -m celerybeatredis.shards",
                                     description="Move a schedule's entries to a new number of shards.")
    parser.add_argument("--url", required=True, help="schedule Redis URL (redis://, redis-cluster://, ...)")
    parser.add_argument("--prefix", default="tasks:meta:", help="key prefix (default tasks:meta:)")
    parser.add_argument("--to", type=int, required=True, dest="shards", help="new number of shards")
    parser.add_argument("--from", type=int, dest="from_shards", help="current number of shards (default: recorded)")
    parser.add_argument("--cluster", action="store_true", help="treat a redis:// URL as a cluster node")
    args = parser.parse_args(argv)
    try:
        client = make_client(args.url, cluster=args.cluster)
        report = reshard(client, args.prefix, args.shards, args.from_shards)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{report.moved} entries moved, {report.merged} merged, {report.scanned} scanned; "
          f"shards {report.shards_before} -> {report.shards_after}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
