"""Reliability at scale, measured: the big versions of the reliability tests.

1. Three beats on 100,000 entries that all fall due in the same second (a
   ``relative`` 10 s interval), three runs each: every run dispatched once?
2. 1,000,000 entries overdue at once (as after an outage), one beat: the
   longest Lua call (SLOWLOG), another client's slowest PING meanwhile, beat's
   memory along the way, and exactly-once accounting of what the broker got.

Each part starts its own redis-servers (schedule and broker apart) and real
``celery beat`` processes. Run from the repository root::

    python benchmarks/reliability.py                  # both parts, full size
    python benchmarks/reliability.py --entries 20000 --burst 100000   # smaller
    python benchmarks/reliability.py --skip-three-beats --shared-broker   # burst, broker in the schedule's database

The broker is a Redis server of its own (delivery ``auto`` then resolves to
``at-most-once``); ``--shared-broker`` puts it in the schedule's database, where
``auto`` is ``exactly-once``; ``--delivery`` sets ``redis_scheduler_delivery``.

Prints a table: scenario | runs | dispatched | duplicates | misses | longest Lua call.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from celerybeatredis.storage.redis_store import RedisStore  # noqa: E402
from celerybeatredis.storage.scripts import SCRIPT_NAMES  # noqa: E402
from tests.support.ledger import STAMP_PUBLISHER, Audit, Ledger, run_counts  # noqa: E402
from tests.support.processes import CeleryProcess, write_app  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

PREFIX = "bench:meta:"
QUEUE = "bench"

PROBER = textwrap.dedent("""
    import signal, sys, time, redis
    client = redis.Redis(port=int(sys.argv[1]))
    lat, running = [], True
    def stop(*_):
        global running
        running = False
    signal.signal(signal.SIGTERM, stop)
    while running:
        t = time.perf_counter()
        client.ping()
        lat.append(time.perf_counter() - t)
        time.sleep(0.005)
    lat.sort()
    print(f"{len(lat)} {lat[-1] * 1000:.2f} {lat[int(len(lat) * 0.99)] * 1000:.2f}", flush=True)
