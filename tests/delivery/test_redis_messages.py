"""Messages beat captures are the ones ``send_task`` writes to a Redis broker, field for field but ids and times."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
import redis
from celery import Celery
from celery.beat import Scheduler
from celery.signals import before_task_publish
from celery.utils import uuid
from kombu import Exchange, Queue

from celerybeatredis.delivery.redis_messages import Capture, RedisShapes, capturing, encode
from celerybeatredis.delivery.sending import run_headers
from celerybeatredis.delivery.shapes import OWN_OPTIONS, render

#: Fields that differ between two sends of one task, whatever builds them.
VOLATILE_HEADERS = ("id", "root_id", "eta", "expires")
VOLATILE_PROPERTIES = ("correlation_id", "delivery_tag", "expiration")


@pytest.fixture
def broker_app(redis_url: str, prefix: str) -> Iterator[Celery]:
    """An app whose broker is db 2 with a direct exchange bound to three queues and a priority queue."""
    conn = redis.Redis.from_url(f"{redis_url}/2")
    conn.flushdb()
    app = Celery("messages", set_as_current=False)
    direct = Exchange("events", type="direct")
    app.conf.update(
        broker_url=f"{redis_url}/2",
        task_default_queue="plain",
        task_queues=[Queue("plain"), Queue("hi", queue_arguments={"x-max-priority": 9}),
                     Queue("ev-a", direct, routing_key="ev"), Queue("ev-b", direct, routing_key="ev"),
                     Queue("ev-c", direct, routing_key="ev.c")],
        broker_transport_options={"queue_order_strategy": "priority"},
    )
    with app.connection_for_write() as connection:
        channel = connection.default_channel
        for queue in app.conf.task_queues:
            queue(channel).declare()
    yield app
    conn.flushdb()
    conn.close()


#: (options, expected queues): one per option the issue names.
CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({}, {"plain"}),
    ({"queue": "hi"}, {"hi"}),
    ({"queue": "hi", "priority": 7}, {"hi\x06\x166"}),
    ({"routing_key": "plain"}, {"plain"}),
    ({"exchange": "events", "routing_key": "ev"}, {"ev-a", "ev-b"}),
    ({"exchange": "events", "routing_key": "ev.c"}, {"ev-c"}),
    ({"headers": {"tenant": "t1", "periodic_task_name": "e"}}, {"plain"}),
    ({"expires": 30}, {"plain"}),
    ({"countdown": 10}, {"plain"}),
    ({"eta": datetime(2030, 1, 1, tzinfo=timezone.utc)}, {"plain"}),
    ({"expires": datetime.now(timezone.utc) + timedelta(hours=1), "priority": 3, "queue": "hi"}, {"hi\x06\x163"}),
]


def written(conn: redis.Redis) -> dict[str, list[dict[str, Any]]]:
    """Every list on the broker's db: queue name -> its messages, decoded."""
    out: dict[str, list[dict[str, Any]]] = {}
    for key in conn.keys("*"):
        if conn.type(key) == b"list":
            out[key.decode()] = [json.loads(m) for m in conn.lrange(key, 0, -1)]
    return out


