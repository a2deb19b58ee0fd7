"""``at-least-once`` delivery: each run recorded as pending by its commit, and sent again, with its task id, when
the beat that committed it never saw the broker take it (see delivery.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from celery.utils import uuid
from kombu import Producer

from .amqp_messages import Outgoing, amqp_capturable, capturing_amqp
from .codec import digest
from .decisions import Run
from .exceptions import InvalidDefinition
from .messages import Pipelined, encode
from .planning import Planned
from .redis_store import RedisStore
from .wire import Plan

if TYPE_CHECKING:
    from .publish import Publisher

#: Beat logs under the name of the module users configure it by, whichever of its modules speaks.
logger = logging.getLogger("celerybeatredis.schedulers")


def pending_records(planned: Planned, lease_seconds: float,
                    task_id: Callable[[str, Plan], str | None]) -> tuple[dict[int, str], str]:
    """The task id of each run of ``planned`` by plan index, and their pending records for the commit
    (:func:`.messages.encode`): sent again a lease after the claim unless forgotten first."""
    claim = planned.claim
    again = repr(claim.now + lease_seconds)
    tids = {j: task_id(claimed.name, plan) or uuid()
            for j, ((plan, run, _), claimed) in enumerate(zip(planned.decisions, claim.entries)) if run is not None}
    return tids, encode({j + 1: [("pending", tid, again)] for j, tid in tids.items()})


def resend(publisher: Publisher, store: RedisStore, now: float | None = None) -> int:
    """Send again the runs of ``store`` left pending by a beat that died, each with its own task id; how many.

    Args:
        now: Unix time to look at instead of the Redis server's clock (as the tick's).
    """
    settings = publisher.settings
    now, runs = store.claim_pending(settings.batch_size, settings.lease_seconds, now)
    if not runs:
        return 0
    producer = publisher.producer()
    if producer is None:
        return 0  # leased: tried again after the lease
    when = datetime.fromtimestamp(now, timezone.utc)
    codec = publisher.scheduler.codec
    done: list[tuple[str, str]] = []
    sendable: list[tuple[str, str, Run]] = []
    for run in runs:
        if run.task_id is None:
            continue
        if run.definition is not None:
            try:
                defn = codec.parse(run.definition, digest(run.definition))
            except InvalidDefinition as exc:
                logger.error("beat: pending run of %r not sent again: %s", run.name, exc)
            else:
                sendable.append((run.name, run.task_id, Run(defn, run.total_run_count)))
                continue
        done.append((run.name, run.task_id))
    if amqp_capturable(producer):
        sent = _confirmed(publisher, producer, sendable, when, store.keys.tag, done)
    else:
        sent = 0
        with Pipelined(producer, 10 * settings.batch_size) as pipeline:
            for name, tid, each in sendable:
                if publisher.send(name, each, when, producer, tid, store.keys.tag) is None:
                    sent += 1
                    done.append((name, tid))
            written = pipeline.flush()
        if written is not None:
            logger.error("beat: could not send pending runs again: %s", written)
            return 0
    store.clear_pending(done)
    if sent:
        logger.warning("beat: %d runs sent again with their task ids (the beat that committed them did not see "
                       "the broker take them)", sent)
    return sent


def _confirmed(publisher: Publisher, producer: Producer, sendable: list[tuple[str, str, Run]], when: datetime,
               tag: str, done: list[tuple[str, str]]) -> int:
    """Send the runs again on RabbitMQ with publisher confirms; those confirmed are added to ``done``; how many."""
    batch: dict[int, list[Outgoing]] = {}
    with capturing_amqp(producer) as capture:
        for i, (name, tid, each) in enumerate(sendable):
            error = publisher.send(name, each, when, producer, tid, tag)
            messages = capture.take()
            if error is None:
                batch[i] = messages
    confirmed = publisher.confirms.publish(producer, batch) if batch else None
    if confirmed is None:
        return 0
    if confirmed.error is not None or confirmed.nacked:
        logger.error("beat: the broker confirmed %d of %d pending runs sent again (%d refused): %s",
                     len(confirmed.acked), len(batch), len(confirmed.nacked), confirmed.error or "basic.nack")
    done.extend(sendable[i][:2] for i in sorted(confirmed.acked))
    return len(confirmed.acked)
