"""Commands that change entries: add, edit, remove, enable, disable, pause, resume, run-now."""

from __future__ import annotations

import json
import shlex
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import click

from ..definitions.documents import apply_changes
from ..definitions.fields import USER_FIELDS
from ..exceptions import EntryChanged, EntryExists, EntryNotFound
from ..managing.display import describe_schedule
from ..managing.records import Entry
from ..store import ScheduleStore
from .base import Context, pass_context
from .flags import definition_options, flag_changes, json_arg
from .unregistered import allow_unregistered_option, check_task


@click.command("add")
@click.argument("name")
@definition_options
@click.option("--disabled", is_flag=True, help="Add it disabled.")
@click.option("--json", "definition_json", help="The whole definition as JSON ('-' reads stdin, '@file' a file).")
@click.option("--replace", is_flag=True, help="Replace an existing entry of that name (its run state is kept).")
@allow_unregistered_option
@pass_context
def add_command(obj: Context, name: str, disabled: bool, definition_json: str | None, replace: bool,
                allow_unregistered: bool, **flags: Any) -> None:
    """Add an entry (flags, or --json with the whole definition)."""
    store = obj.store
    if definition_json is not None:
        if any(v not in (None, False) for v in flags.values()):
            raise click.UsageError("give --json or definition flags, not both")
        doc = json_arg(definition_json, "--json")
        if not isinstance(doc, dict):
            raise click.ClickException("--json: the definition must be a JSON object")
    else:
        changes = flag_changes(flags)
        if "task" not in changes:
            raise click.UsageError("--task is required (or give --json)")
        if "schedule" not in changes:
            raise click.UsageError("a schedule is required: --every, --cron, --rrule, --at or --solar")
        doc = apply_changes({"enabled": True}, changes)
    if disabled:
        doc["enabled"] = False
    check_task(obj, name, doc.get("task"), allow_unregistered)
    try:
        store.add(name, doc, replace=replace)
    except EntryExists:
        raise click.ClickException(f"entry {name!r} exists; use --replace, or edit to change it") from None
    click.echo(f"{'saved' if replace else 'added'} {name}: {describe_schedule(doc)}")


@click.command("edit")
@click.argument("name")
@definition_options
@click.option("--json", "definition_json", help="Replace the whole definition with this JSON ('-' stdin, '@file').")
@click.option("--set", "sets", multiple=True, metavar="FIELD=JSON", help="Set a field to a JSON value (repeatable).")
@click.option("--unset", "unsets", multiple=True, metavar="FIELD", help="Drop an optional field (repeatable).")
@allow_unregistered_option
@pass_context
def edit_command(obj: Context, name: str, definition_json: str | None, sets: tuple[str, ...], unsets: tuple[str, ...],
                 allow_unregistered: bool, **flags: Any) -> None:
    """Change an entry: with flags, --set/--unset, --json, or in $EDITOR when none is given."""
    store = obj.store
    entry = store.get(name)
    has_flags = any(v not in (None, False) for v in flags.values())
    if definition_json is not None:
        if has_flags or sets or unsets:
            raise click.UsageError("give --json or field changes, not both")
        doc = json_arg(definition_json, "--json")
        if not isinstance(doc, dict):
            raise click.ClickException("--json: the definition must be a JSON object")
        check_task(obj, name, doc.get("task"), allow_unregistered, entry.task)
        changed = store.replace(name, doc)
    elif has_flags or sets or unsets:
        changes = flag_changes(flags, entry.definition)
        for item in sets:
            field_name, sep, value = item.partition("=")
            if not sep or not field_name:
                raise click.BadParameter(f"{item!r} is not FIELD=JSON", param_hint="--set")
            changes[field_name] = json_arg(value, f"--set {field_name}")
        for field_name in unsets:
            changes[field_name] = None
        check_task(obj, name, changes.get("task", entry.task), allow_unregistered, entry.task)
        changed = _update(store, name, changes)
    else:
        if not sys.stdin.isatty():
            raise click.ClickException(f"edit {name}: no terminal for $EDITOR; give the changes as flags, --set/--unset "
                                       "or --json")
        changed = _edit_in_editor(store, entry, lambda doc: check_task(obj, name, doc.get("task"), allow_unregistered,
                                                                       entry.task))
    click.echo(f"updated {name}" if changed else f"{name} unchanged")
    if changed and entry.static:
        _static_note([name])


def _update(store: ScheduleStore, name: str, changes: dict[str, Any]) -> bool:
    """``update`` that also takes members the keyword form does not know (the user's own, starting with ``_``)."""
    known = {k: v for k, v in changes.items() if k in ("task", "schedule") or k in USER_FIELDS}
    extra = {k: v for k, v in changes.items() if k not in known}
    if not extra:
        return store.update(name, **known)
    entry = store.get(name)
    if entry.definition is None:
        raise click.ClickException(f"entry {name!r}: the stored definition is not a JSON object; replace it with --json")
    doc = apply_changes(entry.definition, known)
    for key, value in extra.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return store.replace(name, doc)


