"""End to end, a real beat and a real worker with the integration: each run's fire time and id reach the task, and
its outcome, runtime and failure reach the entry's history, where ``history``, ``show`` and ``list --failing`` see them."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import redis
from celery import Celery
from click.testing import CliRunner

from celerybeatredis.cli import main
from celerybeatredis.storage.history import parse as parse_history

from ..support.processes import CeleryProcess, own_queue, wait_until, write_app
from .test_e2e_beat import hset

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

WORKER_APP = """
    import json as _json
    import redis as _redis
    app.conf.imports = ["celerybeatredis.worker"]
    _results = _redis.Redis.from_url({url!r})

    @app.task(name="tasks.stamp", bind=True)
    def stamp(self, label, fire_time=None):
        r = self.request
        _results.rpush({key!r}, _json.dumps([label, r.id, r.periodic_task_fire_id, r.periodic_task_fire_time,
                                             fire_time, r.periodic_task_run]))

    @app.task(name="tasks.broken")
    def broken():
        raise RuntimeError("the database is gone\\nand this line is not kept")

    @app.task(name="tasks.later", bind=True)
    def later(self):
        raise self.retry(countdown=3600)  # held by the worker for an hour: the run stays retried
"""


def test_fire_identity_reaches_the_task_and_outcomes_reach_history(tmp_path: Path, redis_url: str, prefix: str,
                                                                   tag: str, client: redis.Redis) -> None:
    key = f"results-{tag}"
    every_1s = {"interval": {"every": 1, "period": "seconds"}}
    hset(client, tag, "kw", {"task": "tasks.stamp", **every_1s, "args": ["kw"], "scheduled_time_kwarg": "fire_time"})
    hset(client, tag, "plain", {"task": "tasks.stamp", **every_1s, "args": ["plain"]})  # filled in from its shape
    hset(client, tag, "broken", {"task": "tasks.broken", **every_1s})
    hset(client, tag, "later", {"task": "tasks.later", **every_1s})
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix,
              extra=own_queue(prefix, WORKER_APP.format(url=f"{redis_url}/0", key=key)))

    def history(name: str):  # type: ignore[no-untyped-def]
        return parse_history(tag, name, client.hget(f"{{{tag}}}:history", name))

    def reported(name: str, result: str) -> int:
        return sum(run.result == result for run in history(name).runs)

    processes = [CeleryProcess.worker(tmp_path), CeleryProcess.beat(tmp_path)]
    try:
        wait_until(lambda: reported("kw", "succeeded") >= 3 and reported("plain", "succeeded") >= 3
                   and reported("broken", "failed") >= 3 and reported("later", "retried") >= 2, timeout=60,
                   what="three reported runs of each entry")
    finally:
        for process in processes:
            process.stop()
    rows = [json.loads(raw) for raw in client.lrange(key, 0, -1)]
    for label in ("kw", "plain"):
        ran = [row for row in rows if row[0] == label]
        kept = {run.task_id: run for run in history(label).runs}
        assert len(ran) >= 3
        for _, task_id, fire_id, fire_time, kwarg, run_header in ran:
            assert fire_id == task_id and run_header.endswith(" " + tag)
            assert kwarg == (fire_time if label == "kw" else None)
            if task_id in kept:  # the slot it was due at: before it was sent, at most one interval late
                lateness = (kept[task_id].sent_at - datetime.fromisoformat(fire_time)).total_seconds()
                assert 0 <= lateness < 1.0, (fire_time, kept[task_id])
        assert len({row[3] for row in ran}) == len(ran)  # each run its own time
        assert all(run.runtime is not None and run.runtime < 5 for run in history(label).runs if run.result)
    broken = history("broken")
    assert broken.failing and broken.last_failure is not None
    assert broken.last_failure[1] == "RuntimeError: the database is gone"
    assert next(run.error for run in broken.runs if run.result == "failed") == "RuntimeError: the database is gone"

    assert {run.result for run in history("later").runs} <= {"retried", None}  # a retry is not a failure, nor final

    runner = CliRunner()
    base = ["--url", f"{redis_url}/0", "--prefix", prefix]
    shown = runner.invoke(main, [*base, "history", "broken"])
    assert shown.exit_code == 0 and "failed" in shown.output and "RuntimeError: the database is gone" in shown.output
    show = runner.invoke(main, [*base, "show", "broken"])
    assert show.exit_code == 0 and "last fail: " in show.output and "last ok: " in show.output, show.output
    failing = runner.invoke(main, [*base, "list", "--failing", "--json"])
    assert failing.exit_code == 0, failing.output
    assert [json.loads(line)["name"] for line in failing.output.splitlines()] == ["broken"]


HELD_APP = """
    import time as _time
    import redis as _redis
    app.conf.imports = ["celerybeatredis.worker"]
    _flags = _redis.Redis.from_url({url!r})

    @app.task(name="tasks.hold")
    def hold():
        _flags.set({started!r}, 1)
        _time.sleep(60)
"""


def test_a_run_revoked_while_it_runs_reads_revoked(tmp_path: Path, redis_url: str, prefix: str, tag: str,
                                                   client: redis.Redis) -> None:
    started = f"started-{tag}"
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix,
              extra=own_queue(prefix, HELD_APP.format(url=f"{redis_url}/0", started=started)))
    hset(client, tag, "hold", {"task": "tasks.hold", "interval": {"every": 1, "period": "seconds"}, "one_off": True})

    def history(name: str):  # type: ignore[no-untyped-def]
        return parse_history(tag, name, client.hget(f"{{{tag}}}:history", name))

    # A process pool: the worker's main process takes the revoke while the task runs in its child, and ends it.
    processes = [CeleryProcess.worker(tmp_path, "-P", "prefork", "-c", "1"), CeleryProcess.beat(tmp_path)]
    try:
        wait_until(lambda: client.exists(started) and history("hold").runs, timeout=60, what="the run started")
        (run,) = history("hold").runs
        Celery(broker=f"{redis_url}/1", set_as_current=False).control.revoke(run.task_id, terminate=True)
        wait_until(lambda: history("hold").runs[0].result == "revoked", timeout=60, what="the revoked run reported")
    finally:
        for process in processes:
            process.stop()
    assert not history("hold").failing and history("hold").last_failure is None
