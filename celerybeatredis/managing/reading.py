"""Reading a schedule as users see it: entries with their state, status and problems, a page at a time.

Each read is a page, a bounded range or one round trip per shard, never the
whole schedule at once. :class:`~celerybeatredis.store.ScheduleStore` holds
one :class:`EntryReads` and offers its methods as its own.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

from ..decisions.firetimes import FireTime, fire_times
from ..definitions.codec import digest, load_document
from ..definitions.documents import decode
from ..definitions.labels import matches
from ..definitions.pausing import read_pause
from ..exceptions import CeleryBeatRedisError, EntryNotFound, InvalidDefinition
from ..storage.history import PAUSED, History, with_pause_reason
from ..storage.history import parse as parse_history
from ..storage.sharded_store import ShardedStore
from ..storage.wire import Claimed, StoredEntry, parse_last_run_at
from .calendars import Calendars
from .checking import DefinitionCheck
from .records import Entry, InvalidEntry, Page, Stats, status_of, timestamp_to_datetime


class EntryReads:
    """The reads of :class:`~celerybeatredis.store.ScheduleStore` on ``sharded``; ``check`` tells why an entry is unusable."""

    def __init__(self, sharded: ShardedStore, check: DefinitionCheck, calendars: Calendars) -> None:
        self.sharded = sharded
        self.check = check
        self.calendars = calendars

    def get(self, name: str) -> Entry:
        """The entry's definition, run state, next run and status.

        Raises:
            EntryNotFound: no entry of that name.
        """
        found = self.sharded.entry_states([name])[0]
        if found is None:
            raise EntryNotFound(name)
        return self.entry(found)

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
        return [self.entry(s) if s is not None else None for s in self.sharded.entry_states(names)]

    def upcoming(self, count: int = 10, offset: int = 0) -> list[Entry]:
        """The next ``count`` entries in due order (due-now ones first), from a bounded ZRANGE."""
        names = [name for name, _ in self.sharded.across.next_due(count, offset)]
        return [e for e in self.find(names) if e is not None]

    def next_runs(self, name: str, count: int = 10, now: float | None = None) -> list[FireTime]:
        """The next ``count`` times the entry fires from ``now`` (default: the Redis server's clock), soonest first.

        Worked out by replaying beat's own decisions on the entry's stored state
        (:mod:`~celerybeatredis.decisions.firetimes`), for a beat that ticks on time. When
        ``max_run_count``, ``expires``, ``one_off`` or ``enabled`` stop the runs
        short of ``count``, the times they rule out fill the list, then those
        ``start_time`` holds back, marked in
        :attr:`~celerybeatredis.decisions.firetimes.FireTime.ruled_out`.

        Raises:
            EntryNotFound: no entry of that name.
            InvalidDefinition: beat cannot use the definition (naming the entry and field).
        """
        found = self.sharded.entry_states([name])[0]
        if found is None:
            raise EntryNotFound(name)
        if found.invalid_reason is not None:
            raise CeleryBeatRedisError(f"{found.invalid_reason} (quarantined by beat)")
        # A never-run entry's runs are timed from when beat first saw it (its digest); without a stored run count, a
        # definition's seed_total_run_count applies.
        stamped, count_stored = self.sharded.store_for(name).digest_state(name)
        entry = Claimed(name=name, score=found.score if found.score is not None else 0.0, definition=found.raw,
                        total_run_count=found.total_run_count if count_stored else None, last_run_at=found.last_run_at,
                        digest=stamped)
        calendars = self.calendars.calendars() if found.raw and b'"exclude"' in found.raw else None
        try:
            return fire_times(entry, self.check.codec.app, self.sharded.server_time() if now is None else now, count,
                              calendars)
        except InvalidDefinition as exc:
            raise exc.for_entry(name) from None
        except ValueError as exc:  # a schedule that fails as its times are worked out (the codec has built it)
            raise InvalidDefinition("", _one_line(exc), name) from None

    def list(self, cursor: int = 0, count: int = 100, match: str | None = None,
             labels: Mapping[str, str] | None = None) -> Page:
        """One page of entries (HSCAN order; ``count`` is a hint); pass ``page.cursor`` back for more.

        ``match`` is a Redis glob on the entry name; ``labels`` keeps the entries carrying every one of these
        labels. Redis cannot filter by labels, so each page's definitions are read and filtered here: a page may
        hold fewer entries than ``count``, even none, before the listing is done. An entry may appear twice if
        the hash is resized during the listing.
        """
        next_cursor, page = self.sharded.across.scan_definitions(cursor, count, match)
        names = [n for n, raw in page if not labels or matches(decode(raw)[1], labels)]
        return Page(items=[e for e in self.find(names) if e is not None] if names else [], cursor=next_cursor)

    def iter_entries(self, match: str | None = None, page_size: int = 500,
                     labels: Mapping[str, str] | None = None) -> Iterator[Entry]:
        """Every entry (with every one of ``labels``, if given), fetched a page at a time (never all at once)."""
        cursor = 0
        while True:
            page = self.list(cursor, page_size, match, labels)
            yield from page.items
            if page.done:
                return
            cursor = page.cursor

    def invalid(self, cursor: int = 0, count: int = 100) -> Page:
        """One page of quarantined entries (:class:`~.records.InvalidEntry`) with beat's reasons."""
        next_cursor, page = self.sharded.across.scan_invalid(cursor, count)
        return Page(items=[InvalidEntry(name=name, reason=reason) for name, reason in page], cursor=next_cursor)

    def stats(self, scan: bool = True, overdue_after: float = 60.0) -> Stats:
        """Counts and memory of the schedule; ``scan`` reads every definition to count enabled ones."""
        now = self.sharded.server_time()
        across = self.sharded.across
        enabled = None
        if scan:
            enabled = sum(1 for _, raw in self.iter_raw() if _is_enabled(raw))
        return Stats(
            entries=across.count(),
            scheduled=across.count_scores("(0", "(inf"),
            never=across.count_scores("inf", "inf"),
            due_now=across.count_scores("-inf", now),
            overdue=across.count_scores("(0", now - overdue_after),
            pending=across.count_scores("-inf", 0),
            invalid=across.invalid_count(),
            enabled=enabled,
            memory_bytes=across.memory_usage(),
            overdue_after=overdue_after,
        )

    def iter_raw(self, match: str | None = None, page_size: int = 1000) -> Iterator[tuple[str, bytes]]:
        """Every ``(name, definition text)``, an HSCAN page at a time."""
        cursor = 0
        while True:
            cursor, page = self.sharded.across.scan_definitions(cursor, page_size, match)
            yield from page
            if cursor == 0:
                return

    def entry(self, stored: StoredEntry) -> Entry:
        """An :class:`~.records.Entry` for users: the stored state, the next run, and why the definition is unusable if it is."""
        text, doc = decode(stored.raw)
        reason = stored.invalid_reason
        if reason is None:
            try:
                self.check.validate(stored.name, doc if doc is not None else load_document(text), stored=True)
            except InvalidDefinition as exc:
                reason = exc.reason
        return Entry(
            name=stored.name, raw=text, definition=doc, total_run_count=stored.total_run_count,
            last_run_at=parse_last_run_at(stored.last_run_at), next_run_at=timestamp_to_datetime(stored.score),
            status=status_of(stored.score, doc, reason), invalid_reason=reason, static=stored.static,
            version=digest(stored.raw),
        )


def _is_enabled(raw: bytes) -> bool:
    _, doc = decode(raw)
    return doc is not None and doc.get("enabled", True) is not False


def _one_line(exc: Exception) -> str:
    """An error's message on one line."""
    return " ".join(str(exc).split())
