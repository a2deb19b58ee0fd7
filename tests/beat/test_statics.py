"""``beat_schedule`` kept in Redis (``beat/statics.py``): synced at start, removed when it leaves the config, never
written over a dynamic entry."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
import redis
from celery import Celery
from celery.schedules import crontab

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from ..support.helpers import EVERY_10S_DOC as EVERY_10S
from ..support.helpers import T0, put


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
