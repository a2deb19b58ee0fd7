"""``status``: are beats ticking on this schedule, and is it keeping up? Usable as a probe: exit 0 or 1."""

from __future__ import annotations

from datetime import datetime, timezone

import click

from ..managing.display import table
from ..observe.status import ALIVE_SECONDS, schedule_status
from ..settings import mask_url
from .base import Context, dumps, json_option, pass_context

BEAT_HEADERS = ["BEAT", "VERSION", "STARTED", "LAST TICK", "SENT", "ERRORS", "LATE P99"]


@click.command("status")
@click.option("--max-age", type=click.FloatRange(min=0), default=ALIVE_SECONDS, show_default=True,
              help="Seconds since its last tick within which a beat counts as alive.")
@json_option
@pass_context
def status_command(obj: Context, max_age: float, as_json: bool) -> None:
    """Beats ticking on the schedule, its due backlog and quarantined entries.

    Exits 0 when at least one beat ticked within --max-age seconds, else 1
    (for a Kubernetes exec probe or a cron check).
    """
    status = schedule_status(obj.store.sharded)
    alive = status.alive(max_age)
    if as_json:
        click.echo(dumps(status.to_json(max_age)))
    else:
        rows = [[beat.id, beat.version, _when(beat.started), f"{beat.age:.1f}s ago" + ("" if beat.age <= max_age else " (silent)"),
                 str(beat.sent), str(beat.publish_errors), "-" if beat.lateness_p99 is None else f"{beat.lateness_p99:g}s"]
                for beat in status.beats]
        click.echo(f"schedule:    {obj.store.tags} at {mask_url(obj.url)}")
        click.echo(table(BEAT_HEADERS, rows) if rows else "beats:       none heard from")
        click.echo(f"alive:       {len(alive)} of {len(status.beats)} ticked within {max_age:g}s")
        click.echo(f"backlog:     {status.due_backlog} entries past due now, of {status.entries}")
        click.echo(f"quarantined: {status.quarantined}")
    if not alive:
        raise SystemExit(1)


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
