"""Values and builders several test files share, so each is written once."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from redis.cluster import RedisCluster

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.keys import shard_tag
from celerybeatredis.storage.redis_store import RedisStore

from .processes import Published, drain_queue

#: A fixed clock for in-process ticks: a Monday, noon UTC.
T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=timezone.utc).timestamp()

#: The plain entry most tests schedule: tasks.add every 10 seconds, with args.
EVERY_10S_DOC: dict[str, Any] = {"task": "tasks.add", "interval": {"every": 10, "period": "seconds"}, "args": [1, 2]}
EVERY_10S = json.dumps(EVERY_10S_DOC)


def run_ticks(app: Celery, times: list[float]) -> None:
    """One scheduler ticked at each of ``times`` (Unix seconds), then closed."""
    sched = RedisScheduler(app)
    try:
        for at in times:
            sched.tick(now=at)
    finally:
        sched.close()


def entries(store: RedisStore, count: int, stem: str = "e") -> list[str]:
    """``count`` entries of :data:`EVERY_10S_DOC` named ``stem`` and a number, each with its name as its argument, looked
    at now."""
    names = [f"{stem}{i:03d}" for i in range(count)]
    for name in names:
        put(store, name, dict(EVERY_10S_DOC, args=[name]))
    return names


def unhurried(app: Celery) -> RedisScheduler:
    """A scheduler whose tick has an hour to take every full batch, so no test depends on how fast this machine is."""
    sched = RedisScheduler(app)
    sched.max_interval = 3600.0
    return sched


def ticks(sched: RedisScheduler, now: float) -> None:
    """Tick at ``now`` until nothing due is left (a tick yields after a full batch when publishing is slow)."""
    for _ in range(100):
        if sched.tick(now=now) > 0:
            return
    raise AssertionError("beat never ran out of due entries")


def first_interval(app: Celery) -> str | None:
    """A new scheduler of ``app`` ticks at :data:`T0` (the first look at each entry) and at ``T0 + 10`` until nothing is
    due (the first run of each :func:`entries` entry), then closes; the delivery mode it published in."""
    sched = unhurried(app)
    try:
        sched.tick(now=T0)
        ticks(sched, T0 + 10)
        return sched.publisher.mode
    finally:
        sched.close()


def tick(app: Celery) -> RedisScheduler:
    """One in-process beat tick, so entries get planned or quarantined as beat would."""
    scheduler = RedisScheduler(app, lazy=True)
    scheduler.setup_schedule()
    scheduler.tick()
    scheduler.close()
    return scheduler


def put(store: RedisStore, name: str, doc: dict[str, Any] | str, score: float | None = 0.0) -> None:
    store.client.hset(store.keys.schedule, name, doc if isinstance(doc, str) else json.dumps(doc))
    if score is not None:
        store.client.zadd(store.keys.due, {name: score})


def sent(broker: redis.Redis, app: Celery) -> list[Published]:
    return drain_queue(broker, app.conf.task_default_queue)


def spread_prefix(client: RedisCluster, base: str, shards: int) -> str:
    """A prefix (``base`` plus a number) whose shard tags are served by ``shards`` different masters."""
    for n in range(1000):
        tag = f"{base}{n}"
        nodes = {client.get_node_from_key(f"{{{shard_tag(tag, i, shards)}}}:due").name for i in range(shards)}
        if len(nodes) == shards:
            return tag + ":"
    raise AssertionError("no prefix spreads over the masters")


#: The old README's JSON documents, copied as printed there (see the file's header).
SEED_FIXTURE = Path(__file__).resolve().parent / "fixtures" / "seed_readme_documents.txt"


def seed_documents() -> dict[str, str]:
    """The documents of :data:`SEED_FIXTURE` by name, each exactly as the old README printed it."""
    documents: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in SEED_FIXTURE.read_text().split("\n"):
        if line.startswith("### "):
            current = documents[line[4:].strip()] = []
        elif current is not None:
            current.append(line)
        elif line and not line.startswith("#"):
            raise ValueError(f"{SEED_FIXTURE}: text before the first document: {line!r}")
    return {name: "\n".join(lines).strip("\n") for name, lines in documents.items()}


SEED = seed_documents()
# The interval document (its slips included).
SEED_INTERVAL = SEED["interval"]
# The crontab document (Mongo's ObjectId included).
SEED_CRONTAB = SEED["crontab"]
# The second interval example (trailing comma, missing comma before total_run_count).
SEED_INTERVAL_30S = SEED["interval-30s"]


def redbeat_save(client: redis.Redis, prefix: str, name: str, task: str, schedule: dict, score: float,
                 args: list | None = None, kwargs: dict | None = None, options: dict | None = None,
                 enabled: bool = True, meta: dict | None = None) -> str:
    """What RedBeatSchedulerEntry.save() and a later run write for one entry."""
    key = prefix + name
    definition = {"name": name, "task": task, "args": args or [], "kwargs": kwargs or {}, "options": options or {},
                  "schedule": schedule, "enabled": enabled}
    client.hset(key, "definition", json.dumps(definition))
    client.hsetnx(key, "meta", json.dumps(meta or {"last_run_at": None}))
    client.zadd(prefix + ":schedule", {key: score})
    return key


def celery_schedule(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``celery -A proj schedule ARGS`` as a user runs it in their project."""
    env = dict(os.environ, PYTHONPATH=f"{directory}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    env.pop("CELERYBEATREDIS_URL", None)
    env.pop("CELERYBEATREDIS_PREFIX", None)
    return subprocess.run([sys.executable, "-m", "celery", "-A", "proj", "schedule", *args], cwd=directory, env=env,
                          capture_output=True, text=True, timeout=120)


@contextmanager
def sigterm_exits() -> Iterator[None]:
    """SIGTERM handled as ``celery beat`` handles it (SystemExit raised wherever the main thread is), then put back."""

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(0)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def assert_fire_identity(messages: list[Any], store: RedisStore) -> None:
    """Each run's message, Celery's or filled in from its shape, carries its own fire id, fire time and record."""
    assert len(messages) > 1
    for m in messages:
        assert m.headers["periodic_task_fire_id"] == m.id
        assert datetime.fromisoformat(m.headers["periodic_task_fire_time"]).tzinfo is not None
        run_stamp, tag = m.headers["periodic_task_run"].split(" ")
        assert tag == store.keys.tag and len(run_stamp) == 8
