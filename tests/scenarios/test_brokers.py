"""Delivery modes on real brokers: RabbitMQ (a private node the suite starts) and Redis; every run published once,
pending runs of ``at-least-once`` forgotten once published, and real workers running what beat sent."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from kombu import Connection, Queue

from celerybeatredis.delivery.modes import AT_LEAST_ONCE, AT_MOST_ONCE
from celerybeatredis.schedulers import BadSettings, RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from ..support.helpers import EVERY_10S_DOC, T0, put
from ..support.processes import CeleryProcess, wait_until, write_app

pytestmark = [pytest.mark.e2e]


@pytest.fixture
def amqp_app(app: Celery, rabbitmq_url: str) -> Iterator[Celery]:
    app.conf.update(broker_url=rabbitmq_url)
    yield app
    with Connection(rabbitmq_url) as conn:
        Queue(app.conf.task_default_queue, channel=conn.default_channel).delete()


def consume(url: str, queue: str, expected: int) -> list[Any]:
    """Messages taken from ``queue`` until ``expected`` arrived (or none for 5 s): their headers."""
    got: list[Any] = []
    with Connection(url) as conn:
        simple = conn.SimpleQueue(queue)
        try:
            while len(got) < expected:
                try:
                    message = simple.get(timeout=5)
                except simple.Empty:
                    break
                got.append(message.headers)
                message.ack()
        finally:
            simple.close()
    return got


@pytest.mark.parametrize("mode", [AT_MOST_ONCE, AT_LEAST_ONCE])
def test_every_run_reaches_rabbitmq_once(amqp_app: Celery, store: RedisStore, rabbitmq_url: str, mode: str) -> None:
    amqp_app.conf.update(redis_scheduler_delivery=mode, redis_scheduler_batch_size=7)
    names = [f"r{i:02d}" for i in range(20)]
    for name in names:
        put(store, name, dict(EVERY_10S_DOC, args=[name]))
    sched = RedisScheduler(amqp_app)
    sched.max_interval = 3600.0
    try:
        assert sched.publisher.mode == mode
        sched.tick(now=T0)
        for _ in range(20):
            if sched.tick(now=T0 + 10) > 0:
                break
    finally:
        sched.close()
    headers = consume(rabbitmq_url, amqp_app.conf.task_default_queue, len(names) + 1)
    assert sorted(h["periodic_task_name"] for h in headers) == names
    assert len({h["id"] for h in headers}) == len(names)
    assert store.client.zcard(store.keys.pending) == 0


def test_exactly_once_refuses_a_rabbitmq_broker(amqp_app: Celery) -> None:
    amqp_app.conf.redis_scheduler_delivery = "exactly-once"
    with pytest.raises(BadSettings, match="exactly-once, but the broker is not a Redis server"):
        RedisScheduler(amqp_app)


@pytest.mark.slow
@pytest.mark.parametrize(("broker", "mode"), [("rabbitmq", AT_LEAST_ONCE), ("rabbitmq", AT_MOST_ONCE), ("redis", "exactly-once")])
def test_a_worker_runs_what_beat_sent(tmp_path: Path, redis_url: str, prefix: str, client: redis.Redis,
                                      request: pytest.FixtureRequest, broker: str, mode: str) -> None:
    """Real ``celery beat`` and ``celery worker`` processes, on RabbitMQ and on the schedule's Redis; each task
    notes its run."""
    broker_url = request.getfixturevalue("rabbitmq_url") if broker == "rabbitmq" else f"{redis_url}/0"
    done = f"{prefix}done"
    extra = f"""
        import redis as _redis
        app.conf.update(redis_scheduler_delivery={mode!r}, task_default_queue={prefix + "q"!r},
                        beat_schedule={{"every-second": {{"task": "proj.note", "schedule": 1.0}}}})
        _client = _redis.Redis.from_url({redis_url + "/0"!r})

        @app.task(bind=True)
        def note(self):
            _client.rpush({done!r}, self.request.id + " " + str(self.request.periodic_task_name))
    """
    write_app(tmp_path, broker_url, f"{redis_url}/0", prefix, extra)
    worker = CeleryProcess.worker(tmp_path, "-Q", prefix + "q")
    beat = CeleryProcess.beat(tmp_path)
    try:
        wait_until(lambda: client.llen(done) >= 3, timeout=90, what="three runs done by the worker")
    finally:
        beat.stop()
        worker.stop()
    runs = [r.decode().split() for r in client.lrange(done, 0, -1)]
    client.delete(done)
    assert f". delivery -> {mode}" in beat.output()
    assert all(name == "every-second" for _, name in runs), beat.output()
    assert len({tid for tid, _ in runs}) == len(runs)
