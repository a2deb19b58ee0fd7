"""Calendars as users manage them: written, read and removed for :class:`~celerybeatredis.store.ScheduleStore`.

The documents themselves are :mod:`~celerybeatredis.definitions.calendars`';
they live in ``{T}:calendars`` of the schedule's first shard. No index says
which entries name a calendar: a removal scans the definitions a page at a
time (an entry that names none is passed over without being parsed).
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from collections.abc import Set as AbstractSet
from datetime import date
from typing import Any

from ..definitions.calendars import (
    WEEKDAYS,
    Calendar,
    CalendarInUse,
    CalendarNotFound,
    InvalidCalendar,
    check_name,
    load_calendar,
    load_calendars,
    parse_calendar,
)
from ..definitions.codec import dump_document
from ..definitions.documents import decode
from ..exceptions import InvalidDefinition
from ..storage.across_shards import AcrossShards
from ..storage.redis_store import RedisStore

#: Seconds the calendar names that validation checks ``exclude`` against are kept (listings validate every entry).
NAMES_TTL = 1.0
#: Entries a refused calendar removal names (the rest are counted).
NAMED_USERS = 5
#: Definitions read per HSCAN page when looking for the entries that name a calendar.
SCAN_PAGE = 1000


class Calendars:
    """Named sets of excluded days, in ``{T}:calendars`` of ``store`` (the first shard); entries name them in ``exclude``.

    ``across`` reads every shard's definitions, to find the entries that name a calendar.
    """

    def __init__(self, store: RedisStore, across: AcrossShards | None = None) -> None:
        self.store = store
        self.across = across if across is not None else AcrossShards([store])
        self._names: tuple[float, frozenset[str]] | None = None

    def set_calendar(self, name: str, *, dates: Iterable[date | str] = (), ranges: Iterable[tuple[date | str, date | str]] = (),
                     weekdays: Iterable[str | int] = (), description: str = "") -> bool:
        """Create or replace a calendar; True if it is new.

        ``dates`` and the ``(first, last)`` days of ``ranges`` (inclusive) are
        dates or ISO-8601 ``YYYY-MM-DD`` text; ``weekdays`` are ``mon`` ..
        ``sun`` or 0 (Monday) .. 6. Beat applies a change within a second.

        Raises:
            InvalidCalendar: naming the calendar and the member; nothing is written.
        """
        doc: dict[str, Any] = {
            "dates": [_day(d) for d in dates],
            "ranges": [[_day(a), _day(b)] for a, b in ranges],
            "weekdays": [w if isinstance(w, str) else _weekday_name(name, w) for w in weekdays],
        }
        if description:
            doc["description"] = description
        calendar = parse_calendar(check_name(name), doc)
        self._names = None
        return self.store.put_calendar(name, dump_document(calendar.to_json()))

    def calendar(self, name: str) -> Calendar:
        """A calendar by name.

        Raises:
            CalendarNotFound: no calendar of that name.
            InvalidCalendar: the stored document does not read (written by hand).
        """
        raw = self.store.calendars_raw().get(name)
        if raw is None:
            raise CalendarNotFound(name)
        return load_calendar(name, raw)

    def calendars(self) -> dict[str, Calendar | InvalidCalendar]:
        """Every calendar by name; one that does not read is its error (entries that use it are quarantined)."""
        return load_calendars(self.store.calendars_raw())

    def remove_calendar(self, name: str, *, force: bool = False) -> bool:
        """Delete a calendar; True if it existed.

        Refused while entries name it in ``exclude``, unless ``force``: those
        entries are then quarantined by beat (the reason names ``exclude`` and
        the calendar) until the calendar is set again or they are edited; an
        export still imports them as they are (:mod:`~celerybeatredis.moving.transfer`).

        Raises:
            CalendarNotFound: no calendar of that name.
            CalendarInUse: entries name it and ``force`` is false; nothing is removed.
        """
        self._names = None
        if name not in self.store.calendars_raw():
            raise CalendarNotFound(name)
        if not force:
            users, total = self.users(name, NAMED_USERS)
            if total:
                raise CalendarInUse(name, users, total)
        if not self.store.remove_calendar(name):
            raise CalendarNotFound(name)
        return True

    def users(self, name: str, limit: int = NAMED_USERS) -> tuple[list[str], int]:
        """The entries whose ``exclude`` names calendar ``name``: the first ``limit`` found, and how many there are.

        Scans every shard's definitions a page at a time, so it holds one page in memory, never the schedule.
        """
        found: list[str] = []
        total = 0
        cursor = 0
        while True:
            cursor, page = self.across.scan_definitions(cursor, SCAN_PAGE)
            for entry, raw in page:
                if names_calendar(raw, name):
                    total += 1
                    if len(found) < limit:
                        found.append(entry)
            if cursor == 0:
                return found, total

    def names(self) -> frozenset[str]:
        """The calendars' names, read again at most every :data:`NAMES_TTL` seconds."""
        cached = self._names
        if cached is None or time.monotonic() - cached[0] > NAMES_TTL:
            cached = self._names = (time.monotonic(), frozenset(self.store.calendars_raw()))
        return cached[1]

    def put_calendar_text(self, name: str, text: str) -> bool:
        """Store a calendar's checked text as it is (an import's); True if it is new."""
        self._names = None
        return self.store.put_calendar(name, text)

    def check_exclude(self, definition: Any, also: AbstractSet[str] = frozenset()) -> None:
        """Refuse an ``exclude`` that names a calendar that does not exist (and is not in ``also``).

        Raises:
            InvalidDefinition: naming ``exclude``.
        """
        exclude = definition.get("exclude") if isinstance(definition, dict) else None
        if not isinstance(exclude, list) or not exclude:
            return
        known = self.names()
        unknown = [n for n in exclude if isinstance(n, str) and n not in known and n not in also]
        if unknown:
            raise InvalidDefinition("exclude", f"unknown calendar {unknown[0]!r} (create it with: celerybeatredis calendar set)")


def names_calendar(raw: bytes, name: str) -> bool:
    """Whether a stored definition's ``exclude`` names calendar ``name`` (one without ``exclude`` is not parsed)."""
    if b"exclude" not in raw:
        return False
    _, doc = decode(raw)
    exclude = doc.get("exclude") if doc is not None else None
    return isinstance(exclude, list) and name in exclude


def _day(value: date | str) -> str:
    return value.isoformat() if isinstance(value, date) else value


def _weekday_name(name: str, value: int) -> str:
    if isinstance(value, bool) or not 0 <= value <= 6:
        raise InvalidCalendar(name, "weekdays", f"{value!r} is not a weekday (0 = Monday .. 6)")
    return WEEKDAYS[value]
