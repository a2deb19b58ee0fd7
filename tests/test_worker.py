"""The worker integration's run outcomes, in this process: a task run as a worker runs it, with Celery's task signals."""

from __future__ import annotations

from typing import Any

import redis
from celery import Celery

import celerybeatredis.worker  # noqa: F401 - connects the worker integration's signal handlers
from celerybeatredis.delivery.headers import FIRE_ID, HEADER, RUN
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.store import ScheduleStore

from .support.helpers import T0, sent


def test_a_retry_reported_after_the_run_ended_leaves_its_outcome(app: Celery, store: RedisStore, api: ScheduleStore,
                                                      broker: redis.Redis) -> None:
    tries: list[int] = []

    def flaky(self: Any) -> None:
        tries.append(self.request.retries)
        if self.request.retries == 0:
            raise self.retry(countdown=0, max_retries=1)

    task = app.task(name="tasks.flaky", bind=True, shared=False)(flaky)
    api.add("e", "tasks.flaky", 10)
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0 - 10)
        sched.tick(now=T0)
        (message,) = sent(broker, app)
    finally:
        sched.close()
    assert message.headers[FIRE_ID] == message.id
    # Run as a worker runs it: eager, a retry runs again at once (its own postrun first, then the retry's).
    task.apply(task_id=message.id, headers={HEADER: "e", RUN: message.headers[RUN]})
    assert tries == [0, 1]
    (run,) = api.history("e").runs
    assert run.result == "succeeded" and run.runtime is not None


def test_a_task_sent_by_anyone_else_reports_nothing(app: Celery, store: RedisStore) -> None:
    def plain() -> None:
        """Does nothing."""

    task = app.task(name="tasks.plain", shared=False)(plain)
    task.apply(task_id="plain")
    task.apply(task_id="foreign", headers={HEADER: "e", RUN: "0000000a another-schedule"})
    assert store.client.exists(store.keys.history, store.keys.outcomes) == 0
