"""Beat's health: the heartbeat in ``{T}:beats``, ``celerybeatredis status``, and ``/healthz`` + ``/metrics``."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import redis
from celery import Celery
from prometheus_client.parser import text_string_to_metric_families

from celerybeatredis.observe.heartbeat import FORGET_SECONDS, Heartbeat
from celerybeatredis.observe.metrics import METRIC_NAMES
from celerybeatredis.observe.stats import LATENESS_BUCKETS, BeatStats
from celerybeatredis.observe.status import read_beats
from celerybeatredis.schedulers import BadSettings, RedisScheduler
from celerybeatredis.settings import Settings
from celerybeatredis.storage.history import runtime_code, stamp
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.sharded_store import ShardedStore
from celerybeatredis.storage.wire import Revert

from ..support.cli import Cli
from ..support.processes import CeleryProcess, drain_queue, wait_until, write_app
from ..support.redis_server import RedisServer, free_port

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"


class Clock:
    """Monotonic seconds the test moves by hand (BeatStats takes its clock as a parameter)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_lateness_p99_covers_the_last_minute_only() -> None:
    clock = Clock()
    stats = BeatStats(clock)
    assert stats.lateness_p99() is None
    stats.published([0.001] * 990 + [4.0] * 10, [], broker_failed=False)
    assert stats.lateness_p99() == 0.01  # 99 % were under the first bucket's bound
    stats.published([4.0] * 20, [Revert("a", 1.0, 2.0, None), Revert("b", 1.0, float("inf"), None, "bad options")],
                    broker_failed=True)
    assert stats.lateness_p99() == 5.0
    assert stats.runs == {"sent": 1020, "reverted": 1, "quarantined": 1}
    assert stats.publish_errors == 2  # the broker failing once, and the quarantined entry's send
    clock.now += 61
    assert stats.lateness_p99() is None  # the window moved on
    stats.published([1000.0], [], broker_failed=False)
    assert stats.lateness_p99() == LATENESS_BUCKETS[-1]  # beyond the last bucket: "at least" its bound


def test_health_answers_from_the_last_tick() -> None:
    clock = Clock()
    stats = BeatStats(clock)
    assert stats.health(10) == "beat has not finished a tick yet"
    stats.ticked(0.01)
    assert stats.health(10) is None
    stats.ticked(0.01, "Redis unavailable: Connection refused")
    assert stats.health(10) == "the last tick failed: Redis unavailable: Connection refused"
    stats.ticked(0.01)
    clock.now += 11
    problem = stats.health(10)
    assert problem is not None and problem.startswith("beat's loop is stuck")


def test_heartbeat_records_this_beat_and_forgets_silent_ones(store: RedisStore, client: redis.Redis) -> None:
    key = store.keys.beats
    assert key.endswith("}:beats") and key.startswith(f"{{{store.keys.tag}}}")
    now = store.server_time()
    client.hset(key, mapping={"gone": json.dumps({"id": "gone", "last_tick": now - FORGET_SECONDS - 5}),
                              "recent": json.dumps({"id": "recent", "last_tick": now - 10}), "junk": "not json"})
    stats = BeatStats()
    stats.published([0.02], [], broker_failed=False)
    beat = Heartbeat(stats)
    beat.beat(store)
    assert set(client.hkeys(key)) == {beat.id.encode(), b"recent"}
    assert 0 < client.ttl(key) <= FORGET_SECONDS
    record = json.loads(client.hget(key, beat.id))
    assert record["pid"] > 0 and record["sent"] == 1 and record["lateness_p99"] == 0.025
    assert abs(record["last_tick"] - store.server_time()) < 5  # the Redis clock, not this host's
    client.hdel(key, beat.id)
    beat.beat(store)  # within a second of the last one: no write
    assert not client.hexists(key, beat.id)
    beats = read_beats(store, store.server_time())
    assert [b.id for b in beats] == ["recent"]


def test_heartbeat_refuses_a_key_of_another_type_before_writing(store: RedisStore, client: redis.Redis) -> None:
    client.set(store.keys.beats, "mine")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        Heartbeat(BeatStats()).beat(store)
    assert client.get(store.keys.beats) == b"mine"
    assert client.ttl(store.keys.beats) == -1


def test_status_exits_1_without_a_recent_beat(store: RedisStore, redis_url: str, prefix: str) -> None:
    cli = Cli(f"{redis_url}/0", prefix)
    done = cli.run("status")
    assert done.returncode == 1 and "none heard from" in done.stdout, done
    Heartbeat(BeatStats()).beat(store)
    assert "1 of 1 ticked within 30s" in cli.ok("status")
    report = json.loads(cli.ok("status", "--json"))
    assert report["alive"] == 1 and report["due_backlog"] == 0 and report["quarantined"] == 0
    assert cli.run("status", "--max-age", "0").returncode == 1  # its last tick is older than 0 s


