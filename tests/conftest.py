"""Fixtures: a redis-server the suite starts itself, and a fresh schedule per test."""

from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator

import pytest
import redis
from celery import Celery

from celerybeatredis.cli.binaries import SERVER_ENV, redis_server_binary
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.store import ScheduleStore

from .support.cli import Cli
from .support.cluster import LocalCluster
from .support.rabbitmq_server import NO_RABBITMQ, RabbitMQServer, rabbitmq_binary
from .support.redis_server import NO_SERVER, RedisServer

_counter = itertools.count()


def pytest_configure(config: pytest.Config) -> None:
    """Stop at once, with one line, when there is no redis-server to start (instead of an error per test)."""
    binary = redis_server_binary(SERVER_ENV)
    if binary is None:
        pytest.exit(NO_SERVER, returncode=pytest.ExitCode.USAGE_ERROR)
    if not os.access(binary, os.X_OK) or os.path.isdir(binary):
        pytest.exit(f"{SERVER_ENV}={binary} is not an executable redis-server", returncode=pytest.ExitCode.USAGE_ERROR)


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """Base URL of the suite's private redis-server.

    Never a server of the user's: tests kill clients, flush scripts and fill
    databases 0 and 1, which would harm anything else stored there.
    """
    server = RedisServer().start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A bytes client on the suite's Redis (db 0)."""
    conn = redis.Redis.from_url(f"{redis_url}/0")
    yield conn
    conn.close()


@pytest.fixture
def prefix() -> str:
    """A key prefix no other test uses, so tests never see each other's keys."""
    return f"t{os.getpid()}-{next(_counter)}-{uuid.uuid4().hex[:6]}:meta:"


@pytest.fixture
def store(client: redis.Redis, prefix: str) -> Iterator[RedisStore]:
    """A store for a fresh schedule; its keys are deleted afterwards."""
    st = RedisStore(client, prefix)
    yield st
    for key in client.scan_iter(match=f"{{{st.keys.tag}}}:*", count=1000):
        client.delete(key)


@pytest.fixture
def broker(redis_url: str) -> Iterator[redis.Redis]:
    """A client on the broker's database (db 1) of the suite's Redis."""
    conn = redis.Redis.from_url(f"{redis_url}/1")
    yield conn
    conn.close()


@pytest.fixture
def app(redis_url: str, prefix: str) -> Celery:
    """A Celery app configured for the suite's Redis and this test's prefix."""
    celery_app = Celery("tests", set_as_current=False)
    celery_app.conf.update(
        broker_url=f"{redis_url}/1",
        redis_scheduler_url=f"{redis_url}/0",
        redis_scheduler_key_prefix=prefix,
        beat_schedule={},
        result_expires=None,
        task_default_queue=f"q-{prefix}",
    )
    return celery_app


@pytest.fixture
def scheduler(app: Celery, store: RedisStore) -> Iterator[RedisScheduler]:
    """A scheduler of ``app`` on this test's schedule, closed afterwards."""
    sched = RedisScheduler(app)
    yield sched
    sched.close()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[LocalCluster]:
    """A Redis Cluster of three masters and three replicas, started once for the tests that ask for it."""
    cluster = LocalCluster().start()
    try:
        yield cluster
    finally:
        cluster.cleanup()


@pytest.fixture(scope="session")
def rabbitmq_node() -> Iterator[RabbitMQServer]:
    """A private RabbitMQ node started for the tests that ask for it (skipped where none can be had)."""
    if rabbitmq_binary() is None:
        pytest.skip(NO_RABBITMQ)
    server = RabbitMQServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def rabbitmq_url(rabbitmq_node: RabbitMQServer) -> str:
    """AMQP URL of the private RabbitMQ node."""
    return rabbitmq_node.url


@pytest.fixture
def tag(prefix: str) -> str:
    """The hash tag of this test's schedule (its prefix without the trailing ':')."""
    return prefix.rstrip(":")


@pytest.fixture
def api(client: redis.Redis, prefix: str, app: Celery) -> Iterator[ScheduleStore]:
    """A ScheduleStore on a fresh schedule; its keys are deleted afterwards."""
    store = ScheduleStore(client, prefix, app)
    yield store
    store.drop()


@pytest.fixture
def cli(redis_url: str, prefix: str, api: ScheduleStore) -> Cli:
    """The ``celerybeatredis`` console script pointed at this test's schedule."""
    return Cli(f"{redis_url}/0", prefix)
