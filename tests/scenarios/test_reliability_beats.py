"""Several real ``celery beat`` processes on one schedule: exactly-once dispatch, and a beat killed mid-burst.

Every entry is due at each whole second of Redis time (``relative`` 1 s
interval) until it has run ``max_run_count`` times, and its message names it,
so the broker's contents can be audited entry by entry against the run counts
beat committed (see ``tests/support/ledger.py``).
"""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
import redis

from celerybeatredis.storage.redis_store import RedisStore

from ..support.ledger import STAMP_PUBLISHER, Ledger, every_second, load_entries, run_counts
from ..support.processes import CeleryProcess, wait_until, write_app
from .test_burst import make_due

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


#: ``redis_scheduler_claim_ahead`` for the multi-beat tests: auto (a beat with a real broker seldom claims
#: ahead), and forced on, so that batches held while the one before is published meet other beats and kills.
CLAIM_AHEAD = pytest.mark.parametrize("claim_ahead", ["auto", True], ids=["claim-ahead-auto", "claim-ahead-on"])


def beat_app(tmp_path: Path, redis_url: str, prefix: str, queue: str, lease: float, batch: int,
             claim_ahead: bool | str = "auto") -> None:
    settings = f"app.conf.update(task_default_queue={queue!r}, redis_scheduler_lease_seconds={lease!r}, " \
               f"redis_scheduler_batch_size={batch!r}, redis_scheduler_claim_ahead={claim_ahead!r})\n"
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=settings + STAMP_PUBLISHER)


def alive(beats: list[CeleryProcess]) -> bool:
    """True while every beat runs; fails at once with the output of one that stopped."""
    for beat in beats:
        if not beat.alive():
            raise AssertionError(f"beat exited with {beat.process.returncode}:\n{beat.output()}")
    return True


def leased(store: RedisStore) -> dict[str, float]:
    """Entries whose score is a lease now (more than a second ahead, not "never")."""
    now = store.server_time()
    return {n.decode(): s for n, s in store.client.zrangebyscore(store.keys.due, now + 1.2, "(inf", withscores=True)}


def victims_leases(store: RedisStore, leases: dict[str, float]) -> dict[str, float]:
    """The leases in ``leases`` that nobody commits: those still unchanged a second before they end.

    A survivor holds a lease while it publishes the batch before (a streamed tick), which on a
    loaded machine can take over a second, so a lease is only called the dead beat's once it has
    stood unchanged for all but the last second of its term.
    """
    names, pending, orphans = list(leases), dict(leases), {}
    while pending:
        now = store.server_time()
        scores = dict(zip(names, store.client.zmscore(store.keys.due, names)))
        for name, lease_end in list(pending.items()):
            if scores[name] != lease_end:
                del pending[name]  # committed (or given up) by a live beat
            elif now >= lease_end - 1.0:
                orphans[name] = pending.pop(name)
        time.sleep(0.1)
    return orphans


@CLAIM_AHEAD
def test_three_beats_dispatch_every_run_exactly_once(tmp_path: Path, redis_url: str, prefix: str, store: RedisStore,
                                                      broker: redis.Redis, claim_ahead: bool | str) -> None:
    entries, runs_each = 1000, 12
    queue = f"q-{store.keys.tag}"
    beat_app(tmp_path, redis_url, prefix, queue, lease=10, batch=100, claim_ahead=claim_ahead)
    names = [f"e{i:04d}" for i in range(entries)]
    load_entries(store, {n: every_second(n, runs_each) for n in names})
    ledger = Ledger(broker, queue)
    beats = [CeleryProcess.beat(tmp_path) for _ in range(3)]
    try:
        wait_until(lambda: alive(beats) and ledger.poll() >= entries * runs_each
                   and sum(run_counts(store).values()) >= entries * runs_each,
                   timeout=runs_each + 90, interval=0.2, what="every entry to run its runs")
        time.sleep(1.5)  # anything sent twice would arrive meanwhile
        assert all(b.alive() for b in beats)
    finally:
        codes = [b.stop() for b in beats]
    ledger.poll()
    audit = ledger.audit(store, names, runs_each)
    print(audit.row("three beats, 1,000 entries x 12 s"))
    assert codes == [0, 0, 0], [b.output() for b in beats]
    assert (audit.duplicates, audit.misses, audit.lost) == (0, 0, 0)
    assert audit.runs == audit.dispatched == entries * runs_each
    assert set(run_counts(store).values()) == {runs_each}
    assert set(audit.by_beat) <= {b.process.pid for b in beats}
    assert len(audit.by_beat) >= 2, audit.by_beat  # the beats shared the work


