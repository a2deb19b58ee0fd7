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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from ..exceptions import InvalidDefinition
from .calendars import parse_exclude
from .checks import is_count, is_number, json_type, parse_bool, parse_date, parse_options
from .pausing import parse_pause

#: How a flag's text becomes the member's value: JSON, plain text, a positive integer, or an on/off pair.
FlagKind = Literal["json", "text", "count", "toggle"]

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
    DefinitionField("args", _array, "args", "Positional arguments as a JSON array.", "--args", "json"),
    DefinitionField("kwargs", _object, "kwargs", "Keyword arguments as a JSON object.", "--kwargs", "json"),
    DefinitionField("options", parse_options, "options", "apply_async options as a JSON object.", "--options", "json"),
    DefinitionField("enabled", lambda v: parse_bool(v, "enabled", True), "enabled", "Whether beat runs it."),
    DefinitionField("relative", lambda v: parse_bool(v, "relative", False), None,
                    "Interval relative to beat's start (Celery's relative).", "--relative", "toggle"),
    DefinitionField("start_time", lambda v: parse_date(v, "start_time"), "start_time",
                    "Do not run before this ISO-8601 time.", "--start-time", label="starts"),
    DefinitionField("expires", lambda v: parse_date(v, "expires"), "expires", "Do not run after this ISO-8601 time.",
                    "--expires", label="expires"),
    DefinitionField("one_off", lambda v: parse_bool(v, "one_off", False), "one_off", "Run once, then stop.",
                    "--one-off", "toggle", label="one-off"),
    DefinitionField("max_run_count", _max_run_count, "max_run_count", "Stop after this many runs.", "--max-runs",
                    "count", label="max runs"),
    DefinitionField("description", _description, "description", "Free text.", "--description", label="about"),
    DefinitionField("paused", parse_pause, "paused",
                    'Paused: {"reason": ..., "by": ..., "at": ...}; set by pause, dropped by resume.'),
    DefinitionField("overlap", parse_overlap, "overlap",
                    f"A run due while the last one runs: {' | '.join(OVERLAP_MODES)} (needs celerybeatredis.worker).",
                    "--overlap", label="overlap"),
    DefinitionField("overlap_timeout", parse_timeout, "overlap_timeout",
                    "Seconds without news from a worker after which a run no longer holds the entry back.",
                    "--overlap-timeout", "json", label="timeout"),
    DefinitionField("pause_after_failures", _pause_after_failures, "pause_after_failures",
                    "Pause after this many failed runs in a row (needs celerybeatredis.worker).",
                    "--pause-after-failures", "count", label="max fails"),
    DefinitionField("catchup", parse_mode, "catchup",
                    f"Runs missed while beat could not send: {' | '.join(CATCHUP_MODES)} (default latest).",
                    "--catchup", label="catch-up"),
    DefinitionField("catchup_window", parse_window, "catchup_window",
                    "Seconds: missed runs due longer ago than this are skipped, and counted.",
                    "--catchup-window", "json", label="window"),
    DefinitionField("jitter", parse_jitter, "jitter",
                    "Delay each run by a fixed offset in [0, jitter) seconds, from the name and the run's time.",
                    "--jitter", "json", label="jitter"),
    DefinitionField("exclude", parse_exclude, "exclude",
                    'Calendars whose days skip its runs, as a JSON array: \'["holidays-de"]\'.', "--exclude", "json",
                    label="excludes"),
    DefinitionField("total_run_count", check_run_count, "seed_total_run_count",
                    "Runs so far, from an old document: seeds the run state once.", user=False),
    DefinitionField("last_run_at", lambda v: parse_date(v, "last_run_at"), "seed_last_run_at",
                    "Last run, from an old document: seeds the run state once.", user=False),
)

BY_NAME = {f.name: f for f in FIELDS}
#: Each member's place in the table: a document's members are read (and their errors raised) in this order.
FIELD_ORDER = {f.name: i for i, f in enumerate(FIELDS)}
#: Members the API and the command line set (``add(..., max_run_count=3)``).
USER_FIELDS = tuple(f.name for f in FIELDS if f.user)
#: Every member besides ``task`` and the schedule that beat reads; others (users' own) are kept and ignored.
OPTIONAL_MEMBERS = frozenset(BY_NAME)
