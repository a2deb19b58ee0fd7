"""The scheduler's tick, driven at chosen times, publishing to a real Redis broker."""

from __future__ import annotations

import json
import math
import os
import signal
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import redis
from celery import Celery
from celery.schedules import crontab

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.settings import Settings
from celerybeatredis.storage.redis_store import RedisStore

from .support.helpers import EVERY_10S_DOC as EVERY_10S
from .support.helpers import T0, put, sent, sigterm_exits
from .support.processes import drain_queue


@pytest.fixture
def scheduler(app: Celery, store: RedisStore) -> Iterator[RedisScheduler]:
    sched = RedisScheduler(app)
    yield sched
    sched.close()








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


def test_a_tick_takes_full_batches_until_one_is_not_full_then_sleeps_until_the_next_due(
        app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    app.conf.redis_scheduler_batch_size = 5
    sched = RedisScheduler(app)
    sched.max_interval = 60.0  # time enough for every batch, however slow the machine
    for i in range(12):
        put(store, f"e{i}", EVERY_10S)
    assert sched.tick(now=T0) == 10.0  # batches of 5, 5 and 2 in one tick; the next run is 10 s away
    assert store.client.zcount(store.keys.due, 0, 0) == 0
    assert sched.tick(now=T0 + 9.5) == pytest.approx(0.5)
    sched.close()


def test_a_stop_signal_during_publishing_lands_after_the_whole_committed_batch_is_sent(
        scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM arriving while a committed batch is being published (celery beat's handler raises
    SystemExit) stops beat only after every committed run of the batch reached the broker."""
    names = [f"s{i:02d}" for i in range(30)]
    for name in names:
        put(store, name, dict(EVERY_10S, args=[name]))
    scheduler.tick(now=T0)  # first seen: due at T0 + 10
    real_send = app.send_task
    signalled: list[int] = []

    def send_and_signal(*args: Any, **kwargs: Any) -> Any:
        if not signalled:  # the first publish of the batch: the stop request arrives now
            signalled.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_send(*args, **kwargs)

    monkeypatch.setattr(app, "send_task", send_and_signal)  # the batch's first message is built by Celery
    # Another thread alive, as in a worker with an embedded beat: the kernel may hand it the signal.
    idle = threading.Event()
    other = threading.Thread(target=idle.wait, daemon=True)
    other.start()
    try:
        with sigterm_exits(), pytest.raises(SystemExit):
            scheduler.tick(now=T0 + 10)
    finally:
        idle.set()
        other.join()
    assert signalled == [1]
    published = sorted(m.args[0] for m in sent(broker, app))
    assert published == names
    assert all(store.run_state(n)[0] == 1 for n in names)


@pytest.mark.parametrize("claim_ahead", [False, True], ids=["batch", "streamed"])
def test_a_stop_signal_between_claim_and_commit_lands_after_the_batch_leaving_nothing_reserved(
        app: Celery, store: RedisStore, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch, claim_ahead: bool) -> None:
    """SIGTERM while beat decides a batch it claimed: the batch is committed and sent, then beat stops."""
    names = [f"s{i:02d}" for i in range(30)]
    for name in names:
        put(store, name, dict(EVERY_10S, args=[name]))
    app.conf.update(redis_scheduler_batch_size=10, redis_scheduler_claim_ahead=claim_ahead)
    sched = RedisScheduler(app)
    sched.tick(now=T0)  # first seen: due at T0 + 10
    real_plan = sched.planner.plan
    signalled: list[int] = []

    def plan_and_signal(claim: Any) -> Any:
        if not signalled:  # deciding the first batch: the stop request arrives now
            signalled.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_plan(claim)

    monkeypatch.setattr(sched.planner, "plan", plan_and_signal)
    try:
        with sigterm_exits(), pytest.raises(SystemExit):
            sched.tick(now=T0 + 10)
    finally:
        sched.close()
    sent_now = sorted(m.args[0] for m in sent(broker, app))
    assert sent_now and len(sent_now) % 10 == 0 and len(sent_now) < len(names)
    assert all(store.run_state(n)[0] == 1 for n in sent_now)
    leased = store.client.zrangebyscore(store.keys.due, f"({T0 + 20}", T0 + 60)  # after the next run at T0 + 20
    assert leased == []
    assert sorted(n.decode() for n in store.client.zrangebyscore(store.keys.due, T0 + 20, T0 + 20)) == sent_now


def test_static_entries_sync(app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    app.conf.beat_schedule = {
        "static-a": {"task": "tasks.a", "schedule": timedelta(seconds=10)},
        "static-b": {"task": "tasks.b", "schedule": crontab(minute=0), "args": (1,)},
        "clash": {"task": "tasks.config", "schedule": 5.0},
    }
    put(store, "dynamic", EVERY_10S)
    put(store, "clash", dict(EVERY_10S, task="tasks.dynamic"))
    first = RedisScheduler(app)
    first.tick(now=T0)
    first.tick(now=T0 + 10)
    first.close()
    assert store.run_state("static-a")[0] == 1
    assert json.loads(store.get_raw("clash") or b"")["task"] == "tasks.dynamic"  # a dynamic entry is never overwritten
    app.conf.beat_schedule = {"static-a": {"task": "tasks.a", "schedule": timedelta(seconds=10)}}
    second = RedisScheduler(app)
    second.close()
    assert store.get_raw("static-b") is None  # left the config: removed
    assert store.run_state("static-a")[0] == 1  # run state kept across restarts
    assert store.get_raw("dynamic") is not None and store.get_raw("clash") is not None
    assert store.client.smembers(store.keys.statics) == {b"static-a"}


def test_invalid_config_entry_is_reported_and_not_removed(app: Celery, store: RedisStore, caplog: pytest.LogCaptureFixture) -> None:
    app.conf.beat_schedule = {"s": {"task": "tasks.s", "schedule": 10.0}}
    RedisScheduler(app).close()
    app.conf.beat_schedule = {"s": {"task": "tasks.s", "schedule": object()}}
    RedisScheduler(app).close()
    assert store.get_raw("s") is not None
    assert any("entry 's'" in r.getMessage() and "schedule" in r.getMessage() for r in caplog.records)


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


def test_settings_old_names_defaults_and_masking() -> None:
    app = Celery("s", set_as_current=False)
    app.conf.update(CELERY_REDIS_SCHEDULER_URL="redis://:pw@h:1/2", CELERY_REDIS_SCHEDULER_KEY_PREFIX="old:prefix:")
    settings = Settings.from_app(app)
    assert (settings.url, settings.tag, settings.safe_url) == ("redis://:pw@h:1/2", "old:prefix", "redis://:****@h:1/2")
    app.conf.redis_scheduler_url = "redis://new/3"
    assert Settings.from_app(app).url == "redis://new/3"
    plain = Celery("p", set_as_current=False, broker="redis://broker:6379/4")
    assert Settings.from_app(plain).url == "redis://broker:6379/4"
    assert Settings.from_app(plain).key_prefix == "tasks:meta:"
    amqp = Celery("a", set_as_current=False, broker="amqp://guest@localhost//")
    assert Settings.from_app(amqp).url == "redis://localhost:6379/0"
    bad = Celery("b", set_as_current=False)
    bad.conf.redis_scheduler_key_prefix = "{x}:"
    with pytest.raises(ValueError, match="redis_scheduler_key_prefix"):
        Settings.from_app(bad)


@pytest.mark.parametrize(("value", "expected"), [
    (None, None), ("auto", None), (" Auto ", None), (True, True), ("yes", True), ("1", True), (False, False), ("off", False),
])
def test_claim_ahead_is_auto_unless_set_to_a_flag(value: object, expected: bool | None) -> None:
    app = Celery("c", set_as_current=False)
    app.conf.redis_scheduler_claim_ahead = value
    assert Settings.from_app(app).claim_ahead is expected


@pytest.mark.parametrize("value", ["sometimes", 2, ["auto"]])
def test_a_claim_ahead_that_is_no_flag_is_an_error_naming_the_setting(value: object) -> None:
    app = Celery("c", set_as_current=False)
    app.conf.redis_scheduler_claim_ahead = value
    with pytest.raises(ValueError, match=r"redis_scheduler_claim_ahead must be true, false or 'auto'"):
        Settings.from_app(app)


def test_digest_is_short_and_keeps_the_anchor_only_until_there_is_a_last_run(
        scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery) -> None:
    from celerybeatredis.definitions.codec import digest

    put(store, "add", EVERY_10S)
    sha = digest(store.get_raw("add") or b"")
    scheduler.tick(now=T0)
    assert store.client.hget(store.keys.digest, "add") == f"{sha[:12]} {T0:.6f}".encode()
    scheduler.tick(now=T0 + 10)  # the first run: a failed publish would need the anchor again
    assert len(sent(broker, app)) == 1
    assert store.client.hget(store.keys.digest, "add") == f"{sha[:12]} {T0:.6f}".encode()
    scheduler.tick(now=T0 + 20)  # runs are timed from last_run_at from now on
    assert len(sent(broker, app)) == 1
    assert store.client.hget(store.keys.digest, "add") == sha[:12].encode()
    scheduler.tick(now=T0 + 30)
    assert len(sent(broker, app)) == 1 and store.due_score("add") == pytest.approx(T0 + 40)


def test_a_full_sha1_digest_of_older_data_is_honoured_and_shortened(
        scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery) -> None:
    from celerybeatredis.definitions.codec import digest

    put(store, "add", EVERY_10S, score=T0 + 3)
    sha = digest(store.get_raw("add") or b"")
    store.client.hset(store.keys.digest, "add", f"{sha} {T0 - 7:.6f}")  # first seen 7 s before T0, never ran
    scheduler.tick(now=T0 + 3)  # due at the anchor + 10 s: the stored anchor is kept, not reset to now
    assert len(sent(broker, app)) == 1
    assert store.client.hget(store.keys.digest, "add") == f"{sha[:12]} {T0 - 7:.6f}".encode()


def test_a_never_run_entry_whose_publish_failed_is_retried_from_its_anchor(
        app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    put(store, "add", EVERY_10S)
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0)
        failing = sched.apply_async

        def broker_down(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("broker down")

        sched.apply_async = broker_down  # type: ignore[method-assign]
        sched.tick(now=T0 + 10)
        assert sent(broker, app) == [] and store.run_state("add") == (0, None)
        sched.apply_async = failing  # type: ignore[method-assign]
        sched.tick(now=T0 + 10 + sched.settings.publish_retry_seconds)
        assert len(sent(broker, app)) == 1
    finally:
        sched.close()
