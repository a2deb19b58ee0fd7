"""What one beat counts about itself, in plain Python: cheap enough to run on every tick and every run sent.

The heartbeat (:mod:`.heartbeat`) writes a summary of it to Redis; the HTTP
endpoint (:mod:`.metrics`) reads it at scrape time. Keeping the counting
here means beat never imports ``prometheus_client`` unless that endpoint is
on, and a scrape costs beat's loop nothing.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Sequence
from typing import Any

#: Upper bounds (seconds) of the dispatch-lateness buckets: a run sent this long after it was due.
LATENESS_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Upper bounds (seconds) of the tick and Lua-call duration buckets.
DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
#: Run outcomes counted: sent to the broker, put back unsent (broker down, replicas missing), quarantined.
OUTCOMES = ("sent", "reverted", "quarantined")
#: The lateness p99 of the heartbeat covers this many seconds, one slot a second.
WINDOW = 60


class Histogram:
    """Counts per bucket (the last one is +Inf), a sum and a count: what a Prometheus histogram exposes."""

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value

    @property
    def count(self) -> int:
        return sum(self.counts)


class BeatStats:
    """Counters and histograms of one beat process, and the state ``/healthz`` answers from.

    Args:
        clock: Monotonic seconds (a parameter so tests can drive it).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.runs = dict.fromkeys(OUTCOMES, 0)
        self.publish_errors = 0
        self.lateness = Histogram(LATENESS_BUCKETS)
        self.tick = Histogram(DURATION_BUCKETS)
        self.lua: dict[str, Histogram] = {}
        #: Monotonic time the last tick ended (None before the first), and why it failed (None if it did not).
        self.last_tick: float | None = None
        self.tick_error: str | None = None
        # Lateness of the last WINDOW seconds: per slot, the second it holds and its bucket counts.
        self._slots: list[tuple[int, list[int]]] = [(-1, [])] * WINDOW

    # --- recording, from beat's loop -----------------------------------------------

    def ticked(self, seconds: float, error: str | None = None) -> None:
        """A tick ended after ``seconds``; ``error`` says why it failed (Redis down, say)."""
        self.tick.observe(seconds)
        self.last_tick = self.clock()
        self.tick_error = error

    def lua_call(self, script: str, seconds: float) -> None:
        """A Lua script ran for ``seconds`` as the client saw it (round trip included)."""
        histogram = self.lua.get(script)
        if histogram is None:
            histogram = self.lua[script] = Histogram(DURATION_BUCKETS)
        histogram.observe(seconds)

    def published(self, late: Iterable[float], reverts: Sequence[Any], broker_failed: bool) -> None:
        """A batch was published: the lateness of each run sent, the runs put back (quarantined: with an
        ``invalid_reason``), and whether the broker failed (one error; each quarantine is one too)."""
        quarantined = sum(1 for revert in reverts if revert.invalid_reason)
        reverted, errors = len(reverts) - quarantined, quarantined + int(broker_failed)
        second = int(self.clock())
        index = second % WINDOW
        stamp, slot = self._slots[index]
        if stamp != second:
            slot = [0] * (len(LATENESS_BUCKETS) + 1)
            self._slots[index] = (second, slot)
        sent = 0
        bounds, counts = LATENESS_BUCKETS, self.lateness.counts
        for seconds in late:
            bucket = bisect_left(bounds, seconds)
            counts[bucket] += 1
            slot[bucket] += 1
            self.lateness.sum += seconds
            sent += 1
        self.runs["sent"] += sent
        self.runs["reverted"] += reverted
        self.runs["quarantined"] += quarantined
        self.publish_errors += errors

    # --- reading -------------------------------------------------------------------------

    def lateness_p99(self) -> float | None:
        """The lateness 99 % of the runs sent in the last minute stayed under (a bucket bound); None if none were sent.

        Beyond the last bucket it is reported as that bucket's bound: "at least".
        """
        now = int(self.clock())
        merged = [0] * (len(LATENESS_BUCKETS) + 1)
        for stamp, slot in self._slots:
            if now - WINDOW < stamp <= now:
                merged = [a + b for a, b in zip(merged, slot)]
        total = sum(merged)
        if not total:
            return None
        seen = 0
        for bound, count in zip((*LATENESS_BUCKETS, LATENESS_BUCKETS[-1]), merged):
            seen += count
            if seen >= 0.99 * total:
                return bound
        return LATENESS_BUCKETS[-1]

    def health(self, alive_within: float) -> str | None:
        """None while beat is healthy; else why not (for ``/healthz``)."""
        if self.last_tick is None:
            return "beat has not finished a tick yet"
        age = self.clock() - self.last_tick
        if age > alive_within:
            return f"beat's loop is stuck: last tick ended {age:.1f}s ago (bound {alive_within:.1f}s)"
        if self.tick_error is not None:
            return f"the last tick failed: {self.tick_error}"
        return None

    def summary(self) -> dict[str, Any]:
        """What the heartbeat records: runs sent, publish errors, lateness p99."""
        return {"sent": self.runs["sent"], "publish_errors": self.publish_errors, "lateness_p99": self.lateness_p99()}
