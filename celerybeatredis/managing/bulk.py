"""Writing many entries at once, a Lua call per batch: adding, removing, and importing them with their run state.

:class:`~celerybeatredis.store.ScheduleStore` holds one :class:`BulkWrites`
and offers its methods as its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..exceptions import EntryExists
from ..storage.sharded_store import ShardedStore
from .checking import DefinitionCheck
from .records import BulkResult


@dataclass(frozen=True)
class ValidatedEntry:
    """An entry to import: its definition text from :meth:`ScheduleStore.validate`, and the run state it had."""

    name: str
    text: str
    total_run_count: int | None = None
    last_run_at: str | None = None
    static: bool = False
    #: Calendars its ``exclude`` names that exist neither in the import nor in the schedule: it was exported
    #: quarantined (its calendar removed by force) and is written as it was; beat quarantines it here too.
    missing_calendars: tuple[str, ...] = ()


class BulkWrites:
    """The bulk writes of :class:`~celerybeatredis.store.ScheduleStore` on ``sharded``, each definition ``check``-ed."""

    def __init__(self, sharded: ShardedStore, check: DefinitionCheck) -> None:
        self.sharded = sharded
        self.check = check

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
        result = BulkResult()
        batch: dict[str, str] = {}
        for name, definition in items:
            batch[name] = self.check.validate(name, definition)
            if len(batch) >= batch_size:
                result, batch = result + self._add_batch(batch, replace), {}
        return result + self._add_batch(batch, replace) if batch else result

    def _add_batch(self, batch: Mapping[str, str], replace: bool) -> BulkResult:
        done = self.sharded.writable().put_raw(batch, only_new=not replace)
        if done.skipped:
            raise EntryExists(done.skipped[0])
        return BulkResult(written=done.written, unchanged=done.unchanged)

    def bulk_remove(self, names: Iterable[str], batch_size: int = 1000) -> int:
        """Remove many entries, one Lua call per batch; returns how many existed."""
        removed = 0
        batch: list[str] = []
        for name in names:
            batch.append(name)
            if len(batch) >= batch_size:
                removed, batch = removed + self.sharded.writable().remove_names(batch), []
        return removed + self.sharded.writable().remove_names(batch)

    def import_entries(self, entries: Sequence[ValidatedEntry]) -> BulkResult:
        """Write entries carried over from elsewhere (an export, an old scheduler), with their run state.

        Run state is restored first, and only where an entry has none yet (state
        beat wrote wins), so a beat picking up a new entry sees it and a repeated
        import changes nothing. Static entries are written as ``beat_schedule``
        writes them. The texts must come from :meth:`validate`.
        """
        store = self.sharded.writable()
        states = [(e.name, e.total_run_count, e.last_run_at) for e in entries if e.total_run_count or e.last_run_at]
        result = BulkResult(restored=store.restore_state(states))
        for static in (False, True):
            done = store.put_raw({e.name: e.text for e in entries if e.static is static}, static=static)
            result += BulkResult(written=done.written, unchanged=done.unchanged, skipped=done.skipped)
        return result
