"""What every command shares: where the schedule is, errors as one line naming it, the --json flag, helpers."""

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

from ..definitions.calendars import CalendarNotFound
from ..exceptions import CeleryBeatRedisError, EntryNotFound
from ..settings import Settings, mask_url
from ..storage.connection import parse_url
from ..storage.keys import key_tag
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


    @property
    def where(self) -> str:
        """The schedule the commands read, for messages: ``{T} at redis://...`` (password masked)."""
        tags = self._store.tags if self._store is not None else f"{{{key_tag(self.prefix)}}}"
        return f"{tags} at {mask_url(self.url)}"

    @property
    def elsewhere(self) -> str:
        """How to point the commands at another schedule, as this entry point takes it."""
        if self.app is not None:
            return "another schedule: --url and --prefix, or the app's redis_scheduler_url and redis_scheduler_key_prefix"
        return "another schedule: --url and --prefix, or CELERYBEATREDIS_URL and CELERYBEATREDIS_PREFIX"


@contextmanager
def one_line_errors(ctx: click.Context) -> Iterator[None]:
    """The package's errors and Redis errors as one-line messages with exit code 1, naming the schedule they concern."""
    try:
        yield
    except (CeleryBeatRedisError, redis.RedisError) as exc:
        raise click.ClickException(_one_line(exc, ctx.find_object(Context))) from None


def _one_line(exc: Exception, obj: Context | None) -> str:
    at = f" at {mask_url(obj.url)}" if obj else ""
    if isinstance(exc, (EntryNotFound, CalendarNotFound)) and obj:
        return f"{exc} in {obj.where}; {obj.elsewhere}"
    if isinstance(exc, redis.ConnectionError):
        return f"cannot reach Redis{at}: {exc}"
    if isinstance(exc, redis.exceptions.InvalidResponse):
        return f"the server{at} is not a Redis server (its answer is not in Redis's protocol)"
    if isinstance(exc, redis.RedisError):
        return f"Redis error{at}: {exc}"
    return str(exc)


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
