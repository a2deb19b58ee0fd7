"""The docs' minimal ACL user (docs/operating.rst) is enough for beat, every script and resharding, on one server and on a cluster."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from celerybeatredis.moving.reshard import reshard
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.scripts import SCRIPT_NAMES
from celerybeatredis.storage.sharded_store import ShardedStore
from celerybeatredis.store import ScheduleStore

from ..support.cluster import LocalCluster
from ..support.processes import drain_queue
from ..support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
ACL_PAGE = (ROOT / "docs" / "operating.rst").read_text()
#: The user line as docs/operating.rst prints it, e.g. ``user celerybeat on >CHANGE-ME ~{tasks:meta}:* ... +sscan``.
USER_LINE = next(line.split() for line in ACL_PAGE.splitlines() if line.strip().startswith("user celerybeat "))
CLUSTER_RULES = re.search(r"On Redis Cluster add ``([^`]+)``", ACL_PAGE).group(1).split()  # type: ignore[union-attr]
API_RULES = [rule.strip("'") for rule in re.search(  # type: ignore[union-attr]
    r"command line also need:\s+\.\. code-block:: console\s+\$ redis-cli ACL SETUSER celerybeat ([^\n]+)", ACL_PAGE).group(1).split()]
USER, PASSWORD = USER_LINE[1], next(w[1:] for w in USER_LINE if w.startswith(">"))
PREFIX = "tasks:meta:"  # the prefix the docs' key patterns are written for
T0 = 1_800_000_000.0


def every(seconds: int, name: str) -> str:
    return json.dumps({"task": "tasks.acl", "interval": {"every": seconds}, "kwargs": {"name": name}})


def test_the_acl_line_allows_every_command_the_scripts_call() -> None:
    allowed = {w[1:].lower() for w in USER_LINE if w.startswith("+")}
    for name in SCRIPT_NAMES:
        text = (ROOT / "celerybeatredis" / "storage" / "lua" / f"{name}.lua").read_text()
        called = {c.lower() for c in re.findall(r"rcall\('([A-Za-z]+)'", text)}
        assert called and called <= allowed, f"{name}.lua calls {sorted(called - allowed)}, missing from the docs' ACL line"


#: Refusals that change nothing: beat's optional CONFIG GET, and the CLIENT SETINFO redis-py sends on connect and
#: ignores a refusal of (Redis 6.2 logs them as "config" and "client"; 7.0 has no SETINFO; 7.2 and Valkey have it).
HARMLESS = ("config|get", "config", "client", "client|setinfo")


def denied(conn: redis.Redis) -> list[str]:
    """Commands the ACL refused since the last reset, except the harmless ones."""
    return [entry["object"] for entry in conn.acl_log() if entry["object"] not in HARMLESS]


def run_everything(url: str, broker_url: str, queue: str) -> list[str]:
    """Beat with statics, ticks, the WAIT path, a reshard and every store call; returns what beat sent, sorted."""
    app = Celery("acl", set_as_current=False)
    app.conf.update(broker_url=broker_url, redis_scheduler_url=url, redis_scheduler_key_prefix=PREFIX,
                    beat_schedule={"static": {"task": "tasks.acl", "schedule": 10.0, "kwargs": {"name": "static"}}},
                    result_expires=None, task_default_queue=queue)
    sched = RedisScheduler(app)
    assert sched.store is not None
    sched.store.put_raw({"dynamic": every(10, "dynamic"), "bad": "{"})
    sched.tick(now=T0)
    sched.tick(now=T0 + 10)
    sched.close()

    app.conf.update(redis_scheduler_wait_replicas=1, redis_scheduler_wait_timeout=0.01)
    waiting = RedisScheduler(app)  # commit + WAIT; without a replica the runs are reverted (revert.lua)
    waiting.tick(now=T0 + 20)
    waiting.close()

    client = ShardedStore.from_url(url, PREFIX).client
    assert reshard(client, PREFIX, 3).moved == 3
    app.conf.update(redis_scheduler_shards=3, redis_scheduler_wait_replicas=0)
    sharded = RedisScheduler(app)
    sharded.tick(now=T0 + 30)
    sharded.close()
    three = ShardedStore(client, PREFIX, 3)
    assert three.run_now_names(["dynamic"]) == [True]
    assert (three.across.count(), sorted(three.across.iter_static_names())) == (3, ["static"])
    assert three.run_state("dynamic")[0] >= 1 and three.due_score("dynamic") == -1.0
    assert three.invalid_reason("bad") is not None and three.get_raw("bad") == b"{"
    assert three.remove_names(["bad"]) == 1 and three.server_time() > 0
    client.close()
    return sorted(m.kwargs["name"] for m in drain_queue(redis.Redis.from_url(broker_url), queue))


@pytest.fixture
def acl_server() -> Iterator[RedisServer]:
    server = RedisServer("--user", *USER_LINE[1:]).start()
    yield server
    server.cleanup()


def test_beat_scripts_and_reshard_run_as_the_readme_acl_user(acl_server: RedisServer, redis_url: str,
                                                           caplog: pytest.LogCaptureFixture) -> None:
    url = f"redis://{USER}:{PASSWORD}@127.0.0.1:{acl_server.port}/0"
    sent = run_everything(url, f"{redis_url}/1", f"q-acl-{acl_server.port}")
    assert sent == ["dynamic", "dynamic", "static", "static"]  # at T0 + 10 and T0 + 30; no replica for T0 + 20
    with redis.Redis(port=acl_server.port) as admin:
        assert denied(admin) == []
        assert admin.acl_log(), "the eviction check asks for CONFIG GET, which this user may not run"
    # The denied CONFIG GET is not reported: no warning, no error from the scheduler.
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors and all("entry 'bad'" in e for e in errors)  # only the broken entry's quarantine
    assert not [r for r in caplog.records if "maxmemory" in r.getMessage() or "permission" in r.getMessage()]


def test_beat_scripts_and_reshard_run_as_the_readme_acl_user_on_a_cluster(redis_cluster: LocalCluster, redis_url: str) -> None:
    nodes = [redis.Redis(port=s.port) for s in redis_cluster.servers]
    for node in nodes:
        node.execute_command("ACL", "SETUSER", *USER_LINE[1:], *CLUSTER_RULES)
        node.acl_log_reset()
    try:
        url = f"redis-cluster://{USER}:{PASSWORD}@" + ",".join(f"127.0.0.1:{s.port}" for s in redis_cluster.servers)
        sent = run_everything(url, f"{redis_url}/1", "q-acl-cluster")
        assert sent == ["dynamic"] * 3 + ["static"] * 3  # the cluster's replica acknowledges the commit at T0 + 20
        assert [denied(node) for node in nodes] == [[]] * len(nodes)
    finally:
        for node in nodes:
            node.acl_deluser(USER)
            node.close()


def test_the_management_api_runs_with_the_readme_additions() -> None:
    server = RedisServer("--user", *USER_LINE[1:], *API_RULES).start()
    try:
        api = ScheduleStore.from_url(f"redis://{USER}:{PASSWORD}@127.0.0.1:{server.port}/0", PREFIX)
        api.add("nightly", "tasks.report", {"crontab": {"minute": 0, "hour": 3}})
        api.bulk_add({f"e{i}": {"task": "tasks.add", "interval": {"every": 10}} for i in range(5)})
        assert api.update("e1", args=[1]) and api.disable("e2")
        api.run_now("e3")
        assert api.get("nightly").definition["crontab"]["hour"] == 3 and api.find(["ghost"]) == [None]
        assert len(api.list().items) == 6 and [e.name for e in api.upcoming(1)] == ["e3"]
        assert api.invalid().items == [] and api.stats().entries == 6
        api.remove("nightly")
        assert api.bulk_remove(["e1"]) == 1 and api.drop() > 0
        api.client.close()
        with redis.Redis(port=server.port) as admin:
            assert denied(admin) == []
    finally:
        server.cleanup()
