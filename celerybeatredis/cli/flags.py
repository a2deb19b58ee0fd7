"""The ``add`` / ``edit`` flags, made from the tables of schedule kinds and definition fields.

A kind's first flag chooses it (``--every``, ``--cron``, ``--rrule``, ``--at``, ``--solar``);
its other flags refine it (``--timezone``). Each field with a flag in
:data:`~celerybeatredis.definitions.fields.FIELDS` becomes an option of its kind of text. What the flags
make of a definition is :func:`~celerybeatredis.definitions.documents.changes_from_flags`' (the dashboard's
forms use it too); here they are read as the command line reads them.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..definitions.documents import BadFlags, changes_from_flags
from ..definitions.fields import FIELDS, DefinitionField
from ..definitions.kinds import KINDS, Flag
from ..definitions.labels import edited, parse_pairs

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
    options.append(click.option("--unlabel", "unlabel", multiple=True, metavar="KEY", callback=_none_if_empty,
                                help="Drop this label (repeatable)."))
    options.append(click.option("--queue", help="Queue to send to (sets options.queue)."))
    for option in reversed(options):
        func = option(func)
    return func


def flag_changes(flags: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The definition changes the command's flags ask for, a JSON flag's text read first (``-``: stdin, ``@path``:
    a file); a mistake is the command line's one-line error (a usage error for flags that contradict each other)."""
    decoded = dict(flags)
    dropping = decoded.pop("unlabel", None) or ()
    for definition_field in FIELDS:
        given = flags.get(definition_field.name)
        if definition_field.flag and definition_field.flag_kind == "json" and given is not None:
            decoded[definition_field.name] = json_arg(given, definition_field.flag)
        elif definition_field.flag_kind == "pairs" and (given or dropping):
            try:
                setting = parse_pairs(given or (), definition_field.flag or definition_field.name)
            except ValueError as exc:
                raise click.ClickException(str(exc)) from None
            decoded[definition_field.name] = edited(current, setting, dropping)
    try:
        changes = changes_from_flags(decoded, current)
    except BadFlags as exc:
        raise (click.UsageError if exc.usage else click.ClickException)(str(exc)) from None
    if changes.get("labels") == {}:  # the last label dropped: the member goes
        changes["labels"] = None
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


def _kind_option(flag: Flag) -> Callable[[F], F]:
    return click.option(f"--{flag.name}", flag.name, type=float if flag.number else None, help=flag.help)


def _field_option(definition_field: DefinitionField) -> Callable[[F], F]:
    flag, name, help_text = definition_field.flag, definition_field.name, definition_field.help
    assert flag is not None
    if definition_field.flag_kind == "toggle":
        return click.option(f"{flag}/--no-{flag[2:]}", name, default=None, help=help_text)
    if definition_field.flag_kind == "count":
        return click.option(flag, name, type=click.IntRange(min=1), help=help_text)
    if definition_field.flag_kind == "pairs":
        return click.option(flag, name, multiple=True, metavar="KEY=VALUE", callback=_none_if_empty, help=help_text)
    return click.option(flag, name, help=help_text)


def _none_if_empty(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[str, ...] | None:
    """A repeatable option given no time reads as None, as an option not given does."""
    return value or None
