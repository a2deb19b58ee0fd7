"""The ``rrule`` schedule kind: an RFC 5545 recurrence rule, expanded by python-dateutil in the entry's own zone.

How a rule's times are found, in its zone and across DST changes, is
:class:`~.timelines.zoned_rrule`'s; here the member is read, checked, written
back, described, and made from flags and from RedBeat's stored rules.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone, tzinfo
from typing import Any

from celery import Celery
from dateutil import rrule as du

from ..exceptions import InvalidDefinition
from .checks import check_members, is_count, json_type, parse_date, parse_zone
from .registry import ZONE_FLAG, Flag, NowFun, ScheduleKind, register
from .timelines import zoned_rrule

__all__ = ["parse_rrule", "rrule_from_redbeat", "zoned_rrule"]

#: The members of an ``rrule`` object (a bare string is its ``rule``).
RRULE_MEMBERS = ("rule", "dtstart", "until", "count", "timezone")
#: The start of a rule without ``dtstart``, in its zone: rules without BYHOUR / BYMINUTE / BYSECOND run at midnight.
DEFAULT_DTSTART = datetime(2000, 1, 1)
_UTC = timezone.utc
_FREQ_NAMES = ("YEARLY", "MONTHLY", "WEEKLY", "DAILY", "HOURLY", "MINUTELY", "SECONDLY")


def rrule_zone(spec: Mapping[str, Any], app: Celery | None) -> tzinfo:
    """The zone a rule is read in: its ``timezone``, else a fixed offset its ``dtstart`` gives, else the app's."""
    zone = spec.get("timezone")
    if zone is not None:
        return parse_zone(zone, "rrule.timezone")
    start = spec.get("dtstart")
    if isinstance(start, str) and _has_offset(start):
        offset = parse_date(start, "rrule.dtstart").utcoffset()
        return timezone(offset) if offset else _UTC
    return app.timezone if app is not None else _UTC


def _has_offset(text: str) -> bool:
    try:
        return datetime.fromisoformat(text[:-1] + "+00:00" if text[-1:] in "Zz" else text).tzinfo is not None
    except ValueError:
        return False


def _wall(spec: Mapping[str, Any], member: str, zone: tzinfo) -> datetime | None:
    """``dtstart`` / ``until`` as a naive wall time of ``zone`` (one without an offset is already one)."""
    value = spec.get(member)
    if value is None:
        return None
    field = f"rrule.{member}"
    if not isinstance(value, str):
        raise InvalidDefinition(field, f"must be an ISO-8601 date and time, not {json_type(value)}")
    if not _has_offset(value):
        return parse_date(value, field).replace(tzinfo=None)
    return parse_date(value, field).astimezone(zone).replace(tzinfo=None)


def parse_rrule(spec: Any, nowfun: NowFun | None = None, app: Celery | None = None) -> zoned_rrule:
    """``{"rule": "FREQ=WEEKLY;BYDAY=MO", "dtstart": ..., "until": ..., "count": ..., "timezone": ...}`` (or the
    rule alone, as a string) -> a schedule.

    ``dtstart`` and ``until`` without an offset are wall times of the zone.
    """
    if isinstance(spec, str):
        spec = {"rule": spec}
    if not isinstance(spec, dict):
        raise InvalidDefinition("rrule", f'must be a rule string or an object like {{"rule": "FREQ=DAILY"}}, not {json_type(spec)}')
    check_members(spec, RRULE_MEMBERS, "rrule")
    text = spec.get("rule")
    if not isinstance(text, str) or not text.strip():
        raise InvalidDefinition("rrule.rule", f"must be an RFC 5545 rule such as 'FREQ=DAILY;BYHOUR=9', not {text!r}")
    body = text.strip()
    if body.upper().startswith("RRULE:"):
        body = body[6:]
    if "\n" in body or "DTSTART" in body.upper():
        raise InvalidDefinition("rrule.rule", "must be one RRULE line; give the start as rrule.dtstart")
    zone = rrule_zone(spec, app)
    start = _wall(spec, "dtstart", zone) or DEFAULT_DTSTART
    until = _wall(spec, "until", zone)
    count = spec.get("count")
    if count is not None and not is_count(count, 1):
        raise InvalidDefinition("rrule.count", f"must be an integer of at least 1, not {count!r}")
    body = _UNTIL_UTC.sub(lambda found: _until_wall(found, zone), body)
    try:
        rule = du.rrulestr(body, dtstart=start, forceset=False)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        raise InvalidDefinition("rrule.rule", f"cannot read {text!r}: {exc or type(exc).__name__}") from None
    if not isinstance(rule, du.rrule):
        raise InvalidDefinition("rrule.rule", "must be one RRULE line")
    if (until is not None or count is not None) and (rule._until is not None or rule._count is not None):
        raise InvalidDefinition("rrule.rule", "gives UNTIL or COUNT already; do not repeat it as rrule.until or rrule.count")
    if until is not None and count is not None:
        raise InvalidDefinition("rrule.count", "give rrule.until or rrule.count, not both")
    if until is not None or count is not None:
        rule = rule.replace(until=until, count=count)
    return zoned_rrule(rule, zone, spec, nowfun=nowfun, app=app)


