"""The command line: ``celerybeatredis ...`` and ``celery -A proj schedule ...``.

Both run the same commands. The standalone script takes ``--url``,
``--prefix``, ``--shards`` and ``--cluster`` (or ``CELERYBEATREDIS_URL``,
``_PREFIX``, ``_SHARDS``, ``_CLUSTER``); the Celery plugin reads the app's
scheduler settings. Exit codes: 0 ok, 1 a user error (one line on stderr),
2 a usage error.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from fnmatch import fnmatchcase
from typing import IO, Any, TypeVar

import click
import redis
from celery import Celery

from . import __version__
from . import migrate as migration
from .codec import interval_to_json
from .connection import make_client, parse_url
from .demo import demo_command
from .display import LIST_HEADERS, describe_schedule, last_run, list_row, next_run, size, table
from .entries import FIELDS, Entry, apply_changes
from .exceptions import CeleryBeatRedisError, EntryExists, EntryNotFound, InvalidDefinition
from .settings import DEFAULT_PREFIX, DEFAULT_URL, Settings, mask_url
from .sharded_store import ShardedStore
from .shards import reshard
from .store import ScheduleStore
from .transfer import BadLine, ImportResult, Record, export_lines, import_batch, parse_lines

F = TypeVar("F", bound=Callable[..., Any])

#: Runs at least this long get a progress bar.
PROGRESS_FROM = 2000
CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
STATUSES = ("scheduled", "pending", "run-now", "disabled", "finished", "invalid")


@dataclass
class Context:
    """Where the commands find the schedule."""

    url: str
    prefix: str
    app: Celery | None = None
    redis_options: dict[str, Any] = field(default_factory=dict)
    shards: int = 1
    cluster: bool = False
    _store: ScheduleStore | None = None

    @property
    def store(self) -> ScheduleStore:
        """The schedule's store (connected on first use)."""
        if self._store is None:
            self._store = ScheduleStore.from_url(self.url, self.prefix, self.app, shards=self.shards,
                                                 cluster=self.cluster, **self.redis_options)
        return self._store


class ManageGroup(click.Group):
    """Turns the package's errors and Redis errors into one-line messages with exit code 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (CeleryBeatRedisError, InvalidDefinition, EntryNotFound) as exc:
            raise click.ClickException(str(exc)) from None
        except redis.ConnectionError as exc:
            obj = ctx.find_object(Context)
            where = f" at {mask_url(obj.url)}" if obj else ""
            raise click.ClickException(f"cannot reach Redis{where}: {exc}") from None
        except redis.RedisError as exc:
            raise click.ClickException(f"Redis error: {exc}") from None


def _check_url(url: str, cluster: bool) -> str:
    """A URL the client can be made from; else one line naming ``--url`` (a user error, exit 1)."""
    try:
        parse_url(url, cluster)
    except ValueError as exc:
        raise click.ClickException(f"--url {mask_url(url)}: {str(exc).removeprefix('redis_scheduler_url: ')}") from None
    return url


def _check_prefix(prefix: str) -> str:
    try:
        Settings(key_prefix=prefix).validate()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--prefix") from None
    return prefix


@click.group(cls=ManageGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--url", envvar="CELERYBEATREDIS_URL", default=DEFAULT_URL, show_default=True,
              help="Redis URL of the schedule [env CELERYBEATREDIS_URL].")
@click.option("--prefix", envvar="CELERYBEATREDIS_PREFIX", default=DEFAULT_PREFIX, show_default=True,
              help="Key prefix of the schedule [env CELERYBEATREDIS_PREFIX].")
@click.option("--shards", envvar="CELERYBEATREDIS_SHARDS", type=click.IntRange(min=1), default=1, show_default=True,
              help="Shards the schedule is spread over, as redis_scheduler_shards [env CELERYBEATREDIS_SHARDS].")
@click.option("--cluster", envvar="CELERYBEATREDIS_CLUSTER", is_flag=True,
              help="The redis:// URL names a Redis Cluster node, as redis_scheduler_cluster [env CELERYBEATREDIS_CLUSTER].")
@click.version_option(__version__, prog_name="celerybeatredis")
@click.pass_context
def main(ctx: click.Context, url: str, prefix: str, shards: int, cluster: bool) -> None:
    """Manage a celerybeat-redis schedule."""
    ctx.obj = Context(_check_url(url, cluster), _check_prefix(prefix), shards=shards, cluster=cluster)


@click.group("schedule", cls=ManageGroup)
@click.option("--url", default=None, help="Redis URL (default: the app's redis_scheduler_url).")
@click.option("--prefix", default=None, help="Key prefix (default: the app's redis_scheduler_key_prefix).")
@click.pass_context
def celery_command(ctx: click.Context, url: str | None, prefix: str | None) -> None:
    """Manage the app's celerybeat-redis schedule."""
    app = getattr(ctx.obj, "app", None)
    if app is None:
        raise click.UsageError("no Celery app; run it as: celery -A proj schedule ...")
    try:
        settings = Settings.from_app(app)
    except ValueError as exc:
        raise click.ClickException(f"the app's settings: {exc}") from None
    ctx.obj = Context(_check_url(url, settings.cluster) if url else settings.url, _check_prefix(prefix or settings.key_prefix), app,
                      dict(settings.redis_options or {}), settings.shards, settings.cluster)


