"""Run history: written by the commit, capped at its depth, counters, publish errors, bad data, remove, real worker ids."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis
from celery import Celery
from click.testing import CliRunner

from celerybeatredis.cli import main
from celerybeatredis.definitions.codec import SHORT_DIGEST, digest
from celerybeatredis.exceptions import EntryNotFound
from celerybeatredis.storage.history import RECORD, parse, record, stamp, task_id
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.wire import Plan
from celerybeatredis.store import ScheduleStore

from ..support.helpers import EVERY_10S_DOC as EVERY_10S
from ..support.helpers import T0, put, run_ticks
from ..support.processes import CeleryProcess, drain_queue, wait_until, write_app
from ..support.redis_server import free_port

EVERY_1S = {"task": "tasks.add", "interval": {"every": 1, "period": "seconds"}}


@pytest.fixture
def api(redis_url: str, prefix: str) -> Iterator[ScheduleStore]:
    st = ScheduleStore.from_url(f"{redis_url}/0", prefix)
    yield st
    st.close()


def test_records_and_task_ids_are_those_beat_sent_and_the_depth_caps_them(
        app: Celery, store: RedisStore, broker: redis.Redis, api: ScheduleStore) -> None:
    app.conf.redis_scheduler_history = 3
    put(store, "add", EVERY_10S)
    run_ticks(app, [T0 + 10 * i for i in range(6)])  # seen at T0, then 5 runs
    sent = drain_queue(broker, app.conf.task_default_queue)
    history = api.history("add", 10)
    assert (history.sent, history.skipped, history.missed) == (5, 0, 0)
    assert len(history.runs) == 3 and len(store.client.hget(store.keys.history, "add") or b"") == len("5,0,0:") + 3 * RECORD
    assert [r.task_id for r in history.runs] == [m.id for m in reversed(sent)][:3]
    newest = history.runs[0]
    assert newest.outcome == "sent" and newest.sent_at.timestamp() == pytest.approx(T0 + 50) and newest.lateness == 0
    assert [r.outcome for r in api.history("add", 2).runs] == ["sent", "sent"]


def test_missed_and_skipped_runs_are_counted(app: Celery, store: RedisStore, api: ScheduleStore) -> None:
    put(store, "late", EVERY_10S, score=T0 - 25)  # due 25 s ago: runs late, after missing two
    store.client.hset(store.keys.last_run_at, "late", datetime.fromtimestamp(T0 - 35, timezone.utc).isoformat())
    put(store, "off", dict(EVERY_10S, enabled=False), score=T0 - 1)
    put(store, "held", dict(EVERY_10S, start_time="2030-01-01T00:00:00+00:00"), score=T0 - 1)
    put(store, "broken", {"task": "t", "interval": {"every": 1, "period": "fortnights"}}, score=T0 - 1)
    put(store, "poked", dict(EVERY_10S, enabled=False))  # score 0: looked at after an edit, nothing was due
    for name in ("late", "off", "held", "broken"):  # as beat left them: the reconciler has no reason to poke them
        store.client.hset(store.keys.digest, name, digest(store.get_raw(name) or b"")[:SHORT_DIGEST])
    run_ticks(app, [T0])
    late = api.history("late")
    assert (late.sent, late.skipped, late.missed) == (1, 0, 1)
    assert late.runs[0].outcome == "missed" and late.runs[0].lateness == pytest.approx(25)
    assert late.runs[0].due_at.timestamp() == pytest.approx(T0 - 25)
    for name, outcome in (("off", "skipped: disabled or finished"), ("held", "skipped: start_time ahead"),
                          ("broken", "skipped: quarantined")):
        got = api.history(name)
        assert (got.sent, got.skipped, [r.outcome for r in got.runs], got.runs[0].task_id) == (0, 1, [outcome], None), name
    assert api.history("poked").runs == []


def test_a_publish_error_shows_in_history_and_its_counts_are_undone(app: Celery, store: RedisStore,
                                                                     api: ScheduleStore) -> None:
    put(store, "add", EVERY_10S, score=T0)
    store.client.hset(store.keys.last_run_at, "add", datetime.fromtimestamp(T0 - 10, timezone.utc).isoformat())
    app.conf.update(broker_url=f"redis://127.0.0.1:{free_port()}/1", broker_connection_timeout=1,
                    broker_connection_max_retries=0, redis_scheduler_claim_ahead=False)
    run_ticks(app, [T0])
    history = api.history("add")
    assert [r.outcome for r in history.runs] == ["publish-error"] and history.runs[0].task_id is not None
    assert (history.sent, history.missed) == (0, 0)
    count, last = store.run_state("add")  # the run is undone: its last run is the one before
    assert count == 0 and last is not None and last.timestamp() == T0 - 10 and (store.due_score("add") or 0) > T0


def test_history_off_writes_nothing_and_sends_celerys_own_ids(app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    app.conf.redis_scheduler_history = 0
    put(store, "add", EVERY_10S)
    run_ticks(app, [T0, T0 + 10])
    (msg,) = drain_queue(broker, app.conf.task_default_queue)
    assert store.client.exists(store.keys.history) == 0 and msg.id != task_id(store.keys.tag, "add", stamp(T0 + 10))


@pytest.mark.parametrize("bad", ["wrong-type", "garbage", "truncated"])
def test_bad_history_never_stops_beat(bad: str, app: Celery, store: RedisStore, broker: redis.Redis,
                                      api: ScheduleStore) -> None:
    put(store, "add", EVERY_10S)
    if bad == "wrong-type":
        store.client.set(store.keys.history, "not a hash")
    else:
        store.client.hset(store.keys.history, "add", "nonsense" if bad == "garbage" else "1,0,0;s12")
    run_ticks(app, [T0, T0 + 10, T0 + 20])
    assert len(drain_queue(broker, app.conf.task_default_queue)) == 2 and store.run_state("add")[0] == 2
    history = api.history("add")
    if bad == "wrong-type":
        assert store.client.get(store.keys.history) == b"not a hash" and history.runs == []
    else:
        assert history.readable and [r.outcome for r in history.runs] == ["sent", "sent"]  # started afresh
    store.client.hset(store.keys.schedule, "gone", "{}")
    api.remove("gone")  # remove.lua, claim and reconcile leave a history key of another type alone


def test_remove_and_gone_entries_delete_their_history(store: RedisStore, api: ScheduleStore) -> None:
    for name in ("a", "b", "c"):
        put(store, name, EVERY_10S, score=1.0)
    claim = store.runs.claim(batch=10, lease_seconds=30, now=10.0)
    plans = [Plan(e.name, claim.lease, 20.0, ran=True, run_at="2026-01-01T00:00:10+00:00", history=record("s", stamp(10.0), 9))
             for e in claim.entries]
    assert store.runs.commit(plans, history=20) == [True, True, True]
    assert store.client.hlen(store.keys.history) == 3
    api.remove("a")
    store.client.hdel(store.keys.schedule, "b")
    store.client.zadd(store.keys.due, {"b": 0.0})
    store.runs.claim(batch=10, lease_seconds=30, now=30.0)  # drops b: its definition is gone
    store.client.hdel(store.keys.schedule, "c")
    store.runs.reconcile_step(100)  # drops c from the due index
    assert store.client.hlen(store.keys.history) == 0
    with pytest.raises(EntryNotFound):
        api.history("a")


def test_a_resent_commit_adds_no_second_record(store: RedisStore) -> None:
    put(store, "a", EVERY_10S, score=1.0)
    claim = store.runs.claim(batch=10, lease_seconds=30, now=10.0)
    plans = [Plan("a", claim.lease, 20.0, ran=True, run_at="2026-01-01T00:00:10+00:00", history=record("s", stamp(10.0), 9))]
    assert store.runs.commit(plans, history=20) == [True] and store.runs.commit(plans, history=20) == [True]
    history = parse(store.keys.tag, "a", store.client.hget(store.keys.history, "a"))
    assert history.sent == 1 and len(history.runs) == 1


def test_cli_history_table_and_json(redis_url: str, prefix: str, store: RedisStore, app: Celery) -> None:
    put(store, "add", EVERY_10S)
    run_ticks(app, [T0, T0 + 10])
    runner = CliRunner()
    base = ["--url", f"{redis_url}/0", "--prefix", prefix, "history", "add"]
    text = runner.invoke(main, base)
    assert text.exit_code == 0, text.output
    assert "sent" in text.output and "1 sent, 0 skipped, 0 missed" in text.output
    doc = json.loads(runner.invoke(main, [*base, "-n", "1", "--json"]).output)
    assert doc["sent"] == 1 and doc["runs"][0]["task_id"] == task_id(prefix.rstrip(":"), "add", stamp(T0 + 10))
    missing = runner.invoke(main, [*base[:-1], "nope"])
    assert missing.exit_code == 1


@pytest.mark.e2e
@pytest.mark.slow
def test_history_holds_the_task_ids_a_real_worker_ran(tmp_path: Path, redis_url: str, prefix: str, client: redis.Redis,
                                                     api: ScheduleStore) -> None:
    tag, ran = prefix.rstrip(":"), f"ran-{prefix}"
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=f"""
import redis as _redis
_ran = _redis.Redis.from_url({redis_url + "/0"!r})
app.conf.task_default_queue = {'q-' + prefix!r}
app.conf.redis_scheduler_history = 4

@app.task(name="tasks.add", bind=True)
def add(self):
    _ran.rpush({ran!r}, self.request.id)
""")
    client.hset(f"{{{tag}}}:schedule", "add", json.dumps(EVERY_1S))
    client.zadd(f"{{{tag}}}:due", {"add": 0})
    worker = CeleryProcess.worker(tmp_path)
    beat = CeleryProcess.beat(tmp_path)
    try:
        wait_until(lambda: client.llen(ran) >= 6, timeout=40, what="the worker to run the task six times")
    finally:
        code = beat.stop()
    try:
        history = api.history("add", 20)
        wait_until(lambda: client.llen(ran) >= history.sent, timeout=20, what="the worker to run every sent task")
    finally:
        worker.stop()
    assert code == 0, beat.output()
    worker_ids = [i.decode() for i in client.lrange(ran, 0, -1)]
    assert len(history.runs) == 4 and history.sent == len(worker_ids) >= 6 and not math.isnan(history.runs[0].lateness)
    assert sorted(r.task_id or "" for r in history.runs) == sorted(worker_ids[-4:])
