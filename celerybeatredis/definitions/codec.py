"""Definition JSON <-> Celery schedules.

A definition is the JSON document users store in ``{T}:schedule``. This module
validates it, turns it into a :class:`Definition` holding a Celery schedule,
and turns ``beat_schedule`` entries and Celery schedule objects back into JSON.
Every error is an :class:`~celerybeatredis.exceptions.InvalidDefinition` that
names the field.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, NamedTuple

import orjson
from celery import Celery
from celery.schedules import BaseSchedule

from ..exceptions import InvalidDefinition
from .checks import MESSAGE_DATE_OPTIONS
from .fields import BY_NAME, DEFAULT_TIMEOUT, FIELD_ORDER, OPTIONAL_MEMBERS, unknown_members
from .kinds import KINDS, NowFun, kind_to_json
from .pausing import Pause


class Definition(NamedTuple):
    """A validated schedule entry, ready for the scheduler.

    A named tuple rather than a frozen dataclass: beat builds one for every
    definition it has not seen yet, and a tuple is several times cheaper to make.
    """

    task: str
    kind: str
    schedule: BaseSchedule
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = MappingProxyType({})
    options: Mapping[str, Any] = MappingProxyType({})
    enabled: bool = True
    start_time: datetime | None = None
    expires: datetime | None = None
    one_off: bool = False
    max_run_count: int | None = None
    description: str = ""
    seed_total_run_count: int | None = None
    seed_last_run_at: datetime | None = None
    paused: Pause | None = None
    overlap: str = "allow"
    overlap_timeout: float = DEFAULT_TIMEOUT
    pause_after_failures: int | None = None
    catchup: str = "latest"
    catchup_window: float | None = None
    jitter: float = 0.0
    exclude: tuple[str, ...] = ()
    scheduled_time_kwarg: str = ""
    labels: Mapping[str, str] = MappingProxyType({})

    @property
    def runs_once(self) -> bool:
        """Whether the entry is finished after its first run."""
        return self.one_off or KINDS[self.kind].runs_once


#: Hex digits of a definition's SHA-1 that ``{T}:digest`` keeps (48 bits: an edit is missed only if its
#: digest agrees with the old one's in all of them; a shorter value takes a smaller allocation in Redis).
SHORT_DIGEST = 12


def digest(raw: str | bytes) -> str:
    """SHA-1 hex of a definition as stored, the same value Lua's ``redis.sha1hex`` gives."""
    data = raw.encode() if isinstance(raw, str) else raw
    return hashlib.sha1(data).hexdigest()


