"""Checks of the JSON values in a definition, each failing with an error that names the field.

The schedule kinds (:mod:`~celerybeatredis.definitions.kinds`) and the optional fields
(:mod:`~celerybeatredis.definitions.fields`) read their values with these, so a wrong type
reads the same wherever it is found.
"""

from __future__ import annotations

import difflib
from collections.abc import Collection, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

if TYPE_CHECKING:
    from typing import TypeGuard

from ..exceptions import InvalidDefinition
from ..storage.wire import aware

#: apply_async options that are times; stored as ISO-8601 strings.
MESSAGE_DATE_OPTIONS = ("eta", "expires")


def json_type(value: Any) -> str:
    """``an object``, ``an array``, ``a string``, ... for error messages."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "a boolean", type(None): "null"}
    for kind, name in names.items():
        if isinstance(value, kind):
            return name
    return "a number" if isinstance(value, (int, float)) else type(value).__name__


def is_number(value: Any) -> TypeGuard[float]:
    """An int or float, never a bool (JSON's true is not 1)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_count(value: Any, least: int = 0) -> TypeGuard[int]:
    """An integer (never a bool) of at least ``least``: a run count, a limit."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= least


def nearest(name: str, known: Collection[str], cutoff: float = 0.6) -> str | None:
    """The known name ``name`` is most likely a misspelling of, if any is this close (0: the closest, however far)."""
    found = difflib.get_close_matches(name, list(known), n=1, cutoff=cutoff)
    return found[0] if found else None


def unknown_member(name: str, known: Collection[str]) -> str:
    """The message for a member nobody reads: ``unknown member (did you mean 'enabled'?)``, else listing ``known``."""
    close = nearest(name, known)
    return f"unknown member (did you mean {close!r}?)" if close is not None else f"unknown member (known: {', '.join(known)})"


def check_members(value: Mapping[str, Any], known: Collection[str], where: str) -> None:
    """Refuse a member of the object ``where`` that is not in ``known``, naming the nearest known one.

    Raises:
        InvalidDefinition: for field ``where.member``.
    """
    for name in value:
        if name not in known:
            raise InvalidDefinition(f"{where}.{name}", unknown_member(str(name), known))


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
        raise InvalidDefinition(field_name, f'must be an ISO-8601 string or {{"__type__": "datetime", ...}}, not {json_type(value)}')
    return aware(parsed)


def parse_bool(value: Any, field_name: str, default: bool) -> bool:
    """``true`` / ``false``; null is the default."""
    if value is None:
        return default
    if not isinstance(value, bool):
        raise InvalidDefinition(field_name, f"must be true or false, not {value!r}")
    return value


def parse_options(value: Any) -> dict[str, Any]:
    """``apply_async`` options; their dates are read, headers and priority checked."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidDefinition("options", f"must be a JSON object, not {json_type(value)}")
    options = dict(value)
    for name in MESSAGE_DATE_OPTIONS:
        if isinstance(options.get(name), str):
            options[name] = parse_date(options[name], f"options.{name}")
    if "headers" in options and not isinstance(options["headers"], dict):
        raise InvalidDefinition("options.headers", "must be a JSON object")
    if "priority" in options and (not isinstance(options["priority"], int) or isinstance(options["priority"], bool)):
        raise InvalidDefinition("options.priority", "must be an integer")
    return options


def parse_zone(value: Any, field_name: str) -> ZoneInfo:
    """An IANA time zone name -> its zone."""
    if not isinstance(value, str) or not value:
        raise InvalidDefinition(field_name, "must be an IANA time zone name such as 'Europe/Berlin'")
    try:
        return ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidDefinition(field_name, f"unknown time zone {value!r}") from None
