"""The registry of schedule kinds: what a kind is (:class:`ScheduleKind`), and :data:`KINDS`, the kinds by name.

The kinds themselves are in :mod:`~celerybeatredis.definitions.kinds`; a new
kind is one :func:`register` call.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery import Celery
from celery.schedules import BaseSchedule

from ..exceptions import InvalidDefinition

NowFun = Callable[[], datetime]


@dataclass(frozen=True)
class Flag:
    """A command line option that writes a kind (``--every 30s``); its value is the option's text."""

    name: str
    help: str
    number: bool = False


#: ``--timezone``, which the kinds that are read in a zone share; it refines the kind the entry has.
ZONE_FLAG = Flag(name="timezone", help="IANA time zone of --cron, --rrule or --offset (default: the app's); edit takes "
                                       "it alone to change the zone.")


@dataclass(frozen=True)
class ScheduleKind:
    """One kind of schedule.

    Attributes:
        name: The definition's member that holds it (``"interval"``).
        build: ``(spec, relative, nowfun, app) -> schedule``; raises InvalidDefinition naming the field.
        from_celery: A Celery schedule object -> the member's JSON, or None if it is not of this kind.
        describe: The member's JSON -> words for ``list`` and ``show``.
        runs_once: Whether an entry of this kind is finished after its first run.
        flags: Command line options that write it; the first one chooses this kind.
        from_flags: ``(flag values, the current spec or None) -> spec`` for ``add`` and ``edit``; a
            ``ValueError`` naming the flag for text it cannot read.
    """

    name: str
    build: Callable[[Any, bool, NowFun | None, Celery], BaseSchedule]
    from_celery: Callable[[Any], Mapping[str, Any] | None]
    describe: Callable[[Any], str]
    runs_once: bool = False
    flags: tuple[Flag, ...] = field(default_factory=tuple)
    from_flags: Callable[[Mapping[str, Any], Any], Any] | None = None


#: The registered kinds by name, in the order a Celery schedule object is matched against them.
KINDS: dict[str, ScheduleKind] = {}


def register(kind: ScheduleKind, *, before: str | None = None) -> ScheduleKind:
    """Add a schedule kind (or replace the one of that name).

    Args:
        before: A registered kind to match Celery objects against after this one (a
            subclass of ``celery.schedules.schedule`` must come before ``interval``).
    """
    KINDS.pop(kind.name, None)
    if before is None:
        KINDS[kind.name] = kind
        return kind
    if before not in KINDS:
        raise KeyError(f"no schedule kind {before!r} to register {kind.name!r} before")
    items = list(KINDS.items())
    at = [name for name, _ in items].index(before)
    KINDS.clear()
    KINDS.update([*items[:at], (kind.name, kind), *items[at:]])
    return kind


def kind_names() -> tuple[str, ...]:
    """The member names of the registered kinds."""
    return tuple(KINDS)


def kind_to_json(value: Any) -> dict[str, Any]:
    """A Celery schedule (or ``timedelta`` / seconds, a ``datetime`` for one run) -> the definition's schedule members.

    Raises:
        InvalidDefinition: for a schedule type no kind can express.
    """
    for kind in KINDS.values():
        spec = kind.from_celery(value)
        if spec is not None:
            return dict(spec)
    raise InvalidDefinition("schedule", f"cannot store a schedule of type {type(value).__name__}")
