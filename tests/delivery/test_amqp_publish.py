"""Beat's own publishing on RabbitMQ (a private node the suite starts): each message is what ``send_task`` sends,
a batch goes out with publisher confirms, and a run the broker refused is put back, never lost."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import amqp
import pytest
from celery import Celery
from celery.beat import Scheduler
from celery.signals import after_task_publish, before_task_publish
from celery.utils import uuid
from kombu import Connection, Exchange, Queue

from celerybeatredis.delivery.amqp_messages import AmqpShapes, capturing_amqp
from celerybeatredis.delivery.confirms import Answers, ConfirmChannel
from celerybeatredis.delivery.modes import AT_LEAST_ONCE, AT_MOST_ONCE
from celerybeatredis.delivery.sending import run_headers
from celerybeatredis.delivery.shapes import OWN_OPTIONS, render
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from ..support.helpers import EVERY_10S_DOC, T0, put
from ..support.processes import wait_until
from ..support.rabbitmq_server import RabbitMQServer

pytestmark = [pytest.mark.e2e]

EVENTS = Exchange("cbr-events", type="direct")
QUEUES = [Queue("cbr-plain"), Queue("cbr-hi", queue_arguments={"x-max-priority": 9}),
          Queue("cbr-ev-a", EVENTS, routing_key="ev"), Queue("cbr-ev-b", EVENTS, routing_key="ev"),
          Queue("cbr-ev-c", EVENTS, routing_key="ev.c")]

#: (options, expected queues): every option the messages must carry as ``send_task`` sends them.
CASES: list[tuple[dict[str, Any], set[str]]] = [
    ({}, {"cbr-plain"}),
    ({"queue": "cbr-hi"}, {"cbr-hi"}),
    ({"queue": "cbr-hi", "priority": 7}, {"cbr-hi"}),
    ({"routing_key": "cbr-plain"}, {"cbr-plain"}),
    ({"exchange": "cbr-events", "routing_key": "ev"}, {"cbr-ev-a", "cbr-ev-b"}),
    ({"exchange": "cbr-events", "routing_key": "ev.c"}, {"cbr-ev-c"}),
    ({"headers": {"tenant": "t1"}}, {"cbr-plain"}),
    ({"expires": 30}, {"cbr-plain"}),
    ({"countdown": 10}, {"cbr-plain"}),
    ({"eta": datetime(2030, 1, 1, tzinfo=timezone.utc)}, {"cbr-plain"}),
    ({"expires": datetime.now(timezone.utc) + timedelta(hours=1), "priority": 3, "queue": "cbr-hi"}, {"cbr-hi"}),
]
ARGS, KWARGS = [1, "two", [3.0]], {"k": {"nested": True}}  # beat passes args as a list


@pytest.fixture
def rabbit_app(rabbitmq_url: str) -> Iterator[Celery]:
    """An app on RabbitMQ with a direct exchange bound to three queues, and a priority queue."""
    app = Celery("amqp-messages", set_as_current=False)
    app.conf.update(broker_url=rabbitmq_url, task_default_queue="cbr-plain", task_queues=QUEUES)
    with Connection(rabbitmq_url) as conn:
        for queue in QUEUES:
            queue(conn.default_channel).declare()
            queue(conn.default_channel).purge()
    yield app
    with Connection(rabbitmq_url) as conn:
        for queue in QUEUES:
            queue(conn.default_channel).delete()
        EVENTS(conn.default_channel).delete()


def take(url: str, queues: set[str]) -> dict[str, amqp.Message]:
    """The one message each of ``queues`` holds, taken off it (waited for: a plain publish is not confirmed)."""
    got: dict[str, amqp.Message] = {}
    with Connection(url) as conn:
        channel = conn.default_channel

        def arrived() -> bool:
            for queue in queues - set(got):
                message = channel.basic_get(queue, no_ack=True)
                if message is not None:
                    got[queue] = message
            return len(got) == len(queues)

        wait_until(arrived, timeout=10, interval=0.02, what=f"a message on each of {sorted(queues)}")
        assert all(channel.basic_get(q, no_ack=True) is None for q in queues), "one message a queue expected"
    return got


def comparable(message: amqp.Message) -> dict[str, Any]:
    """What a worker sees of ``message``, without the task id and the times, which no two sends share."""
    properties = dict(message.properties)
    headers = dict(properties.pop("application_headers"))
    for field in ("id", "root_id", "eta", "expires"):
        headers[field] = headers[field] is not None  # set or not, whatever the time
    properties.pop("correlation_id")
    properties["expiration"] = "expiration" in properties
    return {"body": message.body, "properties": properties, "headers": headers,
            "exchange": message.delivery_info["exchange"], "routing_key": message.delivery_info["routing_key"]}


@pytest.mark.parametrize(("options", "queues"), CASES, ids=[",".join(o) or "defaults" for o, _ in CASES])
def test_beats_message_is_what_send_task_sends(rabbit_app: Celery, rabbitmq_url: str, options: dict[str, Any],
                                               queues: set[str]) -> None:
    """The second run of a task and options, filled in from the first (or built by Celery, for options read at the
    time of sending), published with confirms, arrives as ``send_task``'s message does."""
    producer = Scheduler(rabbit_app, lazy=True).producer

    first, second = uuid(), uuid()

    def headers(name: str, tid: str, at: str) -> dict[str, Any]:  # each run's own, as beat sets them
        return {**options.get("headers", {}), **run_headers(name, tid, at, at[-8:], "t")}

    send = {**options, "headers": headers("b", second, "2026-12-08T02:00:00+00:00")}
    rabbit_app.send_task("tasks.add", ARGS, KWARGS, producer=producer, task_id=second, **send)
    sent = take(rabbitmq_url, queues)
    builder = AmqpShapes(rabbit_app)
    key = builder.rules.key("tasks.add", options)
    assert (key is None) == bool(OWN_OPTIONS.intersection(options))
    with capturing_amqp(producer) as capture:
        rabbit_app.send_task("tasks.add", [0], {}, producer=producer, task_id=first,
                             **{**options, "headers": headers("a", first, "2026-12-08T01:59:00.250000+00:00")})
        learned = capture.take()
        if key is None:
            rabbit_app.send_task("tasks.add", ARGS, KWARGS, producer=producer, task_id=second, **send)
            outgoing = capture.take()
    if key is not None:
        builder.learn(key, learned, first)
        rendered = render(builder, key, SimpleNamespace(task="tasks.add", args=ARGS, kwargs=KWARGS),
                          send["headers"], second)
        assert rendered is not None, "a shape was learned"
        outgoing = rendered
    confirmed = ConfirmChannel().publish(producer, {7: outgoing})
    assert confirmed.acked == {7}
    assert confirmed.error is None
    ours = take(rabbitmq_url, queues)
    for queue in queues:
        a, b = comparable(ours[queue]), comparable(sent[queue])
        assert {k: v for k, v in a["headers"].items() if b["headers"].get(k) != v} == {}
        assert a == b
        got = ours[queue].properties
        assert got["application_headers"]["id"] == got["application_headers"]["root_id"] == got["correlation_id"] == second
        # An expiry is sent as milliseconds left, so two sends a moment apart differ by that moment.
        expirations = [float(m.properties.get("expiration", 0)) for m in (ours[queue], sent[queue])]
        assert abs(expirations[0] - expirations[1]) < 60_000


