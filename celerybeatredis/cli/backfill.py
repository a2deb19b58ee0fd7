"""``backfill NAME --from T1 --to T2``: list, then with ``--yes`` send, the runs an entry's schedule had in a past range."""

from __future__ import annotations

from datetime import datetime

import click
from celery import Celery

from ..definitions.checks import parse_date
from ..delivery.backfill import DEFAULT_LIMIT, backfill_times, send_backfill
from ..exceptions import InvalidDefinition
from .base import Context, dumps, json_option, pass_context


@click.command("backfill")
@click.argument("name")
@click.option("--from", "start", required=True, help="First time of the range (ISO-8601; without an offset, UTC).")
@click.option("--to", "end", required=True, help="Last time of the range, included.")
@click.option("--yes", is_flag=True, help="Send the runs (without it: list what would be sent).")
@click.option("--limit", type=click.IntRange(min=1), default=DEFAULT_LIMIT, show_default=True,
              help="Refuse a range with more runs than this.")
@click.option("--broker", help="Broker URL to send with (default: the app's; the standalone command needs it).")
@json_option
@pass_context
def backfill_command(obj: Context, name: str, start: str, end: str, yes: bool, limit: int, broker: str | None,
                     as_json: bool) -> None:
    """Send the runs NAME's schedule had from --from to --to, each with its due time in a header (dry run by default).

    The runs do not count as runs of the entry: its run count, last run and next run stay as they are.
    """
    first, last = _time(start, "--from"), _time(end, "--to")
    store = obj.store
    entry = store.get(name)
    if entry.definition is None:
        raise click.ClickException(f"entry {name!r}: its definition does not read: {entry.invalid_reason}")
    try:
        defn = store.codec.from_document(entry.definition)
    except InvalidDefinition as exc:
        raise click.ClickException(exc.for_entry(name).reason) from None
    times = backfill_times(defn.schedule, first, last, entry.last_run_at, limit)
    ids: list[str] = []
    if yes and times:
        app = obj.app if broker is None else Celery("celerybeatredis", broker=broker, set_as_current=False)
        if app is None:
            raise click.UsageError("--yes needs --broker URL (or run it as: celery -A proj schedule backfill ...)")
        ids = send_backfill(app, store.sharded.store_for(name).keys.tag, name, defn, times)
    if as_json:
        click.echo(dumps({"name": name, "task": defn.task, "sent": yes, "times": [t.isoformat() for t in times],
                          "task_ids": ids}))
        return
    verb = "sent" if yes else "would send"
    click.echo(f"{verb} {len(times)} run{'s' * (len(times) != 1)} of {name} ({defn.task}){':' * bool(times)}")
    for due in times:
        click.echo(f"  {due.isoformat()}")
    if not yes and times:
        click.echo("add --yes to send them")


def _time(value: str, option: str) -> datetime:
    try:
        return parse_date(value, option)
    except InvalidDefinition as exc:
        raise click.BadParameter(exc.message, param_hint=option) from None
