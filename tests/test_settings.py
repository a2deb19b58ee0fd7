"""The settings tables of docs/settings.rst: every documented default is the one in force, and each setting does what it says.

The defaults are read from docs/settings.rst itself, so the table and the code cannot
drift apart; each behaviour test sets a value and checks its effect on a real
Redis through the scheduler's own tick.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from celery import Celery

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.settings import Settings
from celerybeatredis.storage.redis_store import RedisStore

from .support.helpers import T0
from .support.redis_server import RedisServer

SETTINGS_PAGE = Path(__file__).resolve().parent.parent / "docs" / "settings.rst"

#: A settings-table row: the setting in the first column, its default (in ``...``) in the second.
ROW = re.compile(r"^``(redis_scheduler_\w+|beat_max_loop_interval)``\s+``([^`]*)``", re.MULTILINE)

#: The documented default of each setting, as the value :class:`Settings` holds (or the scheduler, for beat's own).
EXPECTED: dict[str, tuple[str, Any]] = {
    "redis_scheduler_key_prefix": ("key_prefix", "tasks:meta:"),
    "redis_scheduler_batch_size": ("batch_size", 1000),
    "redis_scheduler_lease_seconds": ("lease_seconds", 3),
    "redis_scheduler_reconcile_batch": ("reconcile_batch", 2000),
    "redis_scheduler_reconcile_interval": ("reconcile_interval", 1),
    "redis_scheduler_publish_retry_seconds": ("publish_retry_seconds", 5),
    "redis_scheduler_redis_options": ("redis_options", {}),
    "redis_scheduler_claim_ahead": ("claim_ahead", None),  # "auto"
    "redis_scheduler_cluster": ("cluster", False),
    "redis_scheduler_shards": ("shards", 1),
    "redis_scheduler_wait_replicas": ("wait_replicas", 0),
    "redis_scheduler_wait_timeout": ("wait_timeout", 1),
    "redis_scheduler_history": ("history", 10),
    "redis_scheduler_delivery": ("delivery", "auto"),
    "beat_max_loop_interval": ("max_interval", 1),
}


def documented_defaults() -> dict[str, str]:
    """Every ``setting -> default`` row of docs/settings.rst's settings tables (the URL's default is prose, not a value)."""
    return dict(ROW.findall(SETTINGS_PAGE.read_text()))


def literal(text: str) -> Any:
    """A default as written in the table: a number, ``{}``, ``True``/``False``, ``auto`` or a string."""
    if text in ("True", "False"):
        return text == "True"
    if text == "auto":
        return None
    try:
        return json.loads(text)
    except ValueError:
        return text


def test_every_documented_default_is_the_default_in_force() -> None:
    documented = documented_defaults()
    assert documented.pop("redis_scheduler_url") == "broker_url"  # "if it is a redis:// URL, else ...": checked below
    assert set(documented) == set(EXPECTED), "a setting was added to or dropped from docs/settings.rst's tables"
    settings = Settings.from_app(Celery("defaults", set_as_current=False))
    scheduler = RedisScheduler(Celery("defaults", set_as_current=False), lazy=True)
    for name, (attribute, expected) in EXPECTED.items():
        assert literal(documented[name]) == (None if expected == "auto" else expected), name  # "auto" reads as None
        actual = getattr(scheduler if attribute == "max_interval" else settings, attribute)
        assert (actual or {} if attribute == "redis_options" else actual) == expected, name
    assert settings.url == "redis://localhost:6379/0"
    assert settings.task_allowlist == ()  # "Default: no list, any task"
    with_broker = Celery("defaults", set_as_current=False, broker="redis://broker.example:6380/3")
    assert Settings.from_app(with_broker).url == "redis://broker.example:6380/3"  # broker_url if it is redis://


def bare(store: RedisStore, count: int) -> None:
    """``count`` entries written with HSET alone (no ZADD), due every hour: only the reconciler finds them."""
    doc = json.dumps({"task": "tasks.t", "interval": {"every": 3600}})
    pipe = store.client.pipeline(transaction=False)
    for i in range(count):
        pipe.hset(store.keys.schedule, f"r{i:05d}", doc)
    pipe.execute()


def looked(store: RedisStore, count: int) -> None:
    """``count`` entries in the due index, each already due (its first look)."""
    doc = json.dumps({"task": "tasks.t", "interval": {"every": 3600}})
    store.put_raw({f"e{i:05d}": doc for i in range(count)})


def scheduler(app: Celery, **conf: Any) -> RedisScheduler:
    """A scheduler of ``app`` with ``conf`` set, one batch per tick and no claim ahead: each tick shows one step."""
    app.conf.update(redis_scheduler_claim_ahead=False, **conf)
    sched = RedisScheduler(app)
    sched.max_interval = 0.0
    return sched


@pytest.mark.parametrize("batch", [None, 37])
def test_batch_size_is_how_many_entries_one_claim_takes(app: Celery, store: RedisStore, batch: int | None) -> None:
    size = batch or 1000
    looked(store, size + 5)
    sched = scheduler(app, **({} if batch is None else {"redis_scheduler_batch_size": batch}))
    try:
        assert sched.tick(now=T0) == 0.0  # a full batch: go on at once
        assert store.client.zcount(store.keys.due, 0, 0) == 5
        sched.tick(now=T0)
        assert store.client.zcount(store.keys.due, 0, 0) == 0
    finally:
        sched.close()


@pytest.mark.parametrize("lease", [None, 7.5])
def test_lease_seconds_is_how_long_a_claim_left_uncommitted_holds_its_entries(
        app: Celery, store: RedisStore, monkeypatch: pytest.MonkeyPatch, lease: float | None) -> None:
    """A tick that fails between claim and commit leaves its batch reserved for exactly the lease."""
    looked(store, 4)
    sched = scheduler(app, **({} if lease is None else {"redis_scheduler_lease_seconds": lease}))

    def fail(*_args: Any) -> Any:
        raise RuntimeError("fails between claim and commit")

    monkeypatch.setattr(sched.planner, "plan", fail)
    try:
        sched.tick(now=T0)
    finally:
        sched.close()
    scores = {score for _, score in store.client.zrange(store.keys.due, 0, -1, withscores=True)}
    assert scores == {T0 + (lease or 3)}


@pytest.mark.parametrize("retry", [None, 2.5])
def test_publish_retry_seconds_is_when_a_run_the_broker_refused_is_due_again(
        app: Celery, store: RedisStore, retry: float | None) -> None:
    """A broker of its own, stopped once beat is connected to it: the run is put back, due after the retry delay."""
    doc = json.dumps({"task": "tasks.t", "interval": {"every": 10}})
    store.put_raw({"r": doc})
    server = RedisServer().start()
    app.conf.update(broker_url=f"{server.url}/1", broker_connection_timeout=1)
    sched = scheduler(app, **({} if retry is None else {"redis_scheduler_publish_retry_seconds": retry}))
    try:
        sched.tick(now=T0)  # first look
        sched.connection.ensure_connection()
        server.stop()
        assert sched.tick(now=T0 + 10) == (retry or 5)
    finally:
        sched.close()
        server.cleanup()
    assert store.due_score("r") == T0 + 10 + (retry or 5)
    assert store.run_state("r")[0] == 0  # put back uncounted


@pytest.mark.parametrize("step", [None, 120])
def test_reconcile_batch_is_how_many_fields_one_reconciler_step_reads(app: Celery, store: RedisStore,
                                                                     step: int | None) -> None:
    """HSCAN's COUNT is a hint: a step reads that many fields, give or take a hash bucket."""
    fields = step or 2000
    bare(store, fields + 1500)
    sched = scheduler(app, **({} if step is None else {"redis_scheduler_reconcile_batch": step}))
    try:
        sched.tick(now=T0)
    finally:
        sched.close()
    found = store.client.zcard(store.keys.due)
    assert fields <= found < fields + 100, (fields, found)


def test_reconcile_interval_is_the_time_between_two_reconciler_steps(app: Celery, store: RedisStore) -> None:
    bare(store, 3000)
    slow = scheduler(app, redis_scheduler_reconcile_batch=100, redis_scheduler_reconcile_interval=3600)
    try:
        slow.tick(now=T0)
        first = store.client.zcard(store.keys.due)
        slow.tick(now=T0)
        assert store.client.zcard(store.keys.due) == first  # an hour to go before the next step
    finally:
        slow.close()
    fast = scheduler(app, redis_scheduler_reconcile_batch=100, redis_scheduler_reconcile_interval=0.05)
    try:
        fast.tick(now=T0)
        second = store.client.zcard(store.keys.due)
        deadline = time.monotonic() + 0.05
        while time.monotonic() < deadline:  # the step's due time, by the clock it is kept by
            time.sleep(0.01)
        fast.tick(now=T0)
        assert store.client.zcard(store.keys.due) > second > first
    finally:
        fast.close()


# --- how settings are read -------------------------------------------------------------------------------


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