def consume(url: str, queue: str) -> list[amqp.Message]:
    """Every message ``queue`` holds, taken off it."""
    got: list[amqp.Message] = []
    with Connection(url) as conn:
        while (message := conn.default_channel.basic_get(queue, no_ack=True)) is not None:
            got.append(message)
    return got


def tick_until_sent(sched: RedisScheduler, now: float) -> None:
    """Tick at ``now`` until a batch was dispatched (the first ticks may only read the schedule)."""
    for _ in range(20):
        if sched.tick(now=now) > 0:
            return


@pytest.mark.parametrize("mode", [AT_MOST_ONCE, AT_LEAST_ONCE])
def test_a_batch_is_confirmed_and_signals_fire_per_run(app: Celery, store: RedisStore, rabbitmq_url: str,
                                                       mode: str) -> None:
    queue = app.conf.task_default_queue
    app.conf.update(broker_url=rabbitmq_url, redis_scheduler_delivery=mode)
    names = [f"s{i:02d}" for i in range(30)]
    for name in names:
        put(store, name, dict(EVERY_10S_DOC, args=[name]))
    seen: dict[str, list[str]] = {"before": [], "after": []}

    def before(headers: dict[str, Any], **_: Any) -> None:
        seen["before"].append(headers["periodic_task_name"])

    def after(headers: dict[str, Any], **_: Any) -> None:
        seen["after"].append(headers["periodic_task_name"])

    sched = RedisScheduler(app)
    sched.max_interval = 3600.0
    try:
        sched.tick(now=T0)
        before_task_publish.connect(before, weak=False)
        after_task_publish.connect(after, weak=False)
        try:
            tick_until_sent(sched, T0 + 10)
        finally:
            before_task_publish.disconnect(before)
            after_task_publish.disconnect(after)
        tick_until_sent(sched, T0 + 20)  # no receivers: filled in from the shape the first run left
        published = sched.publisher.confirms.published
        shapes = len(sched.publisher.messages.amqp_shapes.kept) if sched.publisher.messages.amqp_shapes else 0
    finally:
        sched.close()
        messages = consume(rabbitmq_url, queue)
        with Connection(rabbitmq_url) as conn:
            Queue(queue, channel=conn.default_channel).delete()
    assert sorted(seen["before"]) == sorted(seen["after"]) == names
    assert published == 2 * len(names), "every message went out on the confirm channel"
    assert shapes == 1
    runs = [(m.properties["application_headers"]["periodic_task_name"], m.body) for m in messages]
    assert sorted(runs) == sorted(2 * [(name, f'[["{name}"], {{}}, {{"callbacks": null, "errbacks": null, '
                                               '"chain": null, "chord": null}]') for name in names])
    assert len({m.properties["correlation_id"] for m in messages}) == len(messages)
    assert store.client.zcard(store.keys.pending) == 0


