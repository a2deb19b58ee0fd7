"""The scheduler's tick, driven at chosen times, publishing to a real Redis broker."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

import pytest
import redis
from celery import Celery

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from .support.helpers import EVERY_10S_DOC as EVERY_10S
from .support.helpers import T0, put, sent
from .support.processes import drain_queue


def test_new_interval_entry_runs_one_interval_after_it_is_first_seen(scheduler: RedisScheduler, store: RedisStore,
                                                                     broker: redis.Redis, app: Celery) -> None:
    put(store, "add", EVERY_10S)
    scheduler.tick(now=T0)
    assert sent(broker, app) == []
    assert store.due_score("add") == pytest.approx(T0 + 10)
    scheduler.tick(now=T0 + 9.9)
    assert sent(broker, app) == []
    scheduler.tick(now=T0 + 10)
    (msg,) = sent(broker, app)
    assert (msg.task, msg.args, msg.kwargs) == ("tasks.add", [1, 2], {})
    assert msg.headers["celery_beat_task"] is True
    count, last = store.run_state("add")
    assert count == 1 and last == datetime.fromtimestamp(T0 + 10, timezone.utc)
    assert store.due_score("add") == pytest.approx(T0 + 20)
    assert json.loads(store.get_raw("add") or b"") == EVERY_10S  # the definition is never rewritten


def test_missed_runs_collapse_into_one(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery) -> None:
    put(store, "add", EVERY_10S)
    scheduler.tick(now=T0)
    scheduler.tick(now=T0 + 300)  # beat was away for thirty intervals
    assert len(sent(broker, app)) == 1
    assert store.due_score("add") == pytest.approx(T0 + 310)


def test_seed_run_state_is_taken_once(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery) -> None:
    doc = dict(EVERY_10S, total_run_count=5,
               last_run_at={"__type__": "datetime", "year": 2014, "month": 8, "day": 30, "hour": 8, "minute": 10, "second": 6})
    put(store, "seeded", doc, score=None)
    store.runs.reconcile_step(100)
    scheduler.tick(now=T0)
    assert len(sent(broker, app)) == 1  # last run in 2014: due at once
    assert store.run_state("seeded")[0] == 6
    scheduler.tick(now=T0 + 10)
    assert store.run_state("seeded")[0] == 7  # the hashes win from now on


def test_crontab_entry(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery) -> None:
    put(store, "cron", {"task": "tasks.cron", "crontab": {"minute": "*/15"}})
    scheduler.tick(now=T0 + 60)
    assert store.due_score("cron") == pytest.approx(T0 + 900)
    scheduler.tick(now=T0 + 900)
    assert [m.task for m in sent(broker, app)] == ["tasks.cron"]
    assert store.due_score("cron") == pytest.approx(T0 + 1800)


def test_entries_sharing_a_crontab_are_decided_each_by_its_own_last_run(
        scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery) -> None:
    """One batch may answer ``is_due`` once per (schedule, last run): entries with the same crontab but
    another last run must still get their own answer."""
    hourly = {"task": "tasks.cron", "crontab": {"minute": "0"}}
    last_runs = {"ran-11-30": T0 - 1800, "ran-12-00": T0, "also-11-30": T0 - 1800, "ran-11-00": T0 - 3600}
    for name, last in last_runs.items():
        put(store, name, dict(hourly, args=[name]))
        store.client.hset(store.keys.total_run_count, name, 1)
        store.client.hset(store.keys.last_run_at, name, datetime.fromtimestamp(last, timezone.utc).isoformat())
    scheduler.tick(now=T0 + 1)
    assert sorted(m.args[0] for m in sent(broker, app)) == ["also-11-30", "ran-11-00", "ran-11-30"]
    assert {name: store.run_state(name)[0] for name in last_runs} == {
        "ran-11-30": 2, "ran-12-00": 1, "also-11-30": 2, "ran-11-00": 2}
    assert all(store.due_score(name) == pytest.approx(T0 + 3600) for name in last_runs)


def test_crontab_per_entry_timezone(scheduler: RedisScheduler, store: RedisStore) -> None:
    put(store, "ny", {"task": "t", "crontab": {"minute": 0, "hour": 9, "timezone": "America/New_York"}})
    scheduler.tick(now=T0)  # 12:00 UTC on 2 March = 07:00 in New York (EST)
    assert store.due_score("ny") == pytest.approx(T0 + 2 * 3600)


def test_disabled_entry_never_runs_until_enabled(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis,
                                                 app: Celery) -> None:
    put(store, "off", dict(EVERY_10S, enabled=False))
    scheduler.tick(now=T0)
    scheduler.tick(now=T0 + 100)
    assert sent(broker, app) == [] and store.due_score("off") == math.inf
    put(store, "off", dict(EVERY_10S, enabled=True), score=None)
    store.runs.reconcile_step(100)
    scheduler.tick(now=T0 + 200)
    scheduler.tick(now=T0 + 210)
    assert len(sent(broker, app)) == 1


def test_run_now_dispatches_at_once_and_counts(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis,
                                               app: Celery) -> None:
    put(store, "add", EVERY_10S)
    scheduler.tick(now=T0)
    store.run_now_names(["add"])
    scheduler.tick(now=T0 + 1)
    assert len(sent(broker, app)) == 1
    assert store.run_state("add")[0] == 1
    assert store.due_score("add") == pytest.approx(T0 + 11)


def test_run_now_runs_a_disabled_entry_once(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis,
                                             app: Celery) -> None:
    put(store, "off", dict(EVERY_10S, enabled=False))
    scheduler.tick(now=T0)
    store.run_now_names(["off"])
    scheduler.tick(now=T0 + 1)
    scheduler.tick(now=T0 + 100)
    assert len(sent(broker, app)) == 1
    assert store.run_state("off")[0] == 1 and store.due_score("off") == math.inf


@pytest.mark.parametrize(
    ("extra", "runs"),
    [({"one_off": True}, 1), ({"max_run_count": 3}, 3), ({"expires": datetime.fromtimestamp(T0 + 35, timezone.utc).isoformat()}, 3)],
)
def test_entries_that_finish(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery,
                             extra: dict[str, Any], runs: int) -> None:
    put(store, "e", dict(EVERY_10S, **extra))
    for step in range(0, 100, 10):
        scheduler.tick(now=T0 + step)
    assert len(sent(broker, app)) == runs
    assert store.due_score("e") == math.inf
    assert store.run_state("e")[0] == runs


def test_clocked_runs_once_at_its_time(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery) -> None:
    at = datetime.fromtimestamp(T0 + 30, timezone.utc).isoformat()
    put(store, "once", {"task": "tasks.once", "clocked": at})
    scheduler.tick(now=T0)
    assert store.due_score("once") == pytest.approx(T0 + 30)
    scheduler.tick(now=T0 + 30)
    scheduler.tick(now=T0 + 60)
    assert [m.task for m in sent(broker, app)] == ["tasks.once"]
    assert store.due_score("once") == math.inf


def test_start_time_holds_an_entry_back(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery) -> None:
    start = datetime.fromtimestamp(T0 + 100, timezone.utc).isoformat()
    put(store, "later", dict(EVERY_10S, start_time=start))
    scheduler.tick(now=T0)
    assert store.due_score("later") == pytest.approx(T0 + 100)
    scheduler.tick(now=T0 + 100)
    assert len(sent(broker, app)) == 1


def test_message_options_are_published_as_celery_publishes_them(scheduler: RedisScheduler, store: RedisStore,
                                                                 broker: redis.Redis, app: Celery) -> None:
    queue = f"{app.conf.task_default_queue}-special"
    put(store, "routed", dict(EVERY_10S, kwargs={"x": 1}, options={"queue": queue, "priority": 5, "headers": {"tenant": "acme"}}))
    scheduler.tick(now=T0)
    scheduler.tick(now=T0 + 10)
    assert sent(broker, app) == []
    (msg,) = drain_queue(broker, queue)
    assert msg.kwargs == {"x": 1}
    assert msg.headers["tenant"] == "acme" and msg.headers["celery_beat_task"] is True
    assert msg.properties["priority"] == 5
    assert msg.properties["delivery_info"]["routing_key"] == queue


def test_bad_entries_are_quarantined_and_others_keep_running(scheduler: RedisScheduler, store: RedisStore,
                                                              broker: redis.Redis, app: Celery,
                                                              caplog: pytest.LogCaptureFixture) -> None:
    put(store, "good", EVERY_10S)
    put(store, "broken-json", '{"task": "t", "interval": ')
    put(store, "no-task", {"interval": {"every": 1}})
    put(store, "two-kinds", {"task": "t", "interval": {"every": 1}, "crontab": {"minute": "*"}})
    put(store, "bad-period", {"task": "t", "interval": {"every": 1, "period": "fortnights"}})
    put(store, "bad-tz", {"task": "t", "crontab": {"minute": "0", "timezone": "Nowhere/Special"}})
    put(store, "bad-type", {"task": "t", "interval": {"every": 1}, "args": "1, 2"})
    scheduler.tick(now=T0)
    scheduler.tick(now=T0 + 10)
    assert [m.task for m in sent(broker, app)] == ["tasks.add"]
    reasons = {k.decode(): v.decode() for k, v in store.client.hgetall(store.keys.invalid).items()}
    assert set(reasons) == {"broken-json", "no-task", "two-kinds", "bad-period", "bad-tz", "bad-type"}
    assert "not valid JSON" in reasons["broken-json"]
    assert "field 'task'" in reasons["no-task"]
    assert "field 'schedule'" in reasons["two-kinds"]
    assert "field 'interval.period'" in reasons["bad-period"]
    assert "field 'crontab.timezone'" in reasons["bad-tz"]
    assert "field 'args'" in reasons["bad-type"]
    assert all(reasons[n].startswith(f"entry {n!r}") for n in reasons)
    assert store.count() == 7  # nothing deleted
    logged = [r.getMessage() for r in caplog.records if "quarantined" in r.getMessage()]
    assert len(logged) == 6  # once each, not once per tick
    put(store, "bad-period", dict(EVERY_10S, task="tasks.fixed"), score=None)
    store.runs.reconcile_step(1000)
    scheduler.tick(now=T0 + 20)
    scheduler.tick(now=T0 + 30)
    assert "bad-period" not in {k.decode() for k in store.client.hkeys(store.keys.invalid)}
    assert "tasks.fixed" in [m.task for m in sent(broker, app)]


def test_lazy_instance_does_no_io() -> None:
    app = Celery("lazy", set_as_current=False)
    app.conf.redis_scheduler_url = "redis://:s3cret@127.0.0.1:1/0"  # nothing listens on port 1
    sched = RedisScheduler(app, lazy=True)
    assert sched.store is None
    assert "s3cret" not in sched.info and "****" in sched.info and "{tasks:meta}" in sched.info


def test_redis_outage_does_not_raise(caplog: pytest.LogCaptureFixture) -> None:
    app = Celery("down", set_as_current=False)
    app.conf.update(redis_scheduler_url="redis://127.0.0.1:1/0", result_expires=None)
    sched = RedisScheduler(app)
    delays = [sched.tick() for _ in range(4)]
    assert delays == sorted(delays) and delays[0] > 0
    assert any("Redis unavailable" in r.getMessage() for r in caplog.records)


