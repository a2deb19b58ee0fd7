"""Failover with short leases: a beat killed or frozen while it holds a claim, real ``celery beat`` processes.

The held runs are sent by the other beats once the short lease ends (the
delays are printed, never asserted: ``pytest -s`` shows them), and never twice:
a frozen beat that wakes finds its lease gone and commits nothing.
"""

from __future__ import annotations

import signal
import statistics
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from celerybeatredis.beat.freshness import STALE_AFTER
from celerybeatredis.storage.redis_store import RedisStore

from ..support.ledger import STAMP_PUBLISHER, Ledger, every_second, load_entries, run_counts
from ..support.processes import CeleryProcess, wait_until, write_app
from .test_reliability_beats import CRASH_POINTS, alive

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: Test-app code that SIGSTOPs a beat once it holds a claim, after the test writes ``freeze-<pid>``.
FREEZE_POINT = """
_frozen = _Path(__file__).with_name(f"freeze-{_os.getpid()}")
_commit_args_then = _Runs.commit_args
def _commit_args_or_freeze(plans, history=0, messages=None):
    if _frozen.exists() and _frozen.read_text() == "after-claim":
        _frozen.unlink()
        _frozen.with_name(f"held-{_os.getpid()}").write_text("\\n".join(f"{p.name} {p.lease}" for p in plans))
        _os.kill(_os.getpid(), _signal.SIGSTOP)
    return _commit_args_then(plans, history, messages)
_Runs.commit_args = staticmethod(_commit_args_or_freeze)

_committed_then = _Runs.committed  # every commit reply is read here, streamed or not, before its batch is published
def _freeze_once_committed(plans, reply):
    committed = _committed_then(plans, reply)
    if _frozen.exists() and _frozen.read_text() == "after-commit" and any(ok and p.ran for p, ok in zip(plans, committed)):
        _frozen.unlink()
        ran = [p.name for p, ok in zip(plans, committed) if ok and p.ran]
        _frozen.with_name(f"held-{_os.getpid()}").write_text("\\n".join(f"{n} 0" for n in ran))
        _os.kill(_os.getpid(), _signal.SIGSTOP)
    return committed
_Runs.committed = staticmethod(_freeze_once_committed)
"""


def app_with(tmp_path: Path, redis_url: str, prefix: str, queue: str, batch: int, claim_ahead: bool | str) -> None:
    """The test app with the default lease, its messages stamped with their beat, and the crash and freeze points."""
    settings = f"app.conf.update(task_default_queue={queue!r}, redis_scheduler_batch_size={batch!r}, " \
               f"redis_scheduler_claim_ahead={claim_ahead!r})\n"
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=settings + STAMP_PUBLISHER + CRASH_POINTS
              + FREEZE_POINT)


def held_names(tmp_path: Path, pid: int) -> dict[str, float]:
    """The names and lease of the batch a beat held when it was killed or frozen."""
    lines = (tmp_path / f"held-{pid}").read_text().splitlines()
    return {name: float(lease) for name, lease in (line.split() for line in lines)}


def delays_line(delays: list[float]) -> str:
    ordered = sorted(delays)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (f"held runs {len(ordered)} | sent after the kill: median {statistics.median(ordered):.2f} s, "
            f"p99 {p99:.2f} s, max {ordered[-1]:.2f} s")


