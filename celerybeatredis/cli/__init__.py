"""The command line: ``celerybeatredis ...`` and ``celery -A proj schedule ...``.

Both run the same commands. The standalone script takes ``--url``,
``--prefix``, ``--shards`` and ``--cluster`` (or ``CELERYBEATREDIS_URL``,
``_PREFIX``, ``_SHARDS``, ``_CLUSTER``); the Celery plugin reads the app's
scheduler settings. Exit codes: 0 ok, 1 a user error (one line on stderr),
2 a usage error.
"""

from __future__ import annotations

import click

from .. import __version__
from ..settings import DEFAULT_PREFIX, DEFAULT_URL, Settings, unknown_in
from .backfill import backfill_command
from .base import Context, ManageGroup, check_prefix, check_url
from .calendars import calendar_group
from .demo import demo_command
from .health import status_command
from .moving import export_command, import_command, migrate_command, reshard_command
from .reading import history_command, invalid_command, list_command, next_command, show_command, stats_command
from .web import web_command
from .writing import (
    add_command,
    disable_command,
    edit_command,
    enable_command,
    pause_command,
    remove_command,
    resume_command,
    run_now_command,
)

__all__ = ["celery_command", "main"]


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
    ctx.obj = Context(url=check_url(url, cluster), prefix=check_prefix(prefix), shards=shards, cluster=cluster)


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
    for line in unknown_in(app):  # its value would go unused: the schedule named may not be the one meant
        click.echo(f"warning: {line}", err=True)
    ctx.obj = Context(url=check_url(url, settings.cluster) if url else settings.url,
                      prefix=check_prefix(prefix or settings.key_prefix), app=app,
                      redis_options=dict(settings.redis_options or {}), shards=settings.shards, cluster=settings.cluster)


#: The commands both entry points share.
COMMANDS = [list_command, show_command, next_command, history_command, add_command, edit_command, remove_command,
            enable_command, disable_command, pause_command, resume_command, run_now_command, backfill_command,
            invalid_command, stats_command, import_command,
            export_command, migrate_command, reshard_command, status_command, web_command, calendar_group]
for _command in COMMANDS:
    main.add_command(_command)
    celery_command.add_command(_command)
main.add_command(demo_command)
