"""End-to-end: a real ``celery beat`` process, a Redis broker, entries written with redis-cli commands."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import redis

from .processes import CeleryProcess, drain_queue, wait_until, write_app

pytestmark = pytest.mark.e2e


@pytest.fixture
def broker(redis_url: str) -> redis.Redis:
    conn = redis.Redis.from_url(f"{redis_url}/1")
    conn.delete("celery")
    return conn


def test_beat_dispatches_entries_written_with_raw_commands(tmp_path: Path, redis_url: str, prefix: str,
                                                           client: redis.Redis, broker: redis.Redis) -> None:
    tag = prefix.rstrip(":")
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra="""
        app.conf.beat_schedule = {"static-every-1s": {"task": "tasks.static", "schedule": timedelta(seconds=1)}}
    """)
    client.hset(f"{{{tag}}}:schedule", "raw-every-1s", json.dumps(
        {"task": "tasks.add", "enabled": True, "interval": {"every": 1, "period": "seconds"}, "args": [1, 2]}))
    client.zadd(f"{{{tag}}}:due", {"raw-every-1s": 0})
    beat = CeleryProcess.beat(tmp_path)
    try:
        beat.wait_for_output(f"{{{tag}}}")
        seen: Counter[str] = Counter()

        def enough() -> bool:
            seen.update(m.task for m in drain_queue(broker))
            return seen["tasks.add"] >= 2 and seen["tasks.static"] >= 2

        wait_until(enough, timeout=20, what="two runs of each entry")
        assert beat.alive()
    finally:
        assert beat.stop() == 0, beat.output()
    assert int(client.hget(f"{{{tag}}}:total_run_count", "raw-every-1s")) >= 2
    assert client.sismember(f"{{{tag}}}:statics", "static-every-1s")
    assert not client.sismember(f"{{{tag}}}:statics", "raw-every-1s")
