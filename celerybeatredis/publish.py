"""Publishing a committed batch: each run sent as Celery beat sends it, and runs that could not be sent put back.

A failed publish is sorted by its cause: the broker (every run not yet sent
is put back, due again after ``redis_scheduler_publish_retry_seconds``) or the
entry itself (its options, say: that entry is quarantined, the others are sent).
"""

from __future__ import annotations

import logging
import time
from contextlib import AbstractContextManager
from typing import Any, NamedTuple

from celery.beat import Scheduler
from celery.utils import uuid
from kombu import Producer
from kombu.exceptions import OperationalError

from .amqp_messages import AmqpBuilder, amqp_capturable, capturing_amqp
from .beatstats import BeatStats
from .builder import Builder, M, Shapes, Taking
from .confirms import ConfirmChannel, Confirmed, Ticket
from .connection import RedisClient
from .decisions import log_quarantined, quarantine_reason
from .delivery import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE, resolve
from .exceptions import InvalidDefinition
from .history import STAMP, task_id
from .keys import NEVER
from .messages import Command, Pipelined, RedisWriter, capturable, capturing, encode
from .pending import pending_records, resend
from .planning import Planned
from .redis_store import RedisStore
from .sending import Sender, reported
from .settings import Settings
from .wire import Plan, Revert

#: Most prepared batches kept for publishing; more means ticks failed between commit and publish, and those are gone.
KEPT_BATCHES = 64

#: A history record's stamp is its characters 1 .. STAMP.
HISTORY_STAMP_END = 1 + STAMP

#: Beat logs under the name of the module users configure it by, whichever of its modules speaks.
logger = logging.getLogger("celerybeatredis.schedulers")


class InFlight(NamedTuple):
    """A batch published on RabbitMQ whose answers are still to be read (:meth:`Publisher.settle`)."""

    store: RedisStore
    planned: Planned
    committed: list[bool]
    unbuilt: dict[int, BaseException]
    tids: dict[int, str] | None
    producer: Producer
    ticket: Ticket


class Published(NamedTuple):
    """How publishing a batch went: whether runs were withheld (put back unsent), and the seconds it took."""

    withheld: bool
    seconds: float


