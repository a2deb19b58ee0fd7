"""Where a schedule's Redis memory goes: bytes per entry in each key of the layout.

    python benchmarks/memory.py --entries 100000

Writes ``N`` interval entries as ``benchmarks/run.py`` does (with
``RedisStore.bulk_add``, then one beat pass that looks at every entry), runs
the 20% that are due (``app.send_task`` replaced by a counter), and prints the
``used_memory`` delta per entry of each step and ``MEMORY USAGE`` of every key
of the schedule divided by its number of fields, on a private redis-server.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from benchmarks.subjects import Ours
from benchmarks.workload import Burst
from tests.redis_server import RedisServer


def text(value: bytes | str) -> str:
    """A reply as text."""
    return value.decode() if isinstance(value, bytes) else value


def fields(client: redis.Redis, key: bytes) -> int:
    """How many members the key holds (hash fields, zset or set members)."""
    kind = text(client.type(key))
    counts = {"hash": client.hlen, "zset": client.zcard, "set": client.scard}
    return int(counts[kind](key)) if kind in counts else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000, help="schedule size N")
    args = parser.parse_args()
    n: int = args.entries

    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url)

        def used() -> int:
            return int(client.info("memory")["used_memory"])

        subject = Ours(server.url, Path(tempfile.mkdtemp(prefix="cbr-memory-")))
        workload = Burst(n, "interval")
        before = used()
        subject.insert(workload, range(n))
        inserted = used()
        subject.prepare(workload)
        prepared = used()
        app, recorder = subject.stub_app()
        sched = subject.scheduler(app)
        while recorder.count < workload.due_count():
            sched.tick()
        subject.close(sched)
        ran = used()

        per_run = (ran - prepared) / max(recorder.count, 1)
        print(f"N = {n:,}; used_memory per entry: written {(inserted - before) / n:.0f} B, "
              f"after beat looked at it {(prepared - before) / n:.0f} B, a first run adds {per_run:.0f} B "
              f"(the figure benchmarks/run.py reports: {(prepared - before) / n + per_run:.0f} B)")
        print(f"{'key':32} {'type':6} {'members':>9} {'encoding':10} {'B per member':>12}")
        for key in sorted(client.scan_iter(match=f"{{{subject.store.keys.tag}}}:*")):
            count = fields(client, key)
            usage = client.memory_usage(key, samples=0) or 0
            encoding = text(client.object("encoding", key))
            print(f"{key.decode():32} {text(client.type(key)):6} {count:>9,} {encoding:10} {usage / count:>12.0f}")
    finally:
        server.stop()


if __name__ == "__main__":
    main()
