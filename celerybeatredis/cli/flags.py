"""The ``add`` / ``edit`` flags, made from the tables of schedule kinds and definition fields.

A kind's first flag chooses it (``--every``, ``--cron``, ``--at``, ``--solar``);
its other flags refine it (``--timezone``). Each field with a flag in
:data:`~celerybeatredis.fields.FIELDS` becomes an option of its kind of text.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..fields import FIELDS, DefinitionField
from ..kinds import KINDS, Flag, ScheduleKind

F = TypeVar("F", bound=Callable[..., Any])


def definition_options(func: F) -> F:
    """Decorate a command with every kind's and every field's flag, plus ``--task`` and ``--queue``."""
    options = [click.option("--task", help="Task name, e.g. tasks.add.")]
    seen: set[str] = set()
    for kind in KINDS.values():
        for flag in kind.flags:
            if flag.name not in seen:
                seen.add(flag.name)
                options.append(_kind_option(flag))
    for definition_field in FIELDS:
        if definition_field.flag:
            options.append(_field_option(definition_field))
    options.append(click.option("--queue", help="Queue to send to (sets options.queue)."))
    for option in reversed(options):
        func = option(func)
    return func


def changes_from_flags(flags: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The definition fields the flags set; on an edit (``current``), nothing they do not name changes."""
    current = current or {}
    changes: dict[str, Any] = {}
    kind = _chosen_kind(flags, current)
    if kind is not None and kind.from_flags is not None:
        try:
            changes["schedule"] = {kind.name: kind.from_flags(flags, current.get(kind.name))}
        except ValueError as exc:
            raise click.ClickException(str(exc)) from None
    if flags.get("task"):
        changes["task"] = flags["task"]
    for definition_field in FIELDS:
        value = flags.get(definition_field.name)
        if definition_field.flag and value is not None:
            changes[definition_field.name] = (
                json_arg(value, definition_field.flag) if definition_field.flag_kind == "json" else value
            )
    if flags.get("queue"):
        options = changes.get("options", current.get("options") or {})
        changes["options"] = {**(options if isinstance(options, dict) else {}), "queue": flags["queue"]}
    return changes


def json_arg(value: str | None, option: str) -> Any:
    """An option's JSON text (``-`` reads stdin, ``@path`` a file); a one-line error naming the option."""
    if value is None:
        return None
    text = read_text_arg(value)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{option}: not valid JSON: {exc.msg} at column {exc.colno}") from None


def read_text_arg(value: str) -> str:
    """``-`` reads stdin, ``@path`` reads a file, anything else is the text itself."""
    if value == "-":
        return sys.stdin.read()
    if value.startswith("@"):
        try:
            with open(value[1:], encoding="utf-8") as fh:
                return fh.read()
        except OSError as exc:
            raise click.ClickException(f"cannot read {value[1:]}: {exc.strerror}") from None
    return value


def _chosen_kind(flags: dict[str, Any], current: dict[str, Any]) -> ScheduleKind | None:
    """The kind the flags write: one whose first flag is given, or, editing, the current one refined."""
    chosen = [k for k in KINDS.values() if k.flags and flags.get(k.flags[0].name) not in (None, "")]
    if len(chosen) > 1:
        raise click.UsageError(f"give one schedule, not --{' and --'.join(k.flags[0].name for k in chosen)}")
    if chosen:
        return chosen[0]
    for kind in KINDS.values():
        refining = [f.name for f in kind.flags[1:] if flags.get(f.name) not in (None, "")]
        if refining and current.get(kind.name) is None:
            raise click.UsageError(f"--{refining[0]} goes with --{kind.flags[0].name} (or edits an entry's {kind.name})")
        if refining:
            return kind
    return None


def _kind_option(flag: Flag) -> Callable[[F], F]:
    return click.option(f"--{flag.name}", flag.name, type=float if flag.number else None, help=flag.help)


def _field_option(definition_field: DefinitionField) -> Callable[[F], F]:
    flag, name, help_text = definition_field.flag, definition_field.name, definition_field.help
    assert flag is not None
    if definition_field.flag_kind == "toggle":
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)
    if definition_field.flag_kind == "count":
        return click.option(flag, name, type=click.IntRange(min=1), help=help_text)
    return click.option(flag, name, help=help_text)
