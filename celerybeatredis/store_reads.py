"""The read half of the user API: entries as users see them, and the validation both halves share.

:class:`~celerybeatredis.store.ScheduleStore` is the class to use; this base
keeps its reads (each a page, a bounded range or one round trip per shard,
never the whole schedule at once) apart from its writes.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from typing import Any

from .codec import Codec, dump_document, load_document
from .entries import Entry, InvalidEntry, Page, Stats, decode, status_of, timestamp_to_datetime
from .exceptions import CeleryBeatRedisError, EntryNotFound, InvalidDefinition
from .firetimes import FireTime, fire_times
from .history import PAUSED, History, with_pause_reason
from .history import parse as parse_history
from .pausing import read_pause
from .runstate import parse_last_run_at
from .sharded_store import ShardedStore
from .store_calendars import CalendarStore
from .wire import Claimed, StoredEntry


class ScheduleReads(CalendarStore):
    """Reading a schedule: entries with their state, status and problems; see :class:`ScheduleStore`."""

    sharded: ShardedStore
    codec: Codec

    def validate(self, name: str, definition: Mapping[str, Any], calendars: AbstractSet[str] = frozenset()) -> str:
        """Check a definition and return the JSON text to store; ``exclude`` may also name ``calendars``
        (those an import writes before it).

        Raises:
            InvalidDefinition: naming ``name`` and the field at fault.
        """
        if not isinstance(name, str) or not name:
            raise InvalidDefinition("name", "an entry needs a non-empty name")
        try:
            self.codec.from_document(definition)
            self.check_exclude(definition, calendars)
            return dump_document(definition)
        except InvalidDefinition as exc:
            raise exc.for_entry(name) from None


    # --- reading ----------------------------------------------------------------------

    def get(self, name: str) -> Entry:
        """The entry's definition, run state, next run and status.

        Raises:
            EntryNotFound: no entry of that name.
        """
        found = self.sharded.entry_states([name])[0]
        if found is None:
            raise EntryNotFound(name)
        return self._entry(found)

    def history(self, name: str, n: int = 20) -> History:
        """The entry's run counters and its ``n`` newest runs (newest first), each with its task id when it was sent.

        Runs skipped under the pause in force read ``skipped: paused: <reason>``.

        Raises:
            EntryNotFound: no entry of that name and no history left of one.
        """
        raw = self.sharded.history_raw(name)
        if raw is None and not self.sharded.exists(name):
            raise EntryNotFound(name)
        history = parse_history(self.sharded.tag, name, raw, n)
        if any(run.outcome == PAUSED for run in history.runs):
            stored = self.sharded.get_raw(name)
            pause = read_pause(decode(stored)[1]) if stored is not None else None
            if pause is not None:
                history = with_pause_reason(history, pause)
        return history

    def find(self, names: Sequence[str]) -> list[Entry | None]:
        """Entries for ``names`` in one round trip (None where there is none)."""
        return [self._entry(s) if s is not None else None for s in self.sharded.entry_states(names)]

    def upcoming(self, count: int = 10, offset: int = 0) -> list[Entry]:
        """The next ``count`` entries in due order (due-now ones first), from a bounded ZRANGE."""
        names = [name for name, _ in self.sharded.next_due(count, offset)]
        return [e for e in self.find(names) if e is not None]

    def next_runs(self, name: str, count: int = 10, now: float | None = None) -> list[FireTime]:
        """The next ``count`` times the entry fires from ``now`` (default: the Redis server's clock), soonest first.

        Worked out by replaying beat's own decisions on the entry's stored state
        (:mod:`~celerybeatredis.firetimes`), for a beat that ticks on time. When
        ``max_run_count``, ``expires``, ``one_off`` or ``enabled`` stop the runs
        short of ``count``, the times they rule out fill the list, then those
        ``start_time`` holds back, marked in
        :attr:`~celerybeatredis.firetimes.FireTime.ruled_out`.

        Raises:
            EntryNotFound: no entry of that name.
            InvalidDefinition: beat cannot use the definition (naming the entry and field).
        """
        found = self.sharded.entry_states([name])[0]
        if found is None:
            raise EntryNotFound(name)
        if found.invalid_reason is not None:
            raise CeleryBeatRedisError(f"{found.invalid_reason} (quarantined by beat)")
        shard = self.sharded.store_for(name)
        pipe = shard.client.pipeline(transaction=False)
        pipe.hget(shard.keys.digest, name)  # when beat first saw it: a never-run entry's runs are timed from then
        pipe.hexists(shard.keys.total_run_count, name)  # absent, a definition's seed_total_run_count applies
        stamped, count_stored = pipe.execute()
        entry = Claimed(name, found.score if found.score is not None else 0.0, found.raw,
                        found.total_run_count if count_stored else None, found.last_run_at,
                        stamped.decode() if isinstance(stamped, bytes) else None)
        try:
            return fire_times(entry, self.codec.app, self.server_time() if now is None else now, count,
                              self.calendars() if found.raw and b'"exclude"' in found.raw else None)
        except InvalidDefinition as exc:
            raise exc.for_entry(name) from None

    def list(self, cursor: int = 0, count: int = 100, match: str | None = None) -> Page:
        """One page of entries (HSCAN order; ``count`` is a hint); pass ``page.cursor`` back for more.

        ``match`` is a Redis glob on the entry name. An entry may appear twice
        if the hash is resized during the listing.
        """
        next_cursor, page = self.sharded.scan_definitions(cursor, count, match)
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
        next_cursor, page = self.sharded.scan_invalid(cursor, count)
        return Page([InvalidEntry(name, reason) for name, reason in page], next_cursor)

    def stats(self, scan: bool = True, overdue_after: float = 60.0) -> Stats:
        """Counts and memory of the schedule; ``scan`` reads every definition to count enabled ones."""
        now = self.server_time()
        enabled = None
        if scan:
            enabled = sum(1 for _, raw in self.iter_raw() if _is_enabled(raw))
        return Stats(
            entries=self.count(),
            scheduled=self.sharded.count_scores("(0", "(inf"),
            never=self.sharded.count_scores("inf", "inf"),
            due_now=self.sharded.count_scores("-inf", now),
            overdue=self.sharded.count_scores("(0", now - overdue_after),
            pending=self.sharded.count_scores("-inf", 0),
            invalid=self.sharded.invalid_count(),
            enabled=enabled,
            memory_bytes=self.sharded.memory_usage(),
            overdue_after=overdue_after,
        )

    def iter_raw(self, match: str | None = None, page_size: int = 1000) -> Iterator[tuple[str, bytes]]:
        """Every ``(name, definition text)``, an HSCAN page at a time."""
        cursor = 0
        while True:
            cursor, page = self.sharded.scan_definitions(cursor, page_size, match)
            yield from page
            if cursor == 0:
                return

    def count(self) -> int:
        """Number of entries (one O(1) call per shard)."""
        return self.sharded.count()

    def exists(self, name: str) -> bool:
        """Whether an entry of that name exists."""
        return self.sharded.exists(name)

    def server_time(self) -> float:
        """Redis server time in Unix seconds (the clock every beat shares)."""
        return self.sharded.server_time()


    def _entry(self, stored: StoredEntry) -> Entry:
        """An :class:`Entry` for users: the stored state, the next run, and why the definition is unusable if it is."""
        text, doc = decode(stored.raw)
        reason = stored.invalid_reason
        if reason is None:
            try:
                self.validate(stored.name, doc if doc is not None else load_document(text))
            except InvalidDefinition as exc:
                reason = exc.reason
        last = parse_last_run_at(stored.last_run_at)
        return Entry(
            name=stored.name, raw=text, definition=doc, total_run_count=stored.total_run_count, last_run_at=last,
            next_run_at=timestamp_to_datetime(stored.score), status=status_of(stored.score, doc, reason),
            invalid_reason=reason, static=stored.static,
        )


def _is_enabled(raw: bytes) -> bool:
    _, doc = decode(raw)
    return doc is not None and doc.get("enabled", True) is not False
