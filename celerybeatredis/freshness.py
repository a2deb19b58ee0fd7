"""Runs committed, then held up before they were sent (a beat frozen, a stall): skipped once a newer run exists.

A beat commits a batch, then publishes it. Frozen in between (``SIGSTOP``, a
paused VM) for longer than an entry's interval, it would wake and send runs
that the other beats have since followed with newer ones: late, and out of
order. A batch published on time is not looked at; one whose publishing
starts :data:`STALE_AFTER` seconds or more after it was decided (just before
its commit) has the ``last_run_at`` of its runs' entries read (one
``HMGET``), and a run whose entry ran again since is not sent. It stays
counted, as if the beat had died after the commit (at most once).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import redis

from .keys import name_bytes
from .planning import Planned
from .redis_store import RedisStore

#: Seconds from deciding a batch to publishing it after which beat checks for newer runs.
STALE_AFTER = 1.0

#: Beat logs under the name of the module users configure it by, whichever of its modules speaks.
logger = logging.getLogger("celerybeatredis.schedulers")


def fresh_runs(store: RedisStore, planned: Planned, committed: list[bool]) -> list[bool]:
    """``committed``, less the runs of a late batch whose entries ran again since (logged by name)."""
    late = time.monotonic() - planned.decided_at
    if late < STALE_AFTER:
        return committed
    runs = [j for j, (plan, ok) in enumerate(zip(planned.plans, committed)) if ok and plan.ran]
    if not runs:
        return committed
    try:
        latest: Any = store.client.hmget(store.keys.last_run_at, [name_bytes(planned.plans[j].name) for j in runs])
    except redis.RedisError:
        return committed  # sent as without the check
    stale = [j for j, value in zip(runs, latest) if value is not None and value != planned.plans[j].run_at.encode()]
    if not stale:
        return committed
    fresh = list(committed)
    for j in stale:
        fresh[j] = False
    names = [planned.plans[j].name for j in stale]
    shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
    logger.warning("beat: %d runs not sent: published %.1fs after their commit, their entries had run again since "
                   "(%s)", len(names), late, shown)
    return fresh
