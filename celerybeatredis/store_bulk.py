"""Writing many entries at once: the bulk half of :class:`~celerybeatredis.store.ScheduleStore`, and the layout check
every write of it goes through."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .entries import BulkResult
from .exceptions import CeleryBeatRedisError, EntryExists
from .sharded_store import ShardedStore
from .store_reads import ScheduleReads


@dataclass(frozen=True)
class ValidatedEntry:
    """An entry to import: its definition text from :meth:`ScheduleStore.validate`, and the run state it had."""

    name: str
    text: str
    total_run_count: int | None = None
    last_run_at: str | None = None
    static: bool = False


class ImportCounts(NamedTuple):
    """What :meth:`ScheduleStore.import_entries` did."""

    restored: int
    written: int
    unchanged: int
    #: Static entries not written: a dynamic entry of that name exists.
    skipped: list[str]


class BulkWrites(ScheduleReads):
    """Adding, removing and importing many entries, a Lua call per batch; see :class:`~celerybeatredis.store.ScheduleStore`."""

    #: The shard count this store writes with (writes are refused while Redis records another).
    shards: int

    def _writable(self) -> ShardedStore:
        """The store underneath, once the layout recorded in Redis is this store's; else nothing may be written."""
        problem = self.sharded.check_layout(record=self.shards > 1)  # one shard is what an unrecorded layout means
        if problem:
            raise CeleryBeatRedisError(f"nothing written: {problem}")
        return self.sharded

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
        done = self._writable().put_raw(batch, only_new=not replace)
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
                removed, batch = removed + self._writable().remove_names(batch), []
        return removed + self._writable().remove_names(batch)

    def import_entries(self, entries: Sequence[ValidatedEntry]) -> ImportCounts:
        """Write entries carried over from elsewhere (an export, an old scheduler), with their run state.

        Run state is restored first, and only where an entry has none yet (state
        beat wrote wins), so a beat picking up a new entry sees it and a repeated
        import changes nothing. Static entries are written as ``beat_schedule``
        writes them. The texts must come from :meth:`validate`.
        """
        states = [(e.name, e.total_run_count, e.last_run_at) for e in entries if e.total_run_count or e.last_run_at]
        restored = self._writable().restore_state(states)
        written = unchanged = 0
        skipped: list[str] = []
        for static in (False, True):
            texts = {e.name: e.text for e in entries if e.static is static}
            done = self._writable().put_raw(texts, static=static)
            written, unchanged, skipped = written + done.written, unchanged + done.unchanged, skipped + done.skipped
        return ImportCounts(restored, written, unchanged, skipped)
