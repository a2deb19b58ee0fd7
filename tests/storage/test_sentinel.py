"""The scheduler behind Redis Sentinel: a real primary, replica and sentinel, with passwords, and a failover under beat."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.settings import Settings
from celerybeatredis.storage.redis_store import RedisStore

from ..support.cluster import LocalSentinel
from ..support.helpers import EVERY_10S, T0
from ..support.ledger import FailoverProbe
from ..support.processes import CeleryProcess, drain_queue, write_app

SERVICE = "schedule"
PASSWORD = "data-pw"
SENTINEL_PASSWORD = "sentinel-pw"


@pytest.fixture(scope="module")
def sentinel() -> Iterator[LocalSentinel]:
    setup = LocalSentinel(SERVICE, password=PASSWORD, sentinel_password=SENTINEL_PASSWORD).start()
    try:
        yield setup
    finally:
        setup.cleanup()


def url(setup: LocalSentinel, db: int = 0) -> str:
    return f"redis+sentinel://:{PASSWORD}@127.0.0.1:{setup.sentinel_port}/{SERVICE}/{db}"


SENTINEL_OPTIONS = {"sentinel_kwargs": {"password": SENTINEL_PASSWORD}}


def test_both_url_forms_reach_the_primary(sentinel: LocalSentinel, prefix: str) -> None:
    one_url = RedisStore.from_url(url(sentinel, db=2), prefix, **SENTINEL_OPTIONS)
    kombu_style = RedisStore.from_url(
        f"sentinel://:{PASSWORD}@127.0.0.1:{sentinel.sentinel_port}/2;sentinel://127.0.0.1:{sentinel.sentinel_port}",
        prefix, master_name=SERVICE, **SENTINEL_OPTIONS)
    one_url.put_raw({"a": EVERY_10S})
    assert kombu_style.get_raw("a") == EVERY_10S.encode()
    with sentinel.data_node(sentinel.primary_port()) as primary:
        primary.execute_command("SELECT", 2)
        assert primary.hexists(one_url.keys.schedule, "a")
    one_url.client.close()
    kombu_style.client.close()


def test_an_app_on_a_sentinel_broker_needs_no_scheduler_url(sentinel: LocalSentinel) -> None:
    app = Celery("s", set_as_current=False)
    app.conf.update(broker_url=f"sentinel://:{PASSWORD}@127.0.0.1:{sentinel.sentinel_port}/3",
                    broker_transport_options={"master_name": SERVICE, "visibility_timeout": 60, **SENTINEL_OPTIONS})
    settings = Settings.from_app(app)
    assert settings.redis_options == {"master_name": SERVICE, **SENTINEL_OPTIONS}
    assert PASSWORD not in settings.safe_url
    store = RedisStore(settings.client(), settings.key_prefix)
    assert store.client.ping()
    store.client.close()


def test_wrong_passwords_are_reported(sentinel: LocalSentinel, prefix: str) -> None:
    no_sentinel_password = RedisStore.from_url(url(sentinel), prefix)
    with pytest.raises(redis.ConnectionError):
        no_sentinel_password.count()
    wrong = RedisStore.from_url(url(sentinel).replace(PASSWORD, "nope"), prefix, **SENTINEL_OPTIONS)
    with pytest.raises(redis.AuthenticationError):
        wrong.count()


def test_missing_service_name_is_a_clear_error(sentinel: LocalSentinel, prefix: str) -> None:
    with pytest.raises(ValueError, match="service name"):
        RedisStore.from_url(f"sentinel://127.0.0.1:{sentinel.sentinel_port}", prefix)


def test_scheduler_ticks_through_the_sentinel(sentinel: LocalSentinel, redis_url: str, prefix: str,
                                              broker: redis.Redis) -> None:
    app = Celery("s", set_as_current=False)
    queue = f"q-{prefix}"
    app.conf.update(broker_url=f"{redis_url}/1", redis_scheduler_url=url(sentinel),
                    redis_scheduler_redis_options=SENTINEL_OPTIONS, redis_scheduler_key_prefix=prefix,
                    beat_schedule={"static": {"task": "tasks.static", "schedule": 10.0}}, result_expires=None,
                    task_default_queue=queue)
    sched = RedisScheduler(app)
    sched.tick(now=T0)
    sched.tick(now=T0 + 10)
    sched.close()
    assert [m.task for m in drain_queue(broker, queue)] == ["tasks.static"]


@pytest.mark.e2e
@pytest.mark.slow
def test_beat_follows_a_sentinel_failover_without_sending_a_run_twice(tmp_path: Path, sentinel: LocalSentinel, redis_url: str, prefix: str,
                                          broker: redis.Redis) -> None:
    queue = f"q-{prefix}"
    write_app(tmp_path, f"{redis_url}/1", url(sentinel), prefix, extra=f"""
        app.conf.update(redis_scheduler_redis_options={SENTINEL_OPTIONS!r}, task_default_queue={queue!r},
                        redis_scheduler_wait_replicas=1)
    """)
    store = RedisStore.from_url(url(sentinel), prefix, **SENTINEL_OPTIONS)
    probe = FailoverProbe(store, broker, queue)
    beat = CeleryProcess.beat(tmp_path)
    try:
        probe.wait_started()
        # The old primary keeps taking writes until the sentinel demotes it, seconds later; those writes are
        # then discarded. Beat notices the new primary within a second, and publishes only commits a replica has.
        sentinel.failover()
        probe.wait_finished(since=time.monotonic())
        assert beat.alive()
    finally:
        code = beat.stop()
    assert code == 0, beat.output()
    assert "sentinel reports a new primary" in beat.output()
    probe.assert_each_run_sent_once(beat.output())
    store.client.close()


def test_a_commit_no_replica_acknowledged_is_undone_not_published(redis_url: str, app: Celery, store: RedisStore,
                                                                  broker: redis.Redis,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    # The suite's server has no replica, so WAIT 1 times out with 0.
    app.conf.update(redis_scheduler_wait_replicas=1, redis_scheduler_wait_timeout=0.05)
    store.put_raw({"add": EVERY_10S})
    sched = RedisScheduler(app)
    sched.tick(now=T0)
    assert sched.tick(now=T0 + 10) == sched.settings.publish_retry_seconds
    sched.close()
    assert drain_queue(broker, app.conf.task_default_queue) == []
    assert store.run_state("add") == (0, None)
    assert store.due_score("add") == pytest.approx(T0 + 10 + sched.settings.publish_retry_seconds)
    assert any("acknowledged by 0 of 1 replicas" in r.getMessage() for r in caplog.records)

    app.conf.redis_scheduler_wait_replicas = 0
    plain = RedisScheduler(app)
    plain.tick(now=T0 + 20)
    plain.close()
    assert [m.task for m in drain_queue(broker, app.conf.task_default_queue)] == ["tasks.add"]


def test_commits_acknowledged_by_the_replica_are_published(sentinel: LocalSentinel, redis_url: str, prefix: str,
                                                         broker: redis.Redis) -> None:
    app = Celery("s", set_as_current=False)
    queue = f"q-{prefix}"
    app.conf.update(broker_url=f"{redis_url}/1", redis_scheduler_url=url(sentinel),
                    redis_scheduler_redis_options=SENTINEL_OPTIONS, redis_scheduler_key_prefix=prefix,
                    redis_scheduler_wait_replicas=1, beat_schedule={"static": {"task": "tasks.static", "schedule": 10.0}},
                    result_expires=None, task_default_queue=queue)
    sched = RedisScheduler(app)
    sched.tick(now=T0)
    sched.tick(now=T0 + 10)
    assert sched.store is not None and sched.store.run_state("static")[0] == 1
    sched.close()
    assert [m.task for m in drain_queue(broker, queue)] == ["tasks.static"]
