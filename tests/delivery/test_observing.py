"""A monitor that wraps Celery's ``Scheduler.apply_entry`` (as Sentry's Crons do) sees every run beat sends, in every
delivery mode, and puts its own headers on each message; what beat does with a run that cannot be sent is unchanged.

Sentry itself, with real beat and worker processes, is tested in ``tests/scenarios/test_e2e_sentry.py``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

import pytest
import redis
from celery import Celery
from celery.beat import ScheduleEntry, Scheduler
from celery.utils import uuid
from kombu import Connection, Queue

from celerybeatredis.delivery.observing import apply_entry_wrapped, tracer
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from ..support.helpers import T0, entries, first_interval, put, sent
from ..support.processes import wait_until


def monitored(seen: list[str]) -> Callable[..., Any]:
    """A wrapper of ``Scheduler.apply_entry`` as a monitor writes one: it notes the run and heads its message."""
    original = Scheduler.apply_entry

    @functools.wraps(original)
    def wrapper(scheduler: Any, entry: ScheduleEntry, producer: Any = None) -> Any:
        seen.append(entry.name)
        headers = entry.options.pop("headers", {})
        entry.options["headers"] = {**headers, "monitor-check-in": uuid()}
        return original(scheduler, entry, producer=producer)

    return wrapper


@pytest.mark.parametrize("mode", ["at-most-once", "at-least-once", "exactly-once"])
def test_a_wrapped_apply_entry_sees_every_run_and_heads_its_message(
        app: Celery, store: RedisStore, redis_url: str, monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    app.conf.update(redis_scheduler_delivery=mode, redis_scheduler_batch_size=8)
    if mode == "exactly-once":
        app.conf.broker_url = f"{redis_url}/0"
    seen: list[str] = []
    monkeypatch.setattr(Scheduler, "apply_entry", monitored(seen))
    assert apply_entry_wrapped()
    names = entries(store, 20)
    assert first_interval(app) == mode
    messages = sent(redis.Redis.from_url(app.conf.broker_url), app)
    assert sorted(seen) == names
    assert sorted(m.headers["periodic_task_name"] for m in messages) == names
    assert len({m.headers["monitor-check-in"] for m in messages}) == 20, "each run's message has its own headers"


@pytest.mark.e2e
def test_on_rabbitmq_a_wrapped_apply_entry_sees_every_run_and_heads_its_message(
        app: Celery, store: RedisStore, rabbitmq_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    app.conf.update(broker_url=rabbitmq_url, redis_scheduler_delivery="at-least-once", redis_scheduler_batch_size=8)
    seen: list[str] = []
    monkeypatch.setattr(Scheduler, "apply_entry", monitored(seen))
    names = entries(store, 20)
    queue = app.conf.task_default_queue
    try:
        assert first_interval(app) == "at-least-once"
        with Connection(rabbitmq_url) as conn:
            channel = conn.default_channel
            got: list[Any] = []

            def taken() -> bool:
                while (message := channel.basic_get(queue, no_ack=True)) is not None:
                    got.append(message)
                return len(got) >= 20

            wait_until(taken, timeout=10, what="20 messages")
    finally:
        with Connection(rabbitmq_url) as conn:
            Queue(queue, channel=conn.default_channel).delete()
    headers = [m.properties["application_headers"] for m in got]
    assert sorted(seen) == names
    assert sorted(h["periodic_task_name"] for h in headers) == names
    assert len({h["monitor-check-in"] for h in headers}) == 20


def test_a_run_the_task_refuses_is_quarantined_through_a_wrapped_apply_entry(
        app: Celery, store: RedisStore, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """Celery's ``apply_entry`` logs and drops a publish error; through it, beat still sorts the error out."""
    app.conf.redis_scheduler_delivery = "at-most-once"

    @app.task(name=f"tasks.strict-{app.conf.redis_scheduler_key_prefix}", shared=False)
    def strict(x: int) -> int:
        return x

    seen: list[str] = []
    monkeypatch.setattr(Scheduler, "apply_entry", monitored(seen))
    put(store, "strict", {"task": strict.name, "interval": {"every": 10, "period": "seconds"}, "args": [1, 2]})
    put(store, "fine", {"task": strict.name, "interval": {"every": 10, "period": "seconds"}, "args": [1]})
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0)
        with caplog.at_level(logging.ERROR):
            sched.tick(now=T0 + 10)
    finally:
        sched.close()
    assert [m.args for m in sent(broker, app)] == [[1]]
    reason = store.invalid_reason("strict") or ""
    assert reason.startswith("entry 'strict': field 'args': the task cannot be sent: TypeError: "), reason
    assert sorted(seen) == ["fine", "strict"]
    assert not [r for r in caplog.records if r.getMessage().startswith("Message Error")], "said by beat, once"


def test_no_tracer_provider_no_span() -> None:
    """The OpenTelemetry API's default provider records nothing: beat keeps filling messages in from shapes."""
    assert tracer() is None
