"""A run's task message as kombu's py-amqp transport would publish it, captured instead of sent, and filled in.

Celery builds the message (``send_task``, signals included) and kombu prepares
it (``amqp.Message``: body, properties, headers) and declares what it routes
to; only the last step, ``basic_publish``, is replaced: the message and where
it goes are kept, so beat can publish a batch of them on a channel in confirm
mode (:mod:`.confirms`). As on Redis (:mod:`.redis_messages`), the first run of each
task and options is built by Celery and kept as a shape; later runs copy it
with their own task id, body, ``argsrepr`` / ``kwargsrepr`` and
headers (:func:`~.sending.run_headers`), and their own ``task-sent`` event
when Celery sends one (``task_send_sent_event``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from struct import pack
from typing import Any, NamedTuple

import amqp
from amqp.serialization import dumps
from celery import Celery
from kombu import Producer
from kombu.utils.json import dumps as json_dumps

from .headers import HEADER, PER_RUN
from .shapes import Body, KeptShapes, ShapeRules


class Outgoing(NamedTuple):
    """One message to publish, encoded as AMQP sends it, and where to (the arguments of ``basic_publish``)."""

    exchange: str
    routing_key: str
    mandatory: bool
    immediate: bool
    #: The content header's property flags and property list.
    properties: bytes
    body: bytes
    #: The message kombu prepared, when Celery built it (None when filled in from a shape).
    message: amqp.Message | None = None


def outgoing(message: amqp.Message, exchange: str, routing_key: str, mandatory: bool, immediate: bool) -> Outgoing:
    """``message`` encoded as py-amqp's frame writer encodes it (a text body in its content encoding)."""
    body = message.body
    if isinstance(body, str):
        body = body.encode(message.properties.setdefault("content_encoding", "utf-8"))
    return Outgoing(exchange=exchange or "", routing_key=routing_key or "", mandatory=bool(mandatory),
                    immediate=bool(immediate), properties=message._serialize_properties(), body=bytes(body), message=message)


class AmqpCapture:
    """Installed as the producer's current publish batch (kombu's hook): keeps each message instead of publishing it."""

    def __init__(self) -> None:
        self.messages: list[Outgoing] = []

    def publish(self, channel: Any, message: amqp.Message, exchange: str = "", routing_key: str = "",
                mandatory: bool = False, immediate: bool = False, **_: Any) -> None:
        """A message kombu prepared (``timeout`` / ``confirm_timeout`` are the publisher's own)."""
        self.messages.append(outgoing(message, exchange, routing_key, mandatory, immediate))

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
    """A message Celery built, as parts of its encoded properties: bytes kept as they are, and the names of the
    values each run sets (:data:`RUN_FIELDS`); with where it went, and the third part of its body."""

    parts: list[bytes | str]
    outgoing: list[tuple[str, str, bool, bool]]
    embed: Any
    #: The ``task-sent`` event published with it (``task_send_sent_event``): its first message, its fields decoded.
    events: list[tuple[Outgoing, dict[str, Any]]] = []


#: The values a run sets in a shape: its task id (in the headers ``id``, ``root_id`` and the property
#: ``correlation_id``), ``argsrepr``, ``kwargsrepr``, ``periodic_task_name`` and the other headers of the run (each
#: beat sets on all its runs or on none).
NEEDED_FIELDS = ("argsrepr", "kwargsrepr", HEADER)
RUN_FIELDS = (*NEEDED_FIELDS, *PER_RUN)
TASK_ID = "\0task_id"