def _edit_in_editor(store: ScheduleStore, entry: Entry, check: Callable[[dict[str, Any]], None]) -> bool:
    """The definition edited in $EDITOR, written only if the entry is still as it was when the editor opened."""
    text = json.dumps(entry.definition, indent=2, ensure_ascii=False) if entry.definition is not None else entry.raw
    edited = click.edit(text + "\n", extension=".json", require_save=True)
    if edited is None or edited.strip() == text.strip():
        return False
    try:
        doc = json.loads(edited)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}; nothing changed") from None
    if not isinstance(doc, dict):
        raise click.ClickException("the definition must be a JSON object; nothing changed")
    check(doc)
    try:
        return store.replace(entry.name, doc, expected=entry.version)
    except EntryChanged:
        with tempfile.NamedTemporaryFile("w", encoding="utf-8", prefix="celerybeatredis-edit-", suffix=".json",
                                         delete=False) as kept:
            kept.write(edited)
        raise click.ClickException(f"entry {entry.name!r} changed since the editor opened; nothing written; your text "
                                   f"is in {kept.name} (celerybeatredis show {shlex.quote(entry.name)} shows the entry now)") from None


def _existing(store: ScheduleStore, names: tuple[str, ...], missing_ok: bool = False, changes: bool = True) -> list[str]:
    """The names that exist (else one line naming the schedule); ``changes``: a note on those beat puts back."""
    found = store.find(list(names))
    missing = [n for n, e in zip(names, found) if e is None]
    if missing and not missing_ok:
        obj = click.get_current_context().find_object(Context)
        where = f" in {obj.where}; {obj.elsewhere}" if obj else ""
        raise EntryNotFound(missing[0]) if len(missing) == 1 else click.ClickException(
            f"no entries named {', '.join(repr(n) for n in missing)}{where}; nothing changed")
    if changes:
        _static_note([e.name for e in found if e is not None and e.static])
    return [n for n, e in zip(names, found) if e is not None]


def _static_note(names: list[str]) -> None:
    """One line on stderr: a change to a ``beat_schedule`` entry lasts until beat next starts and syncs it."""
    if names:
        which = f"{names[0]} comes" if len(names) == 1 else f"{', '.join(names)} come"
        click.echo(f"note: {which} from beat_schedule: the next beat start puts the code's version back "
                   "(change beat_schedule to keep it)", err=True)


@click.command("remove")
@click.argument("names", nargs=-1, required=True)
@click.option("--missing-ok", is_flag=True, help="Do not fail on names that do not exist.")
@pass_context
def remove_command(obj: Context, names: tuple[str, ...], missing_ok: bool) -> None:
    """Remove entries and their run state."""
    existing = _existing(obj.store, names, missing_ok)
    removed = obj.store.bulk_remove(existing)
    click.echo(f"removed {removed} {'entry' if removed == 1 else 'entries'}")


def _switch_command(enabled: bool) -> click.Command:
    """``enable`` or ``disable``: the same command, writing only the ``enabled`` field."""
    word = "enabled" if enabled else "disabled"

    @click.command("enable" if enabled else "disable", help=f"{'Enable' if enabled else 'Disable'} entries "
                   "(only their 'enabled' field changes).")
    @click.argument("names", nargs=-1, required=True)
    @pass_context
    def switch(obj: Context, names: tuple[str, ...]) -> None:
        store = obj.store
        for name in _existing(store, names):
            changed = store.enable(name) if enabled else store.disable(name)
            click.echo(f"{word} {name}" if changed else f"{name} was already {word}")

    return switch


enable_command = _switch_command(True)
disable_command = _switch_command(False)


@click.command("run-now")
@click.argument("names", nargs=-1, required=True)
@pass_context
def run_now_command(obj: Context, names: tuple[str, ...]) -> None:
    """Have beat send entries at once (counts as a run)."""
    existing = _existing(obj.store, names, changes=False)
    obj.store.run_now_names(existing)
    for name in existing:
        click.echo(f"{name} runs within a second (if a beat is running)")


@click.command("pause")
@click.argument("names", nargs=-1, required=True)
@click.option("--reason", required=True, help="Why, shown by list and show and in the history of skipped runs.")
@click.option("--by", help="Who pauses (default: user@host).")
@pass_context
def pause_command(obj: Context, names: tuple[str, ...], reason: str, by: str | None) -> None:
    """Pause entries: beat skips their runs (recorded in history) until resume; 'enabled' is left alone."""
    store = obj.store
    for name in _existing(store, names):
        store.pause(name, reason, by)
        click.echo(f"paused {name}: {reason}")


@click.command("resume")
@click.argument("names", nargs=-1, required=True)
@pass_context
def resume_command(obj: Context, names: tuple[str, ...]) -> None:
    """Resume paused entries: beat sends their runs again from their next due time."""
    store = obj.store
    for name in _existing(store, names):
        click.echo(f"resumed {name}" if store.resume(name) else f"{name} was not paused")
