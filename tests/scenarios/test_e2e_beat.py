"""End-to-end: real ``celery beat`` (and worker) processes, a Redis broker, entries written as redis-cli would."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest
import redis

from ..support.helpers import SEED_CRONTAB, SEED_INTERVAL_30S
from ..support.processes import CeleryProcess, Tally, own_queue, wait_until, write_app

pytestmark = pytest.mark.e2e


def hset(client: redis.Redis, tag: str, name: str, doc: dict[str, object] | str, poke: bool = True) -> None:
    client.hset(f"{{{tag}}}:schedule", name, doc if isinstance(doc, str) else json.dumps(doc))
    if poke:
        client.zadd(f"{{{tag}}}:due", {name: 0})


def test_raw_entries_statics_edits_deletes_and_restart(tmp_path: Path, redis_url: str, prefix: str, tag: str,
                                                       client: redis.Redis, broker: redis.Redis) -> None:
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=own_queue(prefix, """
        app.conf.beat_schedule = {"static-every-1s": {"task": "tasks.static", "schedule": timedelta(seconds=1)}}
    """))
    # The seed README's document, as printed there, with its 30 s interval made 1 s so the test is short.
    hset(client, tag, "seed-style", SEED_INTERVAL_30S.replace('"every" : 30', '"every" : 1').replace("task.add", "tasks.seed"))
    hset(client, tag, "seed-cron", SEED_CRONTAB)
    hset(client, tag, "raw-every-1s", {"task": "tasks.add", "enabled": True, "interval": {"every": 1, "period": "seconds"}, "args": [1, 2]})
    hset(client, tag, "broken", '{"task": "tasks.broken", "interval": {"every": 1, "period": "fortnights"}}')
    tally = Tally(broker, prefix)
    beat = CeleryProcess.beat(tmp_path)
    try:
        beat.wait_for_output(f"{{{tag}}}")
        tally.wait_for("tasks.add", 2)
        tally.wait_for("tasks.static", 2)
        tally.wait_for("tasks.seed", 2)
        assert client.hget(f"{{{tag}}}:total_run_count", "seed-style") is not None
        assert int(client.hget(f"{{{tag}}}:total_run_count", "seed-style")) >= 7  # seeded with 5, then ran
        reason = client.hget(f"{{{tag}}}:invalid", "broken")
        assert reason is not None and b"interval.period" in reason
        assert "quarantined" in beat.output()

        # Edit args while beat runs (poked: takes effect within a second).
        hset(client, tag, "raw-every-1s", {"task": "tasks.add", "interval": {"every": 1, "period": "seconds"}, "args": [40, 2]})
        wait_until(lambda: any(t == "tasks.add" and a == [40, 2] for _, t, a in (tally.poll() and tally.messages)),
                   timeout=10, what="the edited args")
        # Fix the broken entry: it comes back.
        hset(client, tag, "broken", {"task": "tasks.broken", "interval": {"every": 1, "period": "seconds"}})
        tally.wait_for("tasks.broken", 1, timeout=10)
        assert client.hget(f"{{{tag}}}:invalid", "broken") is None
        # Disable, then delete with a bare HDEL: no more runs.
        hset(client, tag, "raw-every-1s", {"task": "tasks.add", "enabled": False, "interval": {"every": 1, "period": "seconds"}})
        client.hdel(f"{{{tag}}}:schedule", "seed-style")
        time.sleep(1.5)
        tally.poll()
        before = Counter(tally.counts)
        time.sleep(3)
        after = tally.poll()
        assert after["tasks.add"] == before["tasks.add"]
        assert after["tasks.seed"] == before["tasks.seed"]
        assert after["tasks.static"] > before["tasks.static"]
        assert beat.alive()
    finally:
        code = beat.stop()
    assert code == 0, beat.output()
    runs_before_restart = int(client.hget(f"{{{tag}}}:total_run_count", "static-every-1s"))
    assert client.zscore(f"{{{tag}}}:due", "seed-style") is None  # the deleted entry left the index

    # Restart: run state carries on from where it was.
    tally.poll()
    beat = CeleryProcess.beat(tmp_path)
    try:
        tally.wait_for("tasks.static", tally.counts["tasks.static"] + 2)
    finally:
        code = beat.stop()
    assert code == 0, beat.output()
    assert int(client.hget(f"{{{tag}}}:total_run_count", "static-every-1s")) >= runs_before_restart + 2


def test_bare_hset_is_found_by_the_reconciler(tmp_path: Path, redis_url: str, prefix: str, tag: str,
                                              client: redis.Redis, broker: redis.Redis) -> None:
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=own_queue(prefix))
    beat = CeleryProcess.beat(tmp_path)
    tally = Tally(broker, prefix)
    try:
        beat.wait_for_output("beat: Starting")
        hset(client, tag, "bare", {"task": "tasks.bare", "interval": {"every": 1, "period": "seconds"}}, poke=False)
        tally.wait_for("tasks.bare", 1, timeout=15)
    finally:
        code = beat.stop()
    assert code == 0, beat.output()


def test_a_real_worker_runs_what_beat_sends(tmp_path: Path, redis_url: str, prefix: str, tag: str, client: redis.Redis) -> None:
    results = f"results-{tag}"
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=own_queue(prefix, f"""
        import redis as _redis
        _results = _redis.Redis.from_url({redis_url + "/0"!r})

        @app.task(name="tasks.record")
        def record(value):
            _results.rpush({results!r}, value)
    """))
    hset(client, tag, "record", {"task": "tasks.record", "interval": {"every": 1, "period": "seconds"}, "args": ["hello"]})
    worker = CeleryProcess.worker(tmp_path)
    beat = CeleryProcess.beat(tmp_path)
    try:
        wait_until(lambda: client.llen(results) >= 2, timeout=30, what="the worker to run the task twice")
    finally:
        code = beat.stop()
        worker.stop()
    assert code == 0, beat.output()
    assert client.lrange(results, 0, 0) == [b"hello"]
    assert int(client.hget(f"{{{tag}}}:total_run_count", "record")) >= 2
