"""The command line: ``celerybeatredis ...`` and ``celery -A proj schedule ...``.

Both run the same commands. The standalone script takes ``--url``,
``--prefix``, ``--shards`` and ``--cluster`` (or ``CELERYBEATREDIS_URL``,
``_PREFIX``, ``_SHARDS``, ``_CLUSTER``); the Celery plugin reads the app's
scheduler settings. Exit codes: 0 ok, 1 a user error (one line on stderr),
2 a usage error.

A command's module is imported when the command runs (or ``--help`` lists
it), never before: ``--version``, ``--help`` and a mistyped command load
neither Celery nor redis-py, so every command starts without their cost.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import click

from .. import __version__
from ..storage.keys import DEFAULT_PREFIX, DEFAULT_URL

__all__ = ["celery_command", "main"]

#: The commands both entry points share: name -> (module of ``cli/``, the command in it).
COMMANDS: dict[str, tuple[str, str]] = {
    "list": ("reading", "list_command"), "show": ("reading", "show_command"), "next": ("reading", "next_command"),
    "history": ("reading", "history_command"), "add": ("writing", "add_command"), "edit": ("writing", "edit_command"),
    "remove": ("writing", "remove_command"), "enable": ("writing", "enable_command"),
    "disable": ("writing", "disable_command"), "pause": ("writing", "pause_command"),
    "resume": ("writing", "resume_command"), "run-now": ("writing", "run_now_command"),
    "backfill": ("backfill", "backfill_command"), "invalid": ("reading", "invalid_command"),
    "stats": ("reading", "stats_command"), "import": ("moving", "import_command"), "export": ("moving", "export_command"),
    "migrate": ("moving", "migrate_command"), "reshard": ("moving", "reshard_command"),
    "drop": ("dropping", "drop_command"), "status": ("health", "status_command"), "web": ("web", "web_command"),
    "calendar": ("calendars", "calendar_group"), "apply": ("applying", "apply_command"),
}
#: What only the standalone script runs.
SCRIPT_ONLY: dict[str, tuple[str, str]] = {"demo": ("demo", "demo_command")}


def _module(name: str) -> ModuleType:
    """The command module ``name`` of ``cli/``, imported now (one plain import each, so tests/test_layers.py sees it)."""
    if name == "reading":
        from . import reading
        return reading
    if name == "writing":
        from . import writing
        return writing
    if name == "backfill":
        from . import backfill
        return backfill
    if name == "moving":
        from . import moving
        return moving
    if name == "dropping":
        from . import dropping
        return dropping
    if name == "health":
        from . import health
        return health
    if name == "web":
        from . import web
        return web
    if name == "calendars":
        from . import calendars
        return calendars
    if name == "applying":
        from . import applying
        return applying
    from . import demo
    return demo


class LazyGroup(click.Group):
    """A group whose commands are imported by name when one runs or is listed; errors become one line (exit 1)."""

    def __init__(self, *args: Any, lazy: dict[str, tuple[str, str]], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = lazy

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy:
            module, attribute = self.lazy[cmd_name]
            command: click.Command = getattr(_module(module), attribute)
            return command
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        from .base import one_line_errors

        with one_line_errors(ctx):
            return super().invoke(ctx)


@click.group(cls=LazyGroup, lazy={**COMMANDS, **SCRIPT_ONLY}, context_settings={"help_option_names": ["-h", "--help"]})
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
    from .base import Context, check_prefix, check_url

    ctx.obj = Context(url=check_url(url, cluster), prefix=check_prefix(prefix), shards=shards, cluster=cluster)


@click.group("schedule", cls=LazyGroup, lazy=COMMANDS)
@click.option("--url", default=None, help="Redis URL (default: the app's redis_scheduler_url).")
@click.option("--prefix", default=None, help="Key prefix (default: the app's redis_scheduler_key_prefix).")
@click.pass_context
def celery_command(ctx: click.Context, url: str | None, prefix: str | None) -> None:
    """Manage the app's celerybeat-redis schedule."""
    from ..settings import Settings, unknown_in
    from .base import Context, check_prefix, check_url

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