class Codec:
    """Parses definitions, caching the results by digest (bounded LRU).

    Args:
        app: The Celery app (time zone, ``beat_cron_starting_deadline``).
        nowfun: Clock used by every schedule the codec builds.
        cache_size: Most parsed definitions and compiled schedules kept.
    """

    def __init__(self, app: Celery, nowfun: NowFun | None = None, cache_size: int = 4096) -> None:
        self.app = app
        self.nowfun = nowfun
        self.cache_size = cache_size
        self._definitions: OrderedDict[str, Definition] = OrderedDict()
        self._schedules: OrderedDict[Hashable, BaseSchedule] = OrderedDict()

    def parse(self, raw: str | bytes, key: str | None = None) -> Definition:
        """Parse a stored definition; ``key`` is its digest when the caller has it.

        Raises:
            InvalidDefinition: naming the field that is wrong.
        """
        key = key or digest(raw)
        cached = self._definitions.get(key)
        if cached is not None:
            self._definitions.move_to_end(key)
            return cached
        doc = load_document(raw)
        definition = self.from_document(doc)
        self._definitions[key] = definition
        if len(self._definitions) > self.cache_size:
            self._definitions.popitem(last=False)
        return definition

    def from_document(self, doc: Mapping[str, Any]) -> Definition:
        """Validate a decoded document and build its :class:`Definition`.

        Beat parses every definition it has not seen, so only the members the
        document has are looked at; the others keep :class:`Definition`'s defaults.
        """
        if not isinstance(doc, Mapping):
            raise InvalidDefinition("", f"a definition must be a JSON object, not {type(doc).__name__}")
        has_members, readers, unknown = _members(doc)
        if unknown is not None:  # first: a misspelled kind or member is named, not reported as missing
            raise InvalidDefinition(*unknown)
        task = doc.get("task")
        if not isinstance(task, str) or not task.strip():
            raise InvalidDefinition("task", "is required and must be a non-empty string")
        kinds = [k for k in KINDS if doc.get(k) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise InvalidDefinition("schedule", f"exactly one of {', '.join(KINDS)} is required (found {found})")
        kind = kinds[0]
        relative = doc.get("relative") is not None and BY_NAME["relative"].read(doc["relative"])
        sched = self._schedule(kind, doc[kind], relative)
        if not has_members:
            return Definition(task=task, kind=kind, schedule=sched, args=(), kwargs={}, options={})
        # only the members it has, in the table's order (which error is raised first does not vary)
        fields = [task, kind, sched, *_DEFAULTS]
        for name, index, read in readers:
            value = doc[name]
            if value is not None:
                fields[index] = read(value)
        return _make(Definition, fields)

    def _schedule(self, kind: str, spec: Any, relative: bool) -> BaseSchedule:
        key = _schedule_key(kind, spec, relative)
        cached = self._schedules.get(key)
        if cached is not None:
            self._schedules.move_to_end(key)
            return cached
        built = self._build_schedule(kind, spec, relative)
        self._schedules[key] = built
        if len(self._schedules) > self.cache_size:
            self._schedules.popitem(last=False)
        return built

    def _build_schedule(self, kind: str, spec: Any, relative: bool) -> BaseSchedule:
        try:
            return KINDS[kind].build(spec, relative, self.nowfun, self.app)
        except InvalidDefinition:
            raise
        except ValueError as exc:  # a schedule class refusing what its kind's checks let through: one line, the kind named
            raise InvalidDefinition(kind, f"cannot be used: {' '.join(str(exc).split())}") from None


#: Where each attribute sits in a :class:`Definition`, and the defaults after the three every definition has.
_FIELD_INDEX = {name: i for i, name in enumerate(Definition._fields)}
_DEFAULTS = tuple(Definition._field_defaults[name] for name in Definition._fields[3:])
#: Builds a :class:`Definition` from all of its fields, without the keyword matching of its ``__new__``.
_make = tuple.__new__
#: ``(member, field index, reader)`` rows.
Readers = tuple[tuple[str, int, Callable[[Any], Any]], ...]
#: A document's first unknown member, as the ``(field, message)`` of its error.
Unknown = tuple[str, str] | None
_LAYOUTS: dict[tuple[Hashable, ...], tuple[bool, Readers, Unknown]] = {}


def _members(doc: Mapping[str, Any]) -> tuple[bool, Readers, Unknown]:
    """Whether ``doc`` has an optional member, ``(member, field index, reader)`` of those beat keeps (the index
    of its :class:`Definition` field), in the table's order, and its first unknown member's error, if any.

    Kept per list of member names, which definitions of a schedule mostly share: a document's members are then
    found without a set built and hashed for each.
    """
    names = tuple(doc)
    found = _LAYOUTS.get(names)
    if found is None:
        present = OPTIONAL_MEMBERS.intersection(names)
        unknown = unknown_members(names, KINDS)
        found = (bool(present), tuple((n, _FIELD_INDEX[f.attr], f.read) for n in sorted(present, key=FIELD_ORDER.__getitem__)
                                      if (f := BY_NAME[n]).attr is not None),
                 None if unknown is None else (unknown.field, unknown.message))
        if unknown is None and len(_LAYOUTS) < 4096:  # (a kind registered later may make an unknown member known)
            _LAYOUTS[names] = found
    return found


def _schedule_key(kind: str, spec: Any, relative: bool) -> Hashable:
    """Cache key of a schedule part: equal only for specs that build the same schedule.

    A flat object of scalars (every interval, most crontabs) becomes a tuple that
    keeps each value's type (so ``1``, ``1.0`` and ``true`` differ, as their JSON
    does); anything else falls back to canonical JSON.
    """
    if type(spec) is dict:
        items = []
        for name, value in spec.items():
            if type(value) not in _SCALARS:
                break
            items.append((name, type(value), value))
        else:
            items.sort(key=_first)
            return kind, relative, tuple(items)
    return json.dumps([kind, spec, relative], sort_keys=True, default=str)


_SCALARS = frozenset({str, int, float, bool, type(None)})

def _first(item: tuple[str, Any, Any]) -> str:
    return item[0]


def load_document(raw: str | bytes) -> Any:
    """Decode a stored definition, accepting the seed README's slips.

    Strict JSON first (orjson, or json where orjson would differ or fails); if
    that fails, the seed README's documents are repaired as they were printed there (``"__type__", "datetime"``, a trailing comma,
    a missing comma between members, Mongo's ``ObjectId("...")``).

    Raises:
        InvalidDefinition: with the JSON parser's position when neither works.
    """
    if _no_long_numbers(raw):
        try:
            return orjson.loads(raw)  # several times faster than json, with json's answer for what it reads
        except orjson.JSONDecodeError:
            pass  # json reads it below: its own error message, and the seed README's repairs
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as exc:
        raise InvalidDefinition("", f"not UTF-8 text: {exc}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        first_error = exc
    except RecursionError:
        raise InvalidDefinition("", "nested too deeply to read") from None
    try:
        return json.loads(_repair_seed_document(text))
    except (json.JSONDecodeError, RecursionError):
        raise InvalidDefinition("", f"not valid JSON: {first_error.msg} at line {first_error.lineno} column {first_error.colno}") from None


#: 19 digits in a row: perhaps an integer beyond 64 bits, which orjson would read as a float and json reads
#: exactly. Such a document (or one with any long run of digits) is left to json.
_LONG_DIGITS_B = re.compile(rb"[0-9]{19}")
_LONG_DIGITS = re.compile(r"[0-9]{19}")
_DIGITS_B = b"0123456789"


def _no_long_numbers(raw: str | bytes) -> bool:
    """Whether ``raw`` has no run of 19 digits (for bytes, counting its digits first is cheaper than searching)."""
    if isinstance(raw, bytes):
        return len(raw) - len(raw.translate(None, _DIGITS_B)) < 19 or _LONG_DIGITS_B.search(raw) is None
    return _LONG_DIGITS.search(raw) is None


_SEED_REPAIRS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r'ObjectId\(\s*("[^"]*")\s*\)'), r"\1"),
    (re.compile(r'("__type__"\s*),(\s*"datetime")'), r"\1:\2"),
    (re.compile(r",(\s*[}\]])"), r"\1"),
    (re.compile(r'([}\]"\d]|true|false|null)(\s*\n\s*")'), r"\1,\2"),
)


