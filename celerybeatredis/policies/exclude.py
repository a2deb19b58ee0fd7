"""The ``exclude`` policy: a run whose slot falls on a day one of the entry's calendars excludes is skipped.

Beat looks calendars up in a :class:`CalendarCache` (read from Redis when
first asked, again at most once a second); the day of a slot is taken in the
entry's own time zone (:mod:`~celerybeatredis.decisions.batch`). The calendar
documents themselves are :mod:`~celerybeatredis.definitions.calendars`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping
from datetime import date

from ..definitions.calendars import Calendar, InvalidCalendar, load_calendars
from ..exceptions import InvalidDefinition


def excluded_day(names: tuple[str, ...], calendars: Mapping[str, Calendar | InvalidCalendar],
                 day: date) -> bool | InvalidDefinition:
    """Whether a calendar of ``names`` excludes ``day``; the error (naming ``exclude``) for one that cannot be used.

    The error is returned, not raised, so a batch can keep it as the answer for every entry that asks.
    """
    for name in names:
        calendar = calendars.get(name)
        if calendar is None:
            return InvalidDefinition("exclude", f"unknown calendar {name!r} (create it with: celerybeatredis calendar set)")
        if isinstance(calendar, InvalidCalendar):
            return InvalidDefinition("exclude", f"cannot use {calendar}")
        if calendar.excludes(day):
            return True
    return False


class CalendarCache(Mapping[str, "Calendar | InvalidCalendar"]):
    """The schedule's calendars, read when an entry first looks one up and again at most every ``refresh`` seconds.

    Lazy, so a beat whose due entries name no calendar never spends a round
    trip on them (an idle tick stays at its claim and reconciler step).
    """

    def __init__(self, read: Callable[[], Mapping[str, bytes | str]], refresh: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._read, self._refresh, self._clock = read, refresh, clock
        self._loaded: dict[str, Calendar | InvalidCalendar] = {}
        self._expires = float("-inf")

    def _current(self) -> dict[str, Calendar | InvalidCalendar]:
        if self._clock() >= self._expires:
            self._loaded = load_calendars(self._read())
            self._expires = self._clock() + self._refresh
        return self._loaded

    def __getitem__(self, name: str) -> Calendar | InvalidCalendar:
        return self._current()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._current())

    def __len__(self) -> int:
        return len(self._current())
