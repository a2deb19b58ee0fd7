"""Beat's health: the heartbeat in ``{T}:beats``, ``celerybeatredis status``, and ``/healthz`` + ``/metrics``."""

from __future__ import annotations

import json

import pytest
import redis

from celerybeatredis.beats import FORGET_SECONDS, Heartbeat, read_beats
from celerybeatredis.beatstats import LATENESS_BUCKETS, BeatStats
from celerybeatredis.redis_store import RedisStore
from celerybeatredis.sharded_store import ShardedStore
from celerybeatredis.wire import Revert

from .cli import Cli


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
