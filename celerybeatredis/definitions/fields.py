"""The optional members of a definition, in one table, and how each is read.

Each :class:`DefinitionField` says how the member is read and checked, where
beat keeps it (an attribute of :class:`~celerybeatredis.definitions.codec.Definition`),
whether the API and the command line may set it, with which flag, and how
``show`` labels it. The codec, ``ScheduleStore.add`` / ``update``, the
``add`` / ``edit`` flags and ``show`` all read this table, so a new member is
one row here (and, if beat acts on it, one attribute of ``Definition`` and a
step of the decision, :mod:`~celerybeatredis.decisions.decide`). What beat
does with the policy members is in :mod:`celerybeatredis.policies`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Literal

from ..exceptions import InvalidDefinition
from .calendars import parse_exclude
from .checks import is_count, is_number, json_type, nearest, parse_bool, parse_date, parse_options
from .labels import parse_labels
from .pausing import parse_pause

#: How a flag's text becomes the member's value: JSON, plain text, a positive integer, an on/off pair, or
#: repeated ``key=value`` pairs.
FlagKind = Literal["json", "text", "count", "toggle", "pairs"]

Overlap = Literal["allow", "skip", "buffer_one"]
#: The ``overlap`` modes, default first (what each does: :mod:`~celerybeatredis.policies.overlap`).
OVERLAP_MODES: tuple[Overlap, ...] = ("allow", "skip", "buffer_one")
#: Seconds a run marker holds an entry back without news from a worker, unless ``overlap_timeout`` says otherwise.
DEFAULT_TIMEOUT = 3600.0

CatchupMode = Literal["latest", "all", "none"]
#: The ``catchup`` modes, default first (what each does: :mod:`~celerybeatredis.policies.catchup`).
CATCHUP_MODES: tuple[CatchupMode, ...] = ("latest", "all", "none")


@dataclass(frozen=True)
class DefinitionField:
    """One optional member of a definition.

    Attributes:
        name: The JSON member.
        read: The member's JSON value (never None) -> what beat keeps; raises InvalidDefinition naming it.
        attr: The ``Definition`` attribute it fills; None when beat reads it elsewhere.
        help: What it means, for the command line's help.
        flag: The ``add`` / ``edit`` option that sets it, None for none.
        flag_kind: How the option's text is read.
        user: Whether the API and the command line set it (False: old documents' run state, read once).
        label: How ``show`` names it; None to leave it to the definition listing.
    """

    name: str
    read: Callable[[Any], Any]
    attr: str | None
    help: str
    flag: str | None = None
    flag_kind: FlagKind = "text"
    user: bool = True
    label: str | None = None


def _array(value: Any) -> tuple[Any, ...]:
    if not isinstance(value, list):
        raise InvalidDefinition("args", f"must be a JSON array, not {json_type(value)}")
    return tuple(value)


def _object(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidDefinition("kwargs", f"must be a JSON object, not {json_type(value)}")
    return value


def _max_run_count(value: Any) -> int:
    if not is_count(value, least=1):
        raise InvalidDefinition("max_run_count", "must be a positive integer or null")
    return value


def _pause_after_failures(value: Any) -> int:
    if not is_count(value, least=1):
        raise InvalidDefinition("pause_after_failures", f"must be a positive integer, not {value!r}")
    return value


def _description(value: Any) -> str:
    if not isinstance(value, str):
        raise InvalidDefinition("description", "must be a string")
    return value


def parse_kwarg_name(value: Any) -> str:
    """The ``scheduled_time_kwarg`` member: the keyword argument a run's scheduled time is passed as (a Python name)."""
    if not isinstance(value, str) or not value.isidentifier():
        raise InvalidDefinition("scheduled_time_kwarg", f"must be a keyword argument's name, not {value!r}")
    return value


def parse_overlap(value: Any) -> Overlap:
    """The ``overlap`` member: one of :data:`OVERLAP_MODES`."""
    if value not in OVERLAP_MODES:
        shown = repr(value) if isinstance(value, str) else json_type(value)
        raise InvalidDefinition("overlap", f"unknown mode {shown} (expected one of {', '.join(OVERLAP_MODES)})")
    return value


def parse_timeout(value: Any) -> float:
    """The ``overlap_timeout`` member: seconds, a finite number greater than 0."""
    if not is_number(value) or not 0 < value < math.inf:
        raise InvalidDefinition("overlap_timeout", f"must be a number of seconds greater than 0, not {value!r}")
    return float(value)


def parse_mode(value: Any) -> CatchupMode:
    """The ``catchup`` member: one of :data:`CATCHUP_MODES`."""
    if value not in CATCHUP_MODES:
        shown = repr(value) if isinstance(value, str) else type(value).__name__
        raise InvalidDefinition("catchup", f"unknown mode {shown} (expected one of {', '.join(CATCHUP_MODES)})")
    return value


def parse_window(value: Any) -> float:
    """The ``catchup_window`` member: seconds, a finite number of at least 0."""
    if not is_number(value) or not 0 <= value < math.inf:
        raise InvalidDefinition("catchup_window", f"must be a number of seconds of at least 0, not {value!r}")
    return float(value)


def parse_jitter(value: Any) -> float:
    """The ``jitter`` member: seconds, a finite number of at least 0 (0: none)."""
    if type(value) is float and 0.0 <= value < math.inf:  # the usual case, checked first (a NaN is no such float)
        return value
    if not is_number(value):
        raise InvalidDefinition("jitter", f"must be a number of seconds, not {json_type(value)}")
    if not math.isfinite(value) or value < 0:
        raise InvalidDefinition("jitter", f"must be a finite number of seconds of at least 0, not {value!r}")
    return float(value)


def check_run_count(value: object, field: str = "total_run_count", entry: str | None = None) -> int | None:
    """``value`` as a run count (None when absent), refusing what is not a non-negative integer (``True`` included).

    Old documents, imports and migrations carry run counts; this one reader
    means a count of ``True`` is refused alike wherever it comes from.

    Raises:
        InvalidDefinition: naming ``field`` (and ``entry`` when given).
    """
    if value is None:
        return None
    if not is_count(value):
        raise InvalidDefinition(field, "must be a non-negative integer", entry)
    return value


FIELDS: tuple[DefinitionField, ...] = (
    DefinitionField(name="args", read=_array, attr="args", help="Positional arguments as a JSON array.",
                    flag="--args", flag_kind="json"),
    DefinitionField(name="kwargs", read=_object, attr="kwargs", help="Keyword arguments as a JSON object.",
                    flag="--kwargs", flag_kind="json"),
    DefinitionField(name="options", read=parse_options, attr="options", help="apply_async options as a JSON object.",
                    flag="--options", flag_kind="json"),
    DefinitionField(name="enabled", read=lambda v: parse_bool(v, "enabled", True), attr="enabled",
                    help="Whether beat runs it."),
    DefinitionField(name="relative", read=lambda v: parse_bool(v, "relative", False), attr=None,
                    help="Interval relative to beat's start (Celery's relative).", flag="--relative",
                    flag_kind="toggle"),
    DefinitionField(name="start_time", read=lambda v: parse_date(v, "start_time"), attr="start_time",
                    help="Do not run before this ISO-8601 time.", flag="--start-time", label="starts"),
    DefinitionField(name="expires", read=lambda v: parse_date(v, "expires"), attr="expires",
                    help="Do not run after this ISO-8601 time.", flag="--expires", label="expires"),
    DefinitionField(name="one_off", read=lambda v: parse_bool(v, "one_off", False), attr="one_off",
                    help="Run once, then stop.", flag="--one-off", flag_kind="toggle", label="one-off"),
    DefinitionField(name="max_run_count", read=_max_run_count, attr="max_run_count",
                    help="Stop after this many runs.", flag="--max-runs", flag_kind="count", label="max runs"),
    DefinitionField(name="description", read=_description, attr="description", help="Free text.",
                    flag="--description", label="about"),
    DefinitionField(name="paused", read=parse_pause, attr="paused",
                    help='Paused: {"reason": ..., "by": ..., "at": ...}; set by pause, dropped by resume.'),
    DefinitionField(name="overlap", read=parse_overlap, attr="overlap",
                    help=f"A run due while the last one runs: {' | '.join(OVERLAP_MODES)} (needs celerybeatredis.worker).",
                    flag="--overlap", label="overlap"),
    DefinitionField(name="overlap_timeout", read=parse_timeout, attr="overlap_timeout",
                    help="Seconds without news from a worker after which a run no longer holds the entry back.",
                    flag="--overlap-timeout", flag_kind="json", label="timeout"),
    DefinitionField(name="pause_after_failures", read=_pause_after_failures, attr="pause_after_failures",
                    help="Pause after this many failed runs in a row (needs celerybeatredis.worker).",
                    flag="--pause-after-failures", flag_kind="count", label="max fails"),
    DefinitionField(name="catchup", read=parse_mode, attr="catchup",
                    help=f"Runs missed while beat could not send: {' | '.join(CATCHUP_MODES)} (default latest).",
                    flag="--catchup", label="catch-up"),
    DefinitionField(name="catchup_window", read=parse_window, attr="catchup_window",
                    help="Seconds: missed runs due longer ago than this are skipped, and counted.",
                    flag="--catchup-window", flag_kind="json", label="window"),
    DefinitionField(name="jitter", read=parse_jitter, attr="jitter",
                    help="Delay each run by a fixed offset in [0, jitter) seconds, from the name and the run's time.",
                    flag="--jitter", flag_kind="json", label="jitter"),
    DefinitionField(name="exclude", read=parse_exclude, attr="exclude",
                    help='Calendars whose days skip its runs, as a JSON array: \'["holidays-de"]\'.',
                    flag="--exclude", flag_kind="json", label="excludes"),
    DefinitionField(name="scheduled_time_kwarg", read=parse_kwarg_name, attr="scheduled_time_kwarg",
                    help="Pass each run's scheduled time (ISO-8601 UTC, before jitter) as this keyword argument.",
                    flag="--scheduled-time-kwarg", label="time kwarg"),
    DefinitionField(name="labels", read=parse_labels, attr="labels",
                    help="A label KEY=VALUE (repeatable; --unlabel KEY drops one).", flag="--label", flag_kind="pairs",
                    label="labels"),
    DefinitionField(name="total_run_count", read=check_run_count, attr="seed_total_run_count",
                    help="Runs so far, from an old document: seeds the run state once.", user=False),
    DefinitionField(name="last_run_at", read=lambda v: parse_date(v, "last_run_at"), attr="seed_last_run_at",
                    help="Last run, from an old document: seeds the run state once.", user=False),
)

BY_NAME = {f.name: f for f in FIELDS}
#: Each member's place in the table: a document's members are read (and their errors raised) in this order.
FIELD_ORDER = {f.name: i for i, f in enumerate(FIELDS)}
#: Members the API and the command line set (``add(..., max_run_count=3)``).
USER_FIELDS = tuple(f.name for f in FIELDS if f.user)
#: Every member besides ``task`` and the schedule that beat reads.
OPTIONAL_MEMBERS = frozenset(BY_NAME)
#: Members the seed's documents carry that beat keeps and ignores (the entry's name is the hash field).
SEED_MEMBERS = ("name",)
#: A member whose name starts with this is the user's own: kept, never read, never refused.
OWN_PREFIX = "_"


def unknown_members(names: Iterable[str], kinds: Iterable[str]) -> InvalidDefinition | None:
    """The error for the first of ``names`` (a document's members) that is neither ``task``, a schedule kind in
    ``kinds``, a member of :data:`FIELDS`, one of :data:`SEED_MEMBERS` nor the user's own; None if there is none.

    A misspelled member would otherwise be silently ignored (``"enabeld": false`` leaves the entry running), so
    every door refuses it, naming the nearest known member.
    """
    known = ("task", *kinds, *BY_NAME)
    for name in names:
        if name in known or name in SEED_MEMBERS or name.startswith(OWN_PREFIX):
            continue
        close = nearest(name, known)
        hint = f"did you mean {close!r}? " if close is not None else ""
        return InvalidDefinition(name, f"unknown member ({hint}members of your own start with {OWN_PREFIX!r})")
    return None
