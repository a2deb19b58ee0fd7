"""Beat warns once per entry of a task its app does not register (beat/unregistered.py), ticking in process."""

from __future__ import annotations

import logging

import pytest
import redis
from celery import Celery

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from ..support.helpers import T0, put, sent


def warnings_about(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.WARNING and text in r.getMessage()]


def test_beat_warns_once_per_entry_of_an_unregistered_task_and_still_sends_it(
        app: Celery, store: RedisStore, broker: redis.Redis, caplog: pytest.LogCaptureFixture) -> None:
    def add(x: int, y: int) -> int:
        return x + y

    app.task(name="tasks.add", shared=False)(add)  # a shared task would join the apps of later tests
    put(store, "t1", {"task": "tasks.nope", "interval": {"every": 5}})
    put(store, "t2", {"task": "tasks.nope", "interval": {"every": 5}})
    put(store, "ok", {"task": "tasks.add", "interval": {"every": 5}, "args": [1, 2]})
    caplog.set_level(logging.WARNING, "celerybeatredis.schedulers")
    sched = RedisScheduler(app)
    try:
        for step in range(6):
            sched.tick(now=T0 + 5 * step)
    finally:
        sched.close()
    assert [m.task for m in sent(broker, app)].count("tasks.nope") == 10  # still sent: its workers may register it
    found = sorted(r.getMessage() for r in warnings_about(caplog, "is not a task the app registers"))
    assert found == [
        f"beat: entry {name!r}: field 'task': 'tasks.nope' is not a task the app registers (nearest: 'tasks.add'); "
        "a worker that does not register it drops each run (said once per entry)" for name in ("t1", "t2")
    ]


def test_a_beat_app_with_no_tasks_of_its_own_reports_nothing(
        scheduler: RedisScheduler, store: RedisStore, caplog: pytest.LogCaptureFixture) -> None:
    put(store, "t1", {"task": "tasks.nope", "interval": {"every": 5}})
    caplog.set_level(logging.WARNING, "celerybeatredis.schedulers")
    for step in range(3):
        scheduler.tick(now=T0 + 5 * step)
    assert warnings_about(caplog, "tasks.nope") == []
