"""``celerybeatredis web``: serve the dashboard (needs the ``web`` extra).

Credentials come from the environment (``CELERYBEATREDIS_WEB_TOKEN``,
``CELERYBEATREDIS_WEB_USERS``) or, run as ``celery -A proj schedule web``,
from the app's ``redis_scheduler_web_token`` / ``redis_scheduler_web_users``;
never from a command line option, which other users of the machine could read.
"""

from __future__ import annotations

import dataclasses
import os

import click

from ..settings import Settings, web_users
from .base import Context, pass_context

TOKEN_ENV = "CELERYBEATREDIS_WEB_TOKEN"
USERS_ENV = "CELERYBEATREDIS_WEB_USERS"
ALLOWLIST_ENV = "CELERYBEATREDIS_TASK_ALLOWLIST"
MISSING = "the web dashboard needs the web extra: pip install '.[web]' in the source checkout"


def parse_bind(text: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8080`` for IPv6) -> ``(host, port)``; a BadParameter otherwise."""
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise click.BadParameter(f"{text!r} is not HOST:PORT", param_hint="--bind")
    return host.strip("[]"), int(port)


@click.command("web")
@click.option("--bind", default="127.0.0.1:8080", show_default=True, help="HOST:PORT to listen on. A non-loopback host "
              f"needs authentication: ${TOKEN_ENV} or ${USERS_ENV} (NAME:PASSWORD,...).")
@click.option("--read-only", is_flag=True, help="Show the schedule, refuse every change.")
@click.option("--task-allowlist", envvar=ALLOWLIST_ENV, default="",
              help=f"Comma-separated task names or globs edits may use [env {ALLOWLIST_ENV}]; "
                   "with an app, its redis_scheduler_task_allowlist applies too.")
@pass_context
def web_command(obj: Context, bind: str, read_only: bool, task_allowlist: str) -> None:
    """Serve the web dashboard: overview, entries, quarantine, edits."""
    try:
        import uvicorn

        from ..web import WebAuth, WebConfig, create_app, is_local
    except ImportError:
        raise click.ClickException(MISSING) from None
    host, port = parse_bind(bind)
    settings = Settings.from_app(obj.app) if obj.app is not None else Settings()
    token = os.environ.get(TOKEN_ENV) or settings.web_token
    try:
        users = web_users(os.environ.get(USERS_ENV), USERS_ENV) or settings.web_users or {}
    except ValueError as exc:
        raise click.ClickException(str(exc)) from None
    auth = WebAuth(token=token, users=users)
    if not is_local(host) and not auth.configured:
        raise click.ClickException(f"refusing to listen on {host}:{port} without authentication: set {TOKEN_ENV} or "
                                   f"{USERS_ENV} (or bind 127.0.0.1)")
    patterns = tuple(p.strip() for p in task_allowlist.split(",") if p.strip())
    if patterns:
        settings = dataclasses.replace(settings, task_allowlist=(*settings.task_allowlist, *patterns))
    store = obj.store
    app = create_app(store, WebConfig(auth=auth, read_only=read_only, settings=settings, redis_url=obj.url))
    how = ", ".join(filter(None, ["token" if token else "", f"{len(users)} users" if users else "",
                                  "read-only" if read_only else ""])) or "no authentication, loopback only"
    click.echo(f"dashboard of {store.tags} on http://{bind} ({how})", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning", access_log=False)
