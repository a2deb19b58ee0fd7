"""How long each dashboard page takes at N entries, over HTTP, as a browser would fetch it.

Starts a private redis-server (or uses ``REDIS_URL``), adds N definitions
through ``ScheduleStore.bulk_add``, gives them due times spread over the next
24 hours as a beat would (one ZADD batch per 10,000 entries, so the overview's
chart has a day to draw), quarantines 1,000 of them, then starts
``celerybeatredis web`` and times every page ``--repeat`` times.

    python benchmarks/web_pages.py --entries 1000000 --repeat 20
"""

from __future__ import annotations

import argparse
import math
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from celerybeatredis.store import ScheduleStore
from tests.support.redis_server import RedisServer
from tests.support.web import WebServer, request

PREFIX = "bench:web:"


def definitions(count: int) -> list[tuple[str, dict]]:
    """Interval and crontab entries under three tasks, a tenth of them disabled."""
    out = []
    for i in range(count):
        task = ("tasks.report", "tasks.sync", "tasks.rare")[0 if i % 2 else (1 if i % 1000 else 2)]
        if i % 2:
            doc = {"task": task, "crontab": {"minute": str(i % 60), "hour": "*/2"}, "args": [i]}
        else:
            doc = {"task": task, "interval": {"every": 30 + i % 600, "period": "seconds"}, "args": [i, 2]}
        if i % 10 == 0:
            doc["enabled"] = False
        out.append((f"bench-{i:07d}", doc))
    return out


def plan(store: ScheduleStore, count: int, quarantined: int) -> None:
    """Due times over the next day (a spike at one minute, as 09:00 makes), and some quarantined entries."""
    shard = store.sharded.stores[0]
    now = store.server_time()
    rng = random.Random(7)
    for start in range(0, count, 10_000):
        scores = {}
        for i in range(start, min(count, start + 10_000)):
            at = now + 3600 * 3 if i % 50 == 0 else now + rng.uniform(0, 86_400)
            scores[f"bench-{i:07d}"] = at
        shard.client.zadd(shard.keys.due, scores)
    shard.client.hset(shard.keys.invalid, mapping={f"bench-{i:07d}": "field 'task': 'x' is not in redis_scheduler_task_allowlist"
                                                   for i in range(1, quarantined * 7, 7)})


def time_page(base: str, path: str, repeat: int) -> tuple[list[float], str]:
    times, body = [], ""
    for _ in range(repeat):
        started = time.perf_counter()
        reply = request(base, path, timeout=120)
        times.append(time.perf_counter() - started)
        if reply.status != 200:
            raise SystemExit(f"{path}: HTTP {reply.status}: {reply.body[:300]}")
        body = reply.body
    return times, body


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entries", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    parser.add_argument("--pages", type=int, default=20, help="successive listing pages to walk")
    opts = parser.parse_args()

    server = None
    url = os.environ.get("REDIS_URL")
    if not url:
        server = RedisServer().start()
        url = f"{server.url}/0"
    web = None
    try:
        store = ScheduleStore.from_url(url, PREFIX)
        store.drop()
        started = time.perf_counter()
        store.bulk_add(definitions(opts.entries), batch_size=2000)
        plan(store, opts.entries, 1000)
        print(f"loaded {store.count():,} entries in {time.perf_counter() - started:.0f}s")
        web = WebServer(url, PREFIX, log_dir=Path(os.environ.get("TMPDIR", "/tmp"))).start()
        middle = f"bench-{opts.entries // 2:07d}"
        preview = {"name": "x", "task": "tasks.report", "kind": "crontab", "cron": "0 9 * * 1-5", "enabled": "on"}
        pages = [
            ("overview (1,440 ZCOUNT buckets)", "/"),
            ("entries, first page", "/entries"),
            ("entries, name prefix", "/entries?" + urlencode({"q": "bench-00123"})),
            ("entries, glob", "/entries?" + urlencode({"q": "bench-*99"})),
            ("entries, task filter (rare)", "/entries?" + urlencode({"task": "tasks.rare"})),
            ("entries, kind+disabled", "/entries?" + urlencode({"kind": "interval", "enabled": "no"})),
            ("entries, quarantined=yes", "/entries?" + urlencode({"quarantined": "yes"})),
            ("entry page", "/entry?" + urlencode({"name": middle})),
            ("quarantine", "/quarantine"),
            ("add form", "/add"),
            ("add preview", "/preview?" + urlencode(preview)),
        ]
        print(f"{'page':<34} {'median':>8} {'p95':>8} {'max':>8}")
        worst = 0.0
        for label, path in pages:
            times, _ = time_page(web.base, path, opts.repeat)
            worst = max(worst, max(times))
            p95 = sorted(times)[max(0, math.ceil(0.95 * len(times)) - 1)]
            print(f"{label:<34} {statistics.median(times) * 1000:7.1f}ms {p95 * 1000:7.1f}ms {max(times) * 1000:7.1f}ms")
        walk, path = [], "/entries"
        for _ in range(opts.pages):
            times, body = time_page(web.base, path, 1)
            walk += times
            found = re.search(r'<a href="([^"]+)" rel="next"', body)
            if not found:
                break
            path = found.group(1).replace("&amp;", "&")
        worst = max(worst, max(walk))
        print(f"{f'entries, {len(walk)} pages in a row':<34} {statistics.median(walk) * 1000:7.1f}ms "
              f"{'':>8} {max(walk) * 1000:7.1f}ms")
        print(f"slowest page: {worst * 1000:.1f}ms")
    finally:
        if web is not None:
            web.stop()
        if server is not None:
            server.cleanup()
        elif url:
            ScheduleStore.from_url(url, PREFIX).drop()


if __name__ == "__main__":
    main()
