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

import time

import redis

from ..decisions.planner import Planned
from ..observe.log import logger
from ..storage.redis_store import RedisStore

#: Seconds from deciding a batch to publishing it after which beat checks for newer runs.
STALE_AFTER = 1.0


def fresh_runs(store: RedisStore, planned: Planned, committed: list[bool]) -> list[bool]:
    """``committed``, less the runs of a late batch whose entries ran again since (logged by name)."""
    late = time.monotonic() - planned.decided_at
    if late < STALE_AFTER:
        return committed
    decisions = planned.decisions
    runs = [j for j, (decision, ok) in enumerate(zip(decisions, committed)) if ok and decision.ran]
    if not runs:
        return committed
    try:
        latest = store.last_runs([decisions[j].name for j in runs])
    except redis.RedisError:
        return committed  # sent as without the check
    stale = [j for j, value in zip(runs, latest) if value is not None and value != decisions[j].run_at.encode()]
    if not stale:
        return committed
    fresh = list(committed)
    for j in stale:
        fresh[j] = False
    names = [decisions[j].name for j in stale]
    shown = ", ".join(repr(n) for n in names[:5]) + (", ..." if len(names) > 5 else "")
    logger.warning("beat: %d runs not sent: published %.1fs after their commit, their entries had run again since "
                   "(%s)", len(names), late, shown)
    return fresh
