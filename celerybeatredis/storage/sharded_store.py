"""One schedule over ``K`` hash tags: a ``RedisStore`` per shard, each call on a name routed to its shard.

``K = 1`` is the unsharded layout: one ``RedisStore`` on ``{T}``. The layout in
use is recorded in ``{T}:meta``; moving entries to another ``K`` is
:mod:`~celerybeatredis.moving.reshard`'s. Reads of the whole schedule
(counts, listings, scans) are :class:`~.across_shards.AcrossShards`'.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, TypeVar

import redis

from ..exceptions import CeleryBeatRedisError
from .across_shards import AcrossShards
from .connection import RedisClient, close_client, make_client
from .keys import LAYOUT_FIELD, SCHEMA_FIELD, SCHEMA_VERSION, Keys, key_tag, shard_for, shard_tag
from .redis_store import RedisStore
from .wire import ReconcileStep, StoredEntry, Upserted

_Item = TypeVar("_Item")
_Result = TypeVar("_Result")


class ShardedStore:
    """One schedule over ``shards`` hash tags: a ``RedisStore`` per shard, with calls routed by entry name.

    Calls on one name go to its shard; calls on many names make one call per
    shard touched; reads of the whole schedule cover every shard (:attr:`across`).

    Args:
        client: A ``redis.Redis`` or ``RedisCluster`` client (bytes replies).
        key_prefix: The schedule's key prefix, e.g. ``tasks:meta:``.
        shards: Number of shards (1 = the unsharded layout).
    """

    def __init__(self, client: RedisClient, key_prefix: str, shards: int = 1) -> None:
        if shards < 1:
            raise ValueError("redis_scheduler_shards must be at least 1")
        self.client = client
        self.tag = key_tag(key_prefix)
        #: The unsharded keys ``{T}:...``: the schedule's keys when there is one shard; ``meta`` records the layout.
        self.keys = Keys(self.tag)
        self.shards = shards
        self.stores = [RedisStore(client, shard_tag(self.tag, i, shards)) for i in range(shards)]
        #: Counts, listings and scans of the whole schedule.
        self.across = AcrossShards(self.stores)
        self._reconcile_turn = 0

    @classmethod
    def from_url(cls, url: str, key_prefix: str, *, shards: int = 1, cluster: bool = False, **options: Any) -> ShardedStore:
        """A sharded store on a new client for ``url`` (``cluster``: a ``redis://`` URL names a cluster node)."""
        return cls(make_client(url, options, cluster), key_prefix, shards=shards)

    @property
    def tags(self) -> str:
        """The hash tags in use, for messages: ``{T}``, or ``{T:0} .. {T:K-1}``."""
        last = self.shards - 1
        return f"{{{self.stores[0].keys.tag}}}" + (f" .. {{{self.stores[last].keys.tag}}}" if last else "")

    @property
    def first(self) -> RedisStore:
        """The first shard, which also holds the schedule's heartbeats and calendars."""
        return self.stores[0]

    def time_scripts(self, timer: Callable[[str, float], None]) -> None:
        """Tell ``timer`` (script name, seconds) how long each script call made on its own takes, round trip included."""
        for store in self.stores:
            store.scripts.timer = timer

    # --- routing -------------------------------------------------------------------------------------------------

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

    # --- writing -------------------------------------------------------------------------------------------------

    def put_raw(self, definitions: Mapping[str, str], static: bool = False, only_new: bool = False) -> Upserted:
        """``RedisStore.put_raw`` for entries of any shard; one script call per shard touched.

        With ``only_new`` on several shards, existing names are looked up on every shard
        first, so a refused batch writes nothing on any shard.
        """
        if only_new and self.shards > 1:
            existing = [n for n, e in zip(definitions, self.entry_states(list(definitions))) if e is not None]
            if existing:
                return Upserted(written=0, unchanged=0, skipped=existing, overwritten=[])
        total = Upserted(written=0, unchanged=0, skipped=[], overwritten=[])
        for index, names in self.group(definitions).items():
            part = self.stores[index].put_raw({n: definitions[n] for n in names}, static=static, only_new=only_new)
            total = Upserted(written=total.written + part.written, unchanged=total.unchanged + part.unchanged,
                             skipped=total.skipped + part.skipped, overwritten=total.overwritten + part.overwritten)
        return total

    def remove_names(self, names: Iterable[str]) -> int:
        """Remove entries and all their state; returns how many existed."""
        return sum(self.stores[i].remove_names(group) for i, group in self.group(names).items())

    def run_now_names(self, names: Iterable[str]) -> list[bool]:
        """Make entries due at once, as a run; one flag per name, in the order given."""
        return self._routed(list(names), str, RedisStore.run_now_names)

    def replace_raw(self, changes: Sequence[tuple[str, bytes | str, str]]) -> list[int]:
        """``RedisStore.replace_raw`` (compare-and-set) for entries of any shard; one code per change."""
        return self._routed(changes, itemgetter(0), RedisStore.replace_raw)

    def restore_state(self, states: Sequence[tuple[str, int | None, str | None]]) -> int:
        """Set ``(name, total_run_count, last_run_at)`` where an entry has no run state yet."""
        return sum(self.stores[i].restore_state(group) for i, group in self.group(states, itemgetter(0)).items())

    def mark_synced(self) -> None:
        """Set the marker ``{T}:synced`` in every shard: ``beat_schedule`` was synced."""
        for store in self.stores:
            store.mark_synced()

    def reconcile_step(self, count: int) -> ReconcileStep:
        """One reconciler step on the next shard in turn (so the work per step does not grow with K)."""
        store = self.stores[self._reconcile_turn % self.shards]
        self._reconcile_turn += 1
        return store.runs.reconcile_step(count)

    def drop(self) -> int:
        """Delete the whole schedule, every shard and the recorded layout; returns how many keys existed."""
        dropped = sum(store.drop() for store in self.stores)
        return dropped + (int(self.client.delete(self.keys.meta)) if self.shards > 1 else 0)

    # --- reading -------------------------------------------------------------------------------------------------

    def get_raw(self, name: str) -> bytes | None:
        """The stored definition text of ``name``, or None."""
        return self.store_for(name).get_raw(name)

    def history_raw(self, name: str) -> bytes | None:
        """The stored run history of ``name`` in its shard, or None."""
        return self.store_for(name).history_raw(name)

    def outcome_counts(self) -> dict[str, int]:
        """The schedule's counters of runs the worker integration reported (``{T}:outcomes``, every shard summed)."""
        totals: dict[str, int] = {}
        for store in self.stores:
            try:
                counts: Any = store.client.hgetall(store.keys.outcomes)
            except redis.ResponseError:  # WRONGTYPE: counters that cannot be read count nothing
                continue
            for key, value in counts.items():
                if value.isdigit():
                    totals[key.decode()] = totals.get(key.decode(), 0) + int(value)
        return totals

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

    def server_time(self) -> float:
        """Redis server time in Unix seconds."""
        return self.first.server_time()

    def close(self) -> None:
        """Release the client's connections (and a Sentinel's)."""
        close_client(self.client)

    # --- layout --------------------------------------------------------------------------------------------------

    def recorded_shards(self) -> int | None:
        """The shard count recorded in ``{T}:meta``, or None when nothing is recorded."""
        value: Any = self.client.hget(self.keys.meta, LAYOUT_FIELD)
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

    def check_schema(self) -> str | None:
        """Record :data:`SCHEMA_VERSION` if no version is recorded, else say why the recorded one is not ours; None if it is.

        Beat calls it before its first write: keys laid out by another schema version may read as something else.
        """
        if self.client.hsetnx(self.keys.meta, SCHEMA_FIELD, SCHEMA_VERSION):
            return None
        raw: Any = self.client.hget(self.keys.meta, SCHEMA_FIELD)
        if raw is None:  # the schedule was deleted in between: nothing to disagree with
            return None
        recorded = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
        if recorded == str(SCHEMA_VERSION):
            return None
        return (f"schedule {{{self.tag}}} is at schema version {recorded!r} ({self.keys.meta} field {SCHEMA_FIELD}) "
                f"but this code knows version {SCHEMA_VERSION} only")

    def writable(self) -> ShardedStore:
        """This store, once the layout recorded in Redis is its own (one shard is what an unrecorded layout means).

        Raises:
            CeleryBeatRedisError: another layout is recorded; nothing may be written.
        """
        problem = self.check_layout(record=self.shards > 1)
        if problem:
            raise CeleryBeatRedisError(f"nothing written: {problem}")
        return self
