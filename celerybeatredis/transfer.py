"""Export and import of schedules as JSON lines.

One line per entry::

    {"name": "add-every-30s", "definition": {...}, "total_run_count": 3, "last_run_at": "2024-05-01T12:00:00+00:00"}

``"static": true`` marks an entry that came from ``beat_schedule``; a
definition that is not a JSON object is exported as its text. Importing is
idempotent: definitions are upserted, and run state is restored only where the
target has none yet (state beat wrote there wins).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .checks import parse_date
from .codec import load_document
from .entries import Entry
from .exceptions import CeleryBeatRedisError, InvalidDefinition
from .runstate import check_run_count
from .store import ScheduleStore, ValidatedEntry


class BadLine(CeleryBeatRedisError):
    """A line of an import that cannot be used; says which line and why."""

    def __init__(self, lineno: int, message: str) -> None:
        self.lineno = lineno
        self.message = message
        super().__init__(f"line {lineno}: {message}")


#: One validated entry of an import.
Record = ValidatedEntry


@dataclass
class ImportResult:
    """Counts from an import."""

    entries: int = 0
    written: int = 0
    unchanged: int = 0
    restored: int = 0
    skipped: list[str] = field(default_factory=list)


def export_record(entry: Entry) -> dict[str, Any]:
    """The JSON line (as a dict) that exports ``entry``."""
    record: dict[str, Any] = {
        "name": entry.name,
        "definition": entry.definition if entry.definition is not None else entry.raw,
        "total_run_count": entry.total_run_count,
        "last_run_at": entry.last_run_at.isoformat() if entry.last_run_at else None,
    }
    if entry.static:
        record["static"] = True
    return record


def export_lines(store: ScheduleStore, match: str | None = None) -> Iterator[str]:
    """Every entry as a JSON line (without newline), a page at a time."""
    for entry in store.iter_entries(match):
        yield json.dumps(export_record(entry), ensure_ascii=False, separators=(", ", ": "))


def parse_line(store: ScheduleStore, line: str, lineno: int) -> Record:
    """Validate one exported line.

    Raises:
        BadLine: naming the line, and the entry and field when it gets that far.
    """
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadLine(lineno, f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise BadLine(lineno, 'expected a JSON object with "name" and "definition"')
    name = data.get("name")
    if not isinstance(name, str) or not name:
        raise BadLine(lineno, 'needs "name", a non-empty string')
    definition = data.get("definition")
    try:
        if isinstance(definition, str):
            definition = load_document(definition)
        if not isinstance(definition, dict):
            raise InvalidDefinition("definition", "must be a JSON object", name)
        text = store.validate(name, definition)
        count = check_run_count(data.get("total_run_count"), entry=name)
        last = data.get("last_run_at")
        last_text = parse_date(last, "last_run_at").isoformat() if last is not None else None
    except InvalidDefinition as exc:
        raise BadLine(lineno, exc.for_entry(name).reason) from None
    return Record(name, text, count, last_text, data.get("static") is True)


def parse_lines(store: ScheduleStore, lines: Iterable[str]) -> Iterator[Record | BadLine]:
    """Each non-blank line as a :class:`Record`, or the :class:`BadLine` it raised."""
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield parse_line(store, line, lineno)
        except BadLine as exc:
            yield exc


def import_batch(store: ScheduleStore, records: list[Record], result: ImportResult) -> None:
    """Write one batch (run state first, so a beat picking up a new entry sees it) and count it in ``result``."""
    done = store.import_entries(records)
    result.restored += done.restored
    result.written += done.written
    result.unchanged += done.unchanged
    result.skipped += done.skipped
    result.entries += len(records)
