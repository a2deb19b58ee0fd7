"""With ``task_send_sent_event`` on, every run beat sends emits ``task-sent`` (what Flower and celery-exporter count),
and a batch's messages are still filled in from the shape Celery built for the first."""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from celery.beat import Scheduler
from celery.utils import uuid
from kombu import Connection, Queue

from celerybeatredis.delivery.redis_messages import RedisShapes, capturing
from celerybeatredis.delivery.shapes import render
from celerybeatredis.storage.redis_store import RedisStore

from ..support.helpers import T0, entries, first_interval, sent, ticks, unhurried
from ..support.processes import wait_until

#: Fields of a ``task-sent`` event that differ between two sends of one task.
VOLATILE = ("uuid", "root_id", "clock", "timestamp")


class Events:
    """A ``celery.events.EventReceiver`` on ``app``'s broker, in a thread: every event it receives, by type."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.received: list[dict[str, Any]] = []
        self.stopping = False
        self.thread = threading.Thread(target=self._capture, daemon=True)
        self.thread.start()
        probe = uuid()
        dispatcher = app.events.Dispatcher(app.connection_for_write())

        def probed() -> bool:  # a fanout reaches only a subscribed receiver: send until one arrives
            dispatcher.send("worker-online", probe=probe)
            return any(e.get("probe") == probe for e in self.received)

        wait_until(probed, timeout=10, interval=0.05, what="the event receiver to listen")
        dispatcher.close()

    def _capture(self) -> None:
        with self.app.connection_for_read() as conn:
            receiver = self.app.events.Receiver(conn, handlers={"*": self.received.append})
            while not self.stopping:
                try:
                    receiver.capture(limit=None, timeout=0.2, wakeup=False)
                except TimeoutError:
                    continue
                except OSError:  # socket.timeout on some kombu versions
                    continue

    def sent(self) -> list[dict[str, Any]]:
        return [e for e in self.received if e.get("type") == "task-sent"]

    def stop(self) -> None:
        self.stopping = True
        self.thread.join(5)


@pytest.fixture(params=["at-most-once", "at-least-once", "exactly-once"])
def events(request: pytest.FixtureRequest, app: Celery, redis_url: str) -> Iterator[Events]:
    """Events on, in each delivery mode (``exactly-once``: the broker in the schedule's database); their receiver."""
    app.conf.update(task_send_sent_event=True, redis_scheduler_delivery=request.param, redis_scheduler_batch_size=8)
    if request.param == "exactly-once":
        app.conf.broker_url = f"{redis_url}/0"
    receiver = Events(app)
    yield receiver
    receiver.stop()


def test_every_run_emits_task_sent_and_the_batch_is_filled_in_from_one_shape(
        app: Celery, store: RedisStore, events: Events, monkeypatch: pytest.MonkeyPatch) -> None:
    built: list[str] = []
    original = Scheduler.apply_async

    def counted(self: Scheduler, entry: Any, *args: Any, **kwargs: Any) -> Any:
        built.append(entry.name)
        return original(self, entry, *args, **kwargs)

    monkeypatch.setattr(Scheduler, "apply_async", counted)  # counts the runs Celery built, sends as before
    names = entries(store, 20)
    assert first_interval(app) == app.conf.redis_scheduler_delivery
    broker = redis.Redis.from_url(app.conf.broker_url)
    messages = {m.id: m for m in sent(broker, app)}
    assert sorted(m.args[0] for m in messages.values()) == names
    wait_until(lambda: len(events.sent()) >= 20, timeout=10, what="20 task-sent events")
    emitted = events.sent()
    assert sorted(e["uuid"] for e in emitted) == sorted(messages)
    for event in emitted:
        message = messages[event["uuid"]]
        assert event["name"] == "tasks.add"
        assert event["args"] == repr([message.args[0]])
        assert event["queue"] == app.conf.task_default_queue
    assert len({e["clock"] for e in emitted}) == 20, "each event forwards the logical clock"
    assert len(built) < 20, f"every run was built by Celery: {len(built)}"


@pytest.mark.e2e
@pytest.mark.parametrize("mode", ["at-most-once", "at-least-once"])
def test_on_rabbitmq_every_run_emits_task_sent_and_the_batch_is_filled_in_from_one_shape(
        app: Celery, store: RedisStore, rabbitmq_url: str, mode: str) -> None:
    app.conf.update(broker_url=rabbitmq_url, task_send_sent_event=True, redis_scheduler_delivery=mode,
                    redis_scheduler_batch_size=8)
    events = Events(app)
    try:
        names = entries(store, 20)
        sched = unhurried(app)
        try:
            sched.tick(now=T0)
            ticks(sched, T0 + 10)
            sched.publisher.settle()
            published = sched.publisher.confirms.published
            shapes = sched.publisher.messages.amqp_shapes
            kept = len(shapes.kept) if shapes is not None else 0
        finally:
            sched.close()
        wait_until(lambda: len(events.sent()) >= 20, timeout=10, what="20 task-sent events")
    finally:
        events.stop()
        with Connection(rabbitmq_url) as conn:
            Queue(app.conf.task_default_queue, channel=conn.default_channel).delete()
    emitted = events.sent()
    assert sorted(e["args"] for e in emitted) == sorted(repr([name]) for name in names)
    assert len({e["uuid"] for e in emitted}) == len({e["clock"] for e in emitted}) == 20
    assert published == 40, "each run's message and its event went out on the confirm channel"
    assert kept == 1, "the runs after the first were filled in from its shape"


def test_a_filled_in_sent_event_is_what_celery_sends(redis_url: str, prefix: str) -> None:
    app = Celery("events", set_as_current=False)
    app.conf.update(broker_url=f"{redis_url}/2", task_send_sent_event=True, task_default_queue=f"q-{prefix}")
    producer = Scheduler(app, lazy=True).producer
    shapes = RedisShapes(app)
    key = shapes.rules.key("tasks.add", {})
    assert key is not None
    first, second = uuid(), uuid()
    with capturing(producer) as capture:
        app.send_task("tasks.add", [0], {}, producer=producer, task_id=first, headers={"periodic_task_name": "a"})
        shapes.learn(key, capture.take(), first)
        app.send_task("tasks.add", [1, "two"], {"k": 3}, producer=producer, task_id=second,
                      headers={"periodic_task_name": "b"})
        by_celery = capture.take()
    definition = type("D", (), {"task": "tasks.add", "args": (1, "two"), "kwargs": {"k": 3}})()
    before = time.time()
    rendered = render(shapes, key, definition, {"periodic_task_name": "b"}, second)
    assert rendered is not None
    assert [(c, k) for c, k, _ in rendered] == [(c, k) for c, k, _ in by_celery]
    celery_event, filled = (event_of(commands) for commands in (by_celery, rendered))
    assert {k: v for k, v in filled.items() if k not in VOLATILE} == {
        k: v for k, v in celery_event.items() if k not in VOLATILE}
    assert list(filled) == list(celery_event)
    assert filled["uuid"] == filled["root_id"] == second
    assert filled["clock"] > celery_event["clock"] and filled["timestamp"] >= before


def event_of(commands: list[tuple[str, str, str]]) -> dict[str, Any]:
    """The ``task-sent`` event among a run's broker commands, decoded."""
    (envelope,) = [json.loads(v) for c, _, v in commands if c == "publish"]
    event: dict[str, Any] = json.loads(base64.b64decode(envelope["body"]))
    assert event["type"] == "task-sent"
    return event
