"""Three real beats, one of them killed with SIGKILL every 10 to 20 s and started again (see docs/guarantees.rst,
"Delivery modes"): with ``exactly-once`` on a Redis broker every run the schedule owes reaches the broker once; with
``at-least-once`` on RabbitMQ none is lost, and every copy of a run carries that run's task id."""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
import redis
from kombu import Connection

from celerybeatredis.storage.redis_store import RedisStore

from ..support.ledger import load_entries, run_counts
from ..support.processes import CeleryProcess, drain_queue, wait_until, write_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ENTRIES = 500
EVERY = 2
RUNS = 45  # 90 s of runs
LEASE = 3


def every_two_seconds(name: str) -> str:
    """Due every ``EVERY`` seconds of Redis time, ``RUNS`` times; its message names it."""
    return json.dumps({"task": "tasks.tick", "interval": {"every": EVERY, "period": "seconds"}, "relative": True,
                       "max_run_count": RUNS, "args": [name]})


def kill_at_random(tmp_path: Path, drain: Callable[[], int], beats: list[CeleryProcess]) -> int:
    """Three beats (appended to ``beats``) for ``RUNS * EVERY`` seconds, one killed (SIGKILL) and started again
    every 10 to 20 s; returns how many were killed."""
    rng = random.Random()
    beats.extend(CeleryProcess.beat(tmp_path, loglevel="WARNING") for _ in range(3))
    kills = 0
    ends = time.monotonic() + RUNS * EVERY
    while time.monotonic() < ends:
        next_kill = time.monotonic() + rng.uniform(10, 20)
        while time.monotonic() < min(next_kill, ends):
            drain()
            time.sleep(0.2)
        if time.monotonic() < ends:
            victim = rng.randrange(len(beats))
            beats[victim].kill()
            kills += 1
            beats[victim] = CeleryProcess.beat(tmp_path, loglevel="WARNING")
    return kills


def test_three_beats_killed_at_random_send_every_run_once(tmp_path: Path, redis_url: str, prefix: str,
                                                         store: RedisStore, client: redis.Redis) -> None:
    queue = f"q-{store.keys.tag}"
    url = f"{redis_url}/0"  # broker and schedule in one database: exactly-once
    settings = (f"app.conf.update(task_default_queue={queue!r}, redis_scheduler_delivery='exactly-once', "
                f"redis_scheduler_lease_seconds={LEASE}, redis_scheduler_batch_size=100)\n")
    write_app(tmp_path, url, url, prefix, extra=settings)
    names = [f"e{i:03d}" for i in range(ENTRIES)]
    load_entries(store, {n: every_two_seconds(n) for n in names})
    received: Counter[str] = Counter()
    ids: Counter[str] = Counter()

    def drain() -> int:
        for message in drain_queue(client, queue):
            received[str(message.args[0])] += 1
            ids[message.id] += 1
        return sum(received.values())

    beats: list[CeleryProcess] = []
    try:
        kills = kill_at_random(tmp_path, drain, beats)
        wait_until(lambda: drain() >= ENTRIES * RUNS and set(run_counts(store).values()) == {RUNS},
                   timeout=RUNS * EVERY + LEASE + 120, interval=0.2, what="every entry to run all its runs")
        # Every run is committed: nothing more is owed. Any message sent twice would already be in the queue
        # (it is written by the commit); drain once more to count it.
        drain()
    finally:
        codes = [b.stop() for b in beats]
    assert kills >= 4
    lost = sum(max(RUNS - received[n], 0) for n in names)
    twice = sum(max(received[n] - RUNS, 0) for n in names)
    print(f"exactly-once, three beats, {kills} kill -9: {ENTRIES} entries x {RUNS} runs | "
          f"received {sum(received.values())} | lost {lost} | duplicates {twice}")
    assert (lost, twice) == (0, 0)
    assert set(received) == set(names)
    assert max(ids.values()) == 1, "every message has a task id of its own"
    assert codes == [0, 0, 0], [b.output() for b in beats]


def test_three_beats_killed_at_random_on_rabbitmq_lose_nothing_and_repeat_only_known_ids(
        tmp_path: Path, redis_url: str, rabbitmq_url: str, prefix: str, store: RedisStore) -> None:
    queue = f"q-{store.keys.tag}"
    settings = (f"app.conf.update(task_default_queue={queue!r}, redis_scheduler_delivery='at-least-once', "
                f"redis_scheduler_lease_seconds={LEASE}, redis_scheduler_batch_size=100)\n")
    write_app(tmp_path, rabbitmq_url, f"{redis_url}/0", prefix, extra=settings)
    names = [f"e{i:03d}" for i in range(ENTRIES)]
    load_entries(store, {n: every_two_seconds(n) for n in names})
    copies: defaultdict[str, Counter[str]] = defaultdict(Counter)  # entry -> task id -> messages
    connection = Connection(rabbitmq_url)
    inbox = connection.SimpleQueue(queue)

    def drain() -> int:
        while True:
            try:
                message = inbox.get(block=False)
            except inbox.Empty:
                return sum(len(ids) for ids in copies.values())
            copies[message.headers["periodic_task_name"]][message.headers["id"]] += 1
            message.ack()

    beats: list[CeleryProcess] = []
    try:
        kills = kill_at_random(tmp_path, drain, beats)
        wait_until(lambda: drain() >= ENTRIES * RUNS and set(run_counts(store).values()) == {RUNS}
                   and store.client.zcard(store.keys.pending) == 0,
                   timeout=RUNS * EVERY + LEASE + 120, interval=0.2, what="every entry to run all its runs")
        drain()
    finally:
        codes = [b.stop() for b in beats]
        inbox.close()
        connection.release()
    runs = {n: len(copies[n]) for n in names}
    twice = sum(sum(ids.values()) - len(ids) for ids in copies.values())
    print(f"at-least-once on RabbitMQ, three beats, {kills} kill -9: {ENTRIES} entries x {RUNS} runs | "
          f"runs received {sum(runs.values())} | copies of a run already received {twice}")
    assert kills >= 4
    assert set(runs.values()) == {RUNS}, "no run lost, none made up"
    assert set(copies) == set(names)
    assert codes == [0, 0, 0], [b.output() for b in beats]