def arrived(conn: redis.Redis, count: int, seconds: float = 10.0) -> dict[str, list[dict[str, Any]]]:
    """The broker's lists once ``count`` of them hold a message (kombu may route a message after ``send_task`` returns)."""
    deadline = time.monotonic() + seconds
    while len(found := written(conn)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return found


def comparable(message: dict[str, Any]) -> dict[str, Any]:
    """``message`` without the fields two sends of one task never share."""
    message = json.loads(json.dumps(message))
    for field in VOLATILE_HEADERS:
        message["headers"].pop(field, None)
    for field in VOLATILE_PROPERTIES:
        message["properties"].pop(field, None)
    return message


@pytest.mark.parametrize(("options", "queues"), CASES, ids=[",".join(o) or "defaults" for o, _ in CASES])
def test_captured_message_is_what_send_task_writes(broker_app: Celery, redis_url: str, options: dict[str, Any],
                                                   queues: set[str]) -> None:
    conn = redis.Redis.from_url(f"{redis_url}/2")
    scheduler = Scheduler(broker_app, lazy=True)
    producer = scheduler.producer
    args, kwargs = (1, "two", [3.0]), {"k": {"nested": True}}
    broker_app.send_task("tasks.add", args, kwargs, producer=producer, **options)
    sent = arrived(conn, len(queues))
    assert set(sent) == queues
    conn.delete(*sent)  # the messages, not kombu's bindings
    with capturing(producer) as capture:
        broker_app.send_task("tasks.add", args, kwargs, producer=producer, **options)
    commands = capture.take()
    assert written(conn) == {}, "a captured message must not reach the broker"
    pushed = {key: [json.loads(value)] for command, key, value in commands if command == "lpush"}
    assert set(pushed) == queues
    for queue in queues:
        assert comparable(pushed[queue][0]) == comparable(sent[queue][0])
        assert pushed[queue][0]["headers"]["id"] != sent[queue][0]["headers"]["id"]
        # An expiry is sent as milliseconds left, so two sends a moment apart differ by that moment.
        expirations = [float(m[0]["properties"].get("expiration", 0)) for m in (pushed[queue], sent[queue])]
        assert abs(expirations[0] - expirations[1]) < 60_000


def test_capture_adds_kombu_global_keyprefix(redis_url: str) -> None:
    app = Celery("prefixed", set_as_current=False)
    app.conf.update(broker_url=f"{redis_url}/2", broker_transport_options={"global_keyprefix": "pfx:"})
    producer = Scheduler(app, lazy=True).producer
    with capturing(producer) as capture:
        app.send_task("tasks.add", (1,), producer=producer)
    assert [(c, k) for c, k, _ in capture.take()] == [("lpush", "pfx:celery")]


def test_capture_refuses_a_command_it_cannot_write() -> None:
    with pytest.raises(ValueError, match="'rpush'"):
        Capture().add("rpush", "q", "m")


def test_capturing_needs_a_redis_broker() -> None:
    app = Celery("memory", set_as_current=False, broker="memory://")
    producer = Scheduler(app, lazy=True).producer
    with pytest.raises(RuntimeError, match="not a Redis server"), capturing(producer):
        pass


def test_encode_numbers_runs_by_their_plan() -> None:
    assert json.loads(encode({2: [("lpush", "q", "m2")], 1: [("lpush", "q", "é")]})) == [
        [1, "lpush", "q", "é"], [2, "lpush", "q", "m2"]]


SHAPED = [(options, queues) for options, queues in CASES if not OWN_OPTIONS.intersection(options)]


@pytest.mark.parametrize(("options", "queues"), SHAPED, ids=[",".join(o) or "defaults" for o, _ in SHAPED])
def test_a_message_filled_in_from_its_shape_is_what_send_task_writes(broker_app: Celery, redis_url: str,
                                                                     options: dict[str, Any], queues: set[str]) -> None:
    """The second run of a task and options is filled in from the first one's message, not built by Celery."""
    conn = redis.Redis.from_url(f"{redis_url}/2")
    producer = Scheduler(broker_app, lazy=True).producer
    builder = RedisShapes(broker_app)

    def headers(name: str, tid: str, at: str) -> dict[str, Any]:  # each run's own, as beat sets them
        return {**options.get("headers", {}), **run_headers(name, tid, at, at[-8:], "t")}

    key = builder.rules.key("tasks.add", options)
    assert key is not None
    first, second = uuid(), uuid()
    with capturing(producer) as capture:
        broker_app.send_task("tasks.add", [0], {}, producer=producer, task_id=first,
                             **{**options, "headers": headers("a", first, "2026-12-08T01:59:00.250000+00:00")})
    builder.learn(key, capture.take(), first)
    definition = SimpleNamespace(task="tasks.add", args=(1, "two", [3.0]), kwargs={"k": {"nested": True}})
    own = headers("b", second, "2026-12-08T02:00:00+00:00")
    rendered = render(builder, key, definition, own, second)
    assert rendered is not None
    broker_app.send_task("tasks.add", [1, "two", [3.0]], {"k": {"nested": True}}, producer=producer, task_id=second,
                         **{**options, "headers": own})
    sent = arrived(conn, len(queues))
    pushed = {key: json.loads(value) for command, key, value in rendered if command == "lpush"}
    assert set(pushed) == set(sent) == queues
    for queue in queues:
        assert comparable(pushed[queue]) == comparable(sent[queue][0])
        assert pushed[queue]["headers"]["id"] == pushed[queue]["headers"]["root_id"] == second
        assert pushed[queue]["properties"]["correlation_id"] == second


def test_a_run_whose_message_reads_the_clock_is_always_built_by_celery(broker_app: Celery) -> None:
    builder = RedisShapes(broker_app)
    assert builder.rules.key("tasks.add", {"expires": 30}) is None
    assert builder.rules.key("tasks.add", {"countdown": 5}) is None
    assert builder.rules.key("tasks.add", {"queue": "hi"}) is not None


def test_a_publish_signal_with_receivers_has_every_run_built_by_celery(broker_app: Celery) -> None:
    def receiver(**_: Any) -> None:
        """Sees each message."""

    builder = RedisShapes(broker_app)
    before_task_publish.connect(receiver, weak=False)
    try:
        assert builder.rules.key("tasks.add", {}) is None
    finally:
        before_task_publish.disconnect(receiver)
    assert builder.rules.key("tasks.add", {}) is not None
