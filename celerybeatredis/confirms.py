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
from typing import Any, NamedTuple

import amqp
from amqp import spec
from amqp.serialization import dumps
from kombu import Producer

from .amqp_messages import Outgoing

#: Most seconds beat waits for a batch's acks once it is written; runs not confirmed by then are unconfirmed.
CONFIRM_SECONDS = 10.0
#: Bytes of frames gathered before a write to the socket.
WRITE_BYTES = 256 * 1024

_FRAME_END = b"\xce"
_PUBLISH = pack(">HH", *spec.Basic.Publish)


class Confirmed(NamedTuple):
    """How a batch went: the keys the broker acked, those it nacked, and the error that ended it (None if none)."""

    acked: set[int]
    nacked: set[int]
    error: BaseException | None


class ConfirmChannel:
    """Beat's own channel in confirm mode on a producer's connection, opened when first needed and after a drop."""

    def __init__(self, timeout: float = CONFIRM_SECONDS) -> None:
        self.timeout = timeout
        self.channel: amqp.Channel | None = None
        #: The broker's number of the last message published on the channel.
        self.published = 0
        #: Messages awaiting the broker's answer: their number -> their key in the batch.
        self.outstanding: dict[int, int] = {}
        self.acked: set[int] = set()
        self.nacked: set[int] = set()

    def open(self, producer: Producer) -> amqp.Channel:
        """The confirm channel on ``producer``'s connection, reconnecting the producer first when it was dropped."""
        conn = producer.connection
        if not conn.connected:
            conn.ensure_connection(max_retries=1)
            producer.revive(conn.default_channel)
        raw = conn.connection
        channel = self.channel
        if channel is None or channel.connection is not raw or not channel.is_open:
            channel = raw.channel()
            channel.confirm_select()
            channel._confirm_selected = True  # so a connection with confirm_publish does not select it again
            channel.events["basic_ack"].add(self._ack)
            channel.events["basic_nack"].add(self._nack)
            self.channel, self.published = channel, 0
        return channel

    def publish(self, producer: Producer, batch: Mapping[int, list[Outgoing]]) -> Confirmed:
        """Publish every message of ``batch`` (key -> a run's messages) and wait for the broker's answers.

        A key is acked when all its messages are, nacked when any is.
        """
        self.outstanding, self.acked, self.nacked = {}, set(), set()
        error: BaseException | None = None
        try:
            channel = self.open(producer)
            self.write(channel, batch)
            deadline = time.monotonic() + self.timeout
            while self.outstanding:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"the broker confirmed no more messages in {self.timeout:g}s")
                channel.wait([spec.Basic.Ack, spec.Basic.Nack], timeout=remaining)
        except (socket.timeout, TimeoutError) as exc:
            error = TimeoutError(str(exc) or f"the broker confirmed no more messages in {self.timeout:g}s")
            self.discard()
            producer.connection.collect()  # a broker that does not answer: the next batch starts on a new connection
        except Exception as exc:  # noqa: BLE001 - the connection's or channel's errors, whatever the transport raised
            error = exc
            self.discard()
        unsettled = set(self.outstanding.values())
        acked = {key for key in batch if key in self.acked and key not in self.nacked and key not in unsettled}
        return Confirmed(acked, self.nacked & set(batch), error)

    def write(self, channel: amqp.Channel, batch: Mapping[int, list[Outgoing]]) -> None:
        """Write the batch's publish frames, a few hundred kilobytes at a time."""
        connection = channel.connection
        write, chunk = connection.transport.write, connection.frame_max - 8
        channel_id = channel.channel_id
        buffer = bytearray()
        for key, messages in batch.items():
            for outgoing in messages:
                frames(buffer, channel_id, chunk, outgoing)
                self.published += 1
                self.outstanding[self.published] = key
                if len(buffer) >= WRITE_BYTES:
                    write(bytes(buffer))
                    buffer.clear()
        if buffer:
            write(bytes(buffer))

    def _ack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, self.acked)

    def _nack(self, tag: int, multiple: bool) -> None:
        self._settle(tag, multiple, self.nacked)

    def _settle(self, tag: int, multiple: bool, into: set[int]) -> None:
        """Mark message ``tag`` (with ``multiple``: every one up to it; tag 0: all) as answered."""
        if not multiple:
            key = self.outstanding.pop(tag, None)
            if key is not None:
                into.add(key)
            return
        done = [t for t in self.outstanding if tag == 0 or t <= tag]
        for t in done:
            into.add(self.outstanding.pop(t))

    def discard(self) -> None:
        """Forget the channel after an error (its numbering is no longer known): a new one is opened next time.

        It is not closed: that waits for the broker, which may be what failed;
        a dropped connection takes it along, a channel the broker closed is gone.
        """
        channel, self.channel = self.channel, None
        if channel is not None:
            channel.events["basic_ack"].discard(self._ack)
            channel.events["basic_nack"].discard(self._nack)


def frames(buffer: bytearray, channel_id: int, chunk: int, outgoing: Outgoing) -> None:
    """Append a ``basic.publish`` of ``outgoing`` to ``buffer``: its method, header and body frames (AMQP 0-9-1)."""
    message: Any = outgoing.message
    body = message.body
    if isinstance(body, str):
        body = body.encode(message.properties.setdefault("content_encoding", "utf-8"))
    method = _PUBLISH + dumps("Bssbb", (0, outgoing.exchange, outgoing.routing_key, outgoing.mandatory,
                                        outgoing.immediate))
    buffer += pack(">BHI", 1, channel_id, len(method)) + method + _FRAME_END
    header = pack(">HHQ", spec.Basic.Publish[0], 0, len(body)) + message._serialize_properties()
    buffer += pack(">BHI", 2, channel_id, len(header)) + header + _FRAME_END
    for start in range(0, len(body), chunk):
        part = body[start:start + chunk]
        buffer += pack(">BHI", 3, channel_id, len(part)) + part + _FRAME_END
