"""Streamed batches: each full batch's commit and the next claim sent ahead on one connection, and when that pays.

While Redis runs a commit and the next claim, beat decides the next batch;
the committed batch is published before that batch's commit goes out, so, as
without the stream, only one batch is ever committed and not yet published.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable

import redis
from redis.exceptions import NoScriptError

from ..decisions.planner import Planned, Planner
from ..observe.log import logger
from ..settings import Settings
from ..storage.redis_store import RedisStore
from ..storage.runs import Committed
from ..storage.scripts import ScriptStream
from ..storage.wire import Claim
from .leases import LeaseKeeper
from .stopping import stop_signals_held

#: With ``redis_scheduler_claim_ahead`` on auto, beat stops claiming ahead once publishing a
#: full batch takes this many times as long as deciding it (see :meth:`ClaimAhead.measured`).
PUBLISH_BOUND = 2.0

#: Publishes a committed batch (store, batch, what its commit said, withheld); True if runs were withheld.
Publish = Callable[[RedisStore, Planned, Committed, bool], bool]
#: What a batch's commit writes besides its plans, or None (:meth:`~celerybeatredis.delivery.publisher.Publisher.prepare`).
Prepare = Callable[[RedisStore, Planned], "str | None"]


class ClaimAhead:
    """Whether a full batch is followed by a claim sent before it is published (``redis_scheduler_claim_ahead``).

    Args:
        setting: True or False as configured; None (auto) to learn it from full batches.
        batch_size: A batch this full is measured; a smaller one says nothing.
    """

    def __init__(self, setting: bool | None, batch_size: int) -> None:
        self.setting = setting
        self.batch_size = batch_size
        #: Whether the last full batch was bound by publishing; a new beat assumes so until it has measured one.
        self.publish_bound = True

    def wanted(self) -> bool:
        """Whether to claim ahead now."""
        return not self.publish_bound if self.setting is None else self.setting

    def measured(self, claim: Claim, plan_seconds: float, publish_seconds: float) -> None:
        """Learn from a full batch whether beat is bound by publishing.

        A claim sent ahead lets Redis work while beat decides and publishes, but
        holds a batch that other beats could be sending. When publishing dominates
        (a real broker: about 250 us a run, against 7 us to decide one), what
        Redis saves is a few percent, and the held batch waits a whole publish.
        """
        if len(claim.entries) >= self.batch_size:
            self.publish_bound = publish_seconds > PUBLISH_BOUND * plan_seconds


class Streamer:
    """Runs full batches from one shard on a :class:`~celerybeatredis.storage.scripts.ScriptStream`."""

    def __init__(self, settings: Settings, planner: Planner, publish: Publish, claim_ahead: ClaimAhead,
                 leases: LeaseKeeper, prepare: Prepare | None = None) -> None:
        self.settings = settings
        self.leases = leases
        self.prepare = prepare or (lambda store, planned: None)
        self.planner = planner
        self.publish = publish
        self.claim_ahead = claim_ahead

    def run(self, store: RedisStore, stream: ScriptStream, first: Claim, now: float | None, ends: float) -> tuple[bool, Claim]:
        """Batch after full batch from ``store``, starting with ``first``, each claimed ahead so Redis runs it while beat decides another.

        Stops at a batch that is not full, at ``ends`` (``time.monotonic``), once
        publishing is found to dominate (:meth:`ClaimAhead.measured`), at a publish
        failure, or at a stop signal, which lands once every committed batch is
        published. Returns whether a publish failed, and the last claim.
        """
        batch, lease = self.settings.batch_size, self.settings.lease_seconds
        failed = False
        last = current = first
        committing: Planned | None = None
        own: set[float] = set()  # leases of this run's batches committed after the last claim was made
        messages: str | None = None
        with stop_signals_held() as stop, contextlib.closing(stream):
            claim_sent = time.monotonic() < ends
            if claim_sent:
                stream.send("claim", store.runs.claim_args(batch, lease, now))
            while True:
                planned = self.planner.plan(current)
                if committing is not None:  # published before this batch is committed: one batch at risk, as ever
                    failed = self.publish_committed(store, stream, committing, failed, messages)
                planned = self.leases.current(planned)  # renewed while the batch before was published
                messages = self.prepare(store, planned)
                stream.send("commit", store.runs.commit_args(planned.decisions, self.settings.history, messages))
                committing = planned
                if not claim_sent:
                    break
                own = {float(planned.claim.lease), float(planned.decisions[0].lease)}
                last = self.read_claim(store, stream, batch, lease, now)
                self.leases.hold(store, last, now)
                claim_sent = False
                if not last.entries:
                    break
                if (len(last.entries) >= batch and not (stop or failed) and time.monotonic() < ends
                        and self.claim_ahead.wanted()):
                    stream.send("claim", store.runs.claim_args(batch, lease, now))
                    claim_sent = True
                current = last
            failed = self.publish_committed(store, stream, committing, failed, messages)
        if last.next_score in own:  # the last claim saw a batch of ours, committed since: look again
            last = dataclasses.replace(last, next_score=store.lowest_score())
        return failed, last

    @staticmethod
    def read_claim(store: RedisStore, stream: ScriptStream, batch: int, lease: float, now: float | None) -> Claim:
        """The claim sent ahead on ``stream``, claimed the usual way if Redis did not know the script."""
        try:
            return store.runs.claim_from_reply(stream.read())
        except NoScriptError:
            return store.runs.claim(batch, lease, now)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Whatever it claimed runs after the lease; the tick ends here.
            logger.warning("beat: connection to Redis lost while claiming (%s)", exc)
            return Claim(now=0.0, lease="", next_score=None, removed=0, entries=[])

    def publish_committed(self, store: RedisStore, stream: ScriptStream, planned: Planned, failed: bool,
                          messages: str | None = None) -> bool:
        """Read a batch's commit reply from ``stream`` and publish its runs; True if a publish failed.

        After a failed publish the later batches' runs are reverted unsent.
        """
        try:
            committed = store.runs.committed(planned.decisions, stream.read())
        except (NoScriptError, redis.ConnectionError, redis.TimeoutError):
            # Not run, or perhaps run with the reply lost: commit.lua takes the same plans again.
            committed = store.runs.commit(planned.decisions, self.settings.history, messages)
        return self.publish(store, planned, committed, failed) or failed