@pytest.mark.parametrize("mode", [AT_MOST_ONCE, AT_LEAST_ONCE])
def test_runs_the_broker_refuses_are_put_back_and_sent_later(app: Celery, store: RedisStore, rabbitmq_url: str,
                                                             mode: str) -> None:
    """A queue that refuses publishes once it holds 5 messages: RabbitMQ nacks the rest of the batch."""
    limited = Queue(app.conf.task_default_queue, queue_arguments={"x-max-length": 5, "x-overflow": "reject-publish"})
    app.conf.update(broker_url=rabbitmq_url, redis_scheduler_delivery=mode, task_queues=[limited],
                    redis_scheduler_publish_retry_seconds=1.0)
    with Connection(rabbitmq_url) as conn:
        limited(conn.default_channel).declare()
    names = [f"n{i:02d}" for i in range(12)]
    for name in names:
        put(store, name, dict(EVERY_10S_DOC, args=[name]))
    received: list[list[str]] = []
    sched = RedisScheduler(app)
    sched.max_interval = 3600.0
    try:
        sched.tick(now=T0)
        for now in (T0 + 10, T0 + 12, T0 + 14):  # due again 1 s after a refusal; the 5 taken, 10 s after
            tick_until_sent(sched, now)
            assert store.client.zcard(store.keys.pending) == 0
            received.append(sorted(m.properties["application_headers"]["periodic_task_name"]
                                   for m in consume(rabbitmq_url, limited.name)))
    finally:
        sched.close()
        with Connection(rabbitmq_url) as conn:
            limited(conn.default_channel).delete()
    assert [len(r) for r in received] == [5, 5, 2]
    assert sorted(name for batch in received for name in batch) == names


@pytest.mark.parametrize("mode", [AT_MOST_ONCE, AT_LEAST_ONCE])
def test_runs_the_broker_never_confirms_are_not_lost(app: Celery, store: RedisStore, rabbitmq_node: RabbitMQServer,
                                                      mode: str) -> None:
    """A memory alarm on the node: RabbitMQ stops reading from publishers, so no confirm comes. ``at-least-once``
    leaves the runs pending (sent again with their task ids after the lease), ``at-most-once`` puts them back."""
    queue = app.conf.task_default_queue
    app.conf.update(broker_url=rabbitmq_node.url, redis_scheduler_delivery=mode,
                    redis_scheduler_publish_retry_seconds=1.0, redis_scheduler_lease_seconds=2.0)
    names = [f"u{i:02d}" for i in range(8)]
    for name in names:
        put(store, name, dict(EVERY_10S_DOC, args=[name]))
    sched = RedisScheduler(app)
    sched.max_interval = 3600.0
    sched.publisher.confirms.timeout = 1.0
    try:
        sched.tick(now=T0)
        with Connection(rabbitmq_node.url) as conn:
            app.amqp.queues[queue](conn.default_channel).declare()
        rabbitmq_node.ctl("set_vm_memory_high_watermark", "0")
        try:
            tick_until_sent(sched, T0 + 10)
            pending = store.client.zcard(store.keys.pending)
        finally:
            rabbitmq_node.ctl("set_vm_memory_high_watermark", "0.4")
        assert pending == (len(names) if mode == AT_LEAST_ONCE else 0)
        # Sent again once the broker takes messages: put back runs 1 s later, pending runs after the 2 s lease.
        for now in (T0 + 11.5, T0 + 13):
            sched.tick(now=now)
        assert store.client.zcard(store.keys.pending) == 0
        messages = wait_until(lambda: consume(rabbitmq_node.url, queue), timeout=10, what="the runs sent again")
    finally:
        sched.close()
        with Connection(rabbitmq_node.url) as conn:
            Queue(queue, channel=conn.default_channel).delete()
    headers = [m.properties["application_headers"] for m in messages]
    # The batch the alarm held may have reached the queue too: every run arrives, any copy with one task id.
    assert {h["periodic_task_name"] for h in headers} == set(names)
    ids = {h["periodic_task_name"]: set() for h in headers}
    for h in headers:
        ids[h["periodic_task_name"]].add(h["id"])
    if mode == AT_LEAST_ONCE:
        assert all(len(tids) == 1 for tids in ids.values()), ids


def test_answers_cover_one_message_or_every_one_up_to_a_number() -> None:
    """RabbitMQ may answer each message, or many at once (``multiple``; number 0: all); a nack wins over an ack."""
    confirms = ConfirmChannel()
    answers = confirms.answers[1] = Answers()
    for tag, key in enumerate([10, 11, 12, 13, 14, 14], start=1):  # key 14: a run of two messages
        confirms.outstanding[tag] = (1, key)
        answers.waiting += 1
    confirms._nack(2, False)
    confirms._ack(4, True)
    assert (answers.acked, answers.nacked, answers.waiting) == ({10, 12, 13}, {11}, 2)
    confirms._ack(6, False)
    confirms._nack(0, True)
    assert (answers.acked, answers.nacked, answers.waiting) == ({10, 12, 13, 14}, {11, 14}, 0)
    assert confirms.outstanding == {}
