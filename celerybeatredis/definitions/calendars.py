"""Calendars: named sets of excluded days (dates, date ranges, weekdays) that entries refer to with ``exclude``.

A calendar is one JSON document in the hash ``{T}:calendars`` (on the first
shard of a sharded schedule, as the heartbeat), the field being its name::

    {"dates": ["2026-12-25"], "ranges": [["2026-12-24", "2026-12-31"]], "weekdays": ["sat", "sun"],
     "description": "..."}

A run whose slot (its time before jitter) falls on an excluded day, in the
entry's own time zone, is skipped and recorded in the entry's history
(:mod:`~celerybeatredis.policies.exclude`). This module reads and checks the
documents; :mod:`~celerybeatredis.managing.calendars` writes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date
from typing import Any, NamedTuple

from ..exceptions import CeleryBeatRedisError, InvalidDefinition
from .checks import json_type

#: Weekday names, Monday first (Python's ``date.weekday()``).
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
MEMBERS = ("dates", "ranges", "weekdays", "description")
#: Longest calendar name.
NAME_LIMIT = 200


class InvalidCalendar(CeleryBeatRedisError, ValueError):
    """A calendar document that cannot be used: names the calendar and the member."""

    def __init__(self, calendar: str, field: str, message: str) -> None:
        self.calendar, self.field, self.message = calendar, field, message
        super().__init__(f"calendar {calendar!r}: field {field!r}: {message}")


class CalendarNotFound(CeleryBeatRedisError, KeyError):
    """No calendar of that name."""

    def __str__(self) -> str:
        return f"no calendar named {self.args[0]!r}"


class CalendarInUse(CeleryBeatRedisError):
    """A calendar removal refused: entries still name the calendar in ``exclude`` (beat would quarantine them).

    Args:
        calendar: The calendar's name.
        entries: The first few entries that name it.
        total: How many entries name it.
    """

    def __init__(self, calendar: str, entries: list[str], total: int) -> None:
        self.calendar, self.entries, self.total = calendar, entries, total
        more = f" and {total - len(entries)} more" if total > len(entries) else ""
        named = ", ".join(repr(n) for n in entries)
        one = total == 1
        super().__init__(f"calendar {calendar!r} is named in the exclude of {'entry' if one else 'entries'} {named}{more}; "
                         f"take it out of {'its' if one else 'their'} exclude first, or force the removal (beat then "
                         f"quarantines {'it' if one else 'them'} until the calendar is set again)")


class Calendar(NamedTuple):
    """Excluded days: single dates, inclusive ranges, weekdays (0 = Monday)."""

    dates: frozenset[date] = frozenset()
    ranges: tuple[tuple[date, date], ...] = ()
    weekdays: frozenset[int] = frozenset()
    description: str = ""

    def excludes(self, day: date) -> bool:
        """Whether ``day`` (a local date) is excluded."""
        if day in self.dates or day.weekday() in self.weekdays:
            return True
        return any(first <= day <= last for first, last in self.ranges)

    def to_json(self) -> dict[str, Any]:
        """The document as stored (sorted, so equal calendars are equal text)."""
        doc: dict[str, Any] = {"dates": [d.isoformat() for d in sorted(self.dates)],
                               "ranges": [[a.isoformat(), b.isoformat()] for a, b in self.ranges],
                               "weekdays": [WEEKDAYS[w] for w in sorted(self.weekdays)]}
        if self.description:
            doc["description"] = self.description
        return doc


def parse_calendar(name: str, doc: Any) -> Calendar:
    """A calendar document -> :class:`Calendar`.

    Raises:
        InvalidCalendar: naming the calendar and the member at fault.
    """
    if not isinstance(doc, Mapping):
        raise InvalidCalendar(name, "", f"must be a JSON object, not {json_type(doc)}")
    unknown = sorted(set(doc) - set(MEMBERS))
    if unknown:
        raise InvalidCalendar(name, unknown[0], f"unknown member (known: {', '.join(MEMBERS)})")
    dates = frozenset(_date(name, "dates", v) for v in _list(name, "dates", doc.get("dates", [])))
    ranges = []
    for value in _list(name, "ranges", doc.get("ranges", [])):
        if not isinstance(value, list) or len(value) != 2:
            raise InvalidCalendar(name, "ranges", f'each range is ["first day", "last day"], not {value!r}')
        first, last = _date(name, "ranges", value[0]), _date(name, "ranges", value[1])
        if last < first:
            raise InvalidCalendar(name, "ranges", f"{value[1]} is before {value[0]}")
        ranges.append((first, last))
    weekdays = frozenset(_weekday(name, v) for v in _list(name, "weekdays", doc.get("weekdays", [])))
    description = doc.get("description", "")
    if not isinstance(description, str):
        raise InvalidCalendar(name, "description", f"must be a string, not {json_type(description)}")
    return Calendar(dates=dates, ranges=tuple(sorted(ranges)), weekdays=weekdays, description=description)


def load_calendar(name: str, raw: bytes | str) -> Calendar:
    """A stored calendar's text -> :class:`Calendar`."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        raise InvalidCalendar(name, "", "not valid JSON") from None
    return parse_calendar(name, doc)


def parse_exclude(value: Any) -> tuple[str, ...]:
    """The ``exclude`` member of a definition: a list of calendar names.

    Raises:
        InvalidDefinition: naming ``exclude``.
    """
    try:
        return _EXCLUDES[tuple(value)] if type(value) is list else _not_names(value)
    except (KeyError, TypeError):
        pass
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        _not_names(value)
    names = tuple(dict.fromkeys(value))
    if len(_EXCLUDES) < 1024:  # entries mostly share a few lists: each is checked once
        _EXCLUDES[tuple(value)] = names
    return names


_EXCLUDES: dict[tuple[str, ...], tuple[str, ...]] = {}


def _not_names(value: Any) -> tuple[str, ...]:
    raise InvalidDefinition("exclude", f"must be a list of calendar names, not {value!r}"[:300])


def check_name(name: Any) -> str:
    """A calendar name: non-empty text of at most :data:`NAME_LIMIT` characters."""
    if not isinstance(name, str) or not name or len(name) > NAME_LIMIT:
        raise InvalidCalendar(str(name)[:NAME_LIMIT], "name", f"must be non-empty text of at most {NAME_LIMIT} characters")
    return name


def _list(name: str, field: str, value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidCalendar(name, field, f"must be a JSON array, not {json_type(value)}")
    return value


def _date(name: str, field: str, value: Any) -> date:
    if isinstance(value, str):
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise InvalidCalendar(name, field, f"{value!r} is not a date like 2026-12-25")


def _weekday(name: str, value: Any) -> int:
    text = value.lower()[:3] if isinstance(value, str) else None
    if text in WEEKDAYS:
        return WEEKDAYS.index(text)
    raise InvalidCalendar(name, "weekdays", f"{value!r} is not a weekday (mon, tue, ... sun)")


def load_calendars(stored: Mapping[str, bytes | str]) -> dict[str, Calendar | InvalidCalendar]:
    """Every stored calendar read, a bad one kept as its error."""
    out: dict[str, Calendar | InvalidCalendar] = {}
    for name, raw in stored.items():
        try:
            out[name] = load_calendar(name, raw)
        except InvalidCalendar as exc:
            out[name] = exc
    return out
