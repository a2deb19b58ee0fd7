"""A real ``celery beat`` killed (``os._exit``, as SIGKILL: nothing cleaned up) at each point of a batch, under
each delivery mode; a second beat then takes over. Lost and twice-sent runs are counted from what the broker
received, and must be what docs/guarantees.rst ("Delivery modes") says."""

from __future__ import annotations

import textwrap
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from celery import Celery

from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.store import ScheduleStore

from ..support.processes import CeleryProcess, drain_queue, wait_until, write_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RUNS = 20
LEASE = 2

#: Python appended to the beat's app module: the kill at ``CRASH_AT`` (test code, never the project's).
CRASH_HOOKS = """
import os

from celerybeatredis.decisions.planner import Planner
from celerybeatredis.delivery.redis_messages import RedisWriter
from celerybeatredis.storage.runs import Runs
from celerybeatredis.storage.scripts import script_source

real_write = RedisWriter.write


def die():
    os._exit(9)


if CRASH_AT == "after-claim":
    real_plan = Planner.plan

    def plan(self, claim):
        if claim.entries:
            die()
        return real_plan(self, claim)

    Planner.plan = plan
elif CRASH_AT == "after-commit":
    real_commit = Runs.commit

    def commit(self, *args, **kwargs):
        flags = real_commit(self, *args, **kwargs)
        if any(flags):
            die()
        return flags

    Runs.commit = commit
elif CRASH_AT == "mid-write":  # at-most-once: half of the batch's pipelined write reaches the broker
    def write(self, producer, messages):
        half = dict(list(messages.items())[: len(messages) // 2])
        real_write(self, producer, half)
        die()

    RedisWriter.write = write
elif CRASH_AT == "before-reply" and DELIVERY != "exactly-once":  # the write sent, its reply never read
    def write(self, producer, messages):
        conn = producer.channel.client.connection_pool.get_connection()
        commands = [(c.upper(), k, v) for run in messages.values() for c, k, v in run]
        conn.send_packed_command(conn.pack_commands(commands))
        die()

    RedisWriter.write = write
elif CRASH_AT == "before-reply":  # exactly-once: the commit (which writes the messages) sent, its reply never read
    def commit(self, plans, history=0, messages=None):
        keys = self.scripts.script_keys["commit"]
        args = self.commit_args(plans, history, messages)
        conn = self.scripts.client.connection_pool.get_connection()
        encode = self.scripts.client.connection_pool.get_encoder().encode
        conn.send_command("EVAL", script_source("commit"), len(keys), *keys, *map(encode, args))
        die()

    Runs.commit = commit
"""


def beat_app(directory: Path, url: str, prefix: str, queue: str, delivery: str, crash: str | None,
             broker: str | None = None, batch: int = 100, hooks: str = "") -> None:
    """``proj.py`` for a beat on ``url`` (and its broker, unless ``broker`` names another), killed at ``crash``
    (:data:`CRASH_HOOKS`, then ``hooks``)."""
    extra = f"""
        app.conf.update(
            redis_scheduler_delivery={delivery!r}, redis_scheduler_lease_seconds={LEASE},
            redis_scheduler_claim_ahead=False, redis_scheduler_batch_size={batch}, task_default_queue={queue!r},
        )
        CRASH_AT = {crash!r}
        DELIVERY = {delivery!r}
    """
    write_app(directory, broker or url, url, prefix, textwrap.dedent(extra) + CRASH_HOOKS + hooks)


def due_now(api: ScheduleStore, store: RedisStore, client: redis.Redis, names: list[str]) -> None:
    """Add an hourly entry per name (its args: its name), each last run an hour ago: all due now, in one claim."""
    for name in names:
        api.add(name, "tasks.add", timedelta(hours=1), args=[name])
    ran = datetime.fromtimestamp(time.time() - 3600, timezone.utc).isoformat()
    store.restore_state([(name, 0, ran) for name in names])
    client.zadd(store.keys.due, {name: time.time() - 1 for name in names})


def killed_then_taken_over(directory: Path, write: Callable[[str | None], None], store: RedisStore,
                           names: list[str], crash: str) -> None:
    """Start a beat (``write(crash)`` writes its app) and wait until it is killed; then a second beat (``write(None)``)
    until every run is committed, due again only in an hour, and none is left pending."""
    write(crash)
    first = CeleryProcess.beat(directory)
    try:
        try:
            wait_until(lambda: not first.alive(), timeout=60, what="the first beat to be killed")
        except AssertionError:
            raise AssertionError(first.output()) from None
        assert first.process.returncode == 9, first.output()
    finally:
        first.stop()
    write(None)
    second = CeleryProcess.beat(directory)
    try:
        second.wait_for_output("beat: Starting...")
        client = store.client
        wait_until(lambda: all(store.run_state(n)[0] >= 1 for n in names)
                   and client.zcount(store.keys.due, "-inf", time.time() + 1800) == 0
                   and client.zcard(store.keys.pending) == 0,
                   timeout=60 + LEASE, what="every run committed")
    finally:
        assert second.stop() == 0, second.output()
    assert {store.run_state(n)[0] for n in names} == {1}, "each run is committed once"


def lost_and_twice(names: list[str], sent: list[tuple[str, str]]) -> tuple[int, int]:
    """Runs of ``names`` never sent, and copies sent beyond the first, from ``sent`` (each message's run, task id);
    every copy of a run must carry the task id it was first sent with."""
    count = Counter(name for name, _ in sent)
    assert set(count) <= set(names)
    ids = {name: {tid for n, tid in sent if n == name} for name in count}
    assert all(len(each) == 1 for each in ids.values()), "a run sent twice carries the task id it was first sent with"
    return sum(1 for n in names if count[n] == 0), sum(c - 1 for c in count.values() if c > 1)


#: (mode, where the first beat is killed, runs lost, runs sent twice): the table in docs/guarantees.rst.
CASES = [
    ("at-most-once", "after-claim", 0, 0),
    ("at-most-once", "after-commit", RUNS, 0),
    ("at-most-once", "mid-write", RUNS // 2, 0),
    ("at-most-once", "before-reply", 0, 0),
    ("at-least-once", "after-claim", 0, 0),
    ("at-least-once", "after-commit", 0, 0),
    ("at-least-once", "mid-write", 0, RUNS // 2),
    ("at-least-once", "before-reply", 0, RUNS),
    ("exactly-once", "after-claim", 0, 0),
    ("exactly-once", "after-commit", 0, 0),
    ("exactly-once", "before-reply", 0, 0),
]


@pytest.mark.parametrize(("delivery", "crash", "lost", "twice"), CASES, ids=[f"{d}-{c}" for d, c, _, _ in CASES])
def test_a_beat_killed_at_each_point_loses_and_repeats_what_the_docs_say(
        tmp_path: Path, redis_url: str, app: Celery, client: redis.Redis, api: ScheduleStore, store: RedisStore,
        delivery: str, crash: str, lost: int, twice: int) -> None:
    url, prefix, queue = f"{redis_url}/0", app.conf.redis_scheduler_key_prefix, f"crash-{app.conf.task_default_queue}"
    names = [f"run{i:02d}" for i in range(RUNS)]
    due_now(api, store, client, names)
    killed_then_taken_over(tmp_path, lambda at: beat_app(tmp_path, url, prefix, queue, delivery, at), store, names, crash)
    assert lost_and_twice(names, [(m.args[0], m.id) for m in drain_queue(client, queue)]) == (lost, twice)
