"""Commands that move schedules: export, import, migrate from other tools, reshard."""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO

import click

from ..managing.records import BulkResult
from ..moving import migrate as migration
from ..moving.reshard import reshard
from ..moving.transfer import (
    BadLine,
    CalendarRecord,
    Record,
    calendar_lines,
    export_lines,
    import_batch,
    import_calendar,
    missing_note,
    parse_lines,
)
from ..settings import mask_url
from ..storage.connection import make_client
from ..storage.sharded_store import ShardedStore
from .base import Context, pass_context, progress


@click.command("export")
@click.argument("file", type=click.File("w", encoding="utf-8", lazy=True), default="-")
@click.option("--match", help="Only names matching this glob (Redis MATCH syntax).")
@pass_context
def export_command(obj: Context, file: IO[str], match: str | None) -> None:
    """Write calendars, then entries, as JSON lines to FILE ('-' for stdout, the default)."""
    store = obj.store
    total = store.count()
    calendars = calendar_lines(store)
    for line in calendars:
        file.write(line + "\n")
    written = 0
    with progress(total if file is not sys.stdout else 0, "exporting") as advance:
        for line in export_lines(store, match):
            file.write(line + "\n")
            written += 1
            advance(1)
    file.flush()
    empty = f": {obj.where} holds no entries; {obj.elsewhere}" if not total and not calendars else ""
    click.echo(f"exported {written} entries" + (f" and {len(calendars)} calendars" if calendars else "") + empty, err=True)


@click.command("import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--skip-invalid", is_flag=True, help="Import the valid lines and report the others (default: import nothing).")
@click.option("--batch-size", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Entries written to Redis per call (each call writes its entries with their run state).")
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
            elif isinstance(item, Record):
                total += 1
        if problems and not skip_invalid:
            more = f" (and {len(problems) - 1} more bad lines)" if len(problems) > 1 else ""
            raise click.ClickException(f"{problems[0]}{more}; nothing imported (--skip-invalid imports the rest)")
        source.seek(0)
        result = BulkResult()
        batch: list[Record] = []
        with progress(total, "importing") as advance:
            for item in parse_lines(store, source):
                if isinstance(item, BadLine):
                    continue
                if isinstance(item, CalendarRecord):  # before the entries after it, which may name it
                    if batch:
                        result += import_batch(store, batch)
                        advance(len(batch))
                        batch = []
                    result += import_calendar(store, item)
                    continue
                batch.append(item)
                if item.missing_calendars:
                    click.echo(missing_note(item), err=True)
                if len(batch) >= batch_size:
                    result += import_batch(store, batch)
                    advance(len(batch))
                    batch = []
            if batch:
                result += import_batch(store, batch)
                advance(len(batch))
    for problem in problems:
        click.echo(f"skipped {problem}", err=True)
    for name in result.skipped:
        click.echo(f"skipped {name!r}: a dynamic entry of that name exists (the line is a beat_schedule entry)", err=True)
    click.echo(f"imported {result.entries - len(result.skipped)} entries: {result.written} added or changed, "
               f"{result.unchanged} unchanged, {result.restored} run states restored"
               + (f", {result.calendars} calendars" if result.calendars else "")
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
    with progress(found.entries, "migrating") as advance:
        result = migration.migrate(source, store, found, delete_old=delete_old, progress=advance)
    for problem in result.problems:
        click.echo(f"skipped {problem}", err=True)
    for name in result.counts.skipped:
        click.echo(f"skipped {name!r}: a dynamic entry of that name exists", err=True)
    counts = result.counts
    click.echo(f"migrated {result.migrated} entries: {counts.written} added or changed, {counts.unchanged} unchanged, "
               f"{counts.restored} run states restored"
               + (f", {result.vanished} gone since the first pass" if result.vanished else ""))
    if delete_old:
        click.echo(f"deleted {result.deleted_keys} old keys")
    else:
        click.echo("old keys kept (--delete-old removes them)")


@click.command("reshard")
@click.option("--to", "shards", required=True, type=click.IntRange(min=1), help="The new number of shards.")
@click.option("--from", "from_shards", type=click.IntRange(min=1),
              help="The current number of shards (default: the one recorded in Redis, else 1).")
@click.option("--batch-size", type=click.IntRange(min=1), default=500, show_default=True,
              help="Entries moved per script call.")
@pass_context
def reshard_command(obj: Context, shards: int, from_shards: int | None, batch_size: int) -> None:
    """Move every entry, with its run state, to its shard under a new shard count; safe to repeat."""
    store = obj.store
    before = from_shards or store.recorded_shards() or 1
    total = ShardedStore(store.client, obj.prefix, before).across.count()
    with progress(total, "resharding") as advance:
        done = [0]

        def moved_so_far(count: int) -> None:
            advance(count - done[0])
            done[0] = count

        report = reshard(store.client, obj.prefix, shards, before, batch_size, moved_so_far)
    click.echo(report.summary)
    click.echo(f"run beat (and these commands) with redis_scheduler_shards = {shards}")
