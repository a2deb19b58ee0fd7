"""Definitions from the dashboard's forms, read by the command line's own rules and messages.

A form holds what the ``add`` / ``edit`` flags hold (a kind and its flags,
``task``, the fields of :data:`~celerybeatredis.definitions.fields.FIELDS`), so it is
turned into a definition by the same code, and a mistake reads as it does at
the command line. JSON fields are read here, never from a file or stdin as
the command line's ``@file`` and ``-`` would.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from ..decisions.firetimes import FireTime, fire_times
from ..definitions.documents import BadFlags, apply_changes, changes_from_flags
from ..definitions.fields import FIELDS
from ..definitions.kinds import KINDS
from ..definitions.labels import parse_pairs, split_pairs
from ..exceptions import CeleryBeatRedisError, InvalidDefinition
from ..settings import Settings
from ..storage.wire import Claimed
from ..store import ScheduleStore

#: Fields the form offers (the user-set ones with a flag), in the order shown.
FORM_FIELDS = tuple(f for f in FIELDS if f.flag and f.user)


class FormError(CeleryBeatRedisError):
    """A form's values are not a valid definition; the message is the command line's."""


def kind_flags() -> dict[str, list[tuple[str, str, bool]]]:
    """Each kind's inputs: ``{kind: [(flag name, help, is a number)]}``, for the form."""
    return {name: [(f.name, f.help, f.number) for f in kind.flags] for name, kind in KINDS.items() if kind.flags}


def _json_field(name: str, text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormError(f"--{name}: not valid JSON: {exc.msg} at column {exc.colno}") from None


def changes_from_form(form: Mapping[str, str], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The definition changes a form asks for (every field of it, as the ``add`` / ``edit`` flags would set them).

    Raises:
        FormError: with the command line's message for the same flags.
    """
    kind_name = form.get("kind", "")
    flags: dict[str, Any] = {}
    kind = KINDS.get(kind_name)
    if kind is not None:
        for flag in kind.flags:
            text = form.get(flag.name, "").strip()
            if not text:
                continue
            if flag.number:
                try:
                    flags[flag.name] = float(text)
                except ValueError:
                    raise FormError(f"--{flag.name}: {text!r} is not a number") from None
            else:
                flags[flag.name] = text
    if form.get("task", "").strip():
        flags["task"] = form["task"].strip()
    flags["queue"] = form.get("queue", "").strip() or None
    json_values: dict[str, Any] = {}
    for definition_field in FORM_FIELDS:
        text = form.get(definition_field.name, "").strip()
        if definition_field.flag_kind == "toggle":
            flags[definition_field.name] = True if definition_field.name in form else None  # unchecked: the default
        elif definition_field.flag_kind == "json":
            if text:
                json_values[definition_field.name] = _json_field(definition_field.name, text)
        elif definition_field.flag_kind == "count":
            if text:
                if not text.isdigit() or int(text) < 1:
                    raise FormError(f"--{definition_field.name.replace('_', '-')}: {text!r} is not a positive integer")
                flags[definition_field.name] = int(text)
        elif definition_field.flag_kind == "pairs":
            if text:
                try:
                    flags[definition_field.name] = parse_pairs(split_pairs(text), definition_field.name)
                except ValueError as exc:
                    raise FormError(str(exc)) from None
        elif text:
            flags[definition_field.name] = text
    try:
        changes = changes_from_flags(flags, current)
    except BadFlags as exc:
        raise FormError(str(exc)) from None
    changes.update(json_values)
    if current is not None:  # an edit: a field left empty is dropped, as the form shows every one
        for definition_field in FORM_FIELDS:
            if definition_field.name not in changes:
                changes[definition_field.name] = None
    return changes


def definition_from_form(form: Mapping[str, str], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The whole definition a form describes (on an edit, ``current`` with the form's changes).

    Raises:
        FormError / InvalidDefinition: with the command line's message.
    """
    changes = changes_from_form(form, current)
    if current is None:
        if "task" not in changes:
            raise FormError("--task is required (or give --json)")
        if "schedule" not in changes:
            raise FormError("a schedule is required: --every, --cron, --rrule, --at or --solar")
    doc = apply_changes({"enabled": True} if current is None else current, changes)
    doc["enabled"] = "enabled" in form
    return doc


def definition_from_json(text: str) -> dict[str, Any]:
    """A definition from the JSON editor's text.

    Raises:
        FormError: not JSON, or not an object (the command line's messages).
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormError(f"--json: not valid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(doc, dict):
        raise FormError("--json: the definition must be a JSON object")
    return doc


def check_allowed(settings: Settings, name: str, doc: Mapping[str, Any]) -> None:
    """Refuse a task beat would quarantine, with beat's message, before anything is written."""
    task = doc.get("task")
    if isinstance(task, str) and not settings.task_allowed(task):
        raise InvalidDefinition("task", f"{task!r} is not in redis_scheduler_task_allowlist", name)


def preview(store: ScheduleStore, name: str, doc: dict[str, Any], now: float, count: int = 5) -> list[FireTime]:
    """The next ``count`` fire times of a definition not stored yet (as a new entry would have them).

    Raises:
        InvalidDefinition / CeleryBeatRedisError: why it would not run.
    """
    name = name or "new-entry"
    entry = Claimed(name=name, score=0.0, definition=store.validate(name, doc).encode())
    return fire_times(entry, store.codec.app, now, count)