def test_sharded_beats_live_on_the_first_shard(client: redis.Redis, redis_url: str, prefix: str) -> None:
    sharded = ShardedStore(client, prefix, shards=2)
    try:
        Heartbeat(BeatStats()).beat(sharded.stores[0])
        assert client.exists(f"{{{sharded.tag}:0}}:beats") and not client.exists(f"{{{sharded.tag}:1}}:beats")
        assert "1 of 1 ticked" in Cli(f"{redis_url}/0", prefix).ok("status", env={"CELERYBEATREDIS_SHARDS": "2"})
    finally:
        sharded.drop()


def test_the_heartbeat_rides_the_first_shards_claim(store: RedisStore, client: redis.Redis,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    store.put_raw({"a": json.dumps({"task": "t.a", "interval": {"every": 60}})})
    client.script_flush()  # both scripts unknown to Redis: each is run again the usual way
    beat = Heartbeat(BeatStats(), store.keys.tag)
    claim = beat.claim(store, 10, 30.0, None)
    assert [entry.name for entry in claim.entries] == ["a"]
    assert client.hexists(store.keys.beats, beat.id)
    client.delete(store.keys.beats)
    assert beat.claim(store, 10, 30.0, None).entries == []  # "a" is leased; no heartbeat within the second
    assert not client.exists(store.keys.beats)
    assert Heartbeat(BeatStats(), "another-shard").claim(store, 10, 30.0, None).entries == []
    assert not client.exists(store.keys.beats)
    client.set(store.keys.beats, "not a hash")
    client.zadd(store.keys.due, {"a": 0})
    claim = Heartbeat(BeatStats(), store.keys.tag).claim(store, 10, 30.0, None)
    assert [entry.name for entry in claim.entries] == ["a"]  # due again: the claim went through all the same
    assert "could not write the heartbeat" in caplog.text


@pytest.mark.parametrize("value", ["9808", "localhost:", ":9808", "host:99999", "host:port"])
def test_a_bad_http_address_names_the_setting(value: str) -> None:
    app = Celery("bad", set_as_current=False)
    app.conf.redis_scheduler_http = value
    with pytest.raises(BadSettings, match="redis_scheduler_http must be host:port"):
        RedisScheduler(app, lazy=True)


def test_http_addresses() -> None:
    assert Settings(http="127.0.0.1:9808").http_address == ("127.0.0.1", 9808)
    assert Settings(http="[::1]:9808").http_address == ("::1", 9808)
    assert Settings().http_address is None


def test_http_without_prometheus_client_names_the_setting_and_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if it were not installed
    app = Celery("bad", set_as_current=False)
    app.conf.redis_scheduler_http = "127.0.0.1:9808"
    with pytest.raises(BadSettings, match=r"redis_scheduler_http needs prometheus_client: pip install '\.\[metrics\]' in the source"):
        RedisScheduler(app, lazy=True)


def test_beat_does_not_import_prometheus_client_unless_asked() -> None:
    code = ("import sys; from celery import Celery; from celerybeatredis.schedulers import RedisScheduler; "
            "RedisScheduler(Celery('x', set_as_current=False), lazy=True); print('prometheus_client' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"


def metric_names_in(text: str) -> set[str]:
    """Every ``celerybeatredis_*`` name an expression uses, without Prometheus's _bucket/_sum/_count/_total suffixes."""
    return {re.sub(r"_(bucket|sum|count|total)$", "", name) for name in re.findall(r"celerybeatredis_\w+", text)}


def test_the_grafana_dashboard_and_alert_rule_name_only_metrics_that_exist() -> None:
    dashboard = json.loads((CONTRIB / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    used = set().union(*map(metric_names_in, exprs))
    assert used and used <= set(METRIC_NAMES), used - set(METRIC_NAMES)
    rules = (CONTRIB / "prometheus-alerts.yml").read_text()
    exprs = re.findall(r"^\s+expr: (.+)$", rules, re.MULTILINE)
    assert any("celerybeatredis_beats_alive" in e for e in exprs)
    assert set().union(*map(metric_names_in, exprs)) <= set(METRIC_NAMES)


def get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as reply:
            return reply.status, reply.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed by prometheus_client's own parser: (sample name, labels) -> value."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_http_endpoint_in_process(client: redis.Redis, prefix: str) -> None:
    """/healthz follows the ticks recorded; /metrics parses, with the schedule's gauges read from Redis."""
    from celerybeatredis.observe.http import HealthServer

    store = ShardedStore(client, prefix)
    store.put_raw({"a": json.dumps({"task": "t.a", "interval": {"every": 60}}),
                   "b": json.dumps({"task": "t.b", "interval": {"every": 60}})})
    stats = BeatStats()
    server = HealthServer(("127.0.0.1", 0), stats, store, alive=30)
    server.start()
    base = f"http://127.0.0.1:{server.server.server_address[1]}"
    try:
        assert get(f"{base}/healthz") == (503, "beat has not finished a tick yet\n")
        stats.ticked(0.002)
        stats.lua_call("claim", 0.001)
        for result, seconds in (("k", 2.0), ("k", 1.0), ("f", 0.5)):  # as workers with the integration report runs
            store.stores[0].runs.run_outcome("a", stamp(1_795_514_400.0), result, runtime_code(seconds), "E: x")
        assert get(f"{base}/healthz") == (200, "ok\n")
        assert get(f"{base}/nothing")[0] == 404
        found = samples(get(f"{base}/metrics")[1])
        tag = (("schedule", store.tag),)
        assert found[("celerybeatredis_entries", tag)] == 2
        assert found[("celerybeatredis_due_backlog", tag)] == 2  # new entries are due at once
        assert found[("celerybeatredis_beats_alive", tag)] == 0
        assert found[("celerybeatredis_tick_duration_seconds_count", tag)] == 1
        results = {result: found[("celerybeatredis_run_results_total", (("result", result), *tag))]
                   for result in ("succeeded", "failed", "retried", "revoked")}
        assert results == {"succeeded": 2, "failed": 1, "retried": 0, "revoked": 0}
        assert found[("celerybeatredis_run_runtime_seconds_total", tag)] == pytest.approx(3.5, rel=0.02)
        names = {name for name, _ in found}
        assert {re.sub(r"_(bucket|sum|count|total|created)$", "", n) for n in names} == set(METRIC_NAMES)
        assert not any(label == "name" for _, labels in found for label, _ in labels)  # never by entry name
    finally:
        server.stop()
        store.drop()


def test_a_port_taken_stops_beat_with_one_line(app: Celery) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        app.conf.redis_scheduler_http = f"127.0.0.1:{taken.getsockname()[1]}"
        with pytest.raises(BadSettings, match=r"redis_scheduler_http 127\.0\.0\.1:\d+: cannot listen"):
            RedisScheduler(app)


@pytest.mark.slow
@pytest.mark.e2e
def test_beat_health_end_to_end(tmp_path: Path, redis_url: str, broker: redis.Redis, prefix: str) -> None:
    """One beat on a schedule Redis of its own: status, /healthz through an outage, /metrics against the broker, kill -9."""
    schedule = RedisServer().start()
    port = free_port()
    queue = f"q-{prefix}"
    tag = prefix.rstrip(":")
    write_app(tmp_path, f"{redis_url}/1", schedule.url, prefix, f"""
        app.conf.task_default_queue = {queue!r}
        app.conf.redis_scheduler_http = "127.0.0.1:{port}"
        app.conf.beat_schedule = {{"tick": {{"task": "t.tick", "schedule": 0.5}}}}
    """)
    cli = Cli(schedule.url, prefix)
    beat = CeleryProcess.beat(tmp_path)
    try:
        health = f"http://127.0.0.1:{port}/healthz"
        wait_until(lambda: beat.alive() and "serving /healthz" in beat.output(), what="the HTTP endpoint")
        wait_until(lambda: get(health) == (200, "ok\n"), what="/healthz 200")
        assert "1 of 1 ticked within 5s" in cli.ok("status", "--max-age", "5")

        def sent() -> float:
            return samples(get(f"http://127.0.0.1:{port}/metrics")[1])[
                ("celerybeatredis_runs_total", (("outcome", "sent"), ("schedule", tag)))]

        wait_until(lambda: sent() >= 3, what="three runs sent")
        metrics = samples(get(f"http://127.0.0.1:{port}/metrics")[1])
        assert metrics[("celerybeatredis_entries", (("schedule", tag),))] >= 1
        assert metrics[("celerybeatredis_beats_alive", (("schedule", tag),))] == 1
        assert metrics[("celerybeatredis_dispatch_lateness_seconds_count", (("schedule", tag),))] >= 3
        assert metrics[("celerybeatredis_lua_duration_seconds_count", (("schedule", tag), ("script", "claim")))] >= 1

        schedule.stop()  # beat can no longer claim, so its sent counter stops where the broker's queue stops

        def unhealthy() -> str | None:
            code, body = get(health)
            return body if code == 503 else None

        reason = wait_until(unhealthy, what="/healthz 503")
        assert "Redis unavailable" in reason
        assert len(drain_queue(broker, queue)) == sent() >= 3
        assert beat.alive()

        schedule.start()
        wait_until(lambda: get(health) == (200, "ok\n"), what="/healthz 200 once Redis is back")
        wait_until(lambda: cli.run("status", "--max-age", "2").returncode == 0, what="the heartbeat written again")
        beat.kill()
        wait_until(lambda: cli.run("status", "--max-age", "2").returncode == 1, timeout=15, what="status exit 1 after kill -9")
    finally:
        beat.stop()
        schedule.cleanup()