class Publisher(Sender):
    """Sends runs through a Celery beat ``Scheduler`` (its ``apply_async``, producer and broker connection).

    In ``at-most-once`` / ``at-least-once`` mode a batch's messages go out after its commit: in one pipelined round
    trip on Redis, with publisher confirms on RabbitMQ (:mod:`.confirms`), else through kombu's ``Producer.batch``;
    in ``exactly-once`` mode they are built before the commit (:meth:`prepare`) and written by it (:mod:`.delivery`).
    """

    def __init__(self, scheduler: Scheduler, settings: Settings, stats: BeatStats | None = None) -> None:
        super().__init__(scheduler)
        self.settings = settings
        self.stats = stats or BeatStats()
        #: The mode in force once resolved (:meth:`resolve`); None until then.
        self.mode: str | None = settings.delivery if settings.delivery in (AT_MOST_ONCE, AT_LEAST_ONCE) else None
        #: Runs whose message could not be built, by plan index, for each batch prepared and not yet published.
        self._unbuilt: dict[int, dict[int, BaseException]] = {}
        #: The task id of each run of a batch whose pending records its commit writes (at-least-once), by plan index.
        self._tids: dict[int, dict[int, str]] = {}
        self.builder: Builder | None = None
        self.amqp_builder: AmqpBuilder | None = None
        #: Beat's channel in confirm mode, on a RabbitMQ broker (py-amqp).
        self.confirms = ConfirmChannel()
        #: The batch last published on RabbitMQ, whose answers are read once the next one is on its way.
        self._inflight: InFlight | None = None
        #: Writes a batch of Redis commands to a Redis broker, pipelined.
        self.redis_writer = RedisWriter()

    def resolve(self, schedule: RedisClient) -> str | None:
        """The delivery mode, worked out once the broker can be asked; None while it cannot.

        Raises:
            DeliveryUnavailable: ``exactly-once`` was asked for where it cannot be had.
        """
        if self.mode is None:
            producer = self.producer()
            if producer is None:
                return None
            self.mode, problem = resolve(self.settings.delivery, schedule, producer)
            if problem:
                logger.warning("beat: delivery is at-most-once: exactly-once needs the broker in the schedule's "
                               "Redis database, but %s", problem)
            else:
                logger.info("beat: delivery is %s", self.mode)
        return self.mode

    def prepare(self, store: RedisStore, planned: Planned) -> str | None:
        """With ``exactly-once``: the batch's task messages, for its commit to write (:func:`.messages.encode`).

        Each run's message is the one ``send_task`` would send (:meth:`build`),
        captured instead of sent. None in ``at-most-once`` mode.
        """
        if not any(run is not None for _, run, _ in planned.decisions):
            return None
        if len(self._unbuilt) + len(self._tids) > KEPT_BATCHES:  # batches prepared whose tick failed before publishing
            self._unbuilt.clear()
            self._tids.clear()
        mode = self.resolve(store.client)
        if mode == AT_LEAST_ONCE:
            return self.pending(planned)
        if mode != EXACTLY_ONCE:
            return None
        producer = self.producer()
        if producer is None:
            broken = OperationalError("the broker cannot be reached")
            messages: dict[int, list[Command]] = {}
            unbuilt: dict[int, BaseException] = {j: broken for j, (_, run, _) in enumerate(planned.decisions)
                                                 if run is not None}
        else:
            messages, unbuilt = self.build(producer, planned, None, tag=store.keys.tag)
        self._unbuilt[id(planned)] = unbuilt
        return encode({j + 1: commands for j, commands in messages.items()})

    def pending(self, planned: Planned) -> str:
        """With ``at-least-once``: the pending record of each run (its task id, when to send it again), for the
        commit to write; the ids are kept for :meth:`publish`."""
        tids, records = pending_records(planned, self.settings.lease_seconds, self.task_id)
        self._tids[id(planned)] = tids
        return records

    def resend(self, store: RedisStore, now: float | None = None) -> int:
        """Send again the runs left pending by a beat that died (``at-least-once``); how many (:func:`.pending.resend`)."""
        return resend(self, store, now)

    def build(self, producer: Producer, planned: Planned, committed: list[bool] | None,
              tids: dict[int, str] | None = None, tag: str = "") -> tuple[dict[int, list[Any]], dict[int, BaseException]]:
        """The messages of each run of ``planned`` (those ``committed`` says, if given), by plan index, as the
        producer's transport would send them (Redis commands, or AMQP messages); and the errors of the runs that
        could not be built.

        The first run of each task and options is built by Celery and kombu
        (``before_task_publish`` / ``after_task_publish`` fire), the next from
        its shape (:mod:`.builder`, :mod:`.amqp_messages`), except a run whose headers are its own (a past due
        time, a report asked of the worker integration), which Celery builds every time.
        """
        if capturable(producer):
            if self.builder is None:
                self.builder = Builder(self.scheduler.app, getattr(producer.channel, "body_encoding", "base64"))
            return self._build(self.builder, capturing(producer), producer, planned, committed, tids, tag)
        # Learned again once the channel was lost (maybe the connection): Celery then declares each route again.
        if self.amqp_builder is None or self.amqp_builder.generation != self.confirms.generation:
            self.amqp_builder = AmqpBuilder(self.scheduler.app, self.confirms.generation)
        return self._build(self.amqp_builder, capturing_amqp(producer), producer, planned, committed, tids, tag)

    def _build(self, builder: Shapes[M], capturer: AbstractContextManager[Taking[M]], producer: Producer,
               planned: Planned, committed: list[bool] | None, tids: dict[int, str] | None,
               tag: str) -> tuple[dict[int, list[M]], dict[int, BaseException]]:
        """:meth:`build` with one transport's shapes and capture."""
        claim, now = planned.claim, planned.now
        messages: dict[int, list[M]] = {}
        unbuilt: dict[int, BaseException] = {}
        info = logger.isEnabledFor(logging.INFO)
        with capturer as capture:
            for j, ((plan, run, _), claimed) in enumerate(zip(planned.decisions, claim.entries)):
                if run is None or (committed is not None and not committed[j]):
                    continue
                name, defn = claimed.name, run[0]
                tid = (tids or {}).get(j) or self.task_id(name, plan) or uuid()
                key = None if run[2] or reported(defn) else builder.key(defn.task, defn.options)
                built = builder.render(key, defn, name, tid) if key is not None else None
                if built is None:
                    error = self.send(name, run, now, producer, tid, tag)
                    built = capture.take()
                    if error is not None:
                        unbuilt[j] = error
                        continue
                    if key is not None:
                        builder.learn(key, built, tid)
                elif info:
                    logger.info("Scheduler: Sending due task %s (%s)", name, defn.task)
                messages[j] = built
        return messages, unbuilt

    def publish(self, store: RedisStore, planned: Planned, committed: list[bool], withheld: bool) -> Published:
        """Publish the runs of ``planned`` that ``committed`` says were committed, reverting those that cannot be sent.

        With ``withheld`` (the commit is not safe to act on) or once the broker
        fails, the rest are reverted unsent. A batch :meth:`prepare` built was
        sent by its commit: only the runs it could not build are reverted.
        """
        started = time.perf_counter()
        unbuilt = self._unbuilt.pop(id(planned), None)
        tids = self._tids.pop(id(planned), None)
        unsafe, producer = withheld, None
        sending = unbuilt is None and not withheld and any(ok and run is not None for (_, run, _), ok
                                                          in zip(planned.decisions, committed))
        if sending:
            producer = self.producer()
            withheld = producer is None
        written: BaseException | None = None
        if producer is not None and capturable(producer):
            messages, unbuilt = self.build(producer, planned, committed, tids, store.keys.tag)
            written = self.redis_writer.write(producer, messages) if messages else None
            producer = None  # written: nothing is sent one by one
        elif producer is not None and amqp_capturable(producer):
            outgoing, unbuilt = self.build(producer, planned, committed, tids, store.keys.tag)
            ticket = self.confirms.send(producer, outgoing)
            previous = self.settle()  # the batch before this one: its answers came while this one was built
            self._inflight = InFlight(store, planned, committed, unbuilt, tids, producer, ticket)
            return Published(previous, time.perf_counter() - started)
        return self.finish(store, planned, committed, withheld, unsafe, unbuilt, tids, producer, written, None, started)

    def settle(self) -> bool:
        """Read the broker's answers to the batch last published on RabbitMQ and act on them (:meth:`finish`);
        whether runs of it were withheld. Called once the next batch is written, and at the end of a shard's turn."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return False
        started = time.perf_counter()
        confirmed = self.confirms.wait(inflight.producer, inflight.ticket)
        if confirmed.error is not None or confirmed.nacked:
            logger.error("beat: the broker confirmed %d of %d runs (%d refused): %s", len(confirmed.acked),
                         len(inflight.ticket.keys), len(confirmed.nacked), confirmed.error or "basic.nack")
        return self.finish(inflight.store, inflight.planned, inflight.committed, False, False, inflight.unbuilt,
                           inflight.tids, None, None, confirmed, started).withheld

    def finish(self, store: RedisStore, planned: Planned, committed: list[bool], withheld: bool, unsafe: bool,
               unbuilt: dict[int, BaseException] | None, tids: dict[int, str] | None, producer: Producer | None,
               written: BaseException | None, confirmed: Confirmed | None, started: float) -> Published:
        """:meth:`publish` once the batch's messages are built: send them one by one (``producer``, on a transport
        beat does not write itself), then revert what the broker did not take (``written``: the error of the batch's
        pipelined write; ``confirmed``: the broker's answers on RabbitMQ) and forget the pending runs it took."""
        claim, now = planned.claim, planned.now
        reverts: list[Revert] = []
        late: list[float] = []  # seconds each run sent was late (run-now and new entries: 0)
        unconfirmed: set[int] = set()  # runs that may have reached the broker, left pending (at-least-once)
        sent: list[Revert] = []  # what undoes each run sent, should the pipelined write fail
        with Pipelined(producer, 10 * self.settings.batch_size) as pipeline:
            for j, ((plan, run, _), ok, claimed) in enumerate(zip(planned.decisions, committed, claim.entries)):
                if not ok or run is None:
                    continue
                run_stamp = plan.history[1:HISTORY_STAMP_END]
                if unbuilt is not None:
                    error = unbuilt.get(j)
                elif withheld:
                    error = None
                else:
                    tid = tids.get(j) if tids else self.task_id(claimed.name, plan)
                    error = self.send(claimed.name, run, now, producer, tid, store.keys.tag)
                if confirmed is not None and error is None and j not in confirmed.acked:
                    if tids and j not in confirmed.nacked:
                        unconfirmed.add(j)  # sent again after the lease, with its task id (pending.py)
                        continue
                    error = confirmed.error or OperationalError("the broker refused the message (basic.nack)")
                if not withheld and error is None:
                    late.append(max(0.0, claim.now - claimed.score) if claimed.score > 0 else 0.0)
                    retry = -1.0 if claimed.score < 0 else claim.now + self.settings.publish_retry_seconds
                    sent.append(Revert(claimed.name, plan.score, retry, claimed.last_run_at, "", run_stamp))
                    continue
                if error is not None and not self.broker_fault(error):
                    # Only this entry's task cannot be sent (its options, say): quarantine it, send the others.
                    problem = InvalidDefinition("options", f"the task cannot be sent: {type(error).__name__}: {error}")
                    reason = quarantine_reason(claimed.name, problem)
                    log_quarantined(reason, self.settings.tag)
                    reverts.append(Revert(claimed.name, plan.score, NEVER, claimed.last_run_at, reason, run_stamp))
                    continue
                withheld = withheld or unbuilt is None
                retry = -1.0 if claimed.score < 0 else claim.now + self.settings.publish_retry_seconds
                reverts.append(Revert(claimed.name, plan.score, retry, claimed.last_run_at, "", run_stamp))
            written = pipeline.flush() or written
        if written is not None:
            logger.error("beat: could not publish a batch of %d runs: %s", len(sent), written)
            reverts += sent
            late, withheld = [], True
        if reverts:
            store.revert(reverts)
        if tids:  # taken by the broker, or put back unsent: nothing to send again either way
            store.clear_pending([(claim.entries[j].name, tid) for j, tid in tids.items()
                                 if committed[j] and j not in unconfirmed])
        if unconfirmed:
            logger.warning("beat: %d runs not confirmed by the broker; they stay pending and are sent again with "
                           "their task ids in %.1fs", len(unconfirmed), self.settings.lease_seconds)
        failed = withheld or bool(unconfirmed) or any(not r.invalid_reason for r in reverts)
        self.stats.published(late, reverts, broker_failed=failed and not unsafe)
        if failed:
            retried = sum(1 for r in reverts if not r.invalid_reason)
            logger.warning("beat: %d runs not published; they are due again in %.1fs", retried, self.settings.publish_retry_seconds)
        return Published(failed, time.perf_counter() - started)

    def task_id(self, name: str, plan: Plan) -> str | None:
        """The task id of ``plan``'s run, chosen before the worker can see it: the one its run marker names (overlap.py),
        else one made from its history stamp (None without history)."""
        if plan.running and plan.running != " h":
            return plan.running.partition(" ")[0]
        run_stamp = plan.history[1:HISTORY_STAMP_END]
        return task_id(self.settings.tag, name, run_stamp) if run_stamp else None
