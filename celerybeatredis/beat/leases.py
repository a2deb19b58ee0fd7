"""Short leases, kept alive while their beat works: a beat that dies frees its claim within one short lease.

A claim reserves its entries until ``now + redis_scheduler_lease_seconds``
(a few seconds). Most batches are committed within milliseconds; one held
longer (claimed ahead while the batch before is published, a slow broker)
has its lease extended by a thread every third of a lease, so a live beat
keeps what it claimed while a dead or frozen one (whose thread is dead or
frozen too) loses it within one lease. Renewal is compare-and-set
(``lua/renew.lua``), and so is the commit: a beat that lost its lease (a
stall longer than the lease) commits nothing, and the beat that took the
entries over sends them, once.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

import redis

from ..decisions.planner import Planned
from ..observe.log import logger
from ..storage.keys import name_bytes
from ..storage.redis_store import RedisStore
from ..storage.wire import Claim


@dataclass
class Held:
    """A claim being worked on: where, which names, the lease they hold now, and when that lease was set."""

    store: RedisStore
    names: list[bytes]
    lease: str
    since: float = field(default_factory=time.monotonic)


class LeaseKeeper:
    """Extends the leases of the claims this beat holds, from a thread, until each is committed or dropped.

    Args:
        lease_seconds: The lease length; held claims are renewed every third of it.
    """

    def __init__(self, lease_seconds: float) -> None:
        self.lease_seconds = lease_seconds
        #: A claim held this long since its lease was set is renewed; the thread looks twice as often.
        self.every = lease_seconds / 3
        self.lock = threading.Lock()
        self.held: dict[int, Held] = {}
        self.stopped = threading.Event()
        self.thread: threading.Thread | None = None
        #: Renewals made (batches), for tests and the curious.
        self.renewals = 0

    def hold(self, store: RedisStore, claim: Claim, now: float | None) -> None:
        """Keep ``claim``'s lease alive until :meth:`current` or :meth:`drop`; a claim at a given ``now`` (tests, tools) is not kept."""
        if now is not None or not claim.entries:
            return
        with self.lock:
            self.held[id(claim)] = Held(store=store, names=[name_bytes(e.name) for e in claim.entries], lease=claim.lease)
        if self.thread is None:
            self.thread = threading.Thread(target=self.run, name="celerybeatredis-leases", daemon=True)
            self.thread.start()

    def current(self, planned: Planned) -> Planned:
        """``planned``, its claim no longer renewed, its decisions given the lease their entries hold now (for
        commit.lua's compare-and-set)."""
        with self.lock:
            held = self.held.pop(id(planned.claim), None)
        if held is not None and held.lease != planned.claim.lease:
            for decision in planned.decisions:
                decision.lease = held.lease
        return planned

    def drop(self) -> None:
        """Stop renewing every claim (the tick is over: what it did not commit waits out its lease)."""
        with self.lock:
            self.held.clear()

    def close(self) -> None:
        """Stop the thread."""
        self.stopped.set()
        self.drop()

    def run(self) -> None:
        """Renew the claims that are due, looking every sixth of a lease (:meth:`renew_due`)."""
        while not self.stopped.wait(self.every / 2):
            self.renew_due()

    def renew_due(self) -> int:
        """Renew each claim held a third of a lease since its lease was set; how many were due."""
        due = 0
        with self.lock:  # the tick waits at most one renewal before it commits
            for held in list(self.held.values()):
                if time.monotonic() - held.since >= self.every:
                    self.renew(held)
                    due += 1
        return due

    def renew(self, held: Held) -> None:
        """One renewal; a failed one is logged, and the claim may then lose its lease (never twice sent)."""
        store = held.store
        started = time.monotonic()
        try:
            lease, _renewed = store.runs.renew(held.lease, self.lease_seconds, held.names)
        except redis.RedisError as exc:
            logger.warning("beat: could not extend the lease of %d claimed entries (%s); another beat may take them",
                           len(held.names), exc)
            return
        held.lease = lease
        held.since = started
        self.renewals += 1
