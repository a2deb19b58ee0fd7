"""A run's task message as kombu's py-amqp transport would publish it, captured instead of sent, and filled in.

Celery builds the message (``send_task``, signals included) and kombu prepares
it (``amqp.Message``: body, properties, headers) and declares what it routes
to; only the last step, ``basic_publish``, is replaced: the message and where
it goes are kept, so beat can publish a batch of them on a channel in confirm
mode (:mod:`.confirms`). As on Redis (:mod:`.builder`), the first run of each
task and options is built by Celery and kept as a shape; later runs copy it
with their own task id, body, ``argsrepr`` / ``kwargsrepr`` and
``periodic_task_name``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import amqp
from celery import Celery
from kombu import Producer

from .builder import SHAPE_SECONDS, SHAPES, Builder


class Outgoing(NamedTuple):
    """One message to publish and where to: the arguments kombu would give ``basic_publish``."""

    message: amqp.Message
    exchange: str
    routing_key: str
    mandatory: bool
    immediate: bool


class AmqpCapture:
    """Installed as the producer's current publish batch (kombu's hook): keeps each message instead of publishing it."""

    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    def publish(self, channel: Any, message: amqp.Message, exchange: str = "", routing_key: str = "",
                mandatory: bool = False, immediate: bool = False, **_: Any) -> None:
        """A message kombu prepared (``timeout`` / ``confirm_timeout`` are the publisher's own)."""
        self.messages.append(Outgoing(message, exchange or "", routing_key or "", bool(mandatory), bool(immediate)))

    def take(self) -> list[Outgoing]:
        """The messages captured since the last call."""
        messages, self.messages = self.messages, []
        return messages

    def flush(self) -> None:
        """Nothing is buffered: the messages are the caller's to publish."""

    def abort(self) -> None:
        """Nothing is buffered: the messages are the caller's to publish."""

    def close(self) -> None:
        """Nothing to release."""


def amqp_capturable(producer: Producer) -> bool:
    """Whether ``producer`` publishes through kombu's py-amqp transport (RabbitMQ), whose messages beat can capture."""
    return isinstance(producer.channel, amqp.Channel)


@contextmanager
def capturing_amqp(producer: Producer) -> Iterator[AmqpCapture]:
    """Within this block, every task published through ``producer`` is captured, not sent."""
    if not amqp_capturable(producer):
        raise RuntimeError("the broker is not reached through py-amqp: its messages cannot be published by beat")
    local = producer._batch_local
    if getattr(local, "current", None) is not None:
        raise RuntimeError("the producer is already in a publish batch")
    capture = AmqpCapture()
    local.current = capture
    try:
        yield capture
    finally:
        del local.current


class AmqpShape(NamedTuple):
    """A message Celery built: where it went, its properties (headers apart), headers, task id and body's third part."""

    outgoing: list[tuple[str, str, bool, bool]]
    properties: dict[str, Any]
    headers: dict[str, Any]
    task_id: str
    embed: Any
    made: float


class AmqpBuilder:
    """Fills in AMQP messages from the shapes Celery built (see the module's docstring).

    Which runs take a shape (``key``) is the Redis builder's rule: no option
    read at the time of sending, no publish signal with receivers.
    """

    def __init__(self, app: Celery) -> None:
        self.rules = Builder(app, body_encoding="text")
        self.shapes: dict[str, AmqpShape] = {}

    def key(self, task: str, options: Any) -> str | None:
        """The shape a run of ``task`` with ``options`` takes; None when it must be built by Celery."""
        return self.rules.key(task, options)

    def render(self, key: str, definition: Any, name: str, task_id: str) -> list[Outgoing] | None:
        """The messages of a run of ``definition`` (entry ``name``) with ``task_id``; None when no shape is kept."""
        shape = self.shapes.get(key)
        if shape is None or time.monotonic() - shape.made > SHAPE_SECONDS:
            return None
        body, argsrepr, kwargsrepr = self.rules.body(definition, shape.embed)
        old = shape.task_id
        headers = {k: task_id if v == old else v for k, v in shape.headers.items()}
        headers.update(argsrepr=argsrepr, kwargsrepr=kwargsrepr, periodic_task_name=name)
        properties = {k: task_id if v == old else v for k, v in shape.properties.items()}
        return [Outgoing(amqp.Message(body, application_headers=headers, **properties), *where)
                for where in shape.outgoing]

    def learn(self, key: str, messages: list[Outgoing], task_id: str) -> None:
        """Keep the message Celery built for a run with ``task_id`` as the shape of ``key`` (a JSON text body only)."""
        if not messages:
            return
        first = messages[0].message
        properties = dict(first.properties)
        headers = properties.pop("application_headers", None)
        if (not isinstance(headers, dict) or properties.get("content_type") != "application/json"
                or properties.get("content_encoding") != "utf-8" or not isinstance(first.body, str)
                or any(m.message.body != first.body or m.message.properties != first.properties for m in messages)):
            return
        _, _, embed = json.loads(first.body)
        if len(self.shapes) >= SHAPES:
            self.shapes.clear()
        where = [(m.exchange, m.routing_key, m.mandatory, m.immediate) for m in messages]
        self.shapes[key] = AmqpShape(where, properties, dict(headers), task_id, embed, time.monotonic())
