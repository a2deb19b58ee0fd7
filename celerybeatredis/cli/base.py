"""What every command shares: where the schedule is, errors as one line, the --json flag, helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, TypeVar

import click
import redis
from celery import Celery

from ..exceptions import CeleryBeatRedisError
from ..settings import Settings, mask_url
from ..storage.connection import parse_url
from ..store import ScheduleStore

F = TypeVar("F", bound=Callable[..., Any])

#: Runs at least this long get a progress bar.
PROGRESS_FROM = 2000


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


@contextmanager
def one_line_errors(ctx: click.Context) -> Iterator[None]:
    """The package's errors and Redis errors as one-line messages with exit code 1."""
    try:
        yield
    except CeleryBeatRedisError as exc:
        raise click.ClickException(str(exc)) from None
    except redis.ConnectionError as exc:
        obj = ctx.find_object(Context)
        where = f" at {mask_url(obj.url)}" if obj else ""
        raise click.ClickException(f"cannot reach Redis{where}: {exc}") from None
    except redis.RedisError as exc:
        raise click.ClickException(f"Redis error: {exc}") from None


def check_url(url: str, cluster: bool) -> str:
    """A URL the client can be made from; else one line naming ``--url`` (a user error, exit 1)."""
    try:
        parse_url(url, cluster)
    except ValueError as exc:
        raise click.ClickException(f"--url {mask_url(url)}: {str(exc).removeprefix('redis_scheduler_url: ')}") from None
    return url


def check_prefix(prefix: str) -> str:
    """A prefix that makes a hash tag; else a usage error naming ``--prefix``."""
    try:
        Settings(key_prefix=prefix).validate()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--prefix") from None
    return prefix


pass_context = click.make_pass_decorator(Context)


def json_option(func: F) -> F:
    """``--json``: machine-readable output."""
    return click.option("--json", "as_json", is_flag=True, help="Print JSON.")(func)


@contextmanager
def progress(length: int, label: str) -> Iterator[Callable[[int], None]]:
    """A click progress bar on stderr for long runs; a no-op for short ones."""
    if length < PROGRESS_FROM:
        yield lambda n: None
        return
    with click.progressbar(length=length, label=label, file=sys.stderr) as bar:
        yield bar.update


def server_now(store: ScheduleStore) -> datetime:
    """The schedule's clock: the Redis server's time."""
    return datetime.fromtimestamp(store.server_time(), timezone.utc)


def dumps(obj: Any) -> str:
    """One line of JSON as the commands print it."""
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))
