"""A record of what the broker received, checked against the run counts beat committed in Redis.

The reliability tests give every entry ``args = [<entry name>]`` so each task
message names the entry it was sent for, and stamp each message in the beat
process with the publishing beat's pid (a ``before_task_publish`` handler in
the test app, see :data:`STAMP_PUBLISHER`).
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

import redis

from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.sharded_store import ShardedStore

from .processes import drain_queue, wait_until

#: Python for the test app (``write_app(extra=...)``): stamps each task message with the publishing beat's pid.
STAMP_PUBLISHER = """
import os as _os
from celery.signals import before_task_publish as _before_task_publish

@_before_task_publish.connect
def _stamp_publisher(headers=None, **_kwargs):
    headers["x_beat_pid"] = _os.getpid()
"""


#: Python for the test app (``write_app(extra=...)``, after ``STAMP_PUBLISHER``): stamps each task message with
#: its run's time as beat committed it (``{T}:last_run_at``, Redis time), read when the message is published.
STAMP_RUN_AT = """
import redis as _redis
from celery.signals import before_task_publish as _before_publish
from celerybeatredis.storage.redis_store import RedisStore as _RunStore

_runs = _RunStore(_redis.Redis.from_url(app.conf.redis_scheduler_url), app.conf.redis_scheduler_key_prefix)

@_before_publish.connect
def _stamp_run_at(headers=None, body=None, **_kwargs):
    last = _runs.client.hget(_runs.keys.last_run_at, body[0][0])
    headers["x_run_at"] = last.decode() if last else None