class AmqpShapes:
    """Fills in AMQP messages from the shapes Celery built (see the module's docstring).

    Which runs take a shape (``key``) is the rule both transports share
    (:mod:`.shapes`): no option read at the time of sending, no publish signal with receivers. A shape is
    kept encoded, so a run costs its body and a few string joins, not an
    encoding of its two dozen headers.
    """

    def __init__(self, app: Celery, generation: int = 0) -> None:
        self.rules = ShapeRules(app, body_encoding="text", events=True)
        #: The confirm channel's generation the shapes were learned on (:class:`.confirms.ConfirmChannel`).
        self.generation = generation
        self.kept: KeptShapes[AmqpShape] = KeptShapes()

    def fill_in(self, shape: AmqpShape, serialized: Body, run_headers: dict[str, str], task_id: str) -> list[Outgoing]:
        """The messages of a run with ``task_id`` and ``run_headers``, its body ``serialized`` (:func:`.shapes.render`)."""
        body, argsrepr, kwargsrepr = serialized
        values = {**run_headers, TASK_ID: task_id, "argsrepr": argsrepr, "kwargsrepr": kwargsrepr}
        properties = fill(shape.parts, values)
        data = body.encode("utf-8")
        out = [Outgoing(exchange=exchange, routing_key=routing_key, mandatory=mandatory, immediate=immediate,
                        properties=properties, body=data) for exchange, routing_key, mandatory, immediate in shape.outgoing]
        for message, event in shape.events:  # as Celery's event dispatcher publishes it: the clock forwarded, time now
            fields = {**event, "uuid": task_id, "root_id": task_id, "args": argsrepr, "kwargs": kwargsrepr,
                      "clock": self.rules.app.clock.forward(), "timestamp": time.time()}
            out.append(message._replace(body=json_dumps(fields).encode("utf-8"), message=None))
        return out

    def learn(self, key: str, messages: list[Outgoing], task_id: str) -> None:
        """Keep the message Celery built for a run with ``task_id`` as the shape of ``key`` (a JSON text body only,
        each header a run sets a string)."""
        events = [(m, sent_event(m, task_id)) for m in messages if m.message is not None and "task" not in
                  (m.message.properties.get("application_headers") or {})]
        messages = [m for m in messages if all(m is not e for e, _ in events)]
        if not messages or messages[0].message is None or any(event is None for _, event in events):
            return
        first = messages[0].message
        properties = dict(first.properties)
        headers = properties.get("application_headers")
        if (not isinstance(headers, dict) or properties.get("content_type") != "application/json"
                or properties.get("content_encoding") != "utf-8" or not isinstance(first.body, str)
                or any(m.properties != messages[0].properties or m.body != messages[0].body for m in messages)
                or not all(isinstance(headers.get(k), str) for k in NEEDED_FIELDS)
                or not all(isinstance(headers[k], str) for k in PER_RUN if k in headers)):
            return
        parts = template(properties, task_id)
        values = {TASK_ID: task_id, **{k: headers[k] for k in RUN_FIELDS if k in headers}}
        if fill(parts, values) != messages[0].properties:  # encoded otherwise than this module expects
            return
        _, _, embed = json.loads(first.body)
        where = [(m.exchange, m.routing_key, m.mandatory, m.immediate) for m in messages]
        self.kept.keep(key, AmqpShape(parts=parts, outgoing=where, embed=embed,
                                      events=[(m, event) for m, event in events if event is not None]))


def sent_event(message: Outgoing, task_id: str) -> dict[str, Any] | None:
    """The fields of ``message`` when it is the ``task-sent`` event of the run with ``task_id``, as JSON text."""
    assert message.message is not None
    properties = message.message.properties
    if properties.get("content_type") != "application/json" or properties.get("content_encoding") != "utf-8":
        return None
    try:
        event = json.loads(message.body)
    except ValueError:
        return None
    return event if isinstance(event, dict) and event.get("type") == "task-sent" and event.get("uuid") == task_id else None


def template(properties: dict[str, Any], task_id: str) -> list[bytes | str]:
    """``properties`` encoded as AMQP's content header encodes them (py-amqp's ``_serialize_properties``: one
    flags word, then each property present in order), each value a run sets left as its name."""
    flags, fields = 0, [b""]
    parts: list[bytes | str] = []
    for bit, (name, kind) in zip(range(15, 0, -1), amqp.Message.PROPERTIES):
        value = properties.get(name)
        if value is None:
            continue
        flags |= 1 << bit
        if name == "application_headers":
            parts += [*fields, "\0table"]
            fields = [b""]
            for key, item in value.items():
                if key in RUN_FIELDS or item == task_id:
                    parts += [pack("B", len(key.encode())) + key.encode() + b"S", TASK_ID if item == task_id else key]
                else:
                    parts.append(dumps("F", [{key: item}])[4:])
            parts.append("\0end")
        elif kind == "s" and value == task_id:
            parts += [*fields, "\0short" + TASK_ID]
            fields = [b""]
        else:
            fields.append(dumps(kind, [value]))
    return [pack(">H", flags), *parts, *fields]


def fill(parts: list[bytes | str], values: dict[str, str]) -> bytes:
    """The encoded properties of a run: ``parts`` with its ``values``."""
    out: list[bytes] = []
    table: list[bytes] | None = None
    for part in parts:
        if isinstance(part, bytes):
            (out if table is None else table).append(part)
        elif part == "\0table":
            table = []
        elif part == "\0end":
            assert table is not None
            joined = b"".join(table)
            out += [pack(">I", len(joined)), joined]
            table = None
        elif part.startswith("\0short"):
            data = values[part[len("\0short"):]].encode()
            out += [pack("B", len(data)), data]
        else:
            data = values[part].encode("utf-8", "surrogatepass")
            (out if table is None else table).append(pack(">I", len(data)) + data)
    return b"".join(out)
