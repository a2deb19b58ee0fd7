"""Export and import of schedules as JSON lines.

One line per calendar, first (entries name them in ``exclude``, so an import
must know them before it checks the entries), then one line per entry::

    {"calendar": "holidays", "definition": {"dates": ["2024-12-25"], "ranges": [], "weekdays": []}}
    {"name": "add-every-30s", "definition": {...}, "total_run_count": 3, "last_run_at": "2024-05-01T12:00:00+00:00"}

``"static": true`` marks an entry that came from ``beat_schedule``; a
definition that is not a JSON object is exported as its text.
``"missing_calendars": [...]`` lists the calendars an entry's ``exclude``
names that did not exist when it was exported (removed by force: beat
quarantines the entry): the import writes such an entry as it was, rather
than refusing it, so that an export always imports; a name it does not list
is still refused. Importing is
idempotent: calendars and definitions are upserted, and run state is restored
only where the target has none yet (state beat wrote there wins).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from typing import Any

from ..definitions.calendars import InvalidCalendar, check_name, parse_calendar
from ..definitions.checks import parse_date
from ..definitions.codec import dump_document, load_document
from ..definitions.fields import check_run_count
from ..exceptions import CeleryBeatRedisError, InvalidDefinition
from ..managing.bulk import ValidatedEntry
from ..managing.records import BulkResult, Entry
from ..store import ScheduleStore


class BadLine(CeleryBeatRedisError):
    """A line of an import that cannot be used; says which line and why."""

    def __init__(self, lineno: int, message: str) -> None:
        self.lineno = lineno
        self.message = message
        super().__init__(f"line {lineno}: {message}")


#: One validated entry of an import.
Record = ValidatedEntry


@dataclass(frozen=True)
class CalendarRecord:
    """One validated calendar of an import: its name and the text to store."""

    name: str
    text: str


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
    """Every entry (``match``: those whose names match) as a JSON line without newline, a page at a time; an export
    writes :func:`calendar_lines` before them. An entry naming calendars that do not exist says which."""
    existing = frozenset(store.sharded.first.calendars_raw())
    for entry in store.iter_entries(match):
        record = export_record(entry)
        missing = _missing(entry.definition, existing)
        if missing:
            record["missing_calendars"] = missing
        yield json.dumps(record, ensure_ascii=False, separators=(", ", ": "))


def _missing(definition: Any, existing: AbstractSet[str]) -> list[str]:
    """The calendars ``definition``'s ``exclude`` names that are not in ``existing``."""
    exclude = definition.get("exclude") if isinstance(definition, dict) else None
    if not isinstance(exclude, list):
        return []
    return [n for n in exclude if isinstance(n, str) and n not in existing]


def missing_note(record: Record) -> str:
    """What an import says of an entry it wrote although calendars it names do not exist."""
    names = ", ".join(repr(n) for n in record.missing_calendars)
    return (f"entry {record.name!r}: field 'exclude': calendar {names} does not exist; imported as exported, "
            "beat quarantines it until the calendar is set")


def calendar_lines(store: ScheduleStore) -> list[str]:
    """Every calendar as a JSON line; one whose stored text does not read is exported as that text."""
    lines = []
    for name, raw in sorted(store.sharded.first.calendars_raw().items()):
        text = raw.decode("utf-8", "replace")
        try:
            definition: Any = json.loads(text)
        except ValueError:
            definition = text
        lines.append(json.dumps({"calendar": name, "definition": definition}, ensure_ascii=False, separators=(", ", ": ")))
    return lines


def parse_line(store: ScheduleStore, line: str, lineno: int, calendars: AbstractSet[str] = frozenset(),
               existing: AbstractSet[str] | None = None) -> Record | CalendarRecord:
    """Validate one exported line; ``calendars`` are the names earlier lines of the same import define, ``existing``
    those of the schedule (read when None).

    Raises:
        BadLine: naming the line, and the entry or calendar and the field when it gets that far.
    """
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise BadLine(lineno, f"not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(data, dict):
        raise BadLine(lineno, 'expected a JSON object with "name" and "definition"')
    if "calendar" in data:
        return parse_calendar_line(data, lineno)
    name = data.get("name")
    if not isinstance(name, str):
        raise BadLine(lineno, 'needs "name", a string')
    definition = data.get("definition")
    try:
        if isinstance(definition, str):
            definition = load_document(definition)
        if not isinstance(definition, dict):
            raise InvalidDefinition("definition", "must be a JSON object", name)
        listed = _listed_missing(data.get("missing_calendars"))
        text = store.validate(name, definition, calendars=calendars | listed)
        if existing is None:
            existing = frozenset(store.sharded.first.calendars_raw())
        missing = tuple(n for n in _missing(definition, existing) if n in listed and n not in calendars)
        count = check_run_count(data.get("total_run_count"), entry=name)
        last = data.get("last_run_at")
        last_text = parse_date(last, "last_run_at").isoformat() if last is not None else None
    except InvalidDefinition as exc:
        raise BadLine(lineno, exc.for_entry(name).reason) from None
    return Record(name=name, text=text, total_run_count=count, last_run_at=last_text, static=data.get("static") is True,
                  missing_calendars=missing)


def _listed_missing(value: Any) -> frozenset[str]:
    """A line's ``missing_calendars``: a list of names.

    Raises:
        InvalidDefinition: naming ``missing_calendars``.
    """
    if value is None:
        return frozenset()
    if not isinstance(value, list) or not all(isinstance(n, str) for n in value):
        raise InvalidDefinition("missing_calendars", "must be a list of calendar names")
    return frozenset(value)


def parse_calendar_line(data: dict[str, Any], lineno: int) -> CalendarRecord:
    """A ``{"calendar": name, "definition": {...}}`` line, checked as ``calendar set`` checks it."""
    try:
        name = check_name(data["calendar"])
        definition = data.get("definition")
        if isinstance(definition, str):
            definition = load_document(definition)
        calendar = parse_calendar(name, definition)
    except (InvalidCalendar, InvalidDefinition) as exc:
        raise BadLine(lineno, str(exc)) from None
    return CalendarRecord(name=name, text=dump_document(calendar.to_json()))


def parse_lines(store: ScheduleStore, lines: Iterable[str]) -> Iterator[Record | CalendarRecord | BadLine]:
    """Each non-blank line as a :class:`Record` or :class:`CalendarRecord`, or the :class:`BadLine` it raised.

    An entry may exclude a calendar that an earlier line defines.
    """
    calendars: set[str] = set()
    existing = frozenset(store.sharded.first.calendars_raw())
    for lineno, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            item = parse_line(store, line, lineno, calendars, existing)
        except BadLine as exc:
            yield exc
            continue
        if isinstance(item, CalendarRecord):
            calendars.add(item.name)
        yield item


def import_calendar(store: ScheduleStore, record: CalendarRecord) -> BulkResult:
    """Write one calendar (before the entries that name it)."""
    store.put_calendar_text(record.name, record.text)
    return BulkResult(calendars=1)


def import_batch(store: ScheduleStore, records: list[Record]) -> BulkResult:
    """Write one batch (run state first, so a beat picking up a new entry sees it)."""
    return store.import_entries(records)
