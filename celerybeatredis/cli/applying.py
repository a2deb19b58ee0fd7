"""The ``apply`` command: an owner's entries made exactly those a file of JSON lines lists."""

from __future__ import annotations

from typing import IO, Any

import click

from ..definitions.documents import decode
from ..managing.applying import ApplyResult
from ..moving.transfer import BadLine, CalendarRecord, parse_lines
from .base import Context, dumps, pass_context


@click.command("apply")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.option("--owner", required=True, help="Who the file's entries belong to (their 'owner' label).")
@click.option("--dry-run", is_flag=True, help="Print what would be added, changed, removed and left; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="The result as one JSON object.")
@pass_context
def apply_command(obj: Context, file: IO[str], owner: str, dry_run: bool, as_json: bool) -> None:
    """Make OWNER's entries exactly those of FILE (export's JSON lines, '-' for stdin): add or replace each, remove
    OWNER's entries FILE no longer lists. Other entries and beat_schedule's are left alone."""
    store = obj.store
    entries: list[tuple[str, Any]] = []
    problems: list[str] = []
    for item in parse_lines(store, file):
        if isinstance(item, BadLine):
            problems.append(str(item))
        elif isinstance(item, CalendarRecord):
            problems.append(f"calendar {item.name!r}: apply writes entries only (set calendars with 'calendar set' "
                            "or 'import')")
        else:
            entries.append((item.name, decode(item.text)[1]))
    if problems:
        more = f" (and {len(problems) - 1} more bad lines)" if len(problems) > 1 else ""
        raise click.ClickException(f"{problems[0]}{more}; nothing applied")
    result = store.apply(entries, owner, dry_run=dry_run)
    if as_json:
        click.echo(dumps(result.to_json()))
        return
    for line in diff_lines(result):
        click.echo(line)
    click.echo(summary(result, owner))


def diff_lines(result: ApplyResult) -> list[str]:
    """``+ name`` added, ``~ name: members`` changed, ``- name`` removed; ``= name`` unchanged on a dry run."""
    lines = [f"+ {name}" for name in result.added]
    lines += [f"~ {name}: {', '.join(result.members.get(name, []))}" for name in result.changed]
    lines += [f"- {name}" for name in result.removed]
    if result.dry_run:
        lines += [f"= {name}" for name in result.unchanged]
    return lines


def summary(result: ApplyResult, owner: str) -> str:
    counts = (f"{len(result.added)} added, {len(result.changed)} changed, {len(result.removed)} removed, "
              f"{len(result.unchanged)} unchanged")
    return f"dry run for owner {owner!r}: {counts}; nothing written" if result.dry_run else f"owner {owner!r}: {counts}"
