"""Catch-up after an outage: the modes and the window (pure), the commit of let-go runs, beat in-process, and a real
beat whose schedule Redis was stopped."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from celery.schedules import crontab, schedule

from celerybeatredis.delivery.sending import SCHEDULED
from celerybeatredis.policies.catchup import catch_up, due_times
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.history import parse as parse_history
from celerybeatredis.storage.redis_store import RedisStore

from ..support.decider import Decider, claimed, short
from ..support.helpers import T0, put, sent
from ..support.processes import CeleryProcess, drain_queue, wait_until, write_app
from ..support.redis_server import RedisServer

NOW = datetime.fromtimestamp(T0, timezone.utc)
EVERY_60S: dict[str, Any] = {"task": "tasks.add", "interval": {"every": 60, "period": "seconds"}}


def minutely() -> schedule:
    return schedule(timedelta(seconds=60), nowfun=lambda: NOW)


def at(seconds: float) -> datetime:
    return NOW + timedelta(seconds=seconds)


# --- pure: the due times and the modes -----------------------------------------------------


def test_an_interval_s_missed_times_follow_its_last_run() -> None:
    times, count = due_times(minutely(), at(-605), at(-605), NOW, 1000)
    assert count == 10 and times == [at(-605 + 60 * k) for k in range(1, 11)]
    newest, count = due_times(minutely(), at(-605), at(-200), NOW, 2)
    assert count == 4 and newest == [at(-65), at(-5)]


def test_a_crontab_s_missed_times_are_stepped_through() -> None:
    hourly = crontab(minute=0, nowfun=lambda: NOW)
    times, count = due_times(hourly, at(-5 * 3600 + 60), at(-5 * 3600 + 60), NOW, 1000)  # 07:01 to 12:00
    assert count == 5 and [t.timestamp() for t in times] == [T0 - h * 3600 for h in range(4, -1, -1)]


@pytest.mark.parametrize(("mode", "window", "now", "expected"), [
    ("latest", None, 5, (0, False, 0, 0)),       # Celery's rule: one run, the newest
    ("latest", 120, 5, (0, False, 8, 0)),        # eight older than the window skipped, counted
    ("all", None, 5, (-540, True, 0, 0)),        # the oldest first, more to come
    ("all", 120, 5, (-60, True, 8, 0)),          # the oldest within the window
    ("none", None, 5, (0, False, 0, 9)),         # the newest is on time (5 s late, 55 s to the next): sent alone
    ("none", None, 40, (None, False, 0, 10)),    # 40 s late, 20 s to the next: missed, nothing sent
    ("latest", 30, 40, (None, False, 10, 0)),    # every missed run older than the window
])
def test_the_catchup_modes(mode: str, window: float | None, now: float, expected: tuple[Any, ...]) -> None:
    clock = at(now)
    sched = schedule(timedelta(seconds=60), nowfun=lambda: clock)
    caught = catch_up(sched, at(-600), clock, mode, window)
    send = None if caught.send is None else (caught.send - NOW).total_seconds()
    assert caught.newest == at(0)
    assert (send, caught.more, caught.too_old, caught.not_sent) == expected


def test_a_run_due_exactly_the_window_ago_is_caught_up_and_one_a_microsecond_older_is_not() -> None:
    """The window is inclusive, to the microsecond: due times are compared exactly, not rounded."""
    tick = timedelta(microseconds=1)
    on_the_edge = catch_up(minutely(), at(-600), NOW, "all", 540)  # missed runs due at -540, -480, ..., 0
    assert (on_the_edge.send, on_the_edge.more, on_the_edge.too_old, on_the_edge.not_sent) == (at(-540), True, 0, 0)
    older = catch_up(minutely(), at(-600) - tick, NOW, "all", 540)  # each due a microsecond earlier
    assert (older.send, older.more, older.too_old, older.not_sent) == (at(-480) - tick, True, 1, 0)


# --- the decision --------------------------------------------------------------------------


def test_all_sends_the_oldest_missed_run_with_its_due_time_then_is_due_again_at_once() -> None:
    doc = dict(EVERY_60S, catchup="all")
    decision = Decider().pure(claimed(doc, score=T0 - 540, count=4, last=T0 - 600, stored_digest=short(doc)), T0 + 5)
    assert decision.outcome == "run" and decision.run is not None
    assert decision.run.scheduled_at == decision.plan.run_at == at(-540).isoformat()
    assert decision.plan.score == T0 + 5  # due again at once: the next missed run
    last = Decider().pure(claimed(doc, score=T0 + 5, count=13, last=T0 - 60, stored_digest=short(doc)), T0 + 5)
    assert last.run is not None and last.run.scheduled_at == at(0).isoformat() and last.plan.score == T0 + 60


def test_none_lets_late_runs_go_without_a_run_and_records_them() -> None:
    doc = dict(EVERY_60S, catchup="none")
    entry = claimed(doc, score=T0, count=4, last=T0 - 600, stored_digest=short(doc))
    decision = Decider().pure(entry, T0 + 40)
    assert (decision.outcome, decision.run, decision.plan.ran) == ("missed", None, False)
    assert decision.plan.run_at == at(0).isoformat() and decision.plan.score == T0 + 60  # on from the newest due time


def test_an_entry_without_catchup_fields_keeps_celery_s_rule() -> None:
    decision = Decider().pure(claimed(EVERY_60S, score=T0, count=4, last=T0 - 600, stored_digest=short(EVERY_60S)), T0 + 40)
    assert decision.outcome == "run" and decision.run is not None and decision.run.scheduled_at == ""
    assert decision.plan.run_at == at(40).isoformat() and decision.plan.score == T0 + 100


@pytest.mark.parametrize(("doc", "field"), [
    (dict(EVERY_60S, catchup="sometimes"), "catchup"), (dict(EVERY_60S, catchup=1), "catchup"),
    (dict(EVERY_60S, catchup_window=-1), "catchup_window"), (dict(EVERY_60S, catchup_window="1h"), "catchup_window"),
])
def test_a_bad_catchup_value_quarantines_the_entry_naming_the_field(doc: dict[str, Any], field: str) -> None:
    decision = Decider().planned(claimed(doc, last=T0 - 10), T0)
    assert decision.outcome == "quarantined" and f"field '{field}'" in decision.plan.invalid_reason


# --- beat, in-process ----------------------------------------------------------------------


def test_beat_catches_up_each_missed_run_in_order_marked_with_its_time(app: Celery, store: RedisStore,
                                                                         broker: redis.Redis) -> None:
    put(store, "e", dict(EVERY_60S, catchup="all", catchup_window=150))
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0 - 60)
        sched.tick(now=T0)
        assert len(sent(broker, app)) == 1  # ran at T0
        for _ in range(5):  # back after 5 minutes: each tick sends the next missed run
            sched.tick(now=T0 + 305)
        times = [m.headers.get(SCHEDULED) for m in sent(broker, app)]
    finally:
        sched.close()
    assert times == [at(180).isoformat(), at(240).isoformat(), at(300).isoformat()]  # 60 and 120: older than 150 s
    history = parse_history(store.keys.tag, "e", store.client.hget(store.keys.history, "e"))
    assert (history.sent, history.skipped) == (4, 2)
    assert "skipped: missed, older than catchup_window" in [r.outcome for r in history.runs]
    assert store.client.zscore(store.keys.due, "e") == T0 + 360


def test_beat_lets_missed_runs_go_with_none_and_counts_them(app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    put(store, "e", dict(EVERY_60S, catchup="none"))
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0 - 60)
        sched.tick(now=T0)
        sched.tick(now=T0 + 600 + 45)  # back after 10 minutes, 45 s after a due time: nothing sent
        assert len(sent(broker, app)) == 1
        assert int(store.client.hget(store.keys.total_run_count, "e")) == 1  # type: ignore[arg-type]
        sched.tick(now=T0 + 660)  # the next due time runs as usual
        assert len(sent(broker, app)) == 1
    finally:
        sched.close()
    history = parse_history(store.keys.tag, "e", store.client.hget(store.keys.history, "e"))
    assert (history.sent, history.skipped) == (2, 10)


# --- a real beat, its schedule Redis stopped -----------------------------------------------


@pytest.fixture
def restartable() -> Iterator[RedisServer]:
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always").start()
    yield server
    server.cleanup()


@pytest.mark.e2e
@pytest.mark.slow
def test_catch_up_after_the_schedule_redis_was_stopped(tmp_path: Path, redis_url: str, restartable: RedisServer,
                                                       prefix: str) -> None:
    queue = f"q-{prefix}"
    write_app(tmp_path, f"{redis_url}/1", f"{restartable.url}/0", prefix, extra=f"app.conf.task_default_queue = {queue!r}\n")
    client = redis.Redis.from_url(f"{restartable.url}/0")
    store = RedisStore(client, prefix)
    every_2s = {"interval": {"every": 2, "period": "seconds"}}
    put(store, "all", {"task": "tasks.all", **every_2s, "catchup": "all"})
    put(store, "latest", {"task": "tasks.latest", **every_2s})
    broker = redis.Redis.from_url(f"{redis_url}/1")
    got: list[Any] = []

    def arrived(task: str) -> list[Any]:
        got.extend(drain_queue(broker, queue))
        return [m for m in got if m.task == task]

    beat = CeleryProcess.beat(tmp_path)
    try:
        wait_until(lambda: arrived("tasks.all") and arrived("tasks.latest"), timeout=60, what="a run of each entry")
        restartable.stop()
        stopped = time.time()
        wait_until(lambda: "Redis unavailable" in beat.output(), timeout=30, what="beat to log the outage")
        wait_until(lambda: time.time() - stopped >= 9, timeout=30, what="nine seconds of outage")
        before_all, before_latest = len(arrived("tasks.all")), len(arrived("tasks.latest"))
        restartable.start()
        wait_until(lambda: "Redis is back" in beat.output(), timeout=60, what="beat to reach Redis again")
        # "all" sends every run the outage missed (about four), each marked with its due time, oldest first.

        def caught_up() -> list[Any]:
            marked = [m for m in arrived("tasks.all")[before_all:] if SCHEDULED in m.headers]
            return marked if len(marked) >= 3 else []

        caught = wait_until(caught_up, timeout=30, what="the missed runs of 'all'")
        due = [datetime.fromisoformat(m.headers[SCHEDULED]).timestamp() for m in caught]
        assert due == sorted(due) and all(b - a == pytest.approx(2) for a, b in zip(due, due[1:]))
        assert due[0] >= stopped - 2
        # The plain entry (Celery's rule) sends one run for the whole outage.
        wait_until(lambda: len(arrived("tasks.latest")) > before_latest, timeout=30, what="the plain entry to run")
        assert not any(SCHEDULED in m.headers for m in arrived("tasks.latest"))
    finally:
        code = beat.stop()
    assert code == 0, beat.output()
    client.close()
    broker.close()


def test_history_counts_runs_let_go_in_one_commit(store: RedisStore) -> None:
    from celerybeatredis.storage.history import record, stamp
    from celerybeatredis.storage.wire import Plan

    put(store, "e", EVERY_60S, score=T0)
    claim = store.runs.claim(10, 30, T0)
    plan = Plan("e", claim.lease, T0 + 60, False, at(0).isoformat(), history=record("w", stamp(T0), 5) + "+41")
    assert store.runs.commit([plan], history=20) == [True]
    history = parse_history(store.keys.tag, "e", store.client.hget(store.keys.history, "e"))
    assert (history.sent, history.skipped, len(history.runs)) == (0, 42, 1)
    assert store.client.hget(store.keys.last_run_at, "e") == at(0).isoformat().encode()
    assert store.client.hget(store.keys.total_run_count, "e") is None
    assert json.loads(store.client.hget(store.keys.schedule, "e"))["task"] == "tasks.add"  # type: ignore[arg-type]


def test_the_fields_are_set_and_shown_by_the_command_line(cli: Any, api: Any) -> None:
    cli.ok("add", "e", "--task", "tasks.add", "--every", "1m", "--catchup", "all", "--catchup-window", "3600")
    assert api.get("e").definition["catchup_window"] == 3600
    shown = cli.ok("show", "e")
    assert "every minute, catch up all" in shown and "catch-up:  all" in shown and "window:    3600" in shown
    assert "field 'catchup_window'" in cli.fails("edit", "e", "--catchup-window", "-1")
    assert "field 'catchup'" in cli.fails("edit", "e", "--catchup", "some")
