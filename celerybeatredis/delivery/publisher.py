"""Publishing committed batches: each run sent as Celery beat sends it, runs that could not be sent put back, and
runs a dead beat left pending sent again.

A failed publish is sorted by its cause: the broker (every run not yet sent
is put back, due again after ``redis_scheduler_publish_retry_seconds``) or the
entry itself (its options, say: that entry is quarantined, the others are sent).
With ``at-least-once`` delivery each run is recorded as pending by its commit
and forgotten once the broker took it; a run whose beat never saw that is sent
again, with its task id, after the lease (:class:`Resender`).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import NamedTuple

from celery.beat import Scheduler
from celery.utils import uuid
from kombu import Producer
from kombu.exceptions import OperationalError

from ..decisions.decide import Decision, Run, log_quarantined, quarantine_reason
from ..decisions.planner import Planned
from ..definitions.codec import Codec, digest
from ..exceptions import InvalidDefinition
from ..observe.log import logger
from ..observe.stats import BeatStats
from ..settings import AT_LEAST_ONCE, AT_MOST_ONCE, EXACTLY_ONCE, Settings
from ..storage.connection import RedisClient
from ..storage.history import newest_stamp
from ..storage.keys import NEVER
from ..storage.redis_store import RedisStore
from ..storage.wire import Revert
from .amqp_messages import Outgoing, amqp_capturable, capturing_amqp
from .building import MessageBuilder
from .confirms import ConfirmChannel, Confirmed, Ticket
from .modes import resolve
from .redis_messages import Command, Pipelined, RedisWriter, capturable, encode
from .sending import ArgumentsRefused, Sender, chosen_task_id, refused_arguments

#: Most prepared batches kept for publishing; more means ticks failed between commit and publish, and those are gone.
KEPT_BATCHES = 64


class Publishing(NamedTuple):
    """A committed batch on its way to the broker, and what is known of its messages so far."""

    store: RedisStore
    planned: Planned
    committed: list[bool]
    #: Runs whose message could not be built, by plan index, for a batch built before it was published (its commit
    #: wrote the others); None when its messages are built as it is published.
    unbuilt: dict[int, BaseException] | None
    #: Each run's task id by plan index, for a batch whose commit recorded its runs as pending (at-least-once).
    tids: dict[int, str] | None
    #: Its runs are put back unsent: the commit is not safe to act on, or the broker cannot be reached.
    withheld: bool
    #: The commit itself was not safe to act on (replicas missing): the broker is not to blame.
    unsafe: bool
    #: ``time.perf_counter()`` when publishing it began.
    started: float


class InFlight(NamedTuple):
    """A batch published on RabbitMQ whose answers are still to be read (:meth:`Publisher.settle`)."""

    batch: Publishing
    producer: Producer
    ticket: Ticket


class Published(NamedTuple):
    """How publishing a batch went: whether runs were withheld (put back unsent), and the seconds it took."""

    withheld: bool
    seconds: float


class Publisher:
    """Sends runs through a Celery beat ``Scheduler`` (its ``apply_async``, producer and broker connection).

    In ``at-most-once`` / ``at-least-once`` mode a batch's messages go out after its commit: in one pipelined round
    trip on Redis, with publisher confirms on RabbitMQ (:mod:`.confirms`), else through kombu's ``Producer.batch``;
    in ``exactly-once`` mode they are built before the commit (:meth:`prepare`) and written by it (:mod:`.modes`).
    """

    def __init__(self, scheduler: Scheduler, settings: Settings, codec: Codec, stats: BeatStats | None = None) -> None:
        self.settings = settings
        self.stats = stats or BeatStats()
        #: The mode in force once resolved (:meth:`resolve`); None until then.
        self.mode: str | None = settings.delivery if settings.delivery in (AT_MOST_ONCE, AT_LEAST_ONCE) else None
        self.sender = Sender(scheduler)
        #: Beat's channel in confirm mode, on a RabbitMQ broker (py-amqp).
        self.confirms = ConfirmChannel()
        self.messages = MessageBuilder(codec.app, self.sender, self.confirms, settings.tag)
        #: Writes a batch of Redis commands to a Redis broker, pipelined.
        self.redis_writer = RedisWriter()
        self.resender = Resender(self.sender, self.confirms, codec, settings)
        #: Runs whose message could not be built, by plan index, for each batch prepared and not yet published.
        self._unbuilt: dict[int, dict[int, BaseException]] = {}
        #: The task id of each run of a batch whose pending records its commit writes (at-least-once), by plan index.
        self._tids: dict[int, dict[int, str]] = {}
        #: The batch last published on RabbitMQ, whose answers are read once the next one is on its way.
        self._inflight: InFlight | None = None

    def resolve(self, schedule: RedisClient) -> str | None:
        """The delivery mode, worked out once the broker can be asked; None while it cannot.

        Raises:
            DeliveryUnavailable: ``exactly-once`` was asked for where it cannot be had.
        """
        if self.mode is None:
            producer = self.sender.producer()
            if producer is None:
                return None
            self.mode, problem = resolve(self.settings.delivery, schedule, producer)
            if problem:  # auto's choice, not a failure: a mode asked for and not had stops beat (DeliveryUnavailable)
                logger.info("beat: delivery is at-most-once, the strongest this layout allows: exactly-once needs "
                            "the broker in the schedule's Redis database, but %s", problem)
            else:
                logger.info("beat: delivery is %s", self.mode)
        return self.mode

    def prepare(self, store: RedisStore, planned: Planned) -> str | None:
        """What the batch's commit writes besides its plans (:func:`~.redis_messages.encode`): with ``exactly-once``
        each run's task message, the one ``send_task`` would send, captured instead of sent; with ``at-least-once``
        each run's pending record. None in ``at-most-once`` mode."""
        if not any(decision.run is not None for decision in planned.decisions):
            return None
        if len(self._unbuilt) + len(self._tids) > KEPT_BATCHES:  # batches prepared whose tick failed before publishing
            self._unbuilt.clear()
            self._tids.clear()
        mode = self.resolve(store.client)
        if mode == AT_LEAST_ONCE:
            tids, records = pending_records(planned, self.settings.lease_seconds, self.settings.tag)
            self._tids[id(planned)] = tids
            return records
        if mode != EXACTLY_ONCE:
            return None
        producer = self.sender.producer()
        if producer is None:
            broken = OperationalError("the broker cannot be reached")
            messages: dict[int, list[Command]] = {}
            unbuilt: dict[int, BaseException] = {j: broken for j, decision in enumerate(planned.decisions)
                                                 if decision.run is not None}
        else:
            messages, unbuilt = self.messages.build(producer, planned, None, None, store.keys.tag)
        self._unbuilt[id(planned)] = unbuilt
        return encode({j + 1: commands for j, commands in messages.items()})

    def resend(self, store: RedisStore, now: float | None = None) -> int:
        """Send again the runs of ``store`` left pending by a beat that died (``at-least-once``); how many."""
        return self.resender.resend(store, now)

    def publish(self, store: RedisStore, planned: Planned, committed: list[bool], withheld: bool) -> Published:
        """Publish the runs of ``planned`` that ``committed`` says were committed, reverting those that cannot be sent.

        With ``withheld`` (the commit is not safe to act on) or once the broker
        fails, the rest are reverted unsent. A batch :meth:`prepare` built was
        sent by its commit: only the runs it could not build are reverted.
        """
        unbuilt = self._unbuilt.pop(id(planned), None)
        batch = Publishing(store=store, planned=planned, committed=committed, unbuilt=unbuilt,
                           tids=self._tids.pop(id(planned), None), withheld=withheld, unsafe=withheld,
                           started=time.perf_counter())
        sending = unbuilt is None and not withheld and any(ok and decision.run is not None
                                                          for decision, ok in zip(planned.decisions, committed))
        producer = self.sender.producer() if sending else None
        if sending and producer is None:
            return self.finish(batch._replace(withheld=True))
        if producer is not None and capturable(producer):
            messages, unbuilt = self.messages.build(producer, planned, committed, batch.tids, store.keys.tag)
            written = self.redis_writer.write(producer, messages) if messages else None
            return self.finish(batch._replace(unbuilt=unbuilt), written=written)
        if producer is not None and amqp_capturable(producer):
            outgoing, unbuilt = self.messages.build(producer, planned, committed, batch.tids, store.keys.tag)
            ticket = self.confirms.send(producer, outgoing)
            previous = self.settle()  # the batch before this one: its answers came while this one was built
            self._inflight = InFlight(batch=batch._replace(unbuilt=unbuilt), producer=producer, ticket=ticket)
            return Published(withheld=previous, seconds=time.perf_counter() - batch.started)
        return self.finish(batch, producer=producer)

    def settle(self) -> bool:
        """Read the broker's answers to the batch last published on RabbitMQ and act on them (:meth:`finish`);
        whether runs of it were withheld. Called once the next batch is written, and at the end of a shard's turn."""
        inflight, self._inflight = self._inflight, None
        if inflight is None:
            return False
        confirmed = self.confirms.wait(inflight.producer, inflight.ticket)
        if confirmed.error is not None or confirmed.nacked:
            logger.error("beat: the broker confirmed %d of %d runs (%d refused): %s", len(confirmed.acked),
                         len(inflight.ticket.keys), len(confirmed.nacked), confirmed.error or "basic.nack")
        return self.finish(inflight.batch._replace(started=time.perf_counter()), confirmed=confirmed).withheld

    def finish(self, batch: Publishing, producer: Producer | None = None, written: BaseException | None = None,
               confirmed: Confirmed | None = None) -> Published:
        """:meth:`publish` once the batch's messages are built: send them one by one (``producer``, on a transport
        beat does not write itself), then revert what the broker did not take (``written``: the error of the batch's
        pipelined write; ``confirmed``: the broker's answers on RabbitMQ) and forget the pending runs it took."""
        reverts: list[Revert] = []
        late: list[float] = []  # seconds each run sent was late (run-now and new entries: 0)
        unconfirmed: set[int] = set()  # runs that may have reached the broker, left pending (at-least-once)
        sent: list[Decision] = []  # each run sent, undone should the pipelined write fail
        withheld, now = batch.withheld, batch.planned.claim.now
        with Pipelined(producer, 10 * self.settings.batch_size) as pipeline:
            for j, decision in enumerate(batch.planned.decisions):
                if decision.run is None or not batch.committed[j]:
                    continue
                if batch.unbuilt is not None:
                    error = batch.unbuilt.get(j)
                elif withheld:
                    error = None
                else:
                    tid = batch.tids.get(j) if batch.tids else chosen_task_id(self.settings.tag, decision)
                    error = self.sender.send(decision.name, decision.run, batch.planned.now, producer, tid,
                                             batch.store.keys.tag, decision.entry.score)
                if confirmed is not None and error is None and j not in confirmed.acked:
                    if batch.tids and j not in confirmed.nacked:
                        unconfirmed.add(j)  # sent again after the lease, with its task id (:class:`Resender`)
                        continue
                    error = confirmed.error or OperationalError("the broker refused the message (basic.nack)")
                if not withheld and error is None:
                    late.append(max(0.0, now - decision.entry.score) if decision.entry.score > 0 else 0.0)
                    sent.append(decision)
                elif error is not None and not self.sender.broker_fault(error):
                    reverts.append(self._quarantine(decision, error))  # only this entry's task cannot be sent
                else:
                    withheld = withheld or batch.unbuilt is None
                    reverts.append(self._put_back(decision, now))
            written = pipeline.flush() or written
        if written is not None:
            logger.error("beat: could not publish a batch of %d runs: %s", len(sent), written)
            reverts += [self._put_back(decision, now) for decision in sent]
            late, withheld = [], True
        return self._account(batch, reverts, late, unconfirmed, withheld)

    def _account(self, batch: Publishing, reverts: list[Revert], late: list[float], unconfirmed: set[int],
                 withheld: bool) -> Published:
        """Revert what was not sent, forget the pending runs the broker took, and count the batch."""
        if reverts:
            reverted = batch.store.runs.revert(reverts)
            # Said by the beat whose revert moved the entry into quarantine: one whose entry changed meanwhile (another
            # beat ran it since) did not, and leaves it to the beat that meets it next.
            for revert, done in zip(reverts, reverted):
                if revert.invalid_reason and done:
                    log_quarantined(revert.invalid_reason, batch.store.keys.tag)
            log_quarantines(batch.store, reverted.quarantined)
        if batch.tids:  # taken by the broker, or put back unsent: nothing to send again either way
            decisions = batch.planned.decisions
            batch.store.runs.clear_pending([(decisions[j].name, tid) for j, tid in batch.tids.items()
                                            if batch.committed[j] and j not in unconfirmed])
        if unconfirmed:
            logger.warning("beat: %d runs not confirmed by the broker; they stay pending and are sent again with "
                           "their task ids in %.1fs", len(unconfirmed), self.settings.lease_seconds)
        failed = withheld or bool(unconfirmed) or any(not r.invalid_reason for r in reverts)
        self.stats.published(late, reverts, broker_failed=failed and not batch.unsafe)
        if failed:
            retried = sum(1 for r in reverts if not r.invalid_reason)
            logger.warning("beat: %d runs not published; they are due again in %.1fs", retried,
                           self.settings.publish_retry_seconds)
        return Published(withheld=failed, seconds=time.perf_counter() - batch.started)

    def _put_back(self, decision: Decision, now: float) -> Revert:
        """What undoes ``decision``'s committed run, due again after the retry delay (a run-now: at once)."""
        retry = -1.0 if decision.entry.score < 0 else now + self.settings.publish_retry_seconds
        return self._revert(decision, retry)

    def _quarantine(self, decision: Decision, error: BaseException) -> Revert:
        """What undoes ``decision``'s run and quarantines its entry, whose task cannot be sent: the field at fault is
        ``args`` or ``kwargs`` when the task's signature refuses them (:func:`~.sending.refused_arguments`), else
        ``options``. Logged once reverted (:meth:`_account`)."""
        if decision.run is not None and not isinstance(error, ArgumentsRefused):  # Celery's own check, or another
            error = refused_arguments(self.messages.app, decision.run.definition) or error
        field, kind = (error.field, "TypeError") if isinstance(error, ArgumentsRefused) else ("options", type(error).__name__)
        problem = InvalidDefinition(field, f"the task cannot be sent: {kind}: {error}")
        return self._revert(decision, NEVER, quarantine_reason(decision.name, problem))

    @staticmethod
    def _revert(decision: Decision, retry_score: float, invalid_reason: str = "") -> Revert:
        """What undoes ``decision``'s committed run: its entry due at ``retry_score``, quarantined for a reason."""
        return Revert(name=decision.name, committed_score=decision.score, retry_score=retry_score,
                      previous_last_run_at=decision.entry.last_run_at, invalid_reason=invalid_reason,
                      history_stamp=newest_stamp(decision.history))


