"""A batch of messages published to RabbitMQ with publisher confirms: all written at once, then the acks awaited.

Beat publishes on a channel of its own, in confirm mode, on the producer's
connection: the broker numbers each message published on it (1, 2, ...) and
acknowledges it (``basic.ack``, or ``basic.nack`` when it could not take it),
often many at once (``multiple``: every message up to that number). The
batch's frames are written to the socket in a few large writes instead of one
per message, and the acks are read once the whole batch is out, so a batch
costs about one round trip. A message neither acked nor nacked (the
connection dropped, no answer in time) is unconfirmed: whether the broker has
it is unknown, and the caller decides (put back, or left pending).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping
from struct import pack
from typing import NamedTuple

import amqp
from amqp import spec
from amqp.serialization import dumps
from kombu import Producer

from .amqp_messages import Outgoing

#: Most seconds beat waits for a batch's acks once it is written; runs not confirmed by then are unconfirmed.
CONFIRM_SECONDS = 10.0
#: Bytes of frames gathered before a write to the socket.
WRITE_BYTES = 256 * 1024

#: Errors kept of the channels dropped last, for the batches still to be settled that went out on them.
FAILURES = 16

_FRAME_END = b"\xce"
_PUBLISH = pack(">HH", *spec.Basic.Publish)


class Confirmed(NamedTuple):
    """How a batch went: the keys the broker acked, those it nacked, and the error that ended it (None if none)."""

    acked: set[int]
    nacked: set[int]
    error: BaseException | None


class Ticket(NamedTuple):
    """A batch written and not yet settled: its number, its keys, and the channel it went out on."""

    number: int
    keys: frozenset[int]
    generation: int


class Answers:
    """The broker's answers to one batch so far: its keys acked, its keys nacked, its messages still awaiting one."""

    __slots__ = ("acked", "nacked", "waiting")

    def __init__(self) -> None:
        self.acked: set[int] = set()
        self.nacked: set[int] = set()
        self.waiting = 0


