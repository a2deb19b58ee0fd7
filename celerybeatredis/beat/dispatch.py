"""One shard's batches in a tick: claim, decide, commit, then publish, batch after full batch.

Commit comes before publish, as in Celery's own scheduler: a beat killed
between the two loses those runs rather than sending them twice; with
``exactly-once`` delivery the commit writes the task messages itself (see
docs/guarantees.rst). Full batches are streamed (:mod:`.stream`)
while that pays.
"""

from __future__ import annotations

import time

from ..decisions.decide import log_quarantined
from ..decisions.planner import Planned, Planner
from ..delivery.publisher import Publisher, log_quarantines
from ..observe.heartbeat import Heartbeat
from ..observe.log import logger
from ..settings import EXACTLY_ONCE, Settings
from ..storage.redis_store import RedisStore
from ..storage.runs import Committed
from ..storage.wire import Claim
from .freshness import fresh_runs
from .leases import LeaseKeeper
from .stopping import stop_signals_held
from .stream import ClaimAhead, Streamer


class Dispatcher:
    """Runs the batches of one shard for a tick."""

    def __init__(self, settings: Settings, planner: Planner, publisher: Publisher, heartbeat: Heartbeat | None = None) -> None:
        self.settings = settings
        #: Sends the heartbeat with a claim of the first shard, in its round trip (:mod:`~celerybeatredis.observe.heartbeat`).
        self.heartbeat = heartbeat
        self.planner = planner
        self.publisher = publisher
        self.claim_ahead = ClaimAhead(settings.claim_ahead, settings.batch_size)
        #: Keeps the leases of the claims being worked on alive (:mod:`.leases`).
        self.leases = LeaseKeeper(settings.lease_seconds)
        self.streamer = Streamer(settings, planner, self.publish, self.claim_ahead, self.leases, publisher.prepare)

    def close(self) -> None:
        """Stop renewing leases."""
        self.leases.close()

    def batches(self, store: RedisStore, now: float | None, seconds: float) -> tuple[bool, Claim]:
        """Batches from ``store`` while they come back full; returns whether a publish failed, and the last claim.

        Stops at a batch that is not full, after ``seconds`` (so the other
        shards and the reconciler get their turn) or at a publish failure.
        Full batches are streamed while :class:`~.stream.ClaimAhead` says so,
        except with ``wait_replicas`` (each commit waits for its replicas) or
        on Redis Cluster, where each batch is processed on its own.
        """
        try:
            failed, claim = self._batches(store, now, seconds)
        finally:
            settled = self.publisher.settle()  # the last batch published on RabbitMQ: its confirms
        return failed or settled, claim

    def _batches(self, store: RedisStore, now: float | None, seconds: float) -> tuple[bool, Claim]:
        """:meth:`batches`, but for the last batch published on RabbitMQ, whose confirms are read after it."""
        batch, lease = self.settings.batch_size, self.settings.lease_seconds
        ends = time.monotonic() + seconds
        try:
            while True:
                # Held from the claim: a stop lands between batches, so it never leaves a claimed batch reserved.
                with stop_signals_held():
                    claim = self.heartbeat.claim(store, batch, lease, now) if self.heartbeat else store.runs.claim(batch, lease, now)
                    self.leases.hold(store, claim, now)
                    full = len(claim.entries) >= batch
                    if full and self.claim_ahead.wanted():
                        stream = None if self.settings.wait_replicas else store.runs.stream()
                        if stream is not None:
                            return self.streamer.run(store, stream, claim, now, ends)
                    failed = self.process(store, claim) if claim.entries else False
                if failed or not full or time.monotonic() >= ends:
                    return failed, claim
        finally:
            self.leases.drop()  # a claim the tick did not commit (an error) is renewed no more: it waits out one lease

    def process(self, store: RedisStore, claim: Claim) -> bool:
        """Decide, commit and publish one batch claimed from ``store``; True if a publish failed."""
        planned = self.leases.current(self.planner.plan(claim))
        with stop_signals_held():
            messages = self.publisher.prepare(store, planned)
            replicas = self.settings.wait_replicas
            if replicas:
                committed, acked = store.runs.commit_replicated(planned.decisions, replicas, self.settings.wait_timeout,
                                                                 self.settings.history, messages)
                # A commit the replicas did not get may be lost in a failover: undo its runs rather than publish them.
                # (Messages written by the commit, exactly-once, are lost with it or kept with it: nothing to undo.)
                withheld = acked < replicas and self.publisher.mode != EXACTLY_ONCE
                if withheld:
                    logger.warning("beat: commit acknowledged by %d of %d replicas; its runs are not published",
                                   acked, replicas)
            else:
                committed, withheld = store.runs.commit(planned.decisions, self.settings.history, messages), False
            return self.publish(store, planned, committed, withheld)

    def publish(self, store: RedisStore, planned: Planned, committed: Committed, withheld: bool) -> bool:
        """Publish a committed batch (:meth:`~celerybeatredis.delivery.publisher.Publisher.publish`); True if runs were
        withheld. Entries the commit quarantined are logged (:func:`log_commit_quarantines`).

        A batch published in full is timed against deciding it, for :class:`~.stream.ClaimAhead`.
        """
        log_commit_quarantines(store, planned, committed)
        fresh = fresh_runs(store, planned, committed)  # late (a freeze, a stall): skip what ran again since
        published = self.publisher.publish(store, planned, fresh, withheld)
        if not published.withheld:
            self.claim_ahead.measured(planned.claim, planned.seconds, published.seconds)
        return published.withheld


def log_commit_quarantines(store: RedisStore, planned: Planned, committed: Committed) -> None:
    """Say why each entry the commit moved into quarantine is out of service: decided so, or found with a stored run
    count that is not an integer. Said once across beats: a decision whose lease was lost (another beat claimed the
    entry meanwhile) was not committed, and is the other beat's to say."""
    for j, decision in enumerate(planned.decisions):
        if decision.invalid_reason and committed[j]:
            log_quarantined(decision.invalid_reason, store.keys.tag, planned.errors.get(decision.name))
    log_quarantines(store, committed.quarantined)
