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
from collections.abc import Hashable, Mapping
from datetime import datetime, timedelta, timezone
from types import MappingProxyType
from typing import Any, Callable, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import orjson
from celery import Celery
from celery.schedules import BaseSchedule, crontab, schedstate, schedule, solar

from .exceptions import InvalidDefinition

SCHEDULE_KINDS = ("interval", "crontab", "solar", "clocked")
PERIODS = ("days", "hours", "minutes", "seconds", "microseconds")
CRON_FIELDS = ("minute", "hour", "day_of_week", "day_of_month", "month_of_year")
MESSAGE_DATE_OPTIONS = ("eta", "expires")

NowFun = Callable[[], datetime]


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

    @property
    def runs_once(self) -> bool:
        """Whether the entry is finished after its first run."""
        return self.one_off or self.kind == "clocked"


class ZonedCrontab(crontab):
    """A crontab evaluated in its own IANA time zone instead of the app's."""

    def __init__(self, *args: Any, zone: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = zone

    @property
    def tz(self) -> Any:
        """The entry's own zone, else the app's."""
        return ZoneInfo(self.zone) if self.zone else self.app.timezone


class clocked(BaseSchedule):
    """One run at a fixed time; the scheduler retires the entry after it."""

    def __init__(self, run_at: datetime, nowfun: NowFun | None = None, app: Celery | None = None) -> None:
        super().__init__(nowfun=nowfun, app=app)
        self.run_at = run_at

    def remaining_estimate(self, last_run_at: datetime) -> timedelta:
        """Time left until ``run_at``."""
        return self.run_at - self.now()

    def is_due(self, last_run_at: datetime) -> schedstate:
        """Due once ``run_at`` has passed."""
        rem = self.remaining_estimate(last_run_at).total_seconds()
        return schedstate(rem <= 0, max(rem, 0.0))

    def __repr__(self) -> str:
        return f"<clocked: {self.run_at.isoformat()}>"


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
        task = doc.get("task")
        if not isinstance(task, str) or not task.strip():
            raise InvalidDefinition("task", "is required and must be a non-empty string")
        kinds = [k for k in SCHEDULE_KINDS if doc.get(k) is not None]
        if len(kinds) != 1:
            found = ", ".join(kinds) if kinds else "none"
            raise InvalidDefinition("schedule", f"exactly one of {', '.join(SCHEDULE_KINDS)} is required (found {found})")
        kind = kinds[0]
        present = _OPTIONAL_MEMBERS.intersection(doc)
        relative = _bool(doc, "relative", False) if "relative" in present else False
        sched = self._schedule(kind, doc[kind], relative)
        if not present:
            return Definition(task, kind, sched, (), {}, {})
        args = doc.get("args")
        if args is None:
            args = []
        if not isinstance(args, list):
            raise InvalidDefinition("args", f"must be a JSON array, not {_json_type(args)}")
        kwargs = doc.get("kwargs")
        if kwargs is None:
            kwargs = {}
        if not isinstance(kwargs, dict):
            raise InvalidDefinition("kwargs", f"must be a JSON object, not {_json_type(kwargs)}")
        enabled = _bool(doc, "enabled", True) if "enabled" in present else True
        if present <= _COMMON_MEMBERS:  # relative, args, kwargs, enabled: nothing more to read
            return Definition(task, kind, sched, tuple(args), kwargs, {}, enabled)
        max_run_count = doc.get("max_run_count")
        if max_run_count is not None and (
            not isinstance(max_run_count, int) or isinstance(max_run_count, bool) or max_run_count < 1
        ):
            raise InvalidDefinition("max_run_count", "must be a positive integer or null")
        description = doc.get("description") or ""
        if not isinstance(description, str):
            raise InvalidDefinition("description", "must be a string")
        seed_count = doc.get("total_run_count")
        if seed_count is not None and (not isinstance(seed_count, int) or isinstance(seed_count, bool) or seed_count < 0):
            raise InvalidDefinition("total_run_count", "must be a non-negative integer")
        return Definition(
            task=task,
            kind=kind,
            schedule=sched,
            args=tuple(args),
            kwargs=kwargs,
            options=_options(doc.get("options")),
            enabled=enabled,
            start_time=_date_field(doc, "start_time"),
            expires=_date_field(doc, "expires"),
            one_off=_bool(doc, "one_off", False),
            max_run_count=max_run_count,
            description=description,
            seed_total_run_count=seed_count,
            seed_last_run_at=_date_field(doc, "last_run_at"),
        )

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
        if kind == "interval":
            return schedule(parse_interval(spec), relative=relative, nowfun=self.nowfun, app=self.app)
        if kind == "crontab":
            return parse_crontab(spec, nowfun=self.nowfun, app=self.app)
        if kind == "solar":
            return parse_solar(spec, nowfun=self.nowfun, app=self.app)
        return clocked(parse_clocked(spec), nowfun=self.nowfun, app=self.app)


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

#: Members of a definition besides ``task`` and its schedule; a document without any is parsed at once.
_OPTIONAL_MEMBERS = frozenset({
    "relative", "args", "kwargs", "enabled", "options", "start_time", "expires", "one_off", "max_run_count",
    "description", "total_run_count", "last_run_at",
})
#: The optional members most documents have, and all that a document with no others needs read.
_COMMON_MEMBERS = frozenset({"relative", "args", "kwargs", "enabled"})


def _first(item: tuple[str, Any, Any]) -> str:
    return item[0]


def interval_is_due(sched: schedule, last_run_at: datetime, now: datetime) -> tuple[bool, float]:
    """``sched.is_due(last_run_at)`` for a plain interval when the schedule's clock reads ``now``.

    The same answer as Celery's :meth:`celery.schedules.schedule.is_due` (same
    arithmetic: the interval is added as Celery adds it, in UTC), without its
    per-call overhead. Falls back to Celery for what the shortcut does not cover:
    a relative schedule, a naive or non-fixed-offset ``last_run_at``, overflow.
    """
    if sched.relative:
        return _celery_is_due(sched, last_run_at)
    seconds = sched.run_every.total_seconds()
    last_tz, now_tz = last_run_at.tzinfo, now.tzinfo
    try:
        if last_tz is _UTC and now_tz is _UTC:  # as beat keeps its times: no conversions to make
            left = (last_run_at + timedelta(seconds=seconds) - now).total_seconds()
        elif type(last_tz) is timezone and type(now_tz) is timezone:
            end = (last_run_at.astimezone(_UTC) + timedelta(seconds=seconds)).astimezone(last_tz)
            left = (end.astimezone(_UTC) - now.astimezone(_UTC)).total_seconds()
        else:
            return _celery_is_due(sched, last_run_at)
    except (OverflowError, ValueError):
        return _celery_is_due(sched, last_run_at)
    if left <= 0:
        return True, max(seconds, 0)
    return False, left


def _celery_is_due(sched: BaseSchedule, last_run_at: datetime) -> tuple[bool, float]:
    is_due, next_in = sched.is_due(last_run_at)
    return is_due, next_in


_UTC = timezone.utc


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


def parse_interval(spec: Any) -> timedelta:
    """``{"every": 30, "period": "seconds"}`` -> ``timedelta``."""
    if not isinstance(spec, dict):
        raise InvalidDefinition("interval", f'must be an object like {{"every": 30, "period": "seconds"}}, not {_json_type(spec)}')
    every = spec.get("every")
    if not isinstance(every, (int, float)) or isinstance(every, bool) or not every > 0:
        raise InvalidDefinition("interval.every", f"must be a number greater than 0, not {every!r}")
    period = spec.get("period", "seconds")
    if period not in PERIODS:
        raise InvalidDefinition("interval.period", f"unknown period {period!r} (expected one of {', '.join(PERIODS)})")
    try:
        return timedelta(**{period: every})
    except OverflowError:
        raise InvalidDefinition("interval.every", f"{every!r} {period} is too large") from None


def parse_crontab(spec: Any, nowfun: NowFun | None = None, app: Celery | None = None) -> ZonedCrontab:
    """The five crontab fields (strings or numbers) and an optional ``timezone``."""
    if not isinstance(spec, dict):
        raise InvalidDefinition("crontab", f"must be an object with {', '.join(CRON_FIELDS)}, not {_json_type(spec)}")
    fields: dict[str, str] = {}
    for name in CRON_FIELDS:
        value = spec.get(name, "*")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidDefinition(f"crontab.{name}", f"must be a string or an integer, not {_json_type(value)}")
        fields[name] = str(value)
    zone = spec.get("timezone")
    if zone is not None:
        if not isinstance(zone, str) or not zone:
            raise InvalidDefinition("crontab.timezone", "must be an IANA time zone name such as 'Europe/Berlin'")
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidDefinition("crontab.timezone", f"unknown time zone {zone!r}") from None
    for name, value in fields.items():
        try:
            crontab(**{name: value})
        except Exception as exc:  # noqa: BLE001 - Celery raises several types for bad specs
            raise InvalidDefinition(f"crontab.{name}", f"invalid value {value!r}: {exc}") from None
    return ZonedCrontab(nowfun=nowfun, app=app, zone=zone, **fields)


def parse_solar(spec: Any, nowfun: NowFun | None = None, app: Celery | None = None) -> solar:
    """``{"event": "sunset", "latitude": 52.5, "longitude": 13.4}`` -> ``solar``."""
    if not isinstance(spec, dict):
        raise InvalidDefinition("solar", f"must be an object with event, latitude, longitude, not {_json_type(spec)}")
    event = spec.get("event")
    if event not in solar._all_events:
        raise InvalidDefinition("solar.event", f"unknown event {event!r} (expected one of {', '.join(sorted(solar._all_events))})")
    coords = {}
    for name, bound in (("latitude", 90), ("longitude", 180)):
        value = spec.get(name)
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not -bound <= value <= bound:
            raise InvalidDefinition(f"solar.{name}", f"must be a number from -{bound} to {bound}, not {value!r}")
        coords[name] = float(value)
    try:
        return solar(event, coords["latitude"], coords["longitude"], nowfun=nowfun, app=app)
    except ImportError:
        raise InvalidDefinition("solar", "solar schedules need the 'ephem' package: pip install ephem") from None


def parse_clocked(spec: Any) -> datetime:
    """An ISO-8601 time, bare or as ``{"at": "..."}``."""
    value = spec.get("at") if isinstance(spec, dict) else spec
    return parse_date(value, "clocked" if not isinstance(spec, dict) else "clocked.at")


def parse_date(value: Any, field_name: str) -> datetime:
    """An ISO-8601 string or the seed's ``{"__type__": "datetime", ...}`` -> aware datetime (naive = UTC)."""
    if isinstance(value, str):
        try:
            # Python before 3.11 does not read the "Z" suffix.
            parsed = datetime.fromisoformat(value[:-1] + "+00:00" if value[-1:] in ("Z", "z") else value)
        except ValueError:
            raise InvalidDefinition(field_name, f"not an ISO-8601 date and time: {value!r}") from None
    elif isinstance(value, dict) and value.get("__type__") == "datetime":
        try:
            year, month, day, hour, minute, second, micro = (
                int(value.get(k, 0)) for k in ("year", "month", "day", "hour", "minute", "second", "microsecond")
            )
            parsed = datetime(year, month, day, hour, minute, second, micro)
        except (TypeError, ValueError) as exc:
            raise InvalidDefinition(field_name, f"invalid date: {exc}") from None
    else:
        raise InvalidDefinition(field_name, f'must be an ISO-8601 string or {{"__type__": "datetime", ...}}, not {_json_type(value)}')
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def _date_field(doc: Mapping[str, Any], name: str) -> datetime | None:
    value = doc.get(name)
    return None if value is None else parse_date(value, name)


def _bool(doc: Mapping[str, Any], name: str, default: bool) -> bool:
    value = doc.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidDefinition(name, f"must be true or false, not {value!r}")
    return value


def _options(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidDefinition("options", f"must be a JSON object, not {_json_type(value)}")
    options = dict(value)
    for name in MESSAGE_DATE_OPTIONS:
        if isinstance(options.get(name), str):
            options[name] = parse_date(options[name], f"options.{name}")
    if "headers" in options and not isinstance(options["headers"], dict):
        raise InvalidDefinition("options.headers", "must be a JSON object")
    if "priority" in options and (not isinstance(options["priority"], int) or isinstance(options["priority"], bool)):
        raise InvalidDefinition("options.priority", "must be an integer")
    return options


def _json_type(value: Any) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "a number" if isinstance(value, (int, float)) else type(value).__name__


# --- Celery objects -> JSON ---------------------------------------------------


def schedule_to_json(value: Any) -> dict[str, Any]:
    """A Celery schedule (or ``timedelta`` / seconds) -> the definition's schedule members.

    Raises:
        InvalidDefinition: for a schedule type the JSON format cannot express.
    """
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = timedelta(seconds=value)
    if isinstance(value, timedelta):
        return {"interval": interval_to_json(value)}
    if isinstance(value, clocked):
        return {"clocked": value.run_at.isoformat()}
    if isinstance(value, crontab):
        spec: dict[str, Any] = {name: _cron_spec(getattr(value, f"_orig_{name}")) for name in CRON_FIELDS}
        zone = getattr(value, "zone", None)
        if zone:
            spec["timezone"] = zone
        return {"crontab": spec}
    if isinstance(value, solar):
        return {"solar": {"event": value.event, "latitude": value.lat, "longitude": value.lon}}
    if isinstance(value, schedule):
        out: dict[str, Any] = {"interval": interval_to_json(value.run_every)}
        if value.relative:
            out["relative"] = True
        return out
    raise InvalidDefinition("schedule", f"cannot store a schedule of type {type(value).__name__}")


def interval_to_json(delta: timedelta) -> dict[str, Any]:
    """The largest period that expresses ``delta`` exactly."""
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    for period, size in (("days", 86_400_000_000), ("hours", 3_600_000_000), ("minutes", 60_000_000), ("seconds", 1_000_000)):
        if micros % size == 0:
            return {"every": micros // size, "period": period}
    if micros % 1000 == 0:
        return {"every": micros / 1_000_000, "period": "seconds"}
    return {"every": micros, "period": "microseconds"}


def _cron_spec(value: Any) -> str:
    if isinstance(value, (set, frozenset, list, tuple, range)):
        return ",".join(str(v) for v in sorted(value))
    return str(value)


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
