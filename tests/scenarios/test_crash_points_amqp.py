"""A real ``celery beat`` publishing to RabbitMQ killed (``os._exit``, as SIGKILL) after the commit, and after a batch
is written to its confirm channel but before the broker's confirms are read; a second beat then takes over. Lost and
twice-sent runs are counted from what the broker received, and must be what docs/guarantees.rst says ("Delivery
modes", "On RabbitMQ")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery
from kombu import Connection

from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.store import ScheduleStore

from ..support.processes import wait_until
from .test_crash_points import beat_app, due_now, killed_then_taken_over, lost_and_twice

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Runs per batch; two batches are due.
BATCH = 3
RUNS = 2 * BATCH

#: Python appended to the beat's app module after the Redis hooks (their ``die``, ``CRASH_AT``), for the confirm channel.
AMQP_HOOKS = """
from celerybeatredis.delivery.confirms import ConfirmChannel
from celerybeatredis.delivery.publisher import Publisher

if CRASH_AT == "after-write":  # the first batch written to the confirm channel, its confirms never read
    real_send = ConfirmChannel.send

    def send(self, producer, batch):
        ticket = real_send(self, producer, batch)
        if batch:
            die()
        return ticket

    ConfirmChannel.send = send
elif CRASH_AT == "before-confirms":  # the second batch written while the first one's confirms are still unread
    real_settle = Publisher.settle

    def settle(self):
        if self._inflight is not None:
            die()
        return real_settle(self)

    Publisher.settle = settle
"""

#: (mode, where the first beat is killed, runs lost, copies sent twice): the table in docs/guarantees.rst, on RabbitMQ.
CASES = [
    ("at-most-once", "after-commit", BATCH, 0),
    ("at-most-once", "after-write", 0, 0),
    ("at-most-once", "before-confirms", 0, 0),
    ("at-least-once", "after-commit", 0, 0),
    ("at-least-once", "after-write", 0, BATCH),
    ("at-least-once", "before-confirms", 0, 2 * BATCH),
]


@pytest.fixture
def queue(app: Celery, rabbitmq_url: str) -> Iterator[str]:
    """The beats' queue on RabbitMQ, declared as Celery declares it (so it is there even if no run reaches it)."""
    name = f"crash-{app.conf.task_default_queue}"
    rabbit = Celery("crash-amqp", set_as_current=False)
    rabbit.conf.update(broker_url=rabbitmq_url, task_default_queue=name)
    with Connection(rabbitmq_url) as conn:
        rabbit.amqp.queues[name](conn.default_channel).declare()
    yield name
    with Connection(rabbitmq_url) as conn:
        rabbit.amqp.queues[name](conn.default_channel).delete()


def received(url: str, queue: str, expected: int) -> list[tuple[str, str]]:
    """Each message taken off ``queue`` (its run, its task id), once ``expected`` arrived or none came for a while:
    a dead beat's last frames may be routed after the second beat is done."""
    got: list[tuple[str, str]] = []
    with Connection(url) as conn:
        channel = conn.default_channel

        def drained() -> bool:
            while (message := channel.basic_get(queue, no_ack=True)) is not None:
                args, _kwargs, _embed = json.loads(message.body)
                got.append((args[0], message.properties["application_headers"]["id"]))
            return len(got) >= expected

        try:
            wait_until(drained, timeout=10, interval=0.05, what=f"{expected} messages on {queue}")
        except AssertionError:
            pass  # fewer: the counts say which runs are missing
        drained()
    return got


@pytest.mark.parametrize(("delivery", "crash", "lost", "twice"), CASES, ids=[f"{d}-{c}" for d, c, _, _ in CASES])
def test_a_beat_killed_while_publishing_to_rabbitmq_loses_and_repeats_what_the_docs_say(
        tmp_path: Path, redis_url: str, rabbitmq_url: str, app: Celery, client: redis.Redis, api: ScheduleStore,
        store: RedisStore, queue: str, delivery: str, crash: str, lost: int, twice: int) -> None:
    url, prefix = f"{redis_url}/0", app.conf.redis_scheduler_key_prefix
    names = [f"run{i:02d}" for i in range(RUNS)]
    due_now(api, store, client, names)
    killed_then_taken_over(tmp_path, lambda at: beat_app(tmp_path, url, prefix, queue, delivery, at, broker=rabbitmq_url,
                                                         batch=BATCH, hooks=AMQP_HOOKS), store, names, crash)
    assert lost_and_twice(names, received(rabbitmq_url, queue, RUNS - lost + twice)) == (lost, twice)
