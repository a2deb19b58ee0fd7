"""Delivery modes: ``exactly-once`` writes each run's message in its commit; ``at-most-once`` publishes after it."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery
from celery.signals import after_task_publish, before_task_publish

from celerybeatredis.delivery.modes import AT_MOST_ONCE, EXACTLY_ONCE
from celerybeatredis.delivery.redis_messages import encode
from celerybeatredis.schedulers import BadSettings, RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.wire import Plan
from celerybeatredis.store import ScheduleStore

from ..support.helpers import EVERY_10S_DOC, T0, assert_fire_identity, entries, first_interval, put, sent


@pytest.fixture
def shared(app: Celery, redis_url: str) -> Celery:
    """``app`` with its broker in the schedule's own database (db 0), the layout ``exactly-once`` needs."""
    app.conf.update(broker_url=f"{redis_url}/0", redis_scheduler_delivery="exactly-once")
    return app


@pytest.fixture
def schedule_db(client: redis.Redis, shared: Celery) -> Iterator[redis.Redis]:
    """The schedule's database, which is the broker's too; this test's queue is emptied afterwards."""
    yield client
    client.delete(*(shared.conf.task_default_queue + s for s in ("", "\x06\x163", "\x06\x166", "\x06\x169")))


def test_exactly_once_writes_each_run_message_in_its_commit(shared: Celery, store: RedisStore, api: ScheduleStore,
                                                            schedule_db: redis.Redis) -> None:
    shared.conf.redis_scheduler_batch_size = 7
    names = entries(store, 30)
    assert first_interval(shared) == EXACTLY_ONCE
    messages = sent(schedule_db, shared)
    assert sorted(m.args[0] for m in messages) == names
    runs = {n: store.run_state(n)[0] for n in names}
    assert set(runs.values()) == {1}
    assert all(m.headers["periodic_task_name"] == m.args[0] for m in messages)
    assert sorted(m.id for m in messages) == sorted(api.history(n).runs[0].task_id for n in names)
    assert_fire_identity(messages, store)


def test_a_commit_sent_again_writes_its_messages_once(shared: Celery, store: RedisStore, schedule_db: redis.Redis) -> None:
    """A commit whose reply was lost is sent again: the runs it already committed are not written twice."""
    queue = shared.conf.task_default_queue
    put(store, "a", EVERY_10S_DOC, score=T0 + 20)
    plan = Plan("a", repr(T0 + 20), T0 + 30, True, "2026-03-02T12:00:10+00:00")
    messages = encode({1: [("lpush", queue, '{"m": 1}')]})
    assert store.runs.commit([plan], 0, messages) == [True]
    assert store.runs.commit([plan], 0, messages) == [True]
    assert schedule_db.lrange(queue, 0, -1) == [b'{"m": 1}']


def test_a_message_for_a_run_that_lost_its_lease_is_not_written(shared: Celery, store: RedisStore,
                                                               schedule_db: redis.Redis) -> None:
    queue = shared.conf.task_default_queue
    put(store, "a", EVERY_10S_DOC, score=T0 + 99)
    plan = Plan("a", repr(T0 + 20), T0 + 30, True, "2026-03-02T12:00:10+00:00")
    assert store.runs.commit([plan], 0, encode({1: [("lpush", queue, "m")]})) == [False]
    assert schedule_db.llen(queue) == 0


def test_a_queue_that_is_not_a_list_stops_the_commit_before_it_writes(shared: Celery, store: RedisStore,
                                                                     schedule_db: redis.Redis) -> None:
    queue = shared.conf.task_default_queue
    schedule_db.set(queue, "not a list")
    put(store, "a", EVERY_10S_DOC, score=T0 + 20)
    plan = Plan("a", repr(T0 + 20), T0 + 30, True, "2026-03-02T12:00:10+00:00")
    with pytest.raises(redis.ResponseError, match=f"WRONGTYPE queue {queue} is a string"):
        store.runs.commit([plan], 0, encode({1: [("lpush", queue, "m")]}))
    assert store.client.zscore(store.keys.due, "a") == T0 + 20
    assert store.run_state("a")[0] == 0


