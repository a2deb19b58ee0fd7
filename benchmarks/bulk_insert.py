"""Entries per second that ``ScheduleStore.bulk_add`` writes into a local Redis.

Starts a private redis-server (or uses ``REDIS_URL``), adds N interval and
crontab definitions through the API (validation, canonical JSON, one Lua call
per batch), then times a second run over the same entries (all unchanged) and
a bulk remove.

    python benchmarks/bulk_insert.py --entries 200000 --batch-size 1000
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from celerybeatredis.store import ScheduleStore
from tests.support.redis_server import RedisServer


def definitions(count: int) -> list[tuple[str, dict]]:
    """Half intervals, half crontabs, with distinct arguments."""
    out = []
    for i in range(count):
        if i % 2:
            doc = {"task": "tasks.report", "crontab": {"minute": str(i % 60), "hour": "*/2"}, "args": [i]}
        else:
            doc = {"task": "tasks.add", "interval": {"every": 30 + i % 600, "period": "seconds"}, "args": [i, 2]}
        out.append((f"bench-{i}", doc))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=200_000)
    parser.add_argument("--batch-size", type=int, default=1000)
    opts = parser.parse_args()

    server = None
    url = os.environ.get("REDIS_URL")
    if not url:
        server = RedisServer().start()
        url = server.url
    try:
        store = ScheduleStore.from_url(f"{url.rstrip('/')}/0" if server else url, "bench:bulk:")
        store.drop()
        docs = definitions(opts.entries)
        for label, run in (
            ("bulk_add (new)", lambda: store.bulk_add(docs, batch_size=opts.batch_size)),
            ("bulk_add (unchanged)", lambda: store.bulk_add(docs, batch_size=opts.batch_size, replace=True)),
            ("bulk_remove", lambda: store.bulk_remove((n for n, _ in docs), batch_size=opts.batch_size)),
        ):
            start = time.perf_counter()
            run()
            took = time.perf_counter() - start
            print(f"{label:<22} {opts.entries:>9,} entries in {took:6.2f}s = {opts.entries / took:>9,.0f} entries/s")
        store.drop()
    finally:
        if server is not None:
            server.cleanup()


if __name__ == "__main__":
    main()
