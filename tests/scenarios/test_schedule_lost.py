"""A schedule Redis that comes back empty (restarted without persistence) is noticed, said, and re-synced at once."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis
from celery import Celery

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from ..support.helpers import EVERY_10S, put, sent
from ..support.processes import CeleryProcess, drain_queue, wait_until, write_app
from ..support.redis_server import RedisServer


def test_beat_resyncs_beat_schedule_and_says_so_when_the_schedule_vanished(
        app: Celery, store: RedisStore, broker: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    app.conf.beat_schedule = {"static-a": {"task": "tasks.add", "schedule": 10.0}}
    scheduler = RedisScheduler(app)
    try:
        put(store, "dynamic-b", EVERY_10S)
        scheduler.tick()
        assert store.exists("static-a") and store.client.exists(store.keys.synced)
        for key in store.client.scan_iter(match=f"{{{store.keys.tag}}}:*"):  # what a restart without persistence leaves
            store.client.delete(key)
        with caplog.at_level(logging.ERROR, logger="celerybeatredis.schedulers"):
            # Beat looks at the marker with each reconciler step, once a second.
            wait_until(lambda: scheduler.tick() >= 0 and store.exists("static-a"), timeout=10, what="static-a back")
    finally:
        scheduler.close()
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1 and f"{{{store.keys.tag}}}:synced" in errors[0], errors
    assert store.exists("static-a") and store.due_score("static-a") is not None
    assert not store.exists("dynamic-b")  # dynamic entries that were lost are gone
    assert store.client.exists(store.keys.synced)
    assert sent(broker, app) == []


@pytest.mark.e2e
@pytest.mark.slow
def test_static_entries_run_again_after_the_schedule_redis_restarts_empty(tmp_path: Path, redis_url: str, prefix: str) -> None:
    server = RedisServer().start()  # persists nothing
    queue = f"q-{prefix}"
    write_app(tmp_path, f"{redis_url}/1", f"{server.url}/0", prefix, extra=f"""
        app.conf.task_default_queue = {queue!r}
        app.conf.beat_schedule = {{"static-a": {{"task": "tasks.tick", "schedule": 1.0}}}}
    """)
    broker = redis.Redis.from_url(f"{redis_url}/1")
    arrived: list[str] = []

    def runs() -> int:
        arrived.extend(m.task for m in drain_queue(broker, queue))
        return len(arrived)

    beat = CeleryProcess.beat(tmp_path)
    try:
        wait_until(lambda: beat.alive() and runs() >= 2, timeout=60, what="static-a to run")
        server.kill()
        before = runs()
        server.start()  # empty
        wait_until(lambda: beat.alive() and runs() >= before + 2, timeout=60, what="static-a to run again")
    finally:
        code = beat.stop()
        server.cleanup()
        broker.close()
    output = beat.output()
    assert code == 0, output
    lost = [line for line in output.splitlines() if "ERROR" in line and ":synced" in line]
    assert len(lost) >= 1, output
    assert "syncing beat_schedule again" in lost[0]
