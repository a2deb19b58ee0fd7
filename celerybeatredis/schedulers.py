"""Celery beat glue: ``celery beat -S celerybeatredis.schedulers.RedisScheduler``.

One tick claims a bounded batch of due entries (one Lua call), decides for
each whether it runs and when it is due next, commits that (one Lua call),
then publishes the runs that were committed; while batches come back full it
sends the next claim and each commit ahead, so Redis works while beat decides.
The scheduler wires the wings together (docs/architecture.rst draws them):
:mod:`celerybeatredis.beat` runs the batches, :mod:`celerybeatredis.decisions`
decides them, :mod:`celerybeatredis.delivery` publishes them,
:mod:`celerybeatredis.storage` holds the schedule, :mod:`celerybeatredis.observe`
reports on beat.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Mapping
from typing import Any

import click
import redis
from celery import Celery
from celery.beat import ScheduleEntry, Scheduler

from . import __version__
from .beat.dispatch import Dispatcher
from .beat.statics import sync_statics
from .beat.unregistered import UnregisteredTasks
from .decisions.planner import Planner, TickClock
from .definitions.codec import Codec
from .delivery.modes import DeliveryUnavailable
from .delivery.publisher import Publisher
from .observe.heartbeat import Heartbeat
from .observe.log import logger
from .observe.stats import BeatStats
from .policies.exclude import CalendarCache
from .settings import AT_LEAST_ONCE, AUTO, Settings, unknown_in
from .storage.connection import eviction_warnings, follow_sentinel
from .storage.keys import shard_tag
from .storage.sharded_store import ShardedStore

MAX_BACKOFF = 5.0
#: Seconds between reads of the schedule's calendars (one HGETALL of a small hash): a calendar change applies this soon.
CALENDARS_REFRESH = 1.0


class BadSettings(click.ClickException, ValueError):
    """A setting beat cannot start with: ``celery beat`` prints it as one line and exits with code 1."""


class Refused(SystemExit):
    """Beat will not run on this schedule (a schema version it does not know): one line, exit code 1.

    A ``SystemExit``, not an error: celery beat logs an exception that stops it with its traceback, and this is
    no fault of the code. Raised in a tick (Redis was down at start), beat logs the line and stops.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class RedisScheduler(Scheduler):
    """A Celery beat scheduler whose schedule lives in Redis.

    Settings come from the app's configuration (``redis_scheduler_*``, see
    README.rst). A lazy instance (the one ``celery beat`` makes for its banner)
    does no I/O.
    """

    #: Longest sleep between ticks; entries added meanwhile are seen within it.
    max_interval = 1.0

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        try:
            self.settings = Settings.from_app(app)
        except ValueError as exc:
            raise BadSettings(f"celerybeat-redis: {exc}") from None
        self.stats = BeatStats()
        self.heartbeat = Heartbeat(self.stats, shard_tag(self.settings.tag, 0, self.settings.shards))
        self.http: Any = None
        if self.settings.http is not None and importlib.util.find_spec("prometheus_client") is None:
            raise BadSettings("celerybeat-redis: redis_scheduler_http needs prometheus_client: "
                              "pip install '.[metrics]' in the source checkout")
        self.clock = TickClock()
        self.codec = Codec(app, nowfun=self.clock.now)
        self.planner = Planner(self.codec, self.clock, self.settings)
        self.planner.on_admit = UnregisteredTasks(app)
        self.publisher = Publisher(self, self.settings, self.codec, self.stats)
        self.dispatcher = Dispatcher(self.settings, self.planner, self.publisher, self.heartbeat)
        self.store: ShardedStore | None = None
        self._turn = 0
        self._checked = False
        self._statics_synced = False
        self._next_reconcile = 0.0
        self._failures = 0
        super().__init__(app, *args, **kwargs)

    # --- Celery's Scheduler interface ------------------------------------------

    def setup_schedule(self) -> None:
        """Connect and sync ``beat_schedule`` into Redis (retried by tick if Redis is down); say which settings look
        mistyped (their values would go unused)."""
        for line in unknown_in(self.app):
            logger.warning("beat: %s", line)
        self.store = self._connect()
        self.serve_http()
        logger.info("beat: schedule in Redis at %s, keys {%s}:*", self.settings.safe_url, self.settings.tag)
        try:
            self.check_redis()
            self.sync_statics()
            self.resolve_delivery()
        except redis.RedisError as exc:
            logger.error("beat: cannot reach Redis at %s to sync beat_schedule (%s); will retry", self.settings.safe_url, exc)

    def tick(self, *args: Any, now: float | None = None, **kwargs: Any) -> float:
        """Process the due entries (batch after full batch, for up to ``max_interval``); returns seconds to sleep.

        Args:
            now: Unix time to tick at instead of the Redis server's clock (for tests and tools).
        """
        started = time.perf_counter()
        try:
            delay = self._tick(now)
        except BadSettings:
            raise
        except Refused as exc:
            logger.error("beat: %s", exc.message)
            raise
        except redis.ResponseError as exc:
            delay = self._failed(started, f"Redis refused a command: {exc}")
            logger.error("beat: Redis refused a schedule command (%s)%s; retrying in %.1fs", exc, self._wrong_types(), delay)
            return delay
        except redis.RedisError as exc:
            delay = self._failed(started, f"Redis unavailable: {exc}")
            logger.error("beat: Redis unavailable at %s (%s); retrying in %.1fs", self.settings.safe_url, exc, delay)
            return delay
        except Exception as exc:  # beat must outlive any one tick; the traceback is logged
            delay = self._failed(started, f"{type(exc).__name__}: {exc}")
            logger.exception("beat: tick failed; retrying in %.1fs", delay)
            return delay
        self.stats.ticked(time.perf_counter() - started)
        if self._failures:
            logger.info("beat: Redis is back at %s", self.settings.safe_url)
            self._failures = 0
        return delay

    def sync(self) -> None:
        """Nothing to do: every change is written to Redis when it happens."""

    def close(self) -> None:
        """Stop the HTTP endpoint and release the Redis connections."""
        self.dispatcher.close()
        if self.http is not None:
            self.http.stop()
            self.http = None
        if self.store is not None:
            self.store.close()

    def get_schedule(self) -> dict[str, ScheduleEntry]:
        """Always empty: the schedule lives in Redis and is never loaded whole."""
        return {}

    def set_schedule(self, schedule: Mapping[str, ScheduleEntry]) -> None:
        """Ignored; use ``beat_schedule`` or the store to change the schedule."""

    schedule = property(get_schedule, set_schedule)

    @property
    def info(self) -> str:
        """Lines for the ``celery beat`` banner (password masked)."""
        shards = self.settings.shards
        tags = f"{{{self.settings.tag}:0}} .. {{{self.settings.tag}:{shards - 1}}}" if shards > 1 else f"{{{self.settings.tag}}}"
        delivery = self.settings.delivery
        if delivery == AUTO:
            delivery = "auto (exactly-once when the broker is this Redis database, else at-most-once)"
        return f"    . redis -> {self.settings.safe_url}\n    . key tag -> {tags}\n    . delivery -> {delivery}"

    def serve_http(self) -> None:
        """Start ``/healthz`` and ``/metrics`` (:mod:`.observe.http`) when ``redis_scheduler_http`` is set; a port taken stops beat."""
        address = self.settings.http_address
        if address is None or self.http is not None or self.store is None:
            return
        from .observe.http import HealthServer, alive_within  # imports prometheus_client: only with the setting on

        alive = alive_within(self.max_interval, self.settings.publish_retry_seconds, MAX_BACKOFF)
        try:
            self.http = HealthServer(address, self.stats, self.store, alive)
        except OSError as exc:
            raise BadSettings(f"celerybeat-redis: redis_scheduler_http {self.settings.http}: cannot listen: {exc}") from None
        self.http.start()

    def check_redis(self) -> None:
        """Refuse a schema version this code does not know (before beat's first write); log what could make the
        schedule's Redis lose or hide entries: an evicting memory policy, another layout."""
        assert self.store is not None
        problem = self.store.check_schema()
        if problem:
            raise Refused(f"celerybeat-redis {__version__}: beat refuses to run: {problem}; "
                          "run beats of the release that wrote it, or upgrade this one")
        for warning in eviction_warnings(self.store.client):
            logger.warning("beat: %s", warning)
        problem = self.store.check_layout()
        if problem:
            logger.error("beat: %s", problem)
        self._checked = True

    def resolve_delivery(self) -> None:
        """Settle the delivery mode (:mod:`.delivery.modes`); ``exactly-once`` where the broker cannot give it stops beat."""
        assert self.store is not None
        try:
            self.publisher.resolve(self.store.client)
        except DeliveryUnavailable as exc:
            raise BadSettings(f"celerybeat-redis: {exc}") from None

    def sync_statics(self) -> None:
        """Upsert ``beat_schedule`` entries and remove statics that left it (:mod:`.beat.statics`)."""
        assert self.store is not None
        sync_statics(self.store, self.app, self.codec)
        self._statics_synced = True

    def schedule_lost(self) -> None:
        """The marker ``{T}:synced`` is gone: Redis lost the schedule (a restart without persistence, a flush).

        Said as an ERROR, and ``beat_schedule`` is synced again at once so its
        entries run again; dynamic entries that were lost stay lost.
        """
        logger.error("beat: the schedule in Redis at %s lost its marker {%s}:synced: its data is gone (Redis restarted "
                     "without persistence, or was flushed); syncing beat_schedule again now; dynamic entries that "
                     "were lost are gone", self.settings.safe_url, self.settings.tag)
        self.check_redis()
        self.sync_statics()

    # --- the tick -----------------------------------------------------------------

    def _tick(self, now: float | None) -> float:
        if self.store is None:
            self.store = self._connect()
        if not self._checked:
            self.check_redis()
        if not self._statics_synced:
            self.sync_statics()
        if self.publisher.mode is None:
            self.resolve_delivery()
        if time.monotonic() >= self._next_reconcile:
            moved = follow_sentinel(self.store.client)
            if moved is not None:
                (host, port), (old_host, old_port) = moved
                logger.warning("beat: sentinel reports a new primary at %s:%s (was %s:%s)", host, port, old_host, old_port)
            step = self.store.reconcile_step(self.settings.reconcile_batch)
            self._next_reconcile = time.monotonic() + self.settings.reconcile_interval
            if not step.synced:
                self.schedule_lost()
        # Every shard in turn, starting one shard later each tick so none is always last.
        self._turn += 1
        delay = self.max_interval
        for store in self.store.in_turn(self._turn):
            if self.publisher.mode == AT_LEAST_ONCE:
                self.publisher.resend(store, now)
            publish_failed, claim = self.dispatcher.batches(store, now, self.max_interval)
            if publish_failed:
                return self.settings.publish_retry_seconds
            if len(claim.entries) >= self.settings.batch_size:
                delay = 0.0
            elif claim.next_score is not None:
                delay = min(delay, max(0.0, claim.next_score - claim.now))
        return delay

    def _connect(self) -> ShardedStore:
        store = ShardedStore(self.settings.client(), self.settings.key_prefix, self.settings.shards)
        store.time_scripts(self.stats.lua_call)
        self.planner.calendars = CalendarCache(store.first.calendars_raw, CALENDARS_REFRESH)
        return store

    def _failed(self, started: float, reason: str) -> float:
        """Record a failed tick (``/healthz`` answers 503 with ``reason`` until one succeeds); returns the backoff."""
        self.stats.ticked(time.perf_counter() - started, reason)
        return self._backoff()

    def _wrong_types(self) -> str:
        """``": <key> is a string, not a zset ..."`` when a key of the schedule has the wrong type, else ``""``."""
        try:
            found = self.store.across.wrong_types() if self.store is not None else []
        except redis.RedisError:
            return ""
        return f": {'; '.join(found)}; fix or delete the key" if found else ""

    def _backoff(self) -> float:
        """Seconds to wait after a failed tick: doubling from 0.5 s up to MAX_BACKOFF."""
        self._failures += 1
        return min(0.5 * 2 ** (self._failures - 1), MAX_BACKOFF)
