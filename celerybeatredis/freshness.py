"""Runs committed, then held up before they were sent (a beat frozen, a stall): skipped once a newer run exists.

A beat commits a batch, then publishes it. Frozen in between (``SIGSTOP``, a
paused VM) for longer than an entry's interval, it would wake and send runs
that the other beats have since followed with newer ones: late, and out of
order. While a batch is published on time nothing is looked up; once its
publishing is :data:`STALE_AFTER` seconds behind its decision (just before
its commit), beat reads the
``last_run_at`` of the entries still to send (one ``HMGET``, at most once
every :data:`STALE_AFTER` seconds) and skips the runs whose entry ran again
since. Such a run stays counted and is not sent, as if the beat had died
after the commit (at most once).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from .keys import name_bytes
from .planning import Planned
from .redis_store import RedisStore

#: Seconds a batch may take from its commit to each send before beat checks for newer runs.
STALE_AFTER = 1.0

#: Beat logs under the name of the module users configure it by, whichever of its modules speaks.
logger = logging.getLogger("celerybeatredis.schedulers")


class Freshness:
    """Tells, run by run while a committed batch is published, whether a newer run of the entry was committed since."""

    def __init__(self, store: RedisStore, planned: Planned) -> None:
        self.store = store
        self.planned = planned
        self.since = planned.decided_at or time.monotonic()
        self.checked = self.since
        #: Entry name -> its last_run_at now, for the runs still to send, once a check was made.
        self.latest: dict[str, bytes | None] = {}
        self.skipped: list[str] = []

    def superseded(self, name: str, run_at: str) -> bool:
        """Whether the run of ``name`` at ``run_at`` is stale: a newer run of its entry was committed since."""
        now = time.monotonic()
        if now - self.checked >= STALE_AFTER:
            self.checked = now
            self.look(name)
        latest = self.latest.get(name)
        if latest is None or latest == run_at.encode():
            return False
        self.skipped.append(name)
        return True

    def look(self, first: str) -> None:
        """Read ``last_run_at`` of the batch's runs from ``first`` on (the ones not sent yet)."""
        names = [p.name for p in self.planned.plans if p.ran]
        names = names[names.index(first):] if first in names else names
        try:
            values: Any = self.store.client.hmget(self.store.keys.last_run_at, [name_bytes(n) for n in names])
        except redis.RedisError:
            return  # sent as without the check
        self.latest = dict(zip(names, values))

    def report(self) -> None:
        """Say which runs were skipped, if any."""
        if self.skipped:
            shown = ", ".join(repr(n) for n in self.skipped[:5]) + (", ..." if len(self.skipped) > 5 else "")
            logger.warning("beat: %d runs not sent: published %.1fs after their commit, their entries had run again "
                           "since (%s)", len(self.skipped), time.monotonic() - self.since, shown)
