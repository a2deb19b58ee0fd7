"""A burst: many entries due at once (as after an outage) under a real beat.

The schedule lives on a redis-server of its own that logs every command in
SLOWLOG, so the test can see each Lua call: how much it carried, how long it
ran (reported, not judged: speed is measured in benchmarks/), and that
another client's commands ran between them.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis

from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.wire import PLAN_FIELDS

from ..support.ledger import Ledger, run_counts
from ..support.processes import CeleryProcess, wait_until, write_app
from ..support.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture
def logged() -> Iterator[RedisServer]:
    server = RedisServer("--slowlog-log-slower-than", "0", "--slowlog-max-len", "1000000").start()
    yield server
    server.cleanup()


def make_due(store: RedisStore, names: list[str], interval: int) -> None:
    """Every entry last ran long ago and is overdue: all fall due at once."""
    long_ago = datetime.now(timezone.utc) - timedelta(hours=1)
    past = long_ago.timestamp()
    pipe = store.client.pipeline(transaction=False)
    for i, name in enumerate(names):
        if i % 5000 == 0:
            pipe.execute()
        pipe.hset(store.keys.schedule, name, json.dumps(
            {"task": "tasks.burst", "interval": {"every": interval, "period": "seconds"}, "args": [name]}))
        pipe.hset(store.keys.last_run_at, name, long_ago.isoformat())
        pipe.zadd(store.keys.due, {name: past})
    pipe.execute()


def latest_slowlog_id(client: redis.Redis) -> int:
    """The id of the newest SLOWLOG entry (every command is logged on this server)."""
    newest = client.slowlog_get(1)
    return int(newest[0]["id"]) if newest else -1


def vm_rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) if match else 0


class Prober(threading.Thread):
    """Another client: INCRs a counter over and over while the burst runs."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.client = redis.Redis.from_url(url)
        self.stop = threading.Event()
        self.slowest = 0.0

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.perf_counter()
            self.client.incr("probe")
            self.slowest = max(self.slowest, time.perf_counter() - started)
            time.sleep(0.002)


def test_a_burst_is_cut_into_bounded_lua_calls_other_clients_run_between_them_and_beat_memory_stays_flat(
        tmp_path: Path, redis_url: str, logged: RedisServer, prefix: str) -> None:
    entries, batch, bursts, interval = 10_000, 1000, 3, 3600
    queue = f"q-{prefix}"
    write_app(tmp_path, f"{redis_url}/1", f"{logged.url}/0", prefix, extra=(
        f"app.conf.update(task_default_queue={queue!r}, redis_scheduler_batch_size={batch})\n"))
    client = redis.Redis.from_url(f"{logged.url}/0")
    store = RedisStore(client, prefix)
    names = [f"b{i:05d}" for i in range(entries)]
    broker = redis.Redis.from_url(f"{redis_url}/1")
    ledger = Ledger(broker, queue)
    beat = CeleryProcess.beat(tmp_path)
    prober = Prober(f"{logged.url}/0")
    rss: list[int] = []
    try:
        beat.wait_for_output("beat: Starting")
        time.sleep(1.0)
        rss.append(vm_rss_kib(beat.process.pid))
        client.slowlog_reset()
        prober.start()
        marks: list[int] = []  # the last SLOWLOG id before each burst's entries were made due, and after the last
        for burst in range(1, bursts + 1):
            marks.append(latest_slowlog_id(client))
            make_due(store, names, interval)
            wait_until(lambda n=burst: beat.alive() and ledger.poll() >= n * entries, timeout=120, interval=0.2,
                       what=f"burst {burst} to be sent")
            rss.append(vm_rss_kib(beat.process.pid))
        marks.append(latest_slowlog_id(client))
        prober.stop.set()
        prober.join()
        slowlog = client.slowlog_get(1_000_000)
    finally:
        code = beat.stop()
    ledger.poll()
    audit = ledger.audit(store, names)
    assert code == 0, beat.output()

    log = sorted(slowlog, key=lambda e: e["id"])
    scripts = {name: store.scripts.script(name).sha.encode() for name in ("claim", "commit")}
    calls = [(e, name) for e in log for name, sha in scripts.items()
             if e["command"].startswith(b"EVALSHA " + sha)]
    longest = max(e["duration"] for e, _ in calls) / 1000
    print(audit.row(f"burst {entries:,} x {bursts}", longest) +
          f" | Lua calls {len(calls)} | beat RSS KiB {rss} | slowest probe {prober.slowest * 1000:.1f} ms")

    assert (audit.duplicates, audit.lost) == (0, 0)
    assert audit.dispatched == audit.runs == entries * bursts
    assert set(run_counts(store).values()) == {bursts}
    # Bounded: no call carried more than a batch, so a burst took many calls.
    claims = [e for e, name in calls if name == "claim"]
    assert len(claims) >= bursts * entries // batch
    for entry, name in calls:
        words = entry["command"].split()
        numkeys = int(words[2])  # EVALSHA sha numkeys KEYS... ARGV...
        if name == "claim":
            assert int(words[3 + numkeys]) == batch  # ARGV[1], the batch size
        else:
            # SLOWLOG keeps 31 arguments and counts the rest; commit's ARGV is the history depth, then one Plan per entry.
            more = re.search(rb"\.\.\. \((\d+) more arguments\)", entry["command"])
            assert more is not None
            argv = 31 + int(more.group(1)) - 3 - numkeys
            assert (argv - 1) % len(PLAN_FIELDS) == 0 and (argv - 1) // len(PLAN_FIELDS) <= batch
    # Not starved: in each burst, the other client's commands ran between beat's Lua calls for that burst.
    probe_ids = [e["id"] for e in log if e["command"].startswith((b"INCR probe", b"INCRBY probe"))]
    for burst, (start, end) in enumerate(zip(marks, marks[1:]), 1):
        ids = [e["id"] for e, _ in calls if start < e["id"] <= end]
        assert len(ids) >= 2 * entries // batch, (burst, len(ids))  # a claim and a commit per batch at least
        assert any(ids[0] < i < ids[-1] for i in probe_ids), burst
    # Flat: the third burst did not leave beat bigger than the first did, beyond allocator noise.
    assert rss[-1] - rss[1] < max(rss[1] - rss[0], 8 * 1024), rss
    client.close()
    broker.close()