@CLAIM_AHEAD
def test_a_beat_killed_mid_burst(tmp_path: Path, redis_url: str, prefix: str, store: RedisStore,
                                 broker: redis.Redis, claim_ahead: bool | str) -> None:
    """kill -9 of one of three beats: claimed-not-committed entries run after the lease; committed-not-published runs are lost."""
    entries, runs_each, lease, batch = 2000, 8, 5.0, 200
    queue = f"q-{store.keys.tag}"
    beat_app(tmp_path, redis_url, prefix, queue, lease=lease, batch=batch, claim_ahead=claim_ahead)
    names = [f"k{i:04d}" for i in range(entries)]
    load_entries(store, {n: every_second(n, runs_each) for n in names})
    ledger = Ledger(broker, queue)
    beats = [CeleryProcess.beat(tmp_path) for _ in range(3)]
    victim, survivors = beats[0], beats[1:]
    try:
        wait_until(lambda: alive(beats) and ledger.poll() >= 2 * entries and ledger.by_beat.get(victim.process.pid, 0) > 0,
                   timeout=90, interval=0.05, what="two bursts, some sent by the victim")
        pid = victim.process.pid
        before = ledger.by_beat[pid]
        wait_until(lambda: ledger.poll() >= 0 and ledger.by_beat[pid] > before, timeout=10, interval=0.005,
                   what="the victim to send from the next burst")
        victim.kill()
        ledger.poll()  # what was sent before the kill is counted before the kill
        killed_at = store.server_time()
        time.sleep(0.5)
        orphans = victims_leases(store, leased(store))
        wait_until(lambda: alive(survivors) and ledger.poll() >= 0 and sum(run_counts(store).values()) >= entries * runs_each,
                   timeout=runs_each + lease + 90, interval=0.2, what="every entry to finish after the kill")
        time.sleep(1.5)
        assert all(b.alive() for b in survivors)
    finally:
        codes = [b.stop() for b in survivors]
    ledger.poll()
    audit = ledger.audit(store, names, runs_each)
    print(audit.row("kill -9 one of three mid-burst") + f" | claimed by the victim, never committed: {len(orphans)}")
    assert codes == [0, 0], [b.output() for b in survivors]
    assert audit.duplicates == 0
    assert set(run_counts(store).values()) == {runs_each}  # nothing was left behind, leased entries included
    # Committed but never published: lost, at most the one batch the victim was publishing.
    assert audit.lost == audit.misses <= batch
    # A beat holds one claim, the batch it is deciding; claiming ahead, also the next one, sent ahead.
    assert len(orphans) <= (2 if claim_ahead is True else 1) * batch, len(orphans)
    for name, lease_end in orphans.items():
        later = [t for t in ledger.arrivals[name] if t >= killed_at]
        assert later and min(later) >= lease_end, (name, lease_end, later)


#: Test-app code that SIGKILLs a beat at a chosen point of its tick, once the test writes ``crash-<pid>``.
CRASH_POINTS = """
import os as _os
import signal as _signal
from pathlib import Path as _Path
from celerybeatredis.delivery.sending import Sender as _Sender
from celerybeatredis.storage.runs import Runs as _Runs

_armed = _Path(__file__).with_name(f"crash-{_os.getpid()}")

def _crash_if_armed(point, plans=()):
    if _armed.exists() and _armed.read_text() == point:
        # Leave the names and lease of the batch this beat holds, for the test to follow.
        _armed.with_name(f"held-{_os.getpid()}").write_text("\\n".join(f"{p.name} {p.lease}" for p in plans))
        _os.kill(_os.getpid(), _signal.SIGKILL)

_commit_args = _Runs.commit_args  # every commit is written out here, streamed or not
def _commit_args_or_crash(plans, history=0, messages=None):
    _crash_if_armed("after-claim", plans)
    return _commit_args(plans, history, messages)
_Runs.commit_args = staticmethod(_commit_args_or_crash)

_send = _Sender.send  # every run is sent here, streamed or not
def _send_or_crash(self, *args, **kwargs):
    _crash_if_armed("after-commit")
    return _send(self, *args, **kwargs)
_Sender.send = _send_or_crash
"""