""")


#: SLOWLOG also logs the commands a script calls; a floor of 0.5 ms keeps those (microseconds each) from
#: pushing the script calls themselves out of the log. Calls faster than that do not matter here.
SLOWLOG_FLOOR_US = 500


def servers() -> tuple[RedisServer, RedisServer]:
    schedule = RedisServer("--slowlog-log-slower-than", str(SLOWLOG_FLOOR_US), "--slowlog-max-len", "1000000").start()
    broker = RedisServer().start()
    return schedule, broker


def lua_calls(client: redis.Redis, store: RedisStore) -> dict[str, list[int]]:
    """Durations (microseconds) of every Lua call in SLOWLOG, by script."""
    shas = {store.scripts.script(name).sha.encode(): name for name in SCRIPT_NAMES}
    calls: dict[str, list[int]] = {}
    for entry in client.slowlog_get(-1):
        parts = entry["command"].split(b" ", 2)
        if parts[0].upper() == b"EVALSHA" and len(parts) > 1:
            calls.setdefault(shas.get(parts[1], "other"), []).append(entry["duration"])
    return calls


def longest_lua_ms(calls: dict[str, list[int]]) -> float:
    return max((max(d) for d in calls.values()), default=0) / 1000


def describe(calls: dict[str, list[int]]) -> str:
    """``claim 1000 calls p50 1.2 ms p99 3.4 ms max 5.6 ms; ...`` (calls of at least SLOWLOG_FLOOR_US)"""
    out = []
    for name, durations in sorted(calls.items()):
        d = sorted(durations)
        p50, p99 = d[len(d) // 2] / 1000, d[int(len(d) * 0.99)] / 1000
        out.append(f"{name} {len(d)} calls >= {SLOWLOG_FLOOR_US / 1000} ms: p50 {p50:.2f} ms p99 {p99:.2f} ms "
                   f"max {d[-1] / 1000:.2f} ms")
    return "; ".join(out)


def rss_kib(pid: int) -> int:
    match = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(match.group(1)) if match else 0


def load(store: RedisStore, definitions: dict[str, str], last_run_at: str | None = None, score: float | None = None) -> None:
    pipe = store.client.pipeline(transaction=False)
    for i, (name, text) in enumerate(definitions.items()):
        pipe.hset(store.keys.schedule, name, text)
        if last_run_at is not None:
            pipe.hset(store.keys.last_run_at, name, last_run_at)
        pipe.zadd(store.keys.due, {name: 0.0 if score is None else score})
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()


def three_beats(entries: int, runs: int, batch: int) -> tuple[Audit, dict[str, list[int]], float]:
    """Part 1: returns the audit, Lua call durations by script, wall seconds."""
    schedule, broker = servers()
    work = Path(tempfile.mkdtemp(prefix="cbr-bench-"))
    try:
        write_app(work, f"{broker.url}/0", f"{schedule.url}/0", PREFIX, extra=(
            f"app.conf.update(task_default_queue={QUEUE!r}, redis_scheduler_batch_size={batch}, "
            "redis_scheduler_lease_seconds=30)\n" + STAMP_PUBLISHER))
        client = redis.Redis.from_url(f"{schedule.url}/0")
        store = RedisStore(client, PREFIX)
        names = [f"e{i:06d}" for i in range(entries)]
        load(store, {n: json.dumps({"task": "tasks.tick", "interval": {"every": 10, "period": "seconds"},
                                    "relative": True, "max_run_count": runs, "args": [n]}) for n in names})
        client.slowlog_reset()
        ledger = Ledger(redis.Redis.from_url(f"{broker.url}/0"), QUEUE)
        started = time.monotonic()
        beats = [CeleryProcess.beat(work) for _ in range(3)]
        try:
            while ledger.poll() < entries * runs or sum(run_counts(store).values()) < entries * runs:
                if not all(b.alive() for b in beats):
                    raise RuntimeError("a beat exited:\n" + "\n".join(b.output()[-2000:] for b in beats))
                if time.monotonic() - started > 60 + 30 * runs + entries * runs / 500:
                    break
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            time.sleep(2.0)
        finally:
            for b in beats:
                b.stop()
        ledger.poll()
        return ledger.audit(store, names, runs), lua_calls(client, store), elapsed
    finally:
        schedule.cleanup()
        broker.cleanup()


def burst(entries: int, batch: int, delivery: str = "auto", shared: bool = False) -> dict[str, object]:
    """Part 2: one beat, ``entries`` overdue at once (``shared``: the broker in the schedule's database)."""
    schedule, broker = servers()
    broker_url = f"{(schedule if shared else broker).url}/0"
    work = Path(tempfile.mkdtemp(prefix="cbr-bench-"))
    try:
        write_app(work, broker_url, f"{schedule.url}/0", PREFIX, extra=(
            f"app.conf.update(task_default_queue={QUEUE!r}, redis_scheduler_batch_size={batch}, "
            f"redis_scheduler_delivery={delivery!r})\n"))
        client = redis.Redis.from_url(f"{schedule.url}/0")
        store = RedisStore(client, PREFIX)
        names = [f"b{i:07d}" for i in range(entries)]
        long_ago = datetime.now(timezone.utc) - timedelta(hours=1)
        t = time.monotonic()
        load(store, {n: json.dumps({"task": "tasks.burst", "interval": {"every": 3600, "period": "seconds"},
                                    "args": [n]}) for n in names},
             last_run_at=long_ago.isoformat(), score=long_ago.timestamp())
        load_seconds = time.monotonic() - t
        ledger = Ledger(redis.Redis.from_url(broker_url), QUEUE)
        beat = CeleryProcess.beat(work)
        beat.wait_for_output("beat: Starting", timeout=60)
        client.slowlog_reset()
        prober = subprocess.Popen([sys.executable, "-c", PROBER, str(schedule.port)], stdout=subprocess.PIPE, text=True)
        samples: list[int] = []
        sampling = threading.Event()

        def sample() -> None:
            while not sampling.is_set():
                samples.append(rss_kib(beat.process.pid))
                time.sleep(0.5)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        try:
            while ledger.poll() < entries:
                if not beat.alive():
                    raise RuntimeError("beat exited:\n" + beat.output()[-3000:])
                if time.monotonic() - started > 120 + entries / 500:
                    break
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            time.sleep(2.0)
        finally:
            sampling.set()
            prober.terminate()
            probe_out = prober.communicate(timeout=30)[0].split()
            beat.stop()
        ledger.poll()
        calls = lua_calls(client, store)
        audit = ledger.audit(store, names, 1)
        quarter = max(len(samples) // 4, 1)
        return {
            "audit": audit, "lua": calls, "seconds": elapsed, "load_seconds": load_seconds,
            "per_second": entries / elapsed if elapsed else 0.0,
            "probe_pings": int(probe_out[0]), "probe_max_ms": float(probe_out[1]), "probe_p99_ms": float(probe_out[2]),
            "rss_kib_start": samples[0] if samples else 0, "rss_kib_first_quarter": max(samples[:quarter], default=0),
            "rss_kib_peak": max(samples, default=0), "rss_kib_end": samples[-1] if samples else 0,
        }
    finally:
        schedule.cleanup()
        broker.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000, help="entries for the three-beat part")
    parser.add_argument("--runs", type=int, default=3, help="runs of each entry in the three-beat part")
    parser.add_argument("--burst", type=int, default=1_000_000, help="entries overdue at once in the burst part")
    parser.add_argument("--batch", type=int, default=1000, help="redis_scheduler_batch_size")
    parser.add_argument("--skip-three-beats", action="store_true")
    parser.add_argument("--skip-burst", action="store_true")
    parser.add_argument("--delivery", default="auto", help="redis_scheduler_delivery in the burst part (default: auto)")
    parser.add_argument("--shared-broker", action="store_true", help="the burst's broker in the schedule's database")
    args = parser.parse_args()
    rows = []
    if not args.skip_three_beats:
        audit, calls, seconds = three_beats(args.entries, args.runs, args.batch)
        rows.append((f"three beats, {args.entries:,} entries due together, {args.runs} runs each", audit, longest_lua_ms(calls)))
        print(f"three beats: {seconds:.1f} s, by beat {sorted(audit.by_beat.values())}; Lua: {describe(calls)}", flush=True)
    if not args.skip_burst:
        result = burst(args.burst, args.batch, args.delivery, args.shared_broker)
        audit = result["audit"]
        assert isinstance(audit, Audit)
        calls = result["lua"]
        assert isinstance(calls, dict)
        where = "broker in the schedule's database" if args.shared_broker else "broker apart"
        rows.append((f"burst: {args.burst:,} overdue at once, one beat, {where}, delivery {args.delivery}", audit,
                     longest_lua_ms(calls)))
        print("burst: " + ", ".join(f"{k} {v:,.1f}" if isinstance(v, float) else f"{k} {v}"
                                    for k, v in result.items() if k not in ("audit", "lua")), flush=True)
        print(f"burst Lua: {describe(calls)}", flush=True)
    print()
    print("| scenario | runs | dispatched | duplicates | misses | longest Lua call |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, audit, longest in rows:
        print(f"| {label} | {audit.runs:,} | {audit.dispatched:,} | {audit.duplicates} | {audit.misses} | {longest:.2f} ms |")


if __name__ == "__main__":
    main()
