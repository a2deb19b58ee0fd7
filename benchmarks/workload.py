"""The schedules every scheduler runs: the same entries, due at the same times.

An entry is given by its index ``i``: name ``e0000042``, task ``bench.noop``,
args ``[i]`` (so a publish can be traced back to its entry). Interval entries
carry the time they are first due; each scheduler turns that into its own
state (a last run time and an interval) in :mod:`benchmarks.subjects`.
Crontab entries carry the five crontab fields; their last run is ``t0``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone

TASK = "bench.noop"
#: Filler entries are due this far after the run starts (never during a run).
FAR = 7 * 86400.0
#: How long before the run every entry last ran (interval entries).
LOOKBACK = 3601.0


@dataclass(frozen=True)
class Entry:
    """One schedule entry of a workload."""

    index: int
    due: float | None = None
    cron: tuple[str, str] | None = None

    @property
    def name(self) -> str:
        """The entry's name, the same in every scheduler."""
        return f"e{self.index:07d}"


class Workload:
    """``n`` entries of one kind; :meth:`entry` gives entry ``i``.

    Attributes:
        kind: ``interval`` or ``crontab``.
        t0: When every entry last ran, as far as the schedulers know.
    """

    kind = "interval"

    def __init__(self, n: int, t0: float) -> None:
        self.n = n
        self.t0 = t0

    def entry(self, i: int) -> Entry:
        """Entry ``i`` (0 <= i < n)."""
        raise NotImplementedError

    def due_count(self) -> int:
        """How many entries fall due during the run."""
        raise NotImplementedError


class Burst(Workload):
    """A fraction of ``n`` entries are due at once, the rest much later.

    Interval: the due ones ran ``LOOKBACK`` seconds ago with a one-hour interval,
    so they are one second late; the others are due a week from now. Crontab:
    the due ones run hourly at a minute that passed one to two minutes ago and
    last ran before it; the others run daily twelve hours from now.
    """

    def __init__(self, n: int, kind: str = "interval", fraction: float = 0.2, now: float | None = None) -> None:
        now = time.time() if now is None else now
        super().__init__(n, now - LOOKBACK if kind == "interval" else now - 121.0)
        self.kind = kind
        self.now = now
        self.due_n = max(1, int(n * fraction))
        passed = datetime.fromtimestamp(now - 60.0, timezone.utc)
        later = datetime.fromtimestamp(now + 12 * 3600.0, timezone.utc)
        self.due_cron = (str(passed.minute), "*")
        self.later_cron = (str(later.minute), str(later.hour))

    def entry(self, i: int) -> Entry:
        """Due now for ``i < due_n``, later otherwise."""
        if self.kind == "crontab":
            return Entry(i, cron=self.due_cron if i < self.due_n else self.later_cron)
        return Entry(i, due=self.now - 1.0 if i < self.due_n else self.now + FAR)

    def due_count(self) -> int:
        """The entries due at once."""
        return self.due_n


class Spread(Workload):
    """``spread`` interval entries due one after another over ``window`` seconds from
    ``start``; the other ``n - spread`` entries are due much later.

    ``start`` may be set after the later entries were written (they do not use it).
    """

    def __init__(self, n: int, spread: int, window: float, now: float | None = None) -> None:
        now = time.time() if now is None else now
        super().__init__(n, now - LOOKBACK)
        self.now = now
        self.spread = min(spread, n)
        self.window = window
        self.start = now + FAR

    def due_at(self, i: int) -> float:
        """When spread entry ``i`` is due."""
        return self.start + i * self.window / self.spread

    def entry(self, i: int) -> Entry:
        """Spread over the window for ``i < spread``, much later otherwise."""
        return Entry(i, due=self.due_at(i) if i < self.spread else self.now + FAR)

    def due_count(self) -> int:
        """The spread entries."""
        return self.spread


class Timed(Workload):
    """Entry 0 (the probe) is due at once; entries ``1..due_n`` are due together at
    ``start``; the rest much later. ``start`` may be set after the later entries
    were written.
    """

    def __init__(self, n: int, fraction: float = 0.2, now: float | None = None) -> None:
        now = time.time() if now is None else now
        super().__init__(n, now - LOOKBACK)
        self.now = now
        self.due_n = max(1, min(n - 1, int(n * fraction)))
        self.start = now + FAR

    def entry(self, i: int) -> Entry:
        """The probe, a member of the timed group, or a later entry."""
        if i == 0:
            return Entry(0, due=self.now - 1.0)
        return Entry(i, due=self.start if i <= self.due_n else self.now + FAR)

    def due_count(self) -> int:
        """The probe and the timed group."""
        return self.due_n + 1