def _repair_seed_document(text: str) -> str:
    for pattern, replacement in _SEED_REPAIRS:
        text = pattern.sub(replacement, text)
    return text


# --- Celery objects -> JSON ---------------------------------------------------


def schedule_to_json(value: Any) -> dict[str, Any]:
    """A Celery schedule (or ``timedelta`` / seconds) -> the definition's schedule members.

    Raises:
        InvalidDefinition: for a schedule type the JSON format cannot express.
    """
    return kind_to_json(value)


def entry_to_document(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A ``beat_schedule`` entry (``task``, ``schedule``, ``args``, ...) -> definition JSON."""
    if "task" not in entry:
        raise InvalidDefinition("task", "is required")
    if "schedule" not in entry:
        raise InvalidDefinition("schedule", "is required")
    doc: dict[str, Any] = {"task": entry["task"], "enabled": True}
    doc.update(schedule_to_json(entry["schedule"]))
    if entry.get("relative"):
        doc["relative"] = True
    doc["args"] = list(entry.get("args") or ())
    doc["kwargs"] = dict(entry.get("kwargs") or {})
    options = dict(entry.get("options") or {})
    for name in MESSAGE_DATE_OPTIONS:
        if isinstance(options.get(name), datetime):
            options[name] = options[name].isoformat()
    if options:
        doc["options"] = options
    return doc


def dump_document(doc: Mapping[str, Any]) -> str:
    """Canonical JSON text of a definition (stable, so equal documents have equal digests)."""
    try:
        return json.dumps(doc, sort_keys=True, separators=(", ", ": "), ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidDefinition("", f"cannot be written as JSON: {exc}") from None