"""


@dataclass
class Audit:
    """Runs committed in Redis against messages the broker received.

    A run is one increment of ``{T}:total_run_count`` by commit.lua; a run's
    due time is its ordinal (the k-th run of the entry). A run is dispatched
    exactly once when the broker holds exactly one message for it.
    """

    entries: int
    runs: int
    dispatched: int
    duplicates: int
    misses: int
    lost: int
    by_beat: dict[int, int] = field(default_factory=dict)

    def row(self, scenario: str, longest_lua_ms: float | None = None) -> str:
        """One line for the report table."""
        lua = "-" if longest_lua_ms is None else f"{longest_lua_ms:.2f} ms"
        return (f"{scenario} | entries {self.entries} | runs {self.runs} | dispatched {self.dispatched} | "
                f"duplicates {self.duplicates} | misses {self.misses} | lost {self.lost} | longest Lua {lua}")


class Ledger:
    """Drains a broker queue and counts messages per entry and per publishing beat."""

    def __init__(self, broker: redis.Redis, queue: str) -> None:
        self.broker = broker
        self.queue = queue
        self.counts: Counter[str] = Counter()
        self.by_beat: Counter[int] = Counter()
        self.arrivals: defaultdict[str, list[float]] = defaultdict(list)
        #: Each message's ``x_run_at`` header, where the test app stamps one (see :data:`STAMP_RUN_AT`).
        self.run_at: defaultdict[str, list[float]] = defaultdict(list)

    def poll(self) -> int:
        """Drain the queue now; returns how many messages the ledger holds in all."""
        arrived = time.time()
        for message in drain_queue(self.broker, self.queue):
            name = str(message.args[0]) if message.args else message.task
            self.counts[name] += 1
            self.arrivals[name].append(arrived)
            run_at = message.headers.get("x_run_at")
            if run_at is not None:
                self.run_at[name].append(datetime.fromisoformat(run_at).timestamp())
            pid = message.headers.get("x_beat_pid")
            if pid is not None:
                self.by_beat[int(pid)] += 1
        return self.total

    @property
    def total(self) -> int:
        """Messages received so far."""
        return sum(self.counts.values())

    def audit(self, store: RedisStore, names: Iterable[str], runs_each: int | None = None) -> Audit:
        """Compare the ledger with ``{T}:total_run_count``.

        Args:
            runs_each: The number of runs every entry must end with (``max_run_count``);
                when given, a missing run is one the broker never received out of those.

        ``duplicates`` counts messages beyond the committed runs (and beyond
        ``runs_each``); ``lost`` counts committed runs the broker never received;
        ``misses`` counts runs owed that never reached the broker (``runs_each``
        minus messages, else the lost runs).
        """
        names = list(names)
        committed = run_counts(store)
        runs = dispatched = duplicates = misses = lost = 0
        for name in names:
            r, m = committed.get(name, 0), self.counts.get(name, 0)
            runs += r
            dispatched += m
            extra = max(m - r, 0)
            if runs_each is not None:
                extra = max(extra, m - runs_each)
            duplicates += max(extra, 0)
            lost += max(r - m, 0)
            misses += max(runs_each - m, 0) if runs_each is not None else max(r - m, 0)
        return Audit(len(names), runs, dispatched, duplicates, misses, lost, dict(self.by_beat))


class FailoverProbe:
    """Entries that show what a failover does to a running beat, and the messages they got.

    Four interval entries due every second, and 40 one-off (``clocked``) entries
    due every 0.25 s from 3 s on (Redis time), so that some fall due across the
    failover; each message names its entry.
    """

    def __init__(self, store: RedisStore | ShardedStore, broker: redis.Redis, queue: str) -> None:
        self.store, self.broker, self.queue = store, broker, queue
        self.interval = {f"every-1s-{i}": json.dumps({"task": "tasks.tick", "interval": {"every": 1},
                                                     "args": [f"every-1s-{i}"]}) for i in range(4)}
        store.put_raw(self.interval)
        start = datetime.fromtimestamp(store.server_time(), timezone.utc)
        self.one_offs = {f"once-{i}": json.dumps({"task": "tasks.once", "args": [f"once-{i}"],
                                                 "clocked": (start + timedelta(seconds=3 + i / 4)).isoformat()})
                         for i in range(40)}
        store.put_raw(self.one_offs)
        self.received: list[tuple[float, str]] = []

    def poll(self) -> list[tuple[float, str]]:
        """Drain the queue now; every message so far as (``time.monotonic()``, entry name)."""
        self.received.extend((time.monotonic(), m.args[0]) for m in drain_queue(self.broker, self.queue))
        return self.received

    def wait_started(self) -> None:
        """Wait until beat has sent the first four one-offs."""
        wait_until(lambda: sum(1 for _, n in self.poll() if n.startswith("once-")) >= 4, timeout=30,
                   what="the first one-off runs")

    def wait_finished(self, since: float, timeout: float = 40) -> None:
        """Wait until every one-off was sent and every interval entry ran twice after ``since`` (monotonic)."""
        wait_until(lambda: {n for _, n in self.poll()} >= set(self.one_offs), timeout=timeout,
                   what="every one-off run")
        wait_until(lambda: all(sum(1 for t, n in self.poll() if n == name and t > since) >= 2 for name in self.interval),
                   timeout=30, what="interval runs after the failover")

    def counts(self) -> Counter[str]:
        """Messages per entry, after draining the queue once more."""
        return Counter(name for _, name in self.poll())

    def assert_each_run_sent_once(self, context: str = "") -> None:
        """Each one-off sent exactly once, and each interval entry's messages equal its ``total_run_count``."""
        counts = self.counts()
        assert {name: counts[name] for name in self.one_offs} == dict.fromkeys(self.one_offs, 1), context
        for name in self.interval:  # every message is a committed run, and every committed run was sent
            assert counts[name] == self.store.run_state(name)[0], name


def run_counts(store: RedisStore) -> dict[str, int]:
    """Every entry's ``total_run_count``."""
    raw = store.client.hgetall(store.keys.total_run_count)
    return {k.decode(): int(v) for k, v in raw.items()}


def every_second(name: str, runs: int) -> str:
    """An entry due at every whole second of Redis time, ``runs`` times, whose message names it."""
    return json.dumps({
        "task": "tasks.tick", "interval": {"every": 1, "period": "seconds"}, "relative": True,
        "max_run_count": runs, "args": [name],
    })


def load_entries(store: RedisStore, definitions: dict[str, str], chunk: int = 1000) -> None:
    """Write definitions as a user would (upsert: score 0, "look now")."""
    names = list(definitions)
    for i in range(0, len(names), chunk):
        store.put_raw({n: definitions[n] for n in names[i : i + chunk]})