@CLAIM_AHEAD
@pytest.mark.parametrize("point", ["after-claim", "after-commit"])
def test_a_beat_dies_between_steps_of_a_tick(tmp_path: Path, redis_url: str, prefix: str, store: RedisStore,
                                            broker: redis.Redis, point: str, claim_ahead: bool | str) -> None:
    """The two crash windows, hit exactly: after claim (runs late, once, after the lease) and after commit (lost)."""
    entries, runs_each, lease, batch = 600, 6, 4.0, 150
    queue = f"q-{store.keys.tag}"
    beat_app(tmp_path, redis_url, prefix, queue, lease=lease, batch=batch, claim_ahead=claim_ahead)
    with (tmp_path / "proj.py").open("a") as module:
        module.write(CRASH_POINTS)
    names = [f"c{i:04d}" for i in range(entries)]
    load_entries(store, {n: every_second(n, runs_each) for n in names})
    ledger = Ledger(broker, queue)
    victim, survivor = CeleryProcess.beat(tmp_path), CeleryProcess.beat(tmp_path)
    try:
        wait_until(lambda: alive([victim, survivor]) and ledger.poll() >= 0 and ledger.by_beat.get(victim.process.pid, 0) > 0,
                   timeout=60, interval=0.05, what="the victim to send something")
        (tmp_path / f"crash-{victim.process.pid}").write_text(point)
        wait_until(lambda: victim.process.poll() is not None, timeout=30, what="the victim to crash")
        ledger.poll()  # what was sent before the crash is counted before the crash
        died_at = store.server_time()
        held = tmp_path / f"held-{victim.process.pid}"
        orphans = {}
        if point == "after-claim":
            orphans = {n: float(lease_end) for n, lease_end in (line.split() for line in held.read_text().splitlines())}
        wait_until(lambda: alive([survivor]) and ledger.poll() >= 0 and sum(run_counts(store).values()) >= entries * runs_each,
                   timeout=runs_each + lease + 60, interval=0.2, what="every entry to finish")
        time.sleep(1.5)
    finally:
        code = survivor.stop()
        victim.stop()
    ledger.poll()
    audit = ledger.audit(store, names, runs_each)
    print(audit.row(f"beat killed {point}") + f" | leased by the dead beat: {len(orphans)}")
    assert code == 0, survivor.output()
    assert audit.duplicates == 0
    assert set(run_counts(store).values()) == {runs_each}
    if point == "after-claim":
        assert 0 < len(orphans) <= batch
        assert (audit.lost, audit.misses) == (0, 0)  # late, but every run sent once
        for name, lease_end in orphans.items():
            later = [t for t in ledger.arrivals[name] if t >= died_at]
            assert later and min(later) >= lease_end, (name, lease_end, later)
    else:
        assert 0 < audit.lost <= batch  # the batch it had committed: lost, never sent twice
        assert audit.misses == audit.lost
        assert all(ledger.counts[n] >= runs_each - 1 for n in names)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_beat_stopped_mid_burst_sends_every_run_it_committed(tmp_path: Path, redis_url: str, prefix: str,
                                                               store: RedisStore, broker: redis.Redis,
                                                               signum: signal.Signals) -> None:
    """SIGTERM or Ctrl-C to a real beat while it works through a burst lands before a commit or after its publish.

    Publishing takes most of a batch's time with a real broker, so a signal that
    were not held would nearly always cut a committed batch short: runs counted
    in Redis that the broker never received.
    """
    entries, batch, lease = 20_000, 1000, 30.0
    queue = f"q-{store.keys.tag}"
    beat_app(tmp_path, redis_url, prefix, queue, lease=lease, batch=batch)
    names = [f"s{i:05d}" for i in range(entries)]
    make_due(store, names, 3600)
    ledger = Ledger(broker, queue)
    beat = CeleryProcess.beat(tmp_path)
    try:
        # Half of the third batch has reached the broker: beat is publishing the rest.
        wait_until(lambda: alive([beat]) and ledger.poll() >= 2 * batch + batch // 2, timeout=60, interval=0.01,
                   what="the burst to be under way")
        beat.process.send_signal(signum)
        wait_until(lambda: not beat.alive(), timeout=30, what=f"beat to stop on {signum.name}")
    finally:
        code = beat.stop()
    ledger.poll()
    audit = ledger.audit(store, names)
    print(audit.row(f"{signum.name} mid-burst"))
    assert code == 0, beat.output()
    assert 3 * batch <= audit.runs < entries  # it was stopped mid-burst, after the batch it was publishing
    assert audit.runs % batch == 0  # every batch it committed, whole
    assert (audit.lost, audit.duplicates) == (0, 0)  # every committed run reached the broker, once
    # The stop is held from the claim on, so it leaves no batch claimed and waiting out its lease.
    now = store.server_time()
    reserved = [n.decode() for n in store.client.zrangebyscore(store.keys.due, now + 1, now + lease + 5)]
    assert reserved == []
