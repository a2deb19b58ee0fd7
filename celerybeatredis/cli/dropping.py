"""``drop``: delete every key of one schedule (one key prefix, every shard), after listing them and asking."""

from __future__ import annotations

import sys

import click

from .base import Context, pass_context


@click.command("drop")
@click.option("--yes", is_flag=True, help="Drop without asking (needed where there is no terminal to ask on).")
@pass_context
def drop_command(obj: Context, yes: bool) -> None:
    """Delete the schedule's keys: every entry, its run state and history, calendars, heartbeats, the synced marker.

    Running beats then write beat_schedule back; other prefixes, the broker's keys and other databases are left alone.
    """
    sharded = obj.store.sharded
    keys = [key for store in sharded.stores for key in store.keys.all()] + ([sharded.keys.meta] if sharded.shards > 1 else [])
    present = [key for key in keys if sharded.client.exists(key)]
    if not present:
        click.echo(f"nothing to drop: no keys of {obj.where}; {obj.elsewhere}")
        return
    if not yes and not sys.stdin.isatty():
        raise click.ClickException(f"drop: no terminal to confirm on; pass --yes to drop the {len(present)} keys of {obj.where}")
    click.echo(f"the {len(present)} keys of {obj.where}:")
    for key in present:
        click.echo(f"  {key}")
    if not yes:
        click.confirm(f"drop these {len(present)} keys?", abort=True)
    dropped = sharded.drop()
    click.echo(f"dropped {dropped} keys of {obj.where}")