def log_quarantines(store: RedisStore, names: list[str]) -> None:
    """Say why each of the entries ``names``, which a script of this beat quarantined (their stored run count was
    not an integer), is out of service."""
    for name in names:
        log_quarantined(store.invalid_reason(name) or f"entry {name!r} quarantined", store.keys.tag)


def pending_records(planned: Planned, lease_seconds: float, tag: str) -> tuple[dict[int, str], str]:
    """The task id of each run of ``planned`` by plan index (:func:`~.sending.chosen_task_id` for the schedule
    ``tag``), and their pending records for the commit (:func:`~.redis_messages.encode`): sent again a lease after
    the claim unless forgotten first, with the run's fire time and history stamp (:func:`pending_value`)."""
    again = repr(planned.claim.now + lease_seconds)
    tids = {j: chosen_task_id(tag, decision) or uuid() for j, decision in enumerate(planned.decisions)
            if decision.run is not None}
    decisions = planned.decisions
    return tids, encode({j + 1: [("pending", pending_value(tid, decisions[j].run), again)] for j, tid in tids.items()})


def pending_value(tid: str, run: Run | None) -> str:
    """What ``{T}:pending_ids`` keeps of a run: ``"<task id> <fire time> <stamp>"`` (either may be ``-``), so a run
    sent again carries the headers it had."""
    if run is None:
        return tid
    return f"{tid} {run.fire_time or '-'} {run.stamp or '-'}"


