"""A run's task message as kombu's Redis transport would write it, captured instead of sent, and filled in.

Celery builds the message (``apply_async`` -> ``send_task`` ->
``amqp.send_task_message``, signals included) and kombu routes it (exchange
bindings in ``_kombu.binding.*``, priority queue names, fanout topics, queue
expiry); only the last step, handing kombu's Redis commands to a pipeline, is
replaced: the commands are kept, so beat can write them itself (in the commit's
Lua call, for ``exactly-once``). What reaches Redis is what ``send_task`` would
have written, byte for byte but for the task id and timestamps. The first run
of each task and options is kept as a shape (:class:`RedisShapes`, the rules in
:mod:`.shapes`) and later runs are filled in from it, their ``task-sent`` event
too when Celery sends one. :class:`RedisWriter`
writes a batch to the broker in one round trip; :class:`Pipelined` publishes a
batch through kombu in one write, on transports whose messages beat does not
write itself.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NamedTuple

import redis
from celery import Celery
from kombu import Producer
from kombu.utils.json import dumps as json_dumps

from .shapes import Body, KeptShapes, ShapeRules

#: kombu's Redis commands a message may take; the only ones commit.lua writes (see lua/includes/messages.lua).
COMMANDS = ("lpush", "pexpire", "publish")

#: One Redis command of a message: ``(command, key, argument)``.
Command = tuple[str, str, str]


class Capture:
    """Stands in for kombu's Redis publish batch: keeps each command kombu's channel adds instead of pipelining it.

    Args:
        prefix: kombu's ``global_keyprefix`` (its client adds it to every key; here it is added to each command's).
    """

    def __init__(self, prefix: str = "") -> None:
        self.prefix = prefix
        #: ``(command, key, argument)`` for the run being captured.
        self.commands: list[Command] = []

    def add(self, name: str, *args: Any) -> None:
        """One Redis command of the message being routed (kombu's ``PublishBatch.add`` interface)."""
        if name not in COMMANDS or len(args) != 2:
            raise ValueError(f"kombu's Redis transport sent {name!r}, which beat cannot write in its commit")
        key, value = args
        value = value.decode("utf-8") if isinstance(value, bytes) else str(value)
        self.commands.append((name, self.prefix + str(key), value))

    def take(self) -> list[Command]:
        """The commands captured since the last call."""
        commands, self.commands = self.commands, []
        return commands


class _Capturing:
    """Installed as the producer's current publish batch (kombu's hook): every publish is routed into ``capture``."""

    def __init__(self, capture: Capture) -> None:
        self.capture = capture

    def publish(self, channel: Any, message: Any, **kwargs: Any) -> Any:
        return channel.basic_publish(message, _publish_batch=self.capture, **kwargs)

    def flush(self) -> None:
        """Nothing is buffered: the commands are the caller's to write."""

    def abort(self) -> None:
        """Nothing is buffered: the commands are the caller's to write."""

    def close(self) -> None:
        """Nothing to release."""


def capturable(producer: Producer) -> bool:
    """Whether ``producer`` publishes through kombu's Redis transport, whose commands beat can capture."""
    channel = producer.channel
    return getattr(channel, "create_publish_batch", None) is not None and hasattr(channel, "_q_for_pri")


@contextmanager
def capturing(producer: Producer) -> Iterator[Capture]:
    """Within this block, every task published through ``producer`` is captured, not sent.

    Raises ``RuntimeError`` when the producer's transport is not kombu's Redis transport.
    """
    channel = producer.channel
    if not capturable(producer):
        raise RuntimeError("the broker is not a Redis server: its messages cannot be written by beat")
    capture = Capture(getattr(channel, "global_keyprefix", "") or "")
    local = producer._batch_local
    if getattr(local, "current", None) is not None:
        raise RuntimeError("the producer is already in a publish batch")
    local.current = _Capturing(capture)
    try:
        yield capture
    finally:
        del local.current


def encode(messages: dict[int, list[Command]]) -> str:
    """The commit's trailing argument: ``[[plan index (1-based), command, key, argument], ...]`` as JSON."""
    return json.dumps([[j, *command] for j, commands in sorted(messages.items()) for command in commands],
                      separators=(",", ":"), ensure_ascii=False)


class Pipelined:
    """A block whose publishes through ``producer`` are written in one round trip by :meth:`flush` (kombu's
    ``Producer.batch``: a Redis pipeline; other transports publish at once). Left by an exception, nothing unflushed is sent.

    Args:
        producer: The batch's producer; None when nothing is sent.
        commands: Most broker commands buffered before kombu writes them.
    """

    def __init__(self, producer: Producer | None, commands: int) -> None:
        self.batch = producer.batch(max_size=commands) if producer is not None else None

    def __enter__(self) -> Pipelined:
        if self.batch is not None:
            self.batch.__enter__()
        return self

    def flush(self) -> BaseException | None:
        """Write what the block published; the error when the write failed (whether any of it reached the broker is unknown)."""
        batch, self.batch = self.batch, None
        if batch is not None:
            try:
                batch.__exit__(None, None, None)
            except Exception as exc:  # noqa: BLE001 - kombu's BatchPublishError, or the transport's own
                return exc
        return None

    def __exit__(self, *exc: object) -> None:
        batch, self.batch = self.batch, None
        if batch is not None:
            batch.__exit__(*exc)


class RedisWriter:
    """Writes built messages to a Redis broker in one pipelined round trip, on a plain client over kombu's pool
    (the commands already carry kombu's global key prefix)."""

    def __init__(self) -> None:
        self._client: redis.Redis | None = None

    def write(self, producer: Producer, messages: dict[int, list[Command]]) -> BaseException | None:
        """Write ``messages`` (by plan index, each run's commands); the error if that failed."""
        pool = producer.channel.client.connection_pool
        if self._client is None or self._client.connection_pool is not pool:
            self._client = redis.Redis(connection_pool=pool)
        pipe = self._client.pipeline(transaction=False)
        for commands in messages.values():
            for command, key, value in commands:
                pipe.execute_command(command.upper(), key, value)
        try:
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - whatever the broker's client raised
            return exc
        return None


class Shape(NamedTuple):
    """A message Celery built, parsed: each command with its envelope (None for ``pexpire``); and the ``task-sent``
    event published with it (``task_send_sent_event``), by command index, decoded."""

    commands: list[tuple[str, str, str, dict[str, Any] | None]]
    task_id: str
    content_type: str
    embed: Any
    events: dict[int, dict[str, Any]] = {}


class RedisShapes:
    """Fills in kombu's Redis commands from the shapes Celery built (:mod:`.shapes`)."""

    def __init__(self, app: Celery, body_encoding: str = "base64") -> None:
        self.rules = ShapeRules(app, body_encoding, events=True)
        self.body_encoding = body_encoding
        self.kept: KeptShapes[Shape] = KeptShapes()

    def fill_in(self, shape: Shape, serialized: Body, run_headers: dict[str, str], task_id: str) -> list[Command]:
        """The message of a run with ``task_id`` and ``run_headers``, its body ``serialized`` (:func:`.shapes.render`)."""
        body, argsrepr, kwargsrepr = serialized
        tag = str(uuid.uuid4())
        out: list[Command] = []
        for i, (command, queue, value, envelope) in enumerate(shape.commands):
            if envelope is None:
                out.append((command, queue, value))
                continue
            if i in shape.events:
                out.append((command, queue, self._event(shape.events[i], envelope, task_id, argsrepr, kwargsrepr)))
                continue
            headers = {k: task_id if v == shape.task_id else v for k, v in envelope["headers"].items()}
            headers.update(run_headers, argsrepr=argsrepr, kwargsrepr=kwargsrepr)
            properties = {k: task_id if v == shape.task_id else v for k, v in envelope["properties"].items()}
            properties["delivery_tag"] = tag
            out.append((command, queue, json_dumps({**envelope, "body": body, "headers": headers,
                                                   "properties": properties})))
        return out

    def learn(self, key: str, commands: list[Command], task_id: str) -> None:
        """Keep the message Celery built for a run with ``task_id`` as the shape of ``key``."""
        parsed = [(c, q, v, None if c == "pexpire" else json.loads(v)) for c, q, v in commands]
        envelopes = [e for *_, e in parsed if e is not None]
        if not envelopes or any(e["properties"].get("body_encoding") != self.body_encoding for e in envelopes):
            return
        tasks = [e for e in envelopes if "task" in e["headers"]]
        events = {i: self._decoded(e) for i, (*_, e) in enumerate(parsed) if e is not None and "task" not in e["headers"]}
        if not tasks or any(event.get("type") != "task-sent" or event.get("uuid") != task_id for event in events.values()):
            return  # a message of another kind than a task and its sent event: not one this module fills in
        first = tasks[0]
        _, _, embed = self._decoded(first)
        self.kept.keep(key, Shape(commands=parsed, task_id=task_id, content_type=first["content-type"], embed=embed,
                                  events=events))

    def _decoded(self, envelope: dict[str, Any]) -> Any:
        """The body of ``envelope``, decoded (JSON, as Celery and its events send it)."""
        raw = base64.b64decode(envelope["body"]) if self.body_encoding == "base64" else envelope["body"]
        return json.loads(raw)

    def _event(self, event: dict[str, Any], envelope: dict[str, Any], task_id: str, argsrepr: str,
               kwargsrepr: str) -> str:
        """The ``task-sent`` event of a run with ``task_id``, from its shape's: what Celery's event dispatcher would
        publish (its logical clock forwarded, the time now)."""
        fields = {**event, "uuid": task_id, "root_id": task_id, "args": argsrepr, "kwargs": kwargsrepr,
                  "clock": self.rules.app.clock.forward(), "timestamp": time.time()}
        data = json_dumps(fields).encode("utf-8")
        body = base64.b64encode(data).decode("ascii") if self.body_encoding == "base64" else data.decode("utf-8")
        properties = {**envelope["properties"], "delivery_tag": str(uuid.uuid4())}
        return json_dumps({**envelope, "body": body, "properties": properties})
