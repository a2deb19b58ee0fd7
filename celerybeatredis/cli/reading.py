"""Commands that read the schedule: list, show, next, invalid, stats."""

from __future__ import annotations

import json
from collections.abc import Iterator
from fnmatch import fnmatchcase

import click

from ..definitions.fields import FIELDS
from ..definitions.labels import matches, parse_pairs
from ..definitions.labels import shown as labels_shown
from ..definitions.names import shown_name
from ..managing.display import (
    LIST_HEADERS,
    describe_schedule,
    last_run,
    list_row,
    next_run,
    outcome_fields,
    paused,
    relative,
    result_text,
    size,
    table,
    why_never,
)
from ..managing.records import Entry
from ..settings import mask_url
from ..store import ScheduleStore
from .base import Context, dumps, json_option, pass_context, server_now
from .unregistered import task_problem

STATUSES = ("scheduled", "pending", "run-now", "paused", "disabled", "finished", "invalid")


@click.command("list")
@click.option("--match", help="Only names matching this glob (Redis MATCH syntax, e.g. 'report-*').")
@click.option("--task", "task_glob", help="Only entries whose task matches this glob.")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES), help="Only entries with this status.")
@click.option("--enabled/--disabled", "enabled", default=None, help="Only enabled (or disabled) entries.")
@click.option("--static/--dynamic", "static", default=None, help="Only entries from beat_schedule (or the others).")
@click.option("--label", "label_pairs", multiple=True, metavar="KEY=VALUE",
              help="Only entries with this label (repeatable: all of them).")
@click.option("--upcoming", is_flag=True, help="Soonest first, from the due index (leaves out entries that never run).")
@click.option("--failing", is_flag=True, help="Only entries whose last reported run failed or was lost (needs "
              "celerybeatredis.worker; reads each entry's history).")
@click.option("--limit", type=click.IntRange(min=0), default=100, show_default=True, help="Most entries shown; 0 for all.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@pass_context
def list_command(obj: Context, match: str | None, task_glob: str | None, statuses: tuple[str, ...], enabled: bool | None,
                 static: bool | None, label_pairs: tuple[str, ...], upcoming: bool, failing: bool, limit: int,
                 as_json: bool) -> None:
    """List entries with their schedule, next and last run."""
    store = obj.store
    try:
        selector = parse_pairs(label_pairs)
    except ValueError as exc:
        raise click.BadParameter(str(exc).removeprefix("--label: "), param_hint="--label") from None

    def wanted(entry: Entry) -> bool:
        return ((task_glob is None or fnmatchcase(entry.task, task_glob))
                and (not statuses or entry.status in statuses)
                and (enabled is None or entry.enabled is enabled)
                and (static is None or entry.static is static)
                and (not upcoming or matches(entry.definition, selector))
                and (not upcoming or match is None or fnmatchcase(entry.name, match))
                and (not failing or store.history(entry.name).failing))

    source = _upcoming(store) if upcoming else store.iter_entries(match, labels=selector)
    now = server_now(store)
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
            click.echo(dumps(entry.to_json()))
            continue
        rows.append(list_row(entry, now))
        if len(rows) >= 500:
            click.echo(table(LIST_HEADERS, rows))
            rows = []
    if as_json:
        return
    if rows or not shown:
        click.echo(table(LIST_HEADERS, rows))
    total = store.count()
    note = "; more match: use --limit 0 or a filter" if more else ""
    if not total:
        note = f": {obj.where} holds no entries; {obj.elsewhere}"
    click.echo(f"{shown} shown of {total} entries{note}")


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
    task_warning = task_problem(obj, entry.task)
    if as_json:
        click.echo(dumps({**entry.to_json(), **({"task_warning": task_warning} if task_warning else {})}))
        return
    now = server_now(obj.store)
    fields = [
        ("name", shown_name(entry.name)),
        ("task", entry.task or "?"),
        ("schedule", describe_schedule(entry.definition)),
        ("enabled", "yes" if entry.enabled else "no"),
        *([("paused", pause)] if (pause := paused(entry)) else []),
        ("status", entry.status),
        *([("warning", f"field 'task': {task_warning}")] if task_warning else []),
        ("next run", next_run(entry, now)),
        ("last run", last_run(entry, now)),
        ("runs", str(entry.total_run_count)),
        *outcome_fields(obj.store.history(name)),
        ("origin", "beat_schedule (static)" if entry.static else "dynamic"),
    ]
    doc = entry.definition or {}
    fields += [(f.label, _shown(doc[f.name])) for f in FIELDS if f.label and doc.get(f.name) not in (None, False, "")]
    if entry.invalid_reason:
        fields.append(("invalid", entry.invalid_reason))
    never = why_never(entry, now)
    if never and not entry.invalid_reason:
        fields.append(("why never", never))
    for label, value in fields:
        click.echo(f"{label + ':':<10} {value}")
    body = json.dumps(entry.definition, indent=2, ensure_ascii=False) if entry.definition is not None else entry.raw
    click.echo("definition:")
    click.echo("\n".join("  " + line for line in body.splitlines()))


def _shown(value: object) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return labels_shown(value)
    return "yes" if value is True else str(value)


@click.command("next")
@click.argument("name")
@click.option("-n", "--count", type=click.IntRange(1, 1000), default=10, show_default=True, help="How many times.")
@json_option
@pass_context
def next_command(obj: Context, name: str, count: int, as_json: bool) -> None:
    """When an entry runs next, by beat's own arithmetic; times a limit rules out are marked."""
    now = server_now(obj.store)
    times = obj.store.next_runs(name, count, now.timestamp())
    if as_json:
        for fire in times:
            click.echo(dumps({"name": name, **fire.to_json()}))
        return
    rows = [[str(t.run) if t.run is not None else "-", t.at.isoformat(timespec="seconds"), relative(t.at, now).ljust(11),  # a steady width
             f"ruled out by {t.ruled_out}" if t.ruled_out else ""] for t in times]
    if rows:
        click.echo(table(["RUN", "AT (UTC)", "WHEN", "NOTE"], rows))
    else:
        click.echo(f"{name} never runs again")


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
                click.echo(dumps({"name": item.name, "reason": item.reason}))
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
        click.echo(dumps(stats.to_json()))
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


@click.command("history")
@click.argument("name")
@click.option("-n", "count", type=click.IntRange(min=1), default=20, show_default=True, help="Most runs shown, newest first.")
@json_option
@pass_context
def history_command(obj: Context, name: str, count: int, as_json: bool) -> None:
    """Show an entry's last runs (sent, skipped, missed, publish errors) with their task ids, and its counters."""
    history = obj.store.history(name, count)
    if as_json:
        click.echo(dumps(history.to_json()))
        return
    rows = [[run.sent_at.isoformat(timespec="milliseconds"), f"{run.lateness:.3f}s", run.outcome, result_text(run),
             run.task_id or "-"] for run in history.runs]
    click.echo(table(["SENT (UTC)", "LATE", "OUTCOME", "RESULT", "TASK ID"], rows))
    note = "" if history.readable else "; the stored history did not read in full (beat starts it afresh)"
    click.echo(f"{history.sent} sent, {history.skipped} skipped, {history.missed} missed{note}")
