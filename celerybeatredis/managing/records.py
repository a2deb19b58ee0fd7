"""What the Python API returns: entries, pages of them, counts of a bulk write, the schedule's figures.

Nothing here talks to Redis: :class:`~celerybeatredis.store.ScheduleStore`
reads and writes, this module shapes what it returns.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..definitions.pausing import Pause, read_pause


@dataclass(frozen=True)
class Entry:
    """One schedule entry: its definition and what beat has done with it.

    Attributes:
        name: The entry's name (the field in ``{T}:schedule``).
        raw: The definition text as stored.
        definition: The decoded definition, or None when the text is not JSON.
        total_run_count: Runs so far.
        last_run_at: Time of the last run.
        next_run_at: When beat runs it next; None when it is due now, never, or not planned yet
            (see ``status``).
        status: ``scheduled``, ``pending`` (new or edited: beat plans it on its next tick),
            ``run-now`` (asked to run at once), ``paused`` (its runs are skipped until resumed),
            ``disabled``, ``finished`` or ``invalid``.
        invalid_reason: Why beat (or validation now) rejects the definition.
        static: Whether it came from ``beat_schedule`` (beat rewrites it from the config on start).
        version: The SHA-1 hex of the stored text: what an edit made from this read passes as
            ``ScheduleStore.replace(..., expected=version)``, so that it never overwrites a change made since.
    """

    name: str
    raw: str
    definition: dict[str, Any] | None
    total_run_count: int
    last_run_at: datetime | None
    next_run_at: datetime | None
    status: str
    invalid_reason: str | None
    static: bool
    version: str = ""

    @property
    def task(self) -> str:
        """The task name, or ``""`` for an unreadable definition."""
        task = (self.definition or {}).get("task")
        return task if isinstance(task, str) else ""

    @property
    def enabled(self) -> bool:
        """Whether the definition is enabled (``enabled`` defaults to true)."""
        return (self.definition or {}).get("enabled", True) is not False

    @property
    def paused(self) -> Pause | None:
        """The pause in force (reason, by, at), None when the entry is not paused."""
        return read_pause(self.definition)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view (times as ISO-8601)."""
        return {
            "name": self.name,
            "definition": self.definition if self.definition is not None else self.raw,
            "total_run_count": self.total_run_count,
            "last_run_at": _iso(self.last_run_at),
            "next_run_at": _iso(self.next_run_at),
            "status": self.status,
            "invalid_reason": self.invalid_reason,
            "static": self.static,
            "paused": pause.to_json() if (pause := self.paused) is not None else None,
        }


@dataclass(frozen=True)
class Page:
    """One page of a paginated listing; pass ``cursor`` back for the next one (0 = no more)."""

    items: list[Any]
    cursor: int

    @property
    def done(self) -> bool:
        """Whether this was the last page."""
        return self.cursor == 0


@dataclass(frozen=True)
class InvalidEntry:
    """A quarantined entry and why beat rejected it."""

    name: str
    reason: str


@dataclass(frozen=True)
class BulkResult:
    """Counts from a bulk write: ``bulk_add``, an import, a migration.

    Attributes:
        written: Definitions written (new or changed).
        unchanged: Definitions that were already stored as given.
        skipped: Names not written: a static entry whose name a dynamic entry holds.
        restored: Entries whose run state was carried over (an import or migration).
        calendars: Calendars written (an import).
    """

    written: int = 0
    unchanged: int = 0
    skipped: list[str] = field(default_factory=list)
    restored: int = 0
    calendars: int = 0

    @property
    def entries(self) -> int:
        """Entries the write covered: written, unchanged or skipped."""
        return self.written + self.unchanged + len(self.skipped)

    def __add__(self, other: BulkResult) -> BulkResult:
        return BulkResult(written=self.written + other.written, unchanged=self.unchanged + other.unchanged,
                          skipped=self.skipped + other.skipped, restored=self.restored + other.restored,
                          calendars=self.calendars + other.calendars)


@dataclass(frozen=True)
class Stats:
    """A schedule's size and health.

    Attributes:
        entries: Definitions stored.
        scheduled: Entries with a next run time.
        never: Entries beat will not run again (disabled, finished or invalid).
        due_now: Entries due at this moment (including new or edited ones and run-now requests).
        overdue: Entries more than ``overdue_after`` seconds late: beat is behind or not running.
        pending: New or edited entries and run-now requests beat has not looked at yet.
        invalid: Quarantined entries.
        enabled: Enabled definitions (None when definitions were not scanned).
        memory_bytes: Memory the schedule's keys use, by key (Redis' estimate).
        overdue_after: Lateness in seconds that counts as overdue.
    """

    entries: int
    scheduled: int
    never: int
    due_now: int
    overdue: int
    pending: int
    invalid: int
    enabled: int | None
    memory_bytes: dict[str, int]
    overdue_after: float

    @property
    def memory_total(self) -> int:
        """Bytes used by all keys of the schedule."""
        return sum(self.memory_bytes.values())

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready view."""
        return {
            "entries": self.entries, "enabled": self.enabled, "scheduled": self.scheduled, "never": self.never,
            "due_now": self.due_now, "overdue": self.overdue, "pending": self.pending, "invalid": self.invalid,
            "memory_bytes": self.memory_total, "memory_by_key": self.memory_bytes,
            "overdue_after_seconds": self.overdue_after,
        }


def status_of(score: float | None, doc: Mapping[str, Any] | None, invalid_reason: str | None) -> str:
    """The user-facing status for an entry's score in ``{T}:due``."""
    if invalid_reason:
        return "invalid"
    if score is None or score == 0:
        return "pending"
    if score < 0:
        return "run-now"
    if math.isinf(score):
        return "disabled" if (doc or {}).get("enabled", True) is False else "finished"
    return "paused" if (doc or {}).get("paused") is not None else "scheduled"


def timestamp_to_datetime(score: float | None) -> datetime | None:
    """A finite positive ``{T}:due`` score as an aware datetime, else None."""
    if score is None or score <= 0 or math.isinf(score):
        return None
    return datetime.fromtimestamp(score, timezone.utc)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
