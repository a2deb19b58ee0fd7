"""Dispatch throughput on a local Redis Cluster (3 masters + 3 replicas): shards K = 1 vs K = 3, with 1 and 3 beats.

Each beat is a ``RedisScheduler`` in its own process, ticking as ``celery beat``
does, with ``app.send_task`` replaced by a counter (the broker is kombu's
in-memory transport), so the figure is the scheduler's own bookkeeping:
claim, decide, commit in Redis. ``--entries`` interval entries are made due
at once (their last run an hour ago); the clock stops when the last of them
has been dispatched. Every run also checks that no entry was dispatched twice.

    python benchmarks/cluster.py --entries 30000 --repeat 3 [--json results.json]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from celery import Celery  # noqa: E402

from celerybeatredis.schedulers import RedisScheduler  # noqa: E402
from celerybeatredis.storage.connection import make_client  # noqa: E402
from celerybeatredis.storage.keys import shard_tag  # noqa: E402
from celerybeatredis.storage.sharded_store import ShardedStore  # noqa: E402
from tests.support.cluster import LocalCluster  # noqa: E402


def definition(n: int) -> str:
    """An hourly entry; its kwargs identify it in what the beats sent."""
    return json.dumps({"task": "bench.noop", "interval": {"every": 3600, "period": "seconds"}, "kwargs": {"n": n}})


@dataclass(frozen=True)
class Result:
    """One measured run."""

    shards: int
    beats: int
    entries: int
    seconds: float
    per_second: float
    dispatched: int
    duplicates: int
    commands_per_master: list[int]
    cpu_seconds_per_master: list[float]


def beat_process(url: str, prefix: str, shards: int, entries: int, go: Any, total: Any, out: Any) -> None:
    """Tick like ``celery beat`` until every entry has been dispatched by some beat."""
    app = Celery("bench", broker="memory://", set_as_current=False)
    app.conf.update(redis_scheduler_url=url, redis_scheduler_key_prefix=prefix, redis_scheduler_shards=shards,
                    beat_schedule={}, result_expires=None)
    names: list[int] = []

    def send_task(name: str, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        names.append(kwargs["n"])

    app.send_task = send_task  # type: ignore[method-assign, assignment]
    sched = RedisScheduler(app)
    seen = 0
    last = 0.0
    go.wait()
    while total.value < entries:
        delay = sched.tick()
        if len(names) > seen:
            last = time.time()
            with total.get_lock():
                total.value += len(names) - seen
            seen = len(names)
        if delay:
            time.sleep(min(delay, 0.005))
    sched.close()
    out.put((last, names))


def prepare(client: Any, prefix: str, shards: int, entries: int) -> None:
    """Write ``entries`` interval entries whose last run was an hour ago, all due now."""
    store = ShardedStore(client, prefix, shards)
    names = [f"entry-{i}" for i in range(entries)]
    an_hour_ago = (datetime.now(timezone.utc) - timedelta(hours=1)).isoformat()
    for i in range(0, entries, 1000):
        chunk = names[i:i + 1000]
        store.put_raw({name: definition(i + j) for j, name in enumerate(chunk)})
        for index, group in store.group(chunk).items():
            client.hset(store.stores[index].keys.last_run_at, mapping=dict.fromkeys(group, an_hour_ago))


def spread_prefix(client: Any, base: str, shards: int) -> str:
    """A prefix whose shard tags sit on ``min(shards, 3)`` different masters."""
    for n in range(1000):
        tag = f"{base}{n}"
        nodes = {client.get_node_from_key(f"{{{shard_tag(tag, i, shards)}}}:due").name for i in range(shards)}
        if len(nodes) == min(shards, 3):
            return tag + ":"
    raise RuntimeError("no prefix spreads over the masters")


def master_load(cluster: LocalCluster) -> dict[int, tuple[int, float]]:
    """``(commands processed, CPU seconds used)`` of each master, by port (commands run by scripts count)."""
    out = {}
    for port, role in cluster.roles().items():
        if role == "master":
            with redis.Redis(port=port) as conn:
                cpu = conn.info("cpu")
                out[port] = (int(conn.info("stats")["total_commands_processed"]),
                             float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]))
    return out


def measure(cluster: LocalCluster, shards: int, beats: int, entries: int, run: int) -> Result:
    """One run: fresh schedule, ``beats`` processes, until every entry has been dispatched."""
    client = make_client(cluster.url)
    prefix = spread_prefix(client, f"bench-{shards}-{beats}-{run}-{time.monotonic_ns()}-", shards)
    prepare(client, prefix, shards, entries)
    ctx = mp.get_context("fork")
    go = ctx.Event()
    total = ctx.Value("l", 0)
    out = ctx.Queue()
    procs = [ctx.Process(target=beat_process, args=(cluster.url, prefix, shards, entries, go, total, out))
             for _ in range(beats)]
    for proc in procs:
        proc.start()
    time.sleep(2.0)  # let every beat connect and sync before the clock starts
    before = master_load(cluster)
    start = time.time()
    go.set()
    results = [out.get(timeout=600) for _ in procs]
    for proc in procs:
        proc.join()
    after = master_load(cluster)
    end = max(last for last, _ in results)
    sent = [n for _, names in results for n in names]
    client.close()
    if len(set(sent)) != entries:
        raise RuntimeError(f"{entries - len(set(sent))} entries were never dispatched")
    seconds = end - start
    zero = (0, 0.0)
    return Result(shards, beats, entries, round(seconds, 3), round(entries / seconds), len(sent),
                  len(sent) - len(set(sent)),
                  sorted((after[p][0] - before.get(p, zero)[0] for p in after), reverse=True),
                  sorted((round(after[p][1] - before.get(p, zero)[1], 2) for p in after), reverse=True))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--entries", type=int, default=30000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", type=Path, help="write every run here")
    args = parser.parse_args()
    cluster = LocalCluster().start()
    results: list[Result] = []
    try:
        for run in range(args.repeat):
            for shards in (1, 3):
                for beats in (1, 3):
                    result = measure(cluster, shards, beats, args.entries, run)
                    results.append(result)
                    print(f"  run {run + 1}: K={shards} beats={beats}: {result.per_second:>7,}/s "
                          f"({result.seconds:.2f}s, duplicates {result.duplicates}, "
                          f"commands per master {result.commands_per_master}, "
                          f"CPU s per master {result.cpu_seconds_per_master})", flush=True)
    finally:
        cluster.cleanup()
    print(f"\n{args.entries:,} due entries, median of {args.repeat} runs, publishing stubbed\n")
    print("| shards K | beats | dispatched/s | vs K=1, 1 beat | busiest master: share of Redis CPU "
          "| busiest master: CPU ms per 1,000 runs | duplicates |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for shards in (1, 3):
        for beats in (1, 3):
            runs = [r for r in results if r.shards == shards and r.beats == beats]
            rate = statistics.median(r.per_second for r in runs)
            base = base or rate
            share = statistics.median(max(r.cpu_seconds_per_master) / (sum(r.cpu_seconds_per_master) or 1) for r in runs)
            busiest = statistics.median(1000 * max(r.cpu_seconds_per_master) / r.entries * 1000 for r in runs)
            print(f"| {shards} | {beats} | {rate:,.0f} | {rate / base:.2f}x | {share:.0%} | {busiest:.0f} "
                  f"| {sum(r.duplicates for r in runs)} |")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2) + "\n")


if __name__ == "__main__":
    main()