@pytest.mark.parametrize("claim_ahead", ["auto", True], ids=["claim-ahead-auto", "claim-ahead-on"])
def test_a_beat_killed_holding_a_claim_frees_it_within_one_short_lease(
        tmp_path: Path, redis_url: str, prefix: str, store: RedisStore, broker: redis.Redis,
        claim_ahead: bool | str) -> None:
    entries, runs_each, batch = 500, 8, 100
    queue = f"q-{store.keys.tag}"
    app_with(tmp_path, redis_url, prefix, queue, batch, claim_ahead)
    names = [f"f{i:03d}" for i in range(entries)]
    load_entries(store, {n: every_second(n, runs_each) for n in names})
    ledger = Ledger(broker, queue)
    beats = [CeleryProcess.beat(tmp_path) for _ in range(3)]
    victim, survivors = beats[0], beats[1:]
    try:
        wait_until(lambda: alive(beats) and ledger.poll() >= 0 and ledger.by_beat.get(victim.process.pid, 0) > 0,
                   timeout=60, interval=0.05, what="the victim to send something")
        (tmp_path / f"crash-{victim.process.pid}").write_text("after-claim")
        wait_until(lambda: victim.process.poll() is not None, timeout=30, interval=0.01, what="the victim to die")
        ledger.poll()  # what was sent before the kill is counted before it
        died_at = store.server_time()
        orphans = held_names(tmp_path, victim.process.pid)
        wait_until(lambda: alive(survivors) and ledger.poll() >= 0 and all(
            any(t >= died_at for t in ledger.arrivals[n]) for n in orphans), timeout=60, interval=0.02,
            what="every held run sent by the others")
        wait_until(lambda: alive(survivors) and ledger.poll() >= 0 and sum(run_counts(store).values()) >= entries * runs_each,
                   timeout=runs_each + 60, interval=0.2, what="every entry to finish")
    finally:
        codes = [b.stop() for b in survivors]
        victim.stop()
    ledger.poll()
    audit = ledger.audit(store, names, runs_each)
    delays = [min(t for t in ledger.arrivals[n] if t >= died_at) - died_at for n in orphans]
    print(audit.row(f"kill -9 holding a claim ({claim_ahead})") + " | " + delays_line(delays))
    assert codes == [0, 0], [b.output() for b in survivors]
    assert 0 < len(orphans) <= batch
    assert (audit.duplicates, audit.lost, audit.misses) == (0, 0, 0)  # every held run sent, once
    assert set(run_counts(store).values()) == {runs_each}


#: Entries, runs of each and batch size of the freeze tests.
FROZEN_ENTRIES, FROZEN_RUNS, FROZEN_BATCH = 300, 12, 100


@dataclass
class Frozen:
    """Three beats on ``ENTRIES`` entries due every second, the first one frozen (SIGSTOP) at a crash point."""

    beats: list[CeleryProcess]
    ledger: Ledger
    names: list[str]
    #: The frozen beat's batch: entry name -> lease end (0 after the commit).
    held: dict[str, float]
    #: Redis time just after it froze.
    frozen_at: float
    codes: list[int] = field(default_factory=list)

    @property
    def frozen(self) -> CeleryProcess:
        return self.beats[0]

    @property
    def others(self) -> list[CeleryProcess]:
        return self.beats[1:]

    def finish(self, store: RedisStore) -> None:
        """Wake the frozen beat and wait until every entry has run all its runs."""
        self.frozen.process.send_signal(signal.SIGCONT)
        wait_until(lambda: alive(self.beats) and self.ledger.poll() >= 0
                   and sum(run_counts(store).values()) >= len(self.names) * FROZEN_RUNS,
                   timeout=FROZEN_RUNS + 60, interval=0.2, what="every entry to finish")


@contextmanager
def three_beats_one_frozen(tmp_path: Path, redis_url: str, prefix: str, store: RedisStore, broker: redis.Redis,
                           point: str) -> Iterator[Frozen]:
    """:class:`Frozen` at ``point`` (``after-claim`` or ``after-commit``); on leaving, every beat woken and stopped
    (their exit codes in ``codes``) and the queue drained."""
    queue = f"q-{store.keys.tag}"
    app_with(tmp_path, redis_url, prefix, queue, FROZEN_BATCH, "auto")
    names = [f"f{i:03d}" for i in range(FROZEN_ENTRIES)]
    load_entries(store, {n: every_second(n, FROZEN_RUNS) for n in names})
    ledger = Ledger(broker, queue)
    beats = [CeleryProcess.beat(tmp_path) for _ in range(3)]
    pid = beats[0].process.pid
    state = Frozen(beats, ledger, names, {}, 0.0)
    try:
        wait_until(lambda: alive(beats) and ledger.poll() >= 0 and ledger.by_beat.get(pid, 0) > 0,
                   timeout=60, interval=0.05, what="the beat to send something")
        (tmp_path / f"freeze-{pid}").write_text(point)
        wait_until(lambda: (tmp_path / f"held-{pid}").exists() and not (tmp_path / f"freeze-{pid}").exists(),
                   timeout=30, interval=0.01, what=f"the beat to freeze {point}")
        state.frozen_at = store.server_time()
        state.held = held_names(tmp_path, pid)
        yield state
    finally:
        beats[0].process.send_signal(signal.SIGCONT)
        state.codes = [b.stop() for b in beats]
        ledger.poll()


