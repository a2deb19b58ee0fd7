"""Errors raised by celerybeat-redis."""

from __future__ import annotations


class CeleryBeatRedisError(Exception):
    """Base class of every error this package raises."""


class InvalidDefinition(CeleryBeatRedisError, ValueError):
    """A schedule definition that cannot be used; names the field at fault.

    Args:
        field: Dotted path of the field (``interval.period``), ``""`` for the whole document.
        message: What is wrong with it.
        entry: Name of the entry, when known.
    """

    def __init__(self, field: str, message: str, entry: str | None = None) -> None:
        self.field = field
        self.message = message
        self.entry = entry
        super().__init__(self.reason)

    @property
    def reason(self) -> str:
        """The error as stored in ``{T}:invalid`` and logged."""
        where = f"field {self.field!r}: " if self.field else ""
        subject = f"entry {self.entry!r}: " if self.entry is not None else ""
        return f"{subject}{where}{self.message}"

    def for_entry(self, entry: str) -> InvalidDefinition:
        """The same error, naming ``entry``."""
        return InvalidDefinition(self.field, self.message, entry)


class EntryNotFound(CeleryBeatRedisError, KeyError):
    """No entry of that name in the schedule."""

    def __str__(self) -> str:
        return f"no entry named {self.args[0]!r}"


class EntryExists(CeleryBeatRedisError, KeyError):
    """An add named an entry that exists; adding never replaces one unless asked to (``replace=True``)."""

    def __str__(self) -> str:
        return f"entry {self.args[0]!r} exists; pass replace=True to replace it"


class EntryChanged(CeleryBeatRedisError):
    """An edit made from one version of an entry found another stored: nothing was written.

    Raised by ``ScheduleStore.replace(..., expected=version)``, so an edit made
    from a page or an editor opened earlier never drops a change made since (a
    pause, another user's edit).

    Args:
        name: The entry.
        current: The definition text stored now.
        version: Its version (``Entry.version``), to pass as ``expected`` to write over it after all.
    """

    def __init__(self, name: str, current: str, version: str) -> None:
        self.name = name
        self.current = current
        self.version = version
        super().__init__(name, current, version)

    def __str__(self) -> str:
        return f"entry {self.name!r} changed since it was read; nothing written"
