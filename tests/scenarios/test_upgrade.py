"""An upgrade with beats of two versions running at once on one schedule (docs/deploying.rst, upgrading).

A beat of an older commit of this repository (its package taken out of git into a folder of its own, run with
``PYTHONPATH`` pointing there) shares a schedule with today's beat: every run is sent once, none is lost. A beat
meeting a schema version it does not know refuses to run, in one line, before it writes anything.
"""

from __future__ import annotations

import shutil
import subprocess
import tarfile
from collections import Counter
from io import BytesIO
from pathlib import Path

import pytest
import redis

from celerybeatredis.storage.keys import SCHEMA_FIELD, SCHEMA_VERSION
from celerybeatredis.storage.redis_store import RedisStore

from ..support.ledger import every_second, load_entries, run_counts
from ..support.processes import PROJECT_ROOT, CeleryProcess, drain_queue, wait_until, write_app
from ..support.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

#: The older beat: main before the schema version was recorded (it neither writes nor reads ``{T}:meta`` field
#: ``schema``), at the same schema as today's code.
OLD_COMMIT = "34b5213"

#: Python for the test app: stamps each task message with the folder of the celerybeatredis that published it.
STAMP_CODE = """
import os as _os
import celerybeatredis as _cbr
from celery.signals import before_task_publish as _before_task_publish

@_before_task_publish.connect
def _stamp_code(headers=None, **_kwargs):
    headers["x_code"] = _os.path.dirname(_os.path.dirname(_cbr.__file__))
"""


def old_package(commit: str, into: Path) -> Path:
    """The ``celerybeatredis`` package of ``commit``, written under ``into``; skips when the commit is not here."""
    git = shutil.which("git")
    if git is None or not (PROJECT_ROOT / ".git").exists():
        pytest.skip("not a git checkout: the beat of an older commit cannot be had")
    if subprocess.run([git, "-C", str(PROJECT_ROOT), "cat-file", "-e", f"{commit}^{{commit}}"], capture_output=True).returncode:
        pytest.skip(f"commit {commit} is not in this repository (a shallow clone?): the two-versions test needs it")
    archive = subprocess.run([git, "-C", str(PROJECT_ROOT), "archive", "--format=tar", commit, "celerybeatredis"],
                             capture_output=True, check=True).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def test_a_beat_of_an_older_commit_beside_todays_sends_each_run_once(tmp_path: Path, redis_url: str, prefix: str,
                                                                     store: RedisStore, broker: redis.Redis,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    old = old_package(OLD_COMMIT, tmp_path / "old")
    entries, runs_each = 200, 6
    queue = f"q-{store.keys.tag}"
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix,
              f"app.conf.update(task_default_queue={queue!r}, redis_scheduler_batch_size=20)\n" + STAMP_CODE)
    names = [f"u{i:03d}" for i in range(entries)]
    load_entries(store, {n: every_second(n, runs_each) for n in names})
    counts: Counter[str] = Counter()
    by_code: Counter[str] = Counter()

    def poll() -> int:
        for message in drain_queue(broker, queue):
            counts[str(message.args[0])] += 1
            by_code[message.headers["x_code"]] += 1
        return sum(counts.values())

    today = CeleryProcess.beat(tmp_path)
    with monkeypatch.context() as env:
        env.setenv("PYTHONPATH", str(old))
        older = CeleryProcess.beat(tmp_path)
    beats = [today, older]
    try:
        def done() -> bool:
            for beat in beats:
                assert beat.alive(), f"beat exited with {beat.process.returncode}:\n{beat.output()}"
            return poll() >= entries * runs_each and sum(run_counts(store).values()) >= entries * runs_each

        wait_until(done, timeout=runs_each + 90, interval=0.2, what="every entry to run its runs")
    finally:
        codes = [beat.stop() for beat in beats]  # whatever a beat would send twice it has sent by the time it exits
    poll()
    assert codes == [0, 0], [beat.output() for beat in beats]
    assert set(run_counts(store).values()) == {runs_each}
    assert {name: n for name, n in counts.items() if n != runs_each} == {}, "runs sent twice or lost"
    assert sum(counts.values()) == entries * runs_each
    assert set(by_code) == {str(old), str(PROJECT_ROOT)}, f"both versions must have sent runs: {by_code}"
    assert store.client.hget(store.keys.meta, SCHEMA_FIELD) == str(SCHEMA_VERSION).encode()
    assert "Traceback" not in today.output() + older.output()


def test_beat_refuses_a_schema_version_it_does_not_know_in_one_line(tmp_path: Path, redis_url: str, prefix: str,
                                                                     store: RedisStore) -> None:
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix,
              "app.conf.beat_schedule = {'tick': {'task': 't.tick', 'schedule': 1.0}}\n")
    store.client.hset(store.keys.meta, SCHEMA_FIELD, SCHEMA_VERSION + 1)
    beat = CeleryProcess.beat(tmp_path)
    wait_until(lambda: not beat.alive(), timeout=30, what="beat to exit")
    code, output = beat.stop(), beat.output()
    refusals = [line for line in output.splitlines() if "refuses to run" in line]
    assert code != 0 and len(refusals) == 1, output
    assert f"schedule {{{store.keys.tag}}} is at schema version '{SCHEMA_VERSION + 1}'" in refusals[0]
    assert f"knows version {SCHEMA_VERSION} only" in refusals[0]
    assert "Traceback" not in output
    assert not store.client.exists(store.keys.schedule, store.keys.statics), "beat wrote to a schedule it refused"


def test_a_running_beat_that_finds_its_schedule_replaced_by_another_schema_stops_in_one_line(
        tmp_path: Path, redis_url: str, prefix: str) -> None:
    """Redis flushed and at once holding a newer schema (a backup of a newer release restored): beat, seeing the
    schedule lost, checks the version again before it syncs ``beat_schedule`` back, logs one line and stops."""
    schedule = RedisServer().start()
    try:
        write_app(tmp_path, f"{redis_url}/1", f"{schedule.url}/0", prefix, f"app.conf.task_default_queue = 'q-{prefix}'\n"
                  "app.conf.beat_schedule = {'tick': {'task': 't.tick', 'schedule': 1.0}}\n")
        store = RedisStore(redis.Redis.from_url(f"{schedule.url}/0"), prefix)
        beat = CeleryProcess.beat(tmp_path)
        wait_until(lambda: store.client.exists(store.keys.synced) and store.client.hget(store.keys.meta, SCHEMA_FIELD),
                   what="beat to sync beat_schedule and record the schema")
        with store.client.pipeline(transaction=True) as restore:
            restore.flushdb()
            restore.hset(store.keys.meta, SCHEMA_FIELD, SCHEMA_VERSION + 1)
            restore.execute()
        wait_until(lambda: not beat.alive(), timeout=30, what="beat to stop")
        beat.stop()
        output = beat.output()
        refusals = [line for line in output.splitlines() if "refuses to run" in line]
        assert len(refusals) == 1 and f"schema version '{SCHEMA_VERSION + 1}'" in refusals[0], output
        assert "Traceback" not in output
        assert not store.client.exists(store.keys.schedule, store.keys.statics), "beat wrote to a schedule it refused"
        store.client.close()
    finally:
        schedule.cleanup()