class ConfirmChannel:
    """Beat's own channel in confirm mode on a producer's connection, opened when first needed and after a drop.

    A batch is written (:meth:`send`) and its answers read later (:meth:`wait`),
    so beat can work on the next batch while the broker stores this one;
    :meth:`publish` does both at once.
    """

    def __init__(self, timeout: float = CONFIRM_SECONDS) -> None:
        self.timeout = timeout
        self.channel: amqp.Channel | None = None
        #: The broker's number of the last message published on the channel (all channels: :attr:`sent`).
        self.published = 0
        self.sent = 0
        #: Counts channels opened: a ticket of an earlier one is settled by the error that dropped it.
        self.generation = 0
        self.failures: dict[int, BaseException] = {}
        self.batches = 0
        #: Messages awaiting the broker's answer: their number -> (their batch's number, their key in it).
        self.outstanding: dict[int, tuple[int, int]] = {}
        #: The answers to each batch not yet settled, by its number.
        self.answers: dict[int, Answers] = {}

    def open(self, producer: Producer) -> amqp.Channel:
        """The confirm channel on ``producer``'s connection, reconnecting the producer first when it was dropped."""
        conn = producer.connection
        if not conn.connected:
            conn.ensure_connection(max_retries=1)
            producer.revive(conn.default_channel)
        raw = conn.connection
        channel = self.channel
        if channel is None or channel.connection is not raw or not channel.is_open:
            if channel is not None:
                self.discard(ConnectionError("the channel was closed"))
            channel = raw.channel()
            channel.confirm_select()
            channel._confirm_selected = True  # so a connection with confirm_publish does not select it again
            channel.events["basic_ack"].add(self._ack)
            channel.events["basic_nack"].add(self._nack)
            self.channel, self.published = channel, 0
        return channel

    def publish(self, producer: Producer, batch: Mapping[int, list[Outgoing]]) -> Confirmed:
        """Publish every message of ``batch`` (key -> a run's messages) and wait for the broker's answers."""
        ticket = self.send(producer, batch)
        return self.wait(producer, ticket)

    def send(self, producer: Producer, batch: Mapping[int, list[Outgoing]]) -> Ticket:
        """Write every message of ``batch``; its answers are read by :meth:`wait`."""
        self.batches += 1
        ticket = Ticket(number=self.batches, keys=frozenset(batch), generation=self.generation)
        self.answers[ticket.number] = Answers()
        try:
            channel = self.open(producer)
            ticket = ticket._replace(generation=self.generation)
            self.write(channel, ticket.number, batch)
        except Exception as exc:  # noqa: BLE001 - the connection's or channel's errors, whatever the transport raised
            self.discard(exc)
        return ticket

    def wait(self, producer: Producer, ticket: Ticket) -> Confirmed:
        """The broker's answers to a batch :meth:`send` wrote. A key is acked when all its messages are, nacked when
        any is; a key neither is unconfirmed (the error says why)."""
        answers = self.answers[ticket.number]
        try:
            deadline = time.monotonic() + self.timeout
            while answers.waiting and ticket.generation == self.generation and self.channel is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError
                self.channel.wait([spec.Basic.Ack, spec.Basic.Nack], timeout=remaining)
        except (socket.timeout, TimeoutError):
            self.discard(TimeoutError(f"the broker confirmed no more messages in {self.timeout:g}s"))
            producer.connection.collect()  # a broker that does not answer: the next batch starts on a new connection
        except Exception as exc:  # noqa: BLE001 - the connection's or channel's errors, whatever the transport raised
            self.discard(exc)
        del self.answers[ticket.number]
        error = None
        if answers.waiting:
            error = self.failures.get(ticket.generation) or ConnectionError("the channel was lost")
        return Confirmed(acked=answers.acked - answers.nacked, nacked=answers.nacked, error=error)

    def write(self, channel: amqp.Channel, number: int, batch: Mapping[int, list[Outgoing]]) -> None:
        """Write the batch's publish frames, a few hundred kilobytes at a time."""
        connection = channel.connection
        write, chunk = connection.transport.write, connection.frame_max - 8
        channel_id = channel.channel_id
        answers = self.answers[number]
        buffer = bytearray()
        methods: dict[tuple[str, str, bool, bool], bytes] = {}
        for key, messages in batch.items():
            for outgoing in messages:
                where = (outgoing.exchange, outgoing.routing_key, outgoing.mandatory, outgoing.immediate)
                method = methods.get(where)
                if method is None:
                    method = methods[where] = publish_method(outgoing)
                frames(buffer, channel_id, chunk, outgoing, method)
                self.published += 1
                self.sent += 1
                self.outstanding[self.published] = (number, key)
                answers.waiting += 1
                if len(buffer) >= WRITE_BYTES:
                    write(bytes(buffer))
                    buffer.clear()
        if buffer:
            write(bytes(buffer))

    def _ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, acked=True)

    def _nack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, acked=False)

    def _settle(self, tag: int, multiple: bool, acked: bool) -> None:
        """Note the answer to message ``tag`` (with ``multiple``: to every one up to it; tag 0: to all)."""
        if multiple:  # numbers are kept in the order they were given, lowest first
            tags = []
            for t in self.outstanding:
                if tag and t > tag:
                    break
                tags.append(t)
        else:
            tags = [tag] if tag in self.outstanding else []
        for t in tags:
            number, key = self.outstanding.pop(t)
            answers = self.answers.get(number)
            if answers is not None:
                (answers.acked if acked else answers.nacked).add(key)
                answers.waiting -= 1

    def discard(self, error: BaseException) -> None:
        """Forget the channel after ``error`` (its numbering is no longer known): a new one is opened next time;
        the messages still awaiting an answer stay unconfirmed.

        It is not closed: that waits for the broker, which may be what failed;
        a dropped connection takes it along, a channel the broker closed is gone.
        """
        self.failures[self.generation] = error
        if len(self.failures) > FAILURES:
            del self.failures[min(self.failures)]
        self.generation += 1
        self.outstanding.clear()
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.events["basic_ack"].discard(self._ack)
            channel.events["basic_nack"].discard(self._nack)


def frames(buffer: bytearray, channel_id: int, chunk: int, outgoing: Outgoing, method: bytes) -> None:
    """Append a ``basic.publish`` of ``outgoing`` to ``buffer``: its method (``method``, encoded), content header
    and body frames (AMQP 0-9-1, as py-amqp's frame writer writes them)."""
    body = outgoing.body
    buffer += pack(">BHI", 1, channel_id, len(method)) + method + _FRAME_END
    header = pack(">HHQ", spec.Basic.Publish[0], 0, len(body)) + outgoing.properties
    buffer += pack(">BHI", 2, channel_id, len(header)) + header + _FRAME_END
    for start in range(0, len(body), chunk):
        part = body[start:start + chunk]
        buffer += pack(">BHI", 3, channel_id, len(part)) + part + _FRAME_END


def publish_method(outgoing: Outgoing) -> bytes:
    """The encoded ``basic.publish`` method of ``outgoing`` (where it goes)."""
    return _PUBLISH + dumps("Bssbb", (0, outgoing.exchange, outgoing.routing_key, outgoing.mandatory,
                                      outgoing.immediate))
