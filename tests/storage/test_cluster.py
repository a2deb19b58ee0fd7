"""The scheduler on a real Redis Cluster (three masters, three replicas), including a failover under a running beat."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
import redis
from celery import Celery
from redis.cluster import RedisCluster

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.settings import Settings
from celerybeatredis.storage.connection import eviction_warnings, make_client
from celerybeatredis.storage.keys import NEVER, shard_tag
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.sharded_store import ShardedStore
from celerybeatredis.storage.wire import Plan, Revert
from celerybeatredis.store import ScheduleStore

from ..support.cluster import LocalCluster
from ..support.helpers import EVERY_10S, T0, spread_prefix
from ..support.ledger import FailoverProbe
from ..support.processes import CeleryProcess, drain_queue, write_app


@pytest.fixture
def cluster_client(redis_cluster: LocalCluster) -> Iterator[RedisCluster]:
    client = make_client(redis_cluster.url)
    yield client
    client.close()




def test_cluster_urls_and_the_cluster_setting_make_cluster_clients(redis_cluster: LocalCluster, prefix: str) -> None:
    by_scheme = RedisStore.from_url(redis_cluster.url, prefix)
    app = Celery("c", set_as_current=False)
    app.conf.update(redis_scheduler_url=redis_cluster.first_url, redis_scheduler_cluster=True,
                    redis_scheduler_key_prefix=prefix)
    settings = Settings.from_app(app)
    by_setting = RedisStore(settings.client(), settings.key_prefix)
    assert isinstance(by_scheme.client, RedisCluster) and isinstance(by_setting.client, RedisCluster)
    by_scheme.put_raw({"a": EVERY_10S})
    assert by_setting.get_raw("a") == EVERY_10S.encode()
    # Every node of the cluster is known, though only one was named.
    assert len(by_setting.client.get_primaries()) == 3
    by_scheme.client.close()
    by_setting.client.close()


def test_every_store_call_works_on_a_cluster(cluster_client: RedisCluster, prefix: str) -> None:
    store = RedisStore(cluster_client, prefix)
    assert store.put_raw({"a": EVERY_10S, "b": EVERY_10S, "bad": "{"}, static=True) == (3, 0, [], [])
    assert store.count() == 3 and sorted(store.iter_static_names()) == ["a", "b", "bad"]
    step = store.runs.reconcile_step(100)
    assert step.seen == 3
    claim = store.runs.claim(10, 30, now=T0)
    assert sorted(e.name for e in claim.entries) == ["a", "b", "bad"]
    plans = [Plan("a", claim.lease, T0 + 10, ran=True, run_at="2026-03-02T12:00:00+00:00", digest="x 1"),
             Plan("b", claim.lease, T0 + 10), Plan("bad", claim.lease, NEVER, invalid_reason="entry 'bad': broken")]
    assert store.runs.commit(plans) == [True, True, True]
    assert store.run_state("a") == (1, datetime.fromtimestamp(T0, timezone.utc))
    assert store.invalid_reason("bad") == "entry 'bad': broken"
    assert store.runs.revert([Revert("a", T0 + 10, T0 + 5, None)]) == [True]
    assert store.run_state("a") == (0, None) and store.due_score("a") == T0 + 5
    assert store.run_now_names(["b", "missing"]) == [True, False]
    exported = store.export_names(["b"])
    assert [e.name for e in exported] == ["b"] and store.due_score("b") == NEVER
    assert store.adopt(exported) == (0, 1)
    assert store.remove_names(["a", "b", "bad"]) == 3 and store.count() == 0
    assert store.server_time() > T0


def test_a_sharded_schedule_spans_the_masters_and_beat_runs_every_shard(
        cluster_client: RedisCluster, redis_cluster: LocalCluster, redis_url: str, broker: redis.Redis) -> None:
    prefix = spread_prefix(cluster_client, f"spread-{time.monotonic_ns()}-", 3)
    sharded = ShardedStore(cluster_client, prefix, shards=3)
    names = [f"e{i}" for i in range(30)]
    sharded.put_raw(dict.fromkeys(names, EVERY_10S))
    assert sorted(s.count() for s in sharded.stores) != [0, 0, 30]  # spread, not piled on one shard
    masters = {cluster_client.get_node_from_key(s.keys.due).name for s in sharded.stores}
    assert len(masters) == 3

    app = Celery("sharded", set_as_current=False)
    queue = f"q-{prefix}"
    app.conf.update(broker_url=f"{redis_url}/1", redis_scheduler_url=redis_cluster.url, redis_scheduler_key_prefix=prefix,
                    redis_scheduler_shards=3, beat_schedule={}, result_expires=None, task_default_queue=queue)
    sched = RedisScheduler(app)
    sched.tick(now=T0)
    sched.tick(now=T0 + 10)
    sched.close()
    assert Counter(m.args[0] for m in drain_queue(broker, queue)) == Counter({1: 30})
    assert all(sharded.run_state(n)[0] == 1 for n in names)


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("shards", [1, 3])
def test_beat_carries_on_through_a_master_failover_without_sending_a_run_twice(
        tmp_path: Path, redis_cluster: LocalCluster, cluster_client: RedisCluster, redis_url: str,
        broker: redis.Redis, shards: int) -> None:
    prefix = spread_prefix(cluster_client, f"failover-{time.monotonic_ns()}-", shards)
    tag = prefix.rstrip(":")
    queue = f"q-{tag}"
    write_app(tmp_path, f"{redis_url}/1", redis_cluster.url, prefix, extra=f"""
        app.conf.update(redis_scheduler_shards={shards}, task_default_queue={queue!r})
    """)
    probe = FailoverProbe(ShardedStore(cluster_client, prefix, shards), broker, queue)
    beat = CeleryProcess.beat(tmp_path)
    try:
        probe.wait_started()
        slot = cluster_client.keyslot(f"{{{shard_tag(tag, 0, shards)}}}:due")
        old, new = redis_cluster.failover(slot)
        assert redis_cluster.master_of_slot(slot) == new != old
        probe.wait_finished(since=time.monotonic())
        assert beat.alive()
    finally:
        code = beat.stop()
    assert code == 0, beat.output()
    probe.assert_each_run_sent_once()


@pytest.mark.e2e
@pytest.mark.slow
@pytest.mark.parametrize("wait_replicas", [0, 1])
def test_beat_carries_on_when_the_schedules_master_is_killed(
        tmp_path: Path, redis_url: str, broker: redis.Redis, wait_replicas: int) -> None:
    """``kill -9`` of the master that holds the schedule, under a running beat, on a cluster of its own.

    The replica takes over by itself; the killed node comes back empty as its replica.
    Nothing is lost either way. A write the dead master acknowledged but never
    replicated is gone, so without ``wait_replicas`` a run may be sent twice; with
    ``wait_replicas = 1`` beat sends only replicated commits, so each run exactly once.
    """
    cluster = LocalCluster(node_timeout=1000).start()
    client = make_client(cluster.url)
    try:
        prefix = f"killed-{time.monotonic_ns()}:"
        queue = f"q-{prefix.rstrip(':')}"
        write_app(tmp_path, f"{redis_url}/1", cluster.url, prefix, extra=f"""
            app.conf.update(redis_scheduler_wait_replicas={wait_replicas}, redis_scheduler_lease_seconds=3,
                            task_default_queue={queue!r})
        """)
        probe = FailoverProbe(RedisStore(client, prefix), broker, queue)
        beat = CeleryProcess.beat(tmp_path)
        try:
            probe.wait_started()
            old, new = cluster.kill_master(client.keyslot(probe.store.keys.due))
            cluster.restart(old)
            roles = cluster.roles()
            assert (roles[old], roles[new]) == ("slave", "master")
            probe.wait_finished(since=time.monotonic(), timeout=60)
            assert beat.alive()
        finally:
            code = beat.stop()
        assert code == 0, beat.output()
        counts = probe.counts()
        assert all(counts[name] >= 1 for name in probe.one_offs)
        if wait_replicas:
            probe.assert_each_run_sent_once()
    finally:
        client.close()
        cluster.cleanup()


def test_an_evicting_policy_on_any_master_is_reported(cluster_client: RedisCluster) -> None:
    assert eviction_warnings(cluster_client) == []
    master = cluster_client.get_primaries()[1]
    cluster_client.config_set("maxmemory-policy", "allkeys-lfu", target_nodes=master)
    try:
        (warning,) = eviction_warnings(cluster_client)
        assert f"allkeys-lfu on {master.name}" in warning
    finally:
        cluster_client.config_set("maxmemory-policy", "noeviction", target_nodes=master)


def test_the_management_api_works_on_a_cluster(redis_cluster: LocalCluster, prefix: str) -> None:
    api = ScheduleStore.from_url(redis_cluster.url, prefix)
    assert isinstance(api.client, RedisCluster)
    assert api.add("nightly", "tasks.report", {"crontab": {"minute": 0, "hour": 3}})
    assert api.bulk_add({f"e{i}": {"task": "tasks.add", "interval": {"every": 10}} for i in range(20)}).written == 20
    api.client.hset(api.sharded.keys.schedule, "bad", "{")
    assert api.get("nightly").definition["crontab"]["hour"] == 3
    assert api.update("e1", args=[1, 2]) and api.disable("e2") and api.enable("e2")
    api.run_now("e3")
    assert [e.name if e else None for e in api.find(["e3", "ghost"])] == ["e3", None]
    names = []
    page = api.list(count=7)
    names += [e.name for e in page.items]
    while not page.done:
        page = api.list(cursor=page.cursor, count=7)
        names += [e.name for e in page.items]
    assert sorted(names) == sorted(["nightly", "bad", *(f"e{i}" for i in range(20))])
    assert [e.name for e in api.upcoming(1)] == ["e3"]
    stats = api.stats()
    assert (stats.entries, stats.enabled) == (22, 21) and sum(stats.memory_bytes.values()) > 0
    api.remove("nightly")
    assert api.bulk_remove([f"e{i}" for i in range(20)]) == 20
    assert api.drop() > 0 and api.count() == 0
    api.client.close()
