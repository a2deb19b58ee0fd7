"""A schedule spread over several hash tags, so one schedule can span many Redis Cluster nodes.

With ``redis_scheduler_shards = K`` the entries of schedule ``T`` live under
the hash tags ``{T:0}`` ... ``{T:K-1}``; entry ``name`` belongs to shard
``shard_for(name, K) = crc32(name as UTF-8) % K``. Each shard is a complete
schedule with the usual keys (``{T:i}:schedule``, ``{T:i}:due``, ...) served
by its own ``RedisStore``, so every Lua script still touches one slot only.
``K = 1`` keeps the unsharded keys ``{T}:...`` exactly.

The layout in use is recorded in ``{T}:meta`` (field ``shards``); beat warns
at start when it differs from its setting, and the management API refuses
to write. ``reshard`` moves entries, with their run state, to a new K;
``celerybeatredis reshard --to K`` runs it. Run history (``{T:i}:history``)
does not move: it is a log of recent runs, not state beat needs, and would
add a few hundred bytes per entry to every export/adopt call; remove.lua
deletes it from the old shard and the entry starts a fresh one in its new
shard (its task ids stay derived from the schedule's tag, not the shard's).
The routing itself is
:class:`~celerybeatredis.storage.sharded_store.ShardedStore`'s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

from ..storage.connection import RedisClient
from ..storage.keys import LAYOUT_FIELD, Keys, name_text, shard_tag
from ..storage.redis_store import RedisStore
from ..storage.sharded_store import ShardedStore
from ..storage.wire import Adopted

__all__ = ["ReshardReport", "reshard"]

@dataclass(frozen=True)
class ReshardReport:
    """What ``reshard`` did."""

    shards_before: int
    shards_after: int
    moved: int
    merged: int
    scanned: int

    @property
    def summary(self) -> str:
        """One line for a person."""
        return (f"{self.moved} entries moved, {self.merged} merged, {self.scanned} scanned; "
                f"shards {self.shards_before} -> {self.shards_after}")


def reshard(client: RedisClient, key_prefix: str, shards: int, from_shards: int | None = None, batch: int = 500,
            progress: Callable[[int], None] | None = None) -> ReshardReport:
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
            reply: Any = client.hscan(source.keys.schedule, cursor, count=batch)
            cursor, page = reply
            names = [name_text(n) for n in page]
            scanned += len(names)
            leaving = [n for n in names if shard_tag(target.tag, target.index_for(n), shards) != tag]
            done = _move(source, target, leaving)
            moved, merged = moved + done.adopted, merged + done.merged
            if progress is not None and leaving:
                progress(moved + merged)
            if cursor == 0:
                break
    client.hset(Keys(target.tag).meta, LAYOUT_FIELD, shards)
    return ReshardReport(shards_before=before, shards_after=shards, moved=moved, merged=merged, scanned=scanned)


def _move(source: RedisStore, target: ShardedStore, names: Sequence[str]) -> Adopted:
    """Export ``names`` from ``source``, adopt them in their new shards, then remove them from ``source``."""
    if not names:
        return Adopted(adopted=0, merged=0)
    exported = source.export_names(names)
    moved = merged = 0
    for index, entries in target.group(exported, attrgetter("name")).items():
        done = target.stores[index].adopt(entries)
        moved, merged = moved + done.adopted, merged + done.merged
    source.remove_names([e.name for e in exported])
    return Adopted(adopted=moved, merged=merged)
