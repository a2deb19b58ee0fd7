"""Definition documents as people give them: built from a task and a Python schedule, changed field by field, or
written from the ``add`` / ``edit`` flags (and the dashboard's forms, which hold the same values).

Nothing here reads Redis or checks a whole definition: the codec
(:mod:`.codec`) does that, and every door calls it before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Union

from celery.schedules import BaseSchedule

from ..exceptions import CeleryBeatRedisError, InvalidDefinition
from ..storage.wire import aware
from .codec import load_document, schedule_to_json
from .fields import FIELDS, USER_FIELDS
from .kinds import KINDS, ScheduleKind

#: What ``add`` accepts as a schedule: a Celery schedule, a ``timedelta`` or seconds,
#: a ``datetime`` (one run at that time), or the JSON form ``{"crontab": {...}}``.
ScheduleLike = Union[BaseSchedule, timedelta, int, float, datetime, Mapping[str, Any]]


class BadFlags(CeleryBeatRedisError):
    """Flags (or form fields) that cannot make a definition; ``usage`` when they contradict each other (the command
    line then shows its usage), else a value that does not read. The message names the flag."""

    def __init__(self, message: str, usage: bool = False) -> None:
        super().__init__(message)
        self.usage = usage


def build_definition(task: str, schedule: ScheduleLike, **fields: Any) -> dict[str, Any]:
    """A definition document from a task name, a schedule and optional fields.

    Raises:
        InvalidDefinition: for an unknown field or a schedule the JSON format cannot hold.
    """
    doc: dict[str, Any] = {"task": task, "enabled": True}
    doc.update(schedule_document(schedule))
    for name, value in fields.items():
        if name not in USER_FIELDS:
            raise InvalidDefinition(name, f"is not a definition field (known: {', '.join(USER_FIELDS)})")
        if value is not None:
            doc[name] = json_value(value)
    return doc


def schedule_document(schedule: ScheduleLike) -> dict[str, Any]:
    """The schedule members of a definition (``{"interval": {...}}``, ...) for any accepted form."""
    if isinstance(schedule, Mapping):
        kinds = [k for k in KINDS if schedule.get(k) is not None]
        extra = sorted(set(schedule) - set(KINDS) - {"relative"})
        if len(kinds) != 1 or extra:
            raise InvalidDefinition(
                "schedule", f"a schedule given as a dict needs exactly one of {', '.join(KINDS)}"
                + (f" and nothing else (found {', '.join(extra)})" if extra else ""),
            )
        return {k: json_value(v) for k, v in schedule.items()}
    return schedule_to_json(schedule)


def apply_changes(doc: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``doc`` with ``changes`` applied; ``schedule`` replaces the schedule kind, None drops a field.

    Raises:
        InvalidDefinition: for an unknown field name.
    """
    out = dict(doc)
    for name, value in changes.items():
        if name == "schedule":
            for kind in (*KINDS, "relative"):
                out.pop(kind, None)
            out.update(schedule_document(value))
        elif name == "task":
            out["task"] = value
        elif name not in USER_FIELDS:
            raise InvalidDefinition(name, f"is not a definition field (known: task, schedule, {', '.join(USER_FIELDS)})")
        elif value is None:
            out.pop(name, None)
        else:
            out[name] = json_value(value)
    return out


def decode(raw: bytes | str) -> tuple[str, dict[str, Any] | None]:
    """``(text, document)`` of a stored definition; the document is None if it is not a JSON object."""
    text = raw.decode("utf-8", errors="replace") if isinstance(raw, bytes) else raw
    try:
        doc = load_document(text)
    except InvalidDefinition:
        return text, None
    return text, doc if isinstance(doc, dict) else None


def json_value(value: Any) -> Any:
    """Python values as the JSON they are stored as: dates as ISO-8601, tuples and sets as arrays."""
    if isinstance(value, datetime):
        return aware(value).isoformat()
    if isinstance(value, Mapping):
        return {str(k): json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [json_value(v) for v in value]
    return value


def changes_from_flags(flags: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The definition fields the flags set (a ``json`` flag's value already decoded); on an edit (``current``),
    nothing they do not name changes.

    Raises:
        BadFlags: naming the flag.
    """
    current = current or {}
    changes: dict[str, Any] = {}
    kind = _chosen_kind(flags, current)
    if kind is not None and kind.from_flags is not None:
        try:
            changes["schedule"] = {kind.name: kind.from_flags(flags, current.get(kind.name))}
        except ValueError as exc:
            raise BadFlags(str(exc)) from None
    if flags.get("task"):
        changes["task"] = flags["task"]
    for definition_field in FIELDS:
        value = flags.get(definition_field.name)
        if definition_field.flag and value is not None:
            changes[definition_field.name] = value
    if flags.get("queue"):
        options = changes.get("options", current.get("options") or {})
        changes["options"] = {**(options if isinstance(options, dict) else {}), "queue": flags["queue"]}
    return changes


def _chosen_kind(flags: Mapping[str, Any], current: Mapping[str, Any]) -> ScheduleKind | None:
    """The kind the flags write: one whose first flag is given, or, editing, the current one refined."""
    chosen = [k for k in KINDS.values() if k.flags and flags.get(k.flags[0].name) not in (None, "")]
    if len(chosen) > 1:
        raise BadFlags(f"give one schedule, not --{' and --'.join(k.flags[0].name for k in chosen)}", usage=True)
    if chosen:
        return chosen[0]
    refined = [k for k in KINDS.values() if any(flags.get(f.name) not in (None, "") for f in k.flags[1:])]
    for kind in refined:  # a flag two kinds share (--timezone) refines the one the entry has
        if current.get(kind.name) is not None:
            return kind
    if refined:
        flag = next(f.name for f in refined[0].flags[1:] if flags.get(f.name) not in (None, ""))
        kinds = [k for k in refined if any(f.name == flag for f in k.flags[1:])]
        raise BadFlags(f"--{flag} goes with {' or '.join('--' + k.flags[0].name for k in kinds)} (or edits an entry's "
                       f"{' or '.join(k.name for k in kinds)})", usage=True)
    return None