def test_a_beat_frozen_past_its_lease_sends_nothing_the_others_sent(
        tmp_path: Path, redis_url: str, prefix: str, store: RedisStore, broker: redis.Redis) -> None:
    with three_beats_one_frozen(tmp_path, redis_url, prefix, store, broker, "after-claim") as run:
        lease_end = max(run.held.values())
        # Frozen past its lease: the others send what it held.
        wait_until(lambda: alive(run.others) and run.ledger.poll() >= 0 and store.server_time() > lease_end + 1
                   and all(any(t >= run.frozen_at for t in run.ledger.arrivals[n]) for n in run.held),
                   timeout=60, interval=0.05, what="the others to send the frozen beat's batch")
        run.finish(store)
    audit = run.ledger.audit(store, run.names, FROZEN_RUNS)
    print(audit.row("beat frozen past its lease, then woken") + f" | held by the frozen beat: {len(run.held)}")
    assert run.codes == [0, 0, 0], [b.output() for b in run.beats]
    assert 0 < len(run.held) <= FROZEN_BATCH
    assert (audit.duplicates, audit.lost, audit.misses) == (0, 0, 0)
    assert set(run_counts(store).values()) == {FROZEN_RUNS}


def test_a_beat_frozen_between_commit_and_publish_skips_the_runs_its_entries_followed_since(
        tmp_path: Path, redis_url: str, prefix: str, store: RedisStore, broker: redis.Redis) -> None:
    """Woken, it sends none of its batch late and out of order: each of those entries ran again meanwhile."""
    with three_beats_one_frozen(tmp_path, redis_url, prefix, store, broker, "after-commit") as run:
        held = list(run.held)
        frozen_runs = store.client.hmget(store.keys.last_run_at, held)

        # Every entry of the frozen batch runs again, committed by the others (Redis says so: a message polled
        # now may have been sent before the freeze), and the freeze outlasts the freshness check's threshold.
        def ran_again() -> bool:
            now = store.client.hmget(store.keys.last_run_at, held)
            return store.server_time() > run.frozen_at + 2 * STALE_AFTER and all(a != b for a, b in zip(now, frozen_runs))

        wait_until(lambda: alive(run.others) and run.ledger.poll() >= 0 and ran_again(), timeout=60, interval=0.05,
                   what="newer runs of the frozen batch's entries")
        run.frozen.process.send_signal(signal.SIGCONT)
        wait_until(lambda: "runs not sent" in run.frozen.output(), timeout=30, what="the woken beat to skip its stale runs")
        run.finish(store)
    audit = run.ledger.audit(store, run.names, FROZEN_RUNS)
    print(audit.row("beat frozen between commit and publish, then woken") + f" | its committed runs: {len(held)}")
    assert run.codes == [0, 0, 0], [b.output() for b in run.beats]
    assert held
    assert audit.duplicates == 0
    # Its stale runs stay counted and are not sent (as if it had died after the commit); every other run was sent.
    assert audit.lost == len(held), audit
    assert f"{len(held)} runs not sent" in run.frozen.output()
    assert all(run.ledger.counts[n] == FROZEN_RUNS - 1 for n in held)