def test_exactly_once_refuses_to_start_when_the_broker_is_another_database(app: Celery, store: RedisStore) -> None:
    app.conf.redis_scheduler_delivery = "exactly-once"
    with pytest.raises(BadSettings, match="redis_scheduler_delivery is exactly-once, but the broker is another "
                                          "Redis database than the schedule's"):
        RedisScheduler(app)


def test_exactly_once_refuses_a_broker_that_is_not_redis(app: Celery, store: RedisStore) -> None:
    app.conf.update(redis_scheduler_delivery="exactly-once", broker_url="memory://")
    with pytest.raises(BadSettings, match="the broker is not a Redis server"):
        RedisScheduler(app)


@pytest.mark.parametrize(("broker_db", "mode"), [(0, EXACTLY_ONCE), (1, AT_MOST_ONCE)])
def test_auto_takes_exactly_once_only_where_the_broker_shares_the_schedule_database(
        app: Celery, redis_url: str, store: RedisStore, broker_db: int, mode: str) -> None:
    app.conf.update(broker_url=f"{redis_url}/{broker_db}", redis_scheduler_delivery="auto")
    sched = RedisScheduler(app)
    try:
        assert sched.publisher.mode == mode
        assert "delivery -> auto" in sched.info
    finally:
        sched.close()


@pytest.mark.parametrize("setting", [None, "auto"])
@pytest.mark.parametrize(("broker_db", "says"), [
    (0, "beat: delivery is exactly-once"),
    (1, "beat: delivery is at-most-once, the strongest this layout allows: exactly-once needs the broker in the "
        "schedule's Redis database, but the broker is another Redis database than the schedule's"),
])
def test_the_mode_auto_chose_is_said_at_info_not_warned_of(app: Celery, redis_url: str, store: RedisStore,
                                                            caplog: pytest.LogCaptureFixture, setting: str | None,
                                                            broker_db: int, says: str) -> None:
    """Not asked for a mode (or asked for auto), beat takes the strongest the layout allows: nothing went wrong."""
    app.conf.broker_url = f"{redis_url}/{broker_db}"
    if setting is not None:
        app.conf.redis_scheduler_delivery = setting
    with caplog.at_level(logging.INFO, logger="celerybeatredis.schedulers"):
        RedisScheduler(app).close()
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any(r.levelno == logging.INFO and r.getMessage().startswith(says) for r in caplog.records), caplog.text


@pytest.mark.parametrize("mode", [AT_MOST_ONCE, EXACTLY_ONCE])
def test_publish_signals_fire_once_per_run_in_every_mode(shared: Celery, store: RedisStore, schedule_db: redis.Redis,
                                                         mode: str) -> None:
    shared.conf.update(redis_scheduler_delivery=mode, redis_scheduler_batch_size=4)
    names = entries(store, 10)
    seen: dict[str, list[Any]] = {"before": [], "after": []}

    def before(headers: dict[str, Any], **_: Any) -> None:
        seen["before"].append(headers["id"])

    def after(headers: dict[str, Any], **_: Any) -> None:
        seen["after"].append(headers["id"])

    before_task_publish.connect(before, weak=False)
    after_task_publish.connect(after, weak=False)
    try:
        first_interval(shared)
    finally:
        before_task_publish.disconnect(before)
        after_task_publish.disconnect(after)
    ids = sorted(m.id for m in sent(schedule_db, shared))
    assert len(ids) == len(names)
    assert sorted(seen["before"]) == ids
    assert sorted(seen["after"]) == ids


def test_the_setting_takes_only_the_modes_there_are(app: Celery) -> None:
    app.conf.redis_scheduler_delivery = "sometimes"
    with pytest.raises(BadSettings, match="redis_scheduler_delivery must be one of auto, at-most-once, at-least-once, exactly-once"):
        RedisScheduler(app)