class Resender:
    """Sends again the runs a beat committed as pending (``at-least-once``) and never saw the broker take, each with
    its own task id; ``codec`` reads their definitions as they are now."""

    def __init__(self, sender: Sender, confirms: ConfirmChannel, codec: Codec, settings: Settings) -> None:
        self.sender = sender
        self.confirms = confirms
        self.codec = codec
        self.settings = settings

    def resend(self, store: RedisStore, now: float | None = None) -> int:
        """Send again the runs of ``store`` whose resend time has come; how many were sent.

        Args:
            now: Unix time to look at instead of the Redis server's clock (as the tick's).
        """
        now, runs = store.runs.claim_pending(self.settings.batch_size, self.settings.lease_seconds, now)
        if not runs:
            return 0
        producer = self.sender.producer()
        if producer is None:
            return 0  # leased: tried again after the lease
        when = datetime.fromtimestamp(now, timezone.utc)
        done: list[tuple[str, str]] = []
        sendable: list[tuple[str, str, Run]] = []
        for pending in runs:
            if pending.task_id is None:
                continue
            if pending.definition is not None:
                try:
                    defn = self.codec.parse(pending.definition, digest(pending.definition))
                except InvalidDefinition as exc:
                    logger.error("beat: pending run of %r not sent again: %s", pending.name, exc)
                else:
                    sendable.append((pending.name, pending.task_id,
                                     Run(definition=defn, total_run_count=pending.total_run_count,
                                         fire_time=pending.fire_time, stamp=pending.stamp)))
                    continue
            done.append((pending.name, pending.task_id))
        if amqp_capturable(producer):
            sent = self._confirmed(producer, sendable, when, store.keys.tag, done)
        else:
            sent = 0
            with Pipelined(producer, 10 * self.settings.batch_size) as pipeline:
                for name, tid, run in sendable:
                    error = self.sender.send(name, run, when, producer, tid, store.keys.tag)
                    if error is None:
                        sent += 1
                        done.append((name, tid))
                    else:
                        self._refused(name, error)
                written = pipeline.flush()
            if written is not None:
                logger.error("beat: could not send pending runs again: %s", written)
                return 0
        store.runs.clear_pending(done)
        if sent:
            logger.warning("beat: %d runs sent again with their task ids (the beat that committed them did not see "
                           "the broker take them)", sent)
        return sent

    def _refused(self, name: str, error: BaseException) -> None:
        """Say why a pending run was not sent again when the fault is its own (a broker's is said by the sender)."""
        if not self.sender.broker_fault(error):
            logger.error("beat: pending run of %r not sent again: %s: %s", name, type(error).__name__, error)

    def _confirmed(self, producer: Producer, sendable: list[tuple[str, str, Run]], when: datetime, tag: str,
                   done: list[tuple[str, str]]) -> int:
        """Send the runs again on RabbitMQ with publisher confirms; those confirmed are added to ``done``; how many."""
        batch: dict[int, list[Outgoing]] = {}
        with capturing_amqp(producer) as capture:
            for i, (name, tid, run) in enumerate(sendable):
                error = self.sender.send(name, run, when, producer, tid, tag)
                messages = capture.take()
                if error is None:
                    batch[i] = messages
                else:
                    self._refused(name, error)
        confirmed = self.confirms.publish(producer, batch) if batch else None
        if confirmed is None:
            return 0
        if confirmed.error is not None or confirmed.nacked:
            logger.error("beat: the broker confirmed %d of %d pending runs sent again (%d refused): %s",
                         len(confirmed.acked), len(batch), len(confirmed.nacked), confirmed.error or "basic.nack")
        done.extend(sendable[i][:2] for i in sorted(confirmed.acked))
        return len(confirmed.acked)