#: ``UNTIL=20261231T230000Z``: a UTC time (RFC 5545), which dateutil reads only beside a zoned start.
_UNTIL_UTC = re.compile(r"UNTIL=(\d{8}T\d{6})Z", re.IGNORECASE)


def _until_wall(found: re.Match[str], zone: tzinfo) -> str:
    """A UTC ``UNTIL`` as the same instant on the zone's wall clock (the rule's times are wall times)."""
    try:
        moment = datetime.strptime(found.group(1), "%Y%m%dT%H%M%S").replace(tzinfo=_UTC)
    except ValueError:
        raise InvalidDefinition("rrule.rule", f"UNTIL {found.group(1)!r} is not a date and time") from None
    return "UNTIL=" + moment.astimezone(zone).strftime("%Y%m%dT%H%M%S")


def describe_rrule(spec: Any) -> str:
    """``rrule FREQ=WEEKLY;BYDAY=MO (Europe/Berlin), 10 times``: the rule as written, its zone and limit."""
    try:
        parse_rrule(spec)
    except InvalidDefinition:
        return "invalid rrule"
    spec = {"rule": spec} if isinstance(spec, str) else spec
    words = f"rrule {spec['rule'].strip()}"
    if spec.get("dtstart"):
        words += f" from {spec['dtstart']}"
    if spec.get("timezone"):
        words += f" ({spec['timezone']})"
    if spec.get("count") is not None:
        words += f", {spec['count']} times"
    if spec.get("until"):
        words += f", until {spec['until']}"
    return words


def _rrule_from_flags(flags: Mapping[str, Any], current: Any) -> dict[str, Any]:
    """``--rrule`` sets the rule (keeping the zone and start); ``--dtstart`` / ``--timezone`` alone change those."""
    spec = dict(current) if isinstance(current, Mapping) else ({"rule": current} if isinstance(current, str) else {})
    if flags.get("rrule"):
        spec["rule"] = str(flags["rrule"])
    for name in ("dtstart", "timezone"):
        if flags.get(name):
            spec[name] = flags[name]
    return spec


def rrule_from_redbeat(spec: Mapping[str, Any]) -> dict[str, Any]:
    """RedBeat's stored rrule (dateutil's arguments, ``dtstart`` / ``until`` as Unix seconds with their offset in
    minutes) -> the ``rrule`` member: the same rule, read at the same fixed offset."""
    freq = spec.get("freq")
    if not is_count(freq) or freq >= len(_FREQ_NAMES):
        raise InvalidDefinition("schedule.freq", f"must be a dateutil frequency from 0 to 6, not {freq!r}")
    parts = [f"FREQ={_FREQ_NAMES[freq]}"]
    names = {"interval": "INTERVAL", "wkst": "WKST", "bysetpos": "BYSETPOS", "bymonth": "BYMONTH",
             "bymonthday": "BYMONTHDAY", "byyearday": "BYYEARDAY", "byeaster": "BYEASTER", "byweekno": "BYWEEKNO",
             "byweekday": "BYDAY", "byhour": "BYHOUR", "byminute": "BYMINUTE", "bysecond": "BYSECOND"}
    for member, name in names.items():
        value = spec.get(member)
        if value is None or value == [] or (member == "interval" and value == 1):
            continue
        values = value if isinstance(value, list) else [value]
        try:
            words = [_day(v) if member in ("byweekday", "wkst") else str(int(v)) for v in values]
        except (TypeError, ValueError, KeyError, IndexError):
            raise InvalidDefinition(f"schedule.{member}", f"cannot read {value!r}") from None
        parts.append(f"{name}={','.join(words)}")
    out: dict[str, Any] = {"rule": ";".join(parts)}
    for member in ("dtstart", "until"):
        stamp = spec.get(member)
        if stamp is None:
            continue
        minutes = spec.get(f"{member}_tz") or 0
        if not isinstance(stamp, (int, float)) or not isinstance(minutes, (int, float)):
            raise InvalidDefinition(f"schedule.{member}", f"must be Unix seconds, not {stamp!r}")
        out[member] = datetime.fromtimestamp(stamp, timezone(timedelta(minutes=minutes))).isoformat()
    if spec.get("count") is not None:
        out["count"] = spec["count"]
    parse_rrule(out)  # refused here, naming the field, rather than at beat
    return out


_DAY_NAMES = ("MO", "TU", "WE", "TH", "FR", "SA", "SU")


def _day(value: Any) -> str:
    """A dateutil weekday as RedBeat stores it (an index, or ``{"__type__": "weekday", "wkday": 0, "n": ...}``)."""
    if isinstance(value, dict):
        n = value.get("n")
        return f"{int(n) if n else ''}{_DAY_NAMES[int(value['wkday'])]}"
    return _DAY_NAMES[int(value)]


register(ScheduleKind(
    name="rrule",
    build=lambda spec, relative, nowfun, app: parse_rrule(spec, nowfun=nowfun, app=app),
    from_celery=lambda value: {"rrule": dict(value.spec)} if isinstance(value, zoned_rrule) else None,
    describe=describe_rrule,
    flags=(Flag(name="rrule", help="RFC 5545 rule: 'FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0', with --dtstart "
                                   "and --timezone."),
           Flag(name="dtstart", help="Start of --rrule (ISO-8601; without an offset, a wall time of its zone)."),
           ZONE_FLAG),
    from_flags=_rrule_from_flags,
))
