"""The schedule kinds a definition may have: ``interval``, ``crontab``, ``solar``, ``clocked`` (and ``rrule``, in
:mod:`~celerybeatredis.definitions.rrules`).

Each kind is one :class:`~.registry.ScheduleKind` registered in :data:`~.registry.KINDS`:
how its JSON member becomes a Celery schedule, how a Celery schedule becomes
that member, how it reads in ``list`` and ``show``, whether an entry of it
runs once, and the command line flags that write it. Parsing, the API, the
command line and the listings all read the registry, so a new kind is one
:func:`~.registry.register` call.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery import Celery
from celery.schedules import BaseSchedule, crontab, schedstate, schedule, solar

from ..exceptions import InvalidDefinition
from ..storage.wire import aware
from .checks import check_members, is_number, json_type, parse_date, parse_zone
from .registry import KINDS, ZONE_FLAG, Flag, NowFun, ScheduleKind, kind_names, kind_to_json, register
from .timelines import crontab_with_seconds, phased_interval, seconds_crontab

__all__ = ["KINDS", "Flag", "NowFun", "ScheduleKind", "kind_names", "kind_to_json", "register"]

PERIODS = ("days", "hours", "minutes", "seconds", "microseconds")
#: The members of an ``interval``: ``offset`` (in units of its period) and its ``timezone`` give it a phase.
INTERVAL_MEMBERS = ("every", "period", "offset", "timezone")
#: crontab's fields in the order of a cron line: minute hour day-of-month month day-of-week.
CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
#: The members of a ``crontab``: its fields, its zone, and an optional ``second`` (0-59, cron syntax).
CRONTAB_MEMBERS = (*CRON_FIELDS, "timezone", "second")


def _valid(parse: Callable[[Any], Any], spec: Any) -> bool:
    """Whether ``parse`` reads ``spec``: what ``list`` and ``show`` check before they word a schedule, so an entry
    that cannot run is not described as if it could ("every 0 minutes")."""
    try:
        parse(spec)
    except InvalidDefinition:
        return False
    return True



# --- interval ------------------------------------------------------------------------------


def parse_interval(spec: Any) -> timedelta:
    """``{"every": 30, "period": "seconds"}`` -> ``timedelta``."""
    if not isinstance(spec, dict):
        raise InvalidDefinition("interval", f'must be an object like {{"every": 30, "period": "seconds"}}, not {json_type(spec)}')
    check_members(spec, INTERVAL_MEMBERS, "interval")
    every = spec.get("every")
    if not is_number(every) or not every > 0:
        raise InvalidDefinition("interval.every", f"must be a number greater than 0, not {every!r}")
    period = spec.get("period", "seconds")
    if period not in PERIODS:
        raise InvalidDefinition("interval.period", f"unknown period {period!r} (expected one of {', '.join(PERIODS)})")
    try:
        delta = timedelta(**{period: every})
    except OverflowError:
        raise InvalidDefinition("interval.every", f"{every!r} {period} is too large") from None
    offset = spec.get("offset")
    if offset is not None and (not is_number(offset) or not 0 <= offset < every):
        raise InvalidDefinition("interval.offset", f"must be a number from 0 to less than every ({every!r}), not {offset!r}")
    if spec.get("timezone") is not None:
        if offset is None:
            raise InvalidDefinition("interval.timezone", "goes with interval.offset (the zone its phase is read in)")
        parse_zone(spec["timezone"], "interval.timezone")
    return delta


def interval_to_json(delta: timedelta) -> dict[str, Any]:
    """The largest period that expresses ``delta`` exactly."""
    micros = (delta.days * 86400 + delta.seconds) * 1_000_000 + delta.microseconds
    for period, size in (("days", 86_400_000_000), ("hours", 3_600_000_000), ("minutes", 60_000_000), ("seconds", 1_000_000)):
        if micros % size == 0:
            return {"every": micros // size, "period": period}
    if micros % 1000 == 0:
        return {"every": micros / 1_000_000, "period": "seconds"}
    return {"every": micros, "period": "microseconds"}


def _interval_from_celery(value: Any) -> dict[str, Any] | None:
    if isinstance(value, phased_interval):
        return {"interval": dict(value.spec)}
    if is_number(value):
        value = timedelta(seconds=value)
    if isinstance(value, timedelta):
        return {"interval": interval_to_json(value)}
    if isinstance(value, schedule):
        out: dict[str, Any] = {"interval": interval_to_json(value.run_every)}
        if value.relative:
            out["relative"] = True
        return out
    return None


_SINGULAR = {"days": "day", "hours": "hour", "minutes": "minute", "seconds": "second", "microseconds": "microsecond"}


def _describe_interval(spec: Any) -> str:
    if not _valid(parse_interval, spec):
        return "invalid interval"
    period = str(spec.get("period", "seconds"))
    every = "every " + (_SINGULAR.get(period, period) if spec["every"] == 1 else _amount(spec["every"], period))
    if "offset" not in spec:
        return every
    return f"{every}, offset {_amount(spec['offset'], period)}" + (f" ({spec['timezone']})" if spec.get("timezone") else "")


def _amount(number: float, period: str) -> str:
    """``6 hours``, ``0.5 hours``, ``1 hour``."""
    number = int(number) if isinstance(number, float) and number.is_integer() else number
    return f"1 {_SINGULAR.get(period, period)}" if number == 1 else f"{number} {period}"


_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, flag: str = "--every", least: float = 1e-9) -> timedelta:
    """``30s``, ``5m``, ``2h``, ``1d``, ``250ms`` or plain seconds -> timedelta (``--every``, ``--offset``).

    Raises:
        ValueError: naming the flag, for the command line to print.
    """
    found = _DURATION.match(text)
    if not found:
        raise ValueError(f"{flag}: {text!r} is not a duration like 30s, 5m, 2h, 1d")
    unit = found.group(2) or "s"
    seconds = float(found.group(1)) * _UNIT_SECONDS["ms" if unit == "ms" else unit[0]]
    if seconds < least:
        raise ValueError(f"{flag}: {text!r} must be greater than 0")
    return timedelta(seconds=seconds)


register(ScheduleKind(
    name="interval",
    build=lambda spec, relative, nowfun, app: phased_interval.build(spec, parse_interval(spec), relative, nowfun, app),
    from_celery=_interval_from_celery,
    describe=_describe_interval,
    flags=(Flag(name="every", help="Interval: 30s, 5m, 2h, 1d, 250ms."),
           Flag(name="offset", help="Phase of --every: 5h runs a 6h interval at 05:00, 11:00, ... (in --timezone)."),
           ZONE_FLAG),
    from_flags=lambda flags, current: _interval_from_flags(flags, current),
))


def _interval_from_flags(flags: Mapping[str, Any], current: Any) -> dict[str, Any]:
    """``--every`` sets the interval (keeping no offset); ``--offset`` and ``--timezone`` set its phase."""
    spec = dict(current) if isinstance(current, Mapping) else {}
    if flags.get("every"):
        spec = interval_to_json(parse_duration(flags["every"]))
    if flags.get("offset"):
        every = spec.get("every", 1)
        size = parse_interval(spec).total_seconds() / every if is_number(every) and every > 0 else 1.0
        offset = parse_duration(flags["offset"], "--offset", least=0).total_seconds() / size
        spec["offset"] = int(offset) if offset.is_integer() else offset
    if flags.get("timezone"):
        spec["timezone"] = flags["timezone"]
    return spec


# --- crontab -------------------------------------------------------------------------------


class ZonedCrontab(crontab):
    """A crontab evaluated in its own IANA time zone instead of the app's."""

    def __init__(self, *args: Any, zone: str | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.zone = zone

    @property
    def tz(self) -> Any:
        """The entry's own zone, else the app's."""
        return ZoneInfo(self.zone) if self.zone else self.app.timezone


def parse_crontab(spec: Any, nowfun: NowFun | None = None, app: Celery | None = None) -> ZonedCrontab:
    """The five crontab fields (strings or numbers) and an optional ``timezone``."""
    if not isinstance(spec, dict):
        raise InvalidDefinition("crontab", f"must be an object with {', '.join(CRON_FIELDS)}, not {json_type(spec)}")
    check_members(spec, CRONTAB_MEMBERS, "crontab")
    fields: dict[str, str] = {}
    for name in CRON_FIELDS:
        value = spec.get(name, "*")
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise InvalidDefinition(f"crontab.{name}", f"must be a string or an integer, not {json_type(value)}")
        fields[name] = str(value)
    zone = spec.get("timezone")
    if zone is not None:
        parse_zone(zone, "crontab.timezone")
    for name, value in fields.items():
        try:
            crontab(**{name: value})
        except Exception as exc:  # noqa: BLE001 - Celery raises several types for bad specs
            raise InvalidDefinition(f"crontab.{name}", f"invalid value {value!r}: {exc}") from None
    try:
        cron = ZonedCrontab(nowfun=nowfun, app=app, zone=zone, **fields)
    except ValueError as exc:  # the fields together: a day of the month that none of its months has
        day, month = fields["day_of_month"], fields["month_of_year"]
        if "never occurs" in str(exc):
            raise InvalidDefinition("crontab.day_of_month", f"day {day!r} never occurs in month_of_year {month!r}, "
                                    "so the entry would never run") from None
        raise InvalidDefinition("crontab", f"its fields together cannot be used: {exc}") from None
    return cron if spec.get("second") is None else crontab_with_seconds(cron, spec, nowfun, app)


def _cron_spec(value: Any) -> str:
    if isinstance(value, (set, frozenset, list, tuple, range)):
        return ",".join(str(v) for v in sorted(value))
    return str(value)


def _crontab_from_celery(value: Any) -> dict[str, Any] | None:
    if isinstance(value, seconds_crontab):
        return {"crontab": dict(value.spec)}
    if not isinstance(value, crontab):
        return None
    spec: dict[str, Any] = {name: _cron_spec(getattr(value, f"_orig_{name}")) for name in CRON_FIELDS}
    zone = getattr(value, "zone", None)
    if zone:
        spec["timezone"] = zone
    return {"crontab": spec}


_DAYS = {"0": "Sunday", "1": "Monday", "2": "Tuesday", "3": "Wednesday", "4": "Thursday", "5": "Friday",
         "6": "Saturday", "7": "Sunday"}


def _describe_crontab(spec: Any) -> str:
    if not _valid(parse_crontab, spec):
        return "invalid crontab"
    fields = [str(spec.get(n, "*")) for n in CRON_FIELDS]
    minute, hour, dom, month, dow = fields
    zone = f" ({spec['timezone']})" if spec.get("timezone") else ""
    if spec.get("second") is not None:
        return f"cron {spec['second']} {' '.join(fields)}{zone}"
    if dom == month == "*":
        if minute.isdigit() and hour.isdigit():
            at = f"at {int(hour):02d}:{int(minute):02d}"
            if dow == "*":
                return f"daily {at}{zone}"
            if dow in _DAYS:
                return f"{_DAYS[dow]}s {at}{zone}"
        if hour == dow == "*":
            if minute == "*":
                return f"every minute{zone}"
            if minute.isdigit():
                return f"hourly at :{int(minute):02d}{zone}"
            if minute.startswith("*/") and minute[2:].isdigit():
                return f"every {int(minute[2:])} minutes{zone}"
    return f"cron {' '.join(fields)}{zone}"


def _crontab_from_flags(flags: Mapping[str, Any], current: Any) -> dict[str, Any]:
    """``--cron`` sets the five fields and keeps the zone; ``--timezone`` alone changes only the zone."""
    spec = dict(current) if isinstance(current, Mapping) else {}
    if flags.get("cron"):
        parts = str(flags["cron"]).split()
        if len(parts) not in (5, 6):
            raise ValueError(f"--cron: {flags['cron']!r} needs five fields: minute hour day-of-month month day-of-week "
                             "(or six, the second first)")
        seconds = {"second": parts.pop(0)} if len(parts) == 6 else {}
        spec = {**seconds, **dict(zip(CRON_FIELDS, parts)), **({"timezone": spec["timezone"]} if "timezone" in spec else {})}
    if flags.get("timezone"):
        spec["timezone"] = flags["timezone"]
    return spec


register(ScheduleKind(
    name="crontab",
    build=lambda spec, relative, nowfun, app: parse_crontab(spec, nowfun=nowfun, app=app),
    from_celery=_crontab_from_celery,
    describe=_describe_crontab,
    flags=(Flag(name="cron", help="Crontab: 'minute hour day-of-month month day-of-week', e.g. '*/5 * * * *'; six "
                                  "fields: the second first."),
           ZONE_FLAG),
    from_flags=_crontab_from_flags,
))


# --- solar ---------------------------------------------------------------------------------


#: The members of a ``solar``.
SOLAR_MEMBERS = ("event", "latitude", "longitude")


def parse_solar(spec: Any, nowfun: NowFun | None = None, app: Celery | None = None) -> solar:
    """``{"event": "sunset", "latitude": 52.5, "longitude": 13.4}`` -> ``solar``."""
    if not isinstance(spec, dict):
        raise InvalidDefinition("solar", f"must be an object with event, latitude, longitude, not {json_type(spec)}")
    check_members(spec, SOLAR_MEMBERS, "solar")
    event = spec.get("event")
    if event not in solar._all_events:
        raise InvalidDefinition("solar.event", f"unknown event {event!r} (expected one of {', '.join(sorted(solar._all_events))})")
    coords = {}
    for name, bound in (("latitude", 90), ("longitude", 180)):
        value = spec.get(name)
        if not is_number(value) or not -bound <= value <= bound:
            raise InvalidDefinition(f"solar.{name}", f"must be a number from -{bound} to {bound}, not {value!r}")
        coords[name] = float(value)
    try:
        return solar(event, coords["latitude"], coords["longitude"], nowfun=nowfun, app=app)
    except ImportError:
        raise InvalidDefinition("solar", "solar schedules need the 'ephem' package: pip install ephem") from None


def _describe_solar(spec: Any) -> str:
    if not isinstance(spec, Mapping):
        return "?"
    return f"at {spec.get('event')} ({spec.get('latitude')}, {spec.get('longitude')})"


register(ScheduleKind(
    name="solar",
    build=lambda spec, relative, nowfun, app: parse_solar(spec, nowfun=nowfun, app=app),
    from_celery=lambda value: (
        {"solar": {"event": value.event, "latitude": value.lat, "longitude": value.lon}} if isinstance(value, solar) else None
    ),
    describe=_describe_solar,
    flags=(Flag(name="solar", help="Solar event (sunrise, sunset, dawn_civil, ...), with --latitude and --longitude."),
           Flag(name="latitude", help="Latitude of --solar.", number=True),
           Flag(name="longitude", help="Longitude of --solar.", number=True)),
    from_flags=lambda flags, current: {
        **(current if isinstance(current, Mapping) else {}),
        **{key: flags[flag] for key, flag in (("event", "solar"), ("latitude", "latitude"), ("longitude", "longitude"))
           if flags.get(flag) is not None},
    },
))


# --- clocked -------------------------------------------------------------------------------


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


def parse_clocked(spec: Any) -> datetime:
    """An ISO-8601 time, bare or as ``{"at": "..."}``."""
    if isinstance(spec, dict):
        check_members(spec, ("at",), "clocked")
    value = spec.get("at") if isinstance(spec, dict) else spec
    return parse_date(value, "clocked" if not isinstance(spec, dict) else "clocked.at")


def _clocked_from_celery(value: Any) -> dict[str, Any] | None:
    """A ``clocked`` schedule, or a ``datetime`` for one run at that time (naive = UTC)."""
    if isinstance(value, clocked):
        value = value.run_at
    if isinstance(value, datetime):
        return {"clocked": aware(value).isoformat()}
    return None


register(ScheduleKind(
    name="clocked",
    build=lambda spec, relative, nowfun, app: clocked(parse_clocked(spec), nowfun=nowfun, app=app),
    from_celery=_clocked_from_celery,
    describe=lambda spec: f"once at {parse_clocked(spec).isoformat()}" if _valid(parse_clocked, spec) else "invalid clocked",
    runs_once=True,
    flags=(Flag(name="at", help="One run at this ISO-8601 time."),),
    from_flags=lambda flags, current: flags["at"],
))


# The kinds of their own modules, imported here so that whoever reads the kinds finds them registered.
from . import rrules  # noqa: E402, F401
