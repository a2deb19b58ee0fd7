"""End-to-end overlap and failures: two real beats, two real workers with the integration, a task slower than its interval."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import redis

from celerybeatredis.storage.history import parse as parse_history

from ..support.processes import CeleryProcess, own_queue, wait_until, write_app
from .test_e2e_beat import hset

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: The worker integration's one line, and a task that records when each run started and ended.
WORKER_APP = """
    import json as _json, time as _time
    import redis as _redis
    app.conf.imports = ["celerybeatredis.worker"]
    _results = _redis.Redis.from_url({url!r})

    @app.task(name="tasks.slow", bind=True)
    def slow(self, label, seconds):
        started = _time.time()
        _time.sleep(seconds)
        _results.rpush({key!r}, _json.dumps([label, self.request.id, started, _time.time()]))

    @app.task(name="tasks.broken")
    def broken():
        raise RuntimeError("the database is gone")
"""


def runs(client: redis.Redis, key: str, label: str) -> list[tuple[float, float]]:
    """(start, end) of each ended run of ``label``, by start."""
    rows = [json.loads(raw) for raw in client.lrange(key, 0, -1)]
    return sorted((start, end) for lab, _, start, end in rows if lab == label)


def overlapping(spans: list[tuple[float, float]]) -> bool:
    return any(later[0] < earlier[1] for earlier, later in zip(spans, spans[1:]))


def start(tmp_path: Path, redis_url: str, prefix: str, key: str) -> list[CeleryProcess]:
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix,
              extra=own_queue(prefix, WORKER_APP.format(url=f"{redis_url}/0", key=key)))
    threads = ("-P", "threads", "-c", "4")
    return [CeleryProcess.worker(tmp_path, *threads, "-n", f"w1-{prefix}@%h"),
            CeleryProcess.worker(tmp_path, *threads, "-n", f"w2-{prefix}@%h"),
            CeleryProcess.beat(tmp_path), CeleryProcess.beat(tmp_path)]


def stop(processes: list[CeleryProcess]) -> None:
    for process in processes:
        process.stop()


def test_skip_sends_no_second_run_while_the_first_runs_with_two_beats_and_two_workers(
        tmp_path: Path, redis_url: str, prefix: str, tag: str, client: redis.Redis) -> None:
    key = f"results-{tag}"
    every_1s: dict[str, Any] = {"task": "tasks.slow", "interval": {"every": 1, "period": "seconds"}}
    hset(client, tag, "skip", dict(every_1s, args=["skip", 2.5], overlap="skip"))
    hset(client, tag, "allow", dict(every_1s, args=["allow", 2.5]))  # the control: same task, runs pile up
    processes = start(tmp_path, redis_url, prefix, key)
    try:
        wait_until(lambda: len(runs(client, key, "skip")) >= 3 and len(runs(client, key, "allow")) >= 3,
                   timeout=90, what="three ended runs of each entry")
    finally:
        stop(processes)
    skip, allow = runs(client, key, "skip"), runs(client, key, "allow")
    assert not overlapping(skip), skip
    assert overlapping(allow), allow  # the workers had room to overlap runs: skip is what kept them apart
    history = parse_history(tag, "skip", client.hget(f"{{{tag}}}:history", "skip"))
    assert history.skipped >= 2
    assert "skipped: overlap: the last run had not finished" in [r.outcome for r in history.runs]
    sent_ids = {r.task_id for r in history.runs if r.task_id}
    ran_ids = {json.loads(raw)[1] for raw in client.lrange(key, 0, -1) if json.loads(raw)[0] == "skip"}
    assert ran_ids & sent_ids  # the task ids beat recorded are the ones the workers ran


def test_buffer_one_holds_one_run_and_sends_it_when_the_last_ends(tmp_path: Path, redis_url: str, prefix: str,
                                                                  tag: str, client: redis.Redis) -> None:
    key = f"results-{tag}"
    hset(client, tag, "buffered", {"task": "tasks.slow", "interval": {"every": 1, "period": "seconds"},
                                   "args": ["buffered", 2.5], "overlap": "buffer_one"})
    processes = start(tmp_path, redis_url, prefix, key)
    try:
        wait_until(lambda: len(runs(client, key, "buffered")) >= 3, timeout=90, what="three ended runs")
    finally:
        stop(processes)
    spans = runs(client, key, "buffered")
    assert not overlapping(spans), spans
    history = parse_history(tag, "buffered", client.hget(f"{{{tag}}}:history", "buffered"))
    assert history.skipped == 0 and history.sent >= 3  # held, never skipped


def test_failed_runs_in_a_row_pause_the_entry(tmp_path: Path, redis_url: str, prefix: str, tag: str,
                                              client: redis.Redis) -> None:
    hset(client, tag, "broken", {"task": "tasks.broken", "interval": {"every": 1, "period": "seconds"},
                                 "pause_after_failures": 3})
    processes = start(tmp_path, redis_url, prefix, f"results-{tag}")

    def pause() -> Any:
        return json.loads(client.hget(f"{{{tag}}}:schedule", "broken") or b"{}").get("paused")

    try:
        found = wait_until(pause, timeout=60, what="the entry to be paused")
        assert found["reason"] == "3 failed runs in a row; last: RuntimeError: the database is gone"
        history = parse_history(tag, "broken", client.hget(f"{{{tag}}}:history", "broken"))
        wait_until(lambda: parse_history(tag, "broken", client.hget(f"{{{tag}}}:history", "broken")).skipped > 0,
                   timeout=30, what="a run skipped as paused")
        assert history.sent >= 3
    finally:
        stop(processes)