pass_context = click.make_pass_decorator(Context)


def json_option(func: F) -> F:
    """``--json``: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


# --- reading ------------------------------------------------------------------------------


@click.command("list")
@click.option("--match", help="Only names matching this glob (Redis MATCH syntax, e.g. 'report-*').")
@click.option("--task", "task_glob", help="Only entries whose task matches this glob.")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES), help="Only entries with this status.")
@click.option("--enabled/--disabled", "enabled", default=None, help="Only enabled (or disabled) entries.")
@click.option("--static/--dynamic", "static", default=None, help="Only entries from beat_schedule (or the others).")
@click.option("--upcoming", is_flag=True, help="Soonest first, from the due index (leaves out entries that never run).")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True, help="Most entries shown; 0 for all.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_context
def list_command(obj: Context, match: str | None, task_glob: str | None, statuses: tuple[str, ...], enabled: bool | None,
                 static: bool | None, upcoming: bool, limit: int, as_json: bool) -> None:
    """List entries with their schedule, next and last run."""
    store = obj.store

    def wanted(entry: Entry) -> bool:
        return ((task_glob is None or fnmatchcase(entry.task, task_glob))
                and (not statuses or entry.status in statuses)
                and (enabled is None or entry.enabled is enabled)
                and (static is None or entry.static is static)
                and (not upcoming or match is None or fnmatchcase(entry.name, match)))

    source = _upcoming(store) if upcoming else store.iter_entries(match)
    now = _now(store)
    shown, more = 0, False
    rows: list[list[str]] = []
    for entry in source:
        if not wanted(entry):
            continue
        if limit and shown >= limit:
            more = True
            break
        shown += 1
        if as_json:
            click.echo(_dumps(entry.to_json()))
            continue
        rows.append(list_row(entry, now))
        if len(rows) >= 500:
            click.echo(table(LIST_HEADERS, rows))
            rows = []
    if as_json:
        return
    if rows or not shown:
        click.echo(table(LIST_HEADERS, rows))
    note = "; more match: use --limit 0 or a filter" if more else ""
    click.echo(f"{shown} shown of {store.count()} entries{note}")


def _upcoming(store: ScheduleStore, page: int = 500) -> Iterator[Entry]:
    offset = 0
    while True:
        entries = store.upcoming(page, offset)
        yield from entries
        if len(entries) < page:
            return
        offset += page


@click.command("show")
@click.argument("name")
@json_option
@pass_context
def show_command(obj: Context, name: str, as_json: bool) -> None:
    """Show one entry: definition, run state, next run, problems."""
    entry = obj.store.get(name)
    if as_json:
        click.echo(_dumps(entry.to_json()))
        return
    now = _now(obj.store)
    fields = [
        ("name", entry.name),
        ("task", entry.task or "?"),
        ("schedule", describe_schedule(entry.definition)),
        ("enabled", "yes" if entry.enabled else "no"),
        ("status", entry.status),
        ("next run", next_run(entry, now)),
        ("last run", last_run(entry, now)),
        ("runs", str(entry.total_run_count)),
        ("origin", "beat_schedule (static)" if entry.static else "dynamic"),
    ]
    if entry.invalid_reason:
        fields.append(("invalid", entry.invalid_reason))
    for label, value in fields:
        click.echo(f"{label + ':':<10} {value}")
    body = json.dumps(entry.definition, indent=2, ensure_ascii=False) if entry.definition is not None else entry.raw
    click.echo("definition:")
    click.echo("\n".join("  " + line for line in body.splitlines()))


@click.command("invalid")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True, help="Most entries shown; 0 for all.")
@json_option
@pass_context
def invalid_command(obj: Context, limit: int, as_json: bool) -> None:
    """List quarantined entries and why beat rejected them."""
    rows: list[list[str]] = []
    cursor, more = 0, False
    while True:
        page = obj.store.invalid(cursor, 500)
        for item in page.items:
            if limit and len(rows) >= limit:
                more = True
                break
            rows.append([item.name, item.reason])
            if as_json:
                click.echo(_dumps({"name": item.name, "reason": item.reason}))
        if more or page.done:
            break
        cursor = page.cursor
    if as_json:
        return
    if rows:
        click.echo(table(["NAME", "REASON"], rows))
    click.echo(f"{len(rows)} invalid entries{' shown; more exist: use --limit 0' if more else ''}")


@click.command("stats")
@click.option("--no-scan", is_flag=True, help="Skip reading every definition (no count of enabled entries).")
@click.option("--overdue-after", type=float, default=60.0, show_default=True, help="Seconds late that count as overdue.")
@json_option
@pass_context
def stats_command(obj: Context, no_scan: bool, overdue_after: float, as_json: bool) -> None:
    """Counts, health and Redis memory of the schedule."""
    stats = obj.store.stats(scan=not no_scan, overdue_after=overdue_after)
    if as_json:
        click.echo(_dumps(stats.to_json()))
        return
    enabled = "(not counted: --no-scan)" if stats.enabled is None else str(stats.enabled)
    lines = [
        ("schedule", f"{obj.store.tags} at {mask_url(obj.url)}"),
        ("entries", str(stats.entries)),
        ("enabled", enabled),
        ("scheduled", f"{stats.scheduled} (with a next run time)"),
        ("never", f"{stats.never} (disabled, finished or invalid)"),
        ("due now", f"{stats.due_now} (of which {stats.pending} new, edited or run-now)"),
        ("overdue", f"{stats.overdue} (more than {overdue_after:g}s late)"),
        ("invalid", str(stats.invalid)),
        ("memory", f"{size(stats.memory_total)} (Redis MEMORY USAGE estimate, all keys of the schedule)"),
    ]
    for label, value in lines:
        click.echo(f"{label + ':':<11} {value}")


# --- writing ------------------------------------------------------------------------------

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|sec|secs|seconds?|m|min|mins|minutes?|h|hours?|d|days?)?\s*$")
_UNIT_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """``30s``, ``5m``, ``2h``, ``1d``, ``250ms`` or plain seconds -> timedelta."""
    found = _DURATION.match(text)
    if not found:
        raise click.ClickException(f"--every: {text!r} is not a duration like 30s, 5m, 2h, 1d")
    unit = (found.group(2) or "s")
    unit = "ms" if unit == "ms" else unit[0]
    seconds = float(found.group(1)) * _UNIT_SECONDS[unit]
    if seconds <= 0:
        raise click.ClickException(f"--every: {text!r} must be greater than 0")
    return timedelta(seconds=seconds)


def _json_arg(value: str | None, option: str) -> Any:
    if value is None:
        return None
    text = _read_text_arg(value)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise click.ClickException(f"{option}: not valid JSON: {exc.msg} at column {exc.colno}") from None


def _read_text_arg(value: str) -> str:
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


def definition_options(func: F) -> F:
    """The options ``add`` and ``edit`` share."""
    options = [
        click.option("--task", help="Task name, e.g. tasks.add."),
        click.option("--every", help="Interval: 30s, 5m, 2h, 1d, 250ms."),
        click.option("--cron", help="Crontab: 'minute hour day-of-month month day-of-week', e.g. '*/5 * * * *'."),
        click.option("--timezone", "cron_zone", help="IANA time zone of --cron (default: the app's)."),
        click.option("--at", "at", help="One run at this ISO-8601 time."),
        click.option("--solar", help="Solar event (sunrise, sunset, dawn_civil, ...), with --latitude and --longitude."),
        click.option("--latitude", type=float),
        click.option("--longitude", type=float),
        click.option("--args", "args_json", help="Positional arguments as a JSON array."),
        click.option("--kwargs", "kwargs_json", help="Keyword arguments as a JSON object."),
        click.option("--options", "options_json", help="apply_async options as a JSON object."),
        click.option("--queue", help="Queue to send to (sets options.queue)."),
        click.option("--description", help="Free text."),
        click.option("--max-runs", type=click.IntRange(min=1), help="Stop after this many runs."),
        click.option("--one-off/--no-one-off", default=None, help="Run once, then stop."),
        click.option("--relative/--no-relative", default=None, help="Interval relative to beat's start (Celery's relative)."),
        click.option("--start-time", help="Do not run before this ISO-8601 time."),
        click.option("--expires", help="Do not run after this ISO-8601 time."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _changes(flags: dict[str, Any], current: dict[str, Any] | None = None) -> dict[str, Any]:
    """The definition fields the shared flags set; on an edit (``current``), nothing they do not name changes."""
    changes: dict[str, Any] = {}
    kinds = [k for k in ("every", "cron", "at", "solar") if flags.get(k)]
    if len(kinds) > 1:
        raise click.UsageError(f"give one schedule, not --{' and --'.join(kinds)}")
    current = current or {}
    current_cron = current.get("crontab") if isinstance(current.get("crontab"), dict) else None
    if flags.get("cron_zone") and not flags.get("cron") and current_cron is None:
        raise click.UsageError("--timezone goes with --cron (or edits the time zone of a crontab entry)")
    if flags.get("every"):
        changes["schedule"] = {"interval": interval_to_json(parse_duration(flags["every"]))}
    elif flags.get("cron") or flags.get("cron_zone"):
        spec = dict(current_cron or {})
        if flags.get("cron"):
            parts = flags["cron"].split()
            if len(parts) != 5:
                raise click.ClickException(
                    f"--cron: {flags['cron']!r} needs five fields: minute hour day-of-month month day-of-week")
            spec = {**dict(zip(CRON_FIELDS, parts)), **({"timezone": spec["timezone"]} if "timezone" in spec else {})}
        if flags.get("cron_zone"):
            spec["timezone"] = flags["cron_zone"]
        changes["schedule"] = {"crontab": spec}
    elif flags.get("at"):
        changes["schedule"] = {"clocked": flags["at"]}
    elif flags.get("solar"):
        changes["schedule"] = {"solar": {"event": flags["solar"], "latitude": flags.get("latitude"),
                                         "longitude": flags.get("longitude")}}
    if flags.get("task"):
        changes["task"] = flags["task"]
    for flag, name in (("args_json", "args"), ("kwargs_json", "kwargs"), ("options_json", "options")):
        value = _json_arg(flags.get(flag), "--" + name)
        if value is not None:
            changes[name] = value
    if flags.get("queue"):
        options = changes.get("options", current.get("options") or {})
        changes["options"] = {**(options if isinstance(options, dict) else {}), "queue": flags["queue"]}
    for flag, name in (("description", "description"), ("max_runs", "max_run_count"), ("one_off", "one_off"),
                       ("relative", "relative"), ("start_time", "start_time"), ("expires", "expires")):
        if flags.get(flag) is not None:
            changes[name] = flags[flag]
    return changes


@click.command("add")
@click.argument("name")
@definition_options
@click.option("--disabled", is_flag=True, help="Add it disabled.")
@click.option("--json", "definition_json", help="The whole definition as JSON ('-' reads stdin, '@file' a file).")
@click.option("--replace", is_flag=True, help="Replace an existing entry of that name (its run state is kept).")
@pass_context
def add_command(obj: Context, name: str, disabled: bool, definition_json: str | None, replace: bool, **flags: Any) -> None:
    """Add an entry (flags, or --json with the whole definition)."""
    store = obj.store
    if definition_json is not None:
        if any(v not in (None, False) for v in flags.values()):
            raise click.UsageError("give --json or definition flags, not both")
        doc = _json_arg(definition_json, "--json")
        if not isinstance(doc, dict):
            raise click.ClickException("--json: the definition must be a JSON object")
    else:
        changes = _changes(flags)
        if "task" not in changes:
            raise click.UsageError("--task is required (or give --json)")
        if "schedule" not in changes:
            raise click.UsageError("a schedule is required: --every, --cron, --at or --solar")
        doc = apply_changes({"enabled": True}, changes)
    if disabled:
        doc["enabled"] = False
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
@pass_context
def edit_command(obj: Context, name: str, definition_json: str | None, sets: tuple[str, ...], unsets: tuple[str, ...],
                 **flags: Any) -> None:
    """Change an entry: with flags, --set/--unset, --json, or in $EDITOR when none is given."""
    store = obj.store
    entry = store.get(name)
    has_flags = any(v not in (None, False) for v in flags.values())
    if definition_json is not None:
        if has_flags or sets or unsets:
            raise click.UsageError("give --json or field changes, not both")
        doc = _json_arg(definition_json, "--json")
        if not isinstance(doc, dict):
            raise click.ClickException("--json: the definition must be a JSON object")
        changed = store.replace(name, doc)
    elif has_flags or sets or unsets:
        changes = _changes(flags, entry.definition)
        for item in sets:
            field_name, sep, value = item.partition("=")
            if not sep or not field_name:
                raise click.BadParameter(f"{item!r} is not FIELD=JSON", param_hint="--set")
            changes[field_name] = _json_arg(value, f"--set {field_name}")
        for field_name in unsets:
            changes[field_name] = None
        changed = _update(store, name, changes)
    else:
        changed = _edit_in_editor(store, entry)
    click.echo(f"updated {name}" if changed else f"{name} unchanged")


def _update(store: ScheduleStore, name: str, changes: dict[str, Any]) -> bool:
    """``update`` that also takes fields the keyword form does not know (users' own fields)."""
    known = {k: v for k, v in changes.items() if k in ("task", "schedule") or k in FIELDS}
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


def _edit_in_editor(store: ScheduleStore, entry: Entry) -> bool:
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
    return store.replace(entry.name, doc)


def _existing(store: ScheduleStore, names: tuple[str, ...], missing_ok: bool = False) -> list[str]:
    found = store.find(list(names))
    missing = [n for n, e in zip(names, found) if e is None]
    if missing and not missing_ok:
        raise EntryNotFound(missing[0]) if len(missing) == 1 else click.ClickException(
            f"no entries named {', '.join(repr(n) for n in missing)}; nothing changed")
    return [n for n, e in zip(names, found) if e is not None]


@click.command("remove")
@click.argument("names", nargs=-1, required=True)
@click.option("--missing-ok", is_flag=True, help="Do not fail on names that do not exist.")
@pass_context
def remove_command(obj: Context, names: tuple[str, ...], missing_ok: bool) -> None:
    """Remove entries and their run state."""
    existing = _existing(obj.store, names, missing_ok)
    removed = obj.store.bulk_remove(existing)
    click.echo(f"removed {removed} {'entry' if removed == 1 else 'entries'}")


@click.command("enable")
@click.argument("names", nargs=-1, required=True)
@pass_context
def enable_command(obj: Context, names: tuple[str, ...]) -> None:
    """Enable entries (only their 'enabled' field changes)."""
    for name in _existing(obj.store, names):
        click.echo(f"enabled {name}" if obj.store.enable(name) else f"{name} was already enabled")


@click.command("disable")
@click.argument("names", nargs=-1, required=True)
@pass_context
def disable_command(obj: Context, names: tuple[str, ...]) -> None:
    """Disable entries (only their 'enabled' field changes)."""
    for name in _existing(obj.store, names):
        click.echo(f"disabled {name}" if obj.store.disable(name) else f"{name} was already disabled")


@click.command("run-now")
@click.argument("names", nargs=-1, required=True)
@pass_context
def run_now_command(obj: Context, names: tuple[str, ...]) -> None:
    """Have beat send entries at once (counts as a run)."""
    existing = _existing(obj.store, names)
    obj.store.run_now_names(existing)
    for name in existing:
        click.echo(f"{name} runs within a second (if a beat is running)")


# --- moving schedules -----------------------------------------------------------------------


@contextmanager
def _progress(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """A click progress bar on stderr for long runs; a no-op for short ones."""
    if length < PROGRESS_FROM:
        yield lambda n: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


@click.command("export")
@click.argument("file", type=click.File("w", encoding="utf-8", lazy=True), default="-")
@click.option("--match", help="Only names matching this glob (Redis MATCH syntax).")
@pass_context
def export_command(obj: Context, file: IO[str], match: str | None) -> None:
    """Write entries as JSON lines to FILE ('-' for stdout, the default)."""
    store = obj.store
    total = store.count()
    written = 0
    with _progress(total if file is not sys.stdout else 0, "exporting") as advance:
        for line in export_lines(store, match):
            file.write(line + "\n")
            written += 1
            advance(1)
    file.flush()
    click.echo(f"exported {written} entries", err=True)


@click.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--skip-invalid", is_flag=True, help="Import the valid lines and report the others (default: import nothing).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True)
@pass_context
def import_command(obj: Context, file: IO[str], skip_invalid: bool, batch_size: int) -> None:
    """Add or update entries from JSON lines in FILE ('-' for stdin); safe to repeat."""
    store = obj.store
    with _seekable(file) as source:
        problems: list[BadLine] = []
        total = 0
        for item in parse_lines(store, source):
            if isinstance(item, BadLine):
                problems.append(item)
            else:
                total += 1
        if problems and not skip_invalid:
            more = f" (and {len(problems) - 1} more bad lines)" if len(problems) > 1 else ""
            raise click.ClickException(f"{problems[0]}{more}; nothing imported (--skip-invalid imports the rest)")
        source.seek(0)
        result = ImportResult()
        batch: list[Record] = []
        with _progress(total, "importing") as advance:
            for item in parse_lines(store, source):
                if isinstance(item, BadLine):
                    continue
                batch.append(item)
                if len(batch) >= batch_size:
                    import_batch(store, batch, result)
                    advance(len(batch))
                    batch = []
            if batch:
                import_batch(store, batch, result)
                advance(len(batch))
    for problem in problems:
        click.echo(f"skipped {problem}", err=True)
    for name in result.skipped:
        click.echo(f"skipped {name!r}: a dynamic entry of that name exists (the line is a beat_schedule entry)", err=True)
    click.echo(f"imported {result.entries - len(result.skipped)} entries: {result.written} added or changed, "
               f"{result.unchanged} unchanged, {result.restored} run states restored"
               + (f", {len(problems)} bad lines skipped" if problems else ""))


@contextmanager
def _seekable(file: IO[str]) -> Iterator[IO[str]]:
    """The file itself if it can be read twice, else a spooled copy (stdin)."""
    if file.seekable():
        yield file
        return
    with tempfile.TemporaryFile("w+", encoding="utf-8") as copy:
        shutil.copyfileobj(file, copy)
        copy.seek(0)
        yield copy


@click.command("migrate")
@click.option("--from", "kind", required=True, type=click.Choice(migration.SOURCES), help="The tool the schedule comes from.")
@click.option("--prefix", "old_prefix", help="Its key prefix (default: tasks:meta: for celerybeat-redis, redbeat: for RedBeat).")
@click.option("--source-url", help="Redis URL of the old schedule (default: the same Redis).")
@click.option("--dry-run", is_flag=True, help="Read and check everything, write nothing.")
@click.option("--delete-old", is_flag=True, help="Delete the old keys once their entries are migrated.")
@click.option("--skip-invalid", is_flag=True, help="Migrate the valid entries and report the others (default: migrate nothing).")
@pass_context
def migrate_command(obj: Context, kind: str, old_prefix: str | None, source_url: str | None, dry_run: bool,
                    delete_old: bool, skip_invalid: bool) -> None:
    """Copy a schedule over from the old celerybeat-redis or from RedBeat, with run state."""
    store = obj.store
    if dry_run and delete_old:
        raise click.UsageError("--dry-run and --delete-old do not go together")
    client = make_client(source_url) if source_url else store.client
    statics = frozenset((obj.app.conf.beat_schedule or {}) if obj.app is not None else ())
    source = migration.make_source(kind, client, old_prefix, statics)
    found = migration.plan(source, store)
    where = old_prefix or migration.DEFAULT_PREFIXES[kind]
    if not found.keys_seen:
        raise click.ClickException(f"no {kind} entries under {where!r}{' at ' + mask_url(source_url) if source_url else ''}")
    if found.problems and not skip_invalid and not dry_run:
        more = f" (and {len(found.problems) - 1} more)" if len(found.problems) > 1 else ""
        raise click.ClickException(f"{found.problems[0]}{more}; nothing migrated (--skip-invalid migrates the rest)")
    stale = sum(len(keys) for keys in found.stale_keys.values())
    click.echo(f"found {found.entries} {kind} entries in {found.keys_seen} keys under {where!r}"
               + (f" ({stale} older copies)" if stale else "")
               + (f", {len(found.problems)} invalid" if found.problems else ""))
    for problem in found.problems:
        click.echo(f"{'invalid' if dry_run else 'skipped'} {problem}", err=True)
    if dry_run:
        click.echo("dry run: nothing written")
        return
    with _progress(found.entries, "migrating") as advance:
        result = migration.migrate(source, store, found, delete_old=delete_old, progress=advance)
    for problem in result.problems:
        click.echo(f"skipped {problem}", err=True)
    for name in result.skipped:
        click.echo(f"skipped {name!r}: a dynamic entry of that name exists", err=True)
    click.echo(f"migrated {result.migrated} entries: {result.written} added or changed, {result.unchanged} unchanged, "
               f"{result.restored} run states restored"
               + (f", {result.vanished} gone since the first pass" if result.vanished else ""))
    if delete_old:
        click.echo(f"deleted {result.deleted_keys} old keys")
    else:
        click.echo("old keys kept (--delete-old removes them)")


@click.command("reshard")
@click.option("--to", "shards", required=True, type=click.IntRange(min=1), help="The new number of shards.")
@click.option("--from", "from_shards", type=click.IntRange(min=1),
              help="The current number of shards (default: the one recorded in Redis, else 1).")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True)
@pass_context
def reshard_command(obj: Context, shards: int, from_shards: int | None, batch_size: int) -> None:
    """Move every entry, with its run state, to its shard under a new shard count; safe to repeat."""
    store = obj.store
    before = from_shards or store.recorded_shards() or 1
    total = ShardedStore(store.client, obj.prefix, before).count()
    with _progress(total, "resharding") as advance:
        done = [0]

        def moved_so_far(count: int) -> None:
            advance(count - done[0])
            done[0] = count

        report = reshard(store.client, obj.prefix, shards, before, batch_size, moved_so_far)
    click.echo(report.summary)
    click.echo(f"run beat (and these commands) with redis_scheduler_shards = {shards}")


# --- helpers ---------------------------------------------------------------------------------

def _now(store: ScheduleStore) -> datetime:
    return datetime.fromtimestamp(store.server_time(), timezone.utc)


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


#: The commands both entry points share.
COMMANDS = [list_command, show_command, add_command, edit_command, remove_command, enable_command, disable_command,
            run_now_command, invalid_command, stats_command, import_command, export_command, migrate_command,
            reshard_command]
for _command in COMMANDS:
    main.add_command(_command)
    celery_command.add_command(_command)
main.add_command(demo_command)
