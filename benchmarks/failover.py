"""Failover, measured: how long the runs a killed beat held wait before the other beats send them.

Three ``celery beat`` processes on 500 entries due together every second; a
beat is SIGKILLed right after a claim (the test app's crash point), a new one
takes its place, and for each run it held the delay from the kill to the
first message for that entry is recorded. Each lease length given is run in
turn, in one invocation, so their figures compare side by side. Run from the
repository root::

    python benchmarks/failover.py                       # leases 3 s and 30 s, 5 kills each
    python benchmarks/failover.py --leases 3 --kills 20

Prints per lease: held runs, median / p99 / max delay, duplicates.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from celerybeatredis.storage.redis_store import RedisStore  # noqa: E402
from tests.scenarios.test_reliability_beats import CRASH_POINTS  # noqa: E402
from tests.support.ledger import STAMP_PUBLISHER, Ledger, every_second, load_entries  # noqa: E402
from tests.support.processes import CeleryProcess, wait_until, write_app  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

PREFIX = "bench:meta:"
QUEUE = "bench"


def kills(lease: float, entries: int, batch: int, count: int) -> tuple[list[float], int, int]:
    """``count`` kills at ``lease``: the delays of every held run, the duplicates, and the runs counted."""
    schedule, broker = RedisServer().start(), RedisServer().start()
    work = Path(tempfile.mkdtemp(prefix="cbr-failover-"))
    try:
        write_app(work, f"{broker.url}/0", f"{schedule.url}/0", PREFIX, extra=(
            f"app.conf.update(task_default_queue={QUEUE!r}, redis_scheduler_batch_size={batch}, "
            f"redis_scheduler_lease_seconds={lease!r})\n" + STAMP_PUBLISHER + CRASH_POINTS))
        store = RedisStore(redis.Redis.from_url(f"{schedule.url}/0"), PREFIX)
        names = [f"f{i:04d}" for i in range(entries)]
        load_entries(store, {n: every_second(n, 1_000_000) for n in names})
        ledger = Ledger(redis.Redis.from_url(f"{broker.url}/0"), QUEUE)
        beats = [CeleryProcess.beat(work) for _ in range(3)]
        delays: list[float] = []
        try:
            for _ in range(count):
                delays += one_kill(work, store, ledger, beats, lease)
        finally:
            for beat in beats:
                beat.stop()
        ledger.poll()
        audit = ledger.audit(store, names)
        return delays, audit.duplicates, audit.runs
    finally:
        schedule.cleanup()
        broker.cleanup()


def one_kill(work: Path, store: RedisStore, ledger: Ledger, beats: list[CeleryProcess], lease: float) -> list[float]:
    """Kill the busiest beat right after a claim, start another; the delay of each run it held."""
    victim = max(beats, key=lambda b: ledger.by_beat.get(b.process.pid, 0))
    pid = victim.process.pid
    wait_until(lambda: ledger.poll() >= 0 and ledger.by_beat.get(pid, 0) > 0, timeout=60, what="a victim")
    (work / f"crash-{pid}").write_text("after-claim")
    wait_until(lambda: victim.process.poll() is not None, timeout=30, interval=0.01, what="the kill")
    ledger.poll()
    died_at = store.server_time()
    held = [line.split()[0] for line in (work / f"held-{pid}").read_text().splitlines()]
    beats.remove(victim)
    victim.stop()
    beats.append(CeleryProcess.beat(work))
    wait_until(lambda: ledger.poll() >= 0 and all(any(t >= died_at for t in ledger.arrivals[n]) for n in held),
               timeout=lease + 60, interval=0.02, what="the held runs")
    return [min(t for t in ledger.arrivals[n] if t >= died_at) - died_at for n in held]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--leases", type=float, nargs="+", default=[3.0, 30.0], help="lease lengths to compare")
    parser.add_argument("--kills", type=int, default=5, help="kills per lease")
    parser.add_argument("--entries", type=int, default=500, help="entries due together every second")
    parser.add_argument("--batch", type=int, default=100, help="redis_scheduler_batch_size (runs a kill holds)")
    args = parser.parse_args()
    print("| lease | kills | held runs | median | p99 | max | duplicates | runs |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for lease in args.leases:
        delays, duplicates, runs = kills(lease, args.entries, args.batch, args.kills)
        ordered = sorted(delays)
        p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
        print(f"| {lease:g} s | {args.kills} | {len(ordered)} | {statistics.median(ordered):.2f} s | {p99:.2f} s | "
              f"{ordered[-1]:.2f} s | {duplicates} | {runs:,} |", flush=True)


if __name__ == "__main__":
    main()
