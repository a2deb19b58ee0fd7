"""A schedule sharded over K hash tags: routing, beat across shards, the layout check, and resharding."""

from __future__ import annotations

import json
import zlib
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone

import pytest
import redis
from celery import Celery

from celerybeatredis.moving.reshard import reshard
from celerybeatredis.schedulers import RedisScheduler, Refused
from celerybeatredis.storage.keys import SCHEMA_FIELD, SCHEMA_VERSION, shard_for, shard_tag
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.sharded_store import ShardedStore
from celerybeatredis.storage.wire import Plan

from ..support.cli import Cli
from ..support.helpers import EVERY_10S, T0
from ..support.processes import drain_queue


def every(seconds: int, task: str = "tasks.add") -> str:
    return json.dumps({"task": task, "interval": {"every": seconds, "period": "seconds"}})


@pytest.fixture
def cleanup(client: redis.Redis, prefix: str) -> Iterator[None]:
    yield
    tag = prefix.rstrip(":")
    for pattern in (f"{{{tag}}}:*", f"{{{tag}:*}}:*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)


def sent(broker: redis.Redis, app: Celery) -> list[str]:
    return [m.kwargs.get("name") or m.task for m in drain_queue(broker, app.conf.task_default_queue)]


def test_shard_for_is_crc32_of_the_utf8_name_modulo_k() -> None:
    for name in ("add-every-30s", "report:daily", "ünïcode {braces}", ""):
        assert shard_for(name, 7) == zlib.crc32(name.encode("utf-8")) % 7
        assert shard_for(name, 1) == 0
    # Pinned: these must never change, or existing sharded schedules would be looked up in the wrong shard.
    assert [shard_for(n, 3) for n in ("add-every-30s", "report:daily", "e0", "e1")] == [0, 1, 1, 2]
    assert (shard_tag("tasks:meta", 2, 3), shard_tag("tasks:meta", 0, 1)) == ("tasks:meta:2", "tasks:meta")


def test_one_shard_keeps_the_unsharded_keys(client: redis.Redis, prefix: str, cleanup: None) -> None:
    sharded = ShardedStore(client, prefix, shards=1)
    plain = RedisStore(client, prefix)
    sharded.put_raw({"a": EVERY_10S})
    assert sharded.stores[0].keys == plain.keys
    assert plain.get_raw("a") == EVERY_10S.encode()
    assert client.hget(f"{{{prefix.rstrip(':')}}}:schedule", "a") == EVERY_10S.encode()


def test_calls_are_routed_to_the_shard_of_each_name(client: redis.Redis, prefix: str, cleanup: None) -> None:
    tag = prefix.rstrip(":")
    sharded = ShardedStore(client, prefix, shards=3)
    names = [f"e{i}" for i in range(30)]
    assert sharded.put_raw(dict.fromkeys(names, EVERY_10S), static=True) == (30, 0, [], [])
    for name in names:
        assert client.hget(f"{{{tag}:{shard_for(name, 3)}}}:schedule", name) == EVERY_10S.encode()
        assert sharded.store_for(name) is sharded.stores[shard_for(name, 3)]
    assert all(s.count() > 0 for s in sharded.stores)
    assert sharded.across.count() == 30 and sorted(sharded.across.iter_static_names()) == sorted(names)
    assert sharded.run_now_names(["e3", "missing", "e1"]) == [True, False, True]
    assert sharded.due_score("e3") == -1.0 and sharded.get_raw("e1") == EVERY_10S.encode()
    assert sharded.remove_names(["e1", "e2", "missing"]) == 2 and sharded.across.count() == 28
    assert [s.tag for s in (st.keys for st in sharded.in_turn(4))] == [f"{tag}:1", f"{tag}:2", f"{tag}:0"]


def test_beat_runs_every_shard_and_claims_from_each_in_turn(app: Celery, client: redis.Redis, prefix: str,
                                                             broker: redis.Redis, cleanup: None) -> None:
    app.conf.update(redis_scheduler_shards=3, redis_scheduler_batch_size=4)
    sharded = ShardedStore(client, prefix, shards=3)
    names = [f"e{i}" for i in range(60)]
    sharded.put_raw({n: json.dumps({"task": "tasks.add", "interval": {"every": 10}, "kwargs": {"name": n}}) for n in names})
    sched = RedisScheduler(app)
    while sched.tick(now=T0) == 0.0:
        pass
    # Every shard gets its turn in every tick; a shard with a burst keeps the tick for at most
    # max_interval, here none at all: one batch from each.
    sched.max_interval = 0.0
    claimed: list[int] = []
    for index, store in enumerate(sched.store.stores if sched.store else []):
        for method in ("claim", "claim_with_heartbeat"):  # the first shard's claim may carry the heartbeat
            def spy(*args: object, _i: int = index, _claim: object = getattr(store.runs, method), **kwargs: object) -> object:
                reply = _claim(*args, **kwargs)  # type: ignore[operator]
                claimed.append(_i)
                return reply
            setattr(store.runs, method, spy)
    assert sched.tick(now=T0 + 10) == 0.0
    assert sorted(claimed) == [0, 1, 2]
    first = claimed[0]
    claimed.clear()
    sched.tick(now=T0 + 10)
    assert claimed[0] == (first + 1) % 3  # the next tick starts one shard later
    sched.max_interval = 1.0  # the rest streams batch after batch from each shard
    while sched.tick(now=T0 + 10) == 0.0:
        pass
    sched.close()
    assert Counter(sent(broker, app)) == Counter(dict.fromkeys(names, 1))


def test_statics_and_the_reconciler_work_across_shards(app: Celery, client: redis.Redis, prefix: str,
                                                       broker: redis.Redis, cleanup: None) -> None:
    tag = prefix.rstrip(":")
    app.conf.update(redis_scheduler_shards=3, beat_schedule={
        f"static-{i}": {"task": "tasks.add", "schedule": 10.0, "kwargs": {"name": f"static-{i}"}} for i in range(9)})
    sched = RedisScheduler(app)
    sharded = ShardedStore(client, prefix, shards=3)
    assert sorted(sharded.across.iter_static_names()) == [f"static-{i}" for i in range(9)]
    assert all(s.count() > 0 for s in sharded.stores)
    # A bare HSET in every shard (no ZADD) is found within one reconciler pass over the shards.
    bare = {f"bare-{i}": json.dumps({"task": "tasks.add", "interval": {"every": 10}, "kwargs": {"name": f"bare-{i}"}})
            for i in range(9)}
    for name, doc in bare.items():
        client.hset(f"{{{tag}:{shard_for(name, 3)}}}:schedule", name, doc)
    for _ in range(3):
        sched.store.reconcile_step(100)  # type: ignore[union-attr]
    assert all(sharded.due_score(n) == 0.0 for n in bare)
    sched.tick(now=T0)
    sched.tick(now=T0 + 10)
    sched.close()
    assert sorted(sent(broker, app)) == sorted([*bare, *(f"static-{i}" for i in range(9))])
    app.conf.beat_schedule = {"static-0": app.conf.beat_schedule["static-0"]}
    RedisScheduler(app).close()
    assert list(sharded.across.iter_static_names()) == ["static-0"]
    assert all(sharded.get_raw(n) is not None for n in bare)


def test_reshard_moves_entries_with_their_run_state(app: Celery, client: redis.Redis, prefix: str,
                                                    broker: redis.Redis, cleanup: None) -> None:
    app.conf.beat_schedule = {"static": {"task": "tasks.static", "schedule": 10.0}}
    names = [f"e{i}" for i in range(40)]
    one = ShardedStore(client, prefix, 1)
    one.put_raw({n: json.dumps({"task": "tasks.add", "interval": {"every": 10}, "kwargs": {"name": n}}) for n in names})
    one.put_raw({"broken": '{"task": "tasks.x", "interval": {"every": 1, "period": "fortnights"}}',
                 "never-ran": json.dumps({"task": "tasks.add", "interval": {"every": 100}, "kwargs": {"name": "never-ran"}})})
    sched = RedisScheduler(app)
    sched.tick(now=T0)
    sched.tick(now=T0 + 10)
    sched.tick(now=T0 + 20)
    sched.close()
    assert len(sent(broker, app)) == 2 * 41
    one.run_now_names(["e7"])
    before = {n: one.run_state(n) for n in [*names, "static", "never-ran"]}
    assert before["e0"] == (2, datetime.fromtimestamp(T0 + 20, timezone.utc))

    report = reshard(client, prefix, 3)
    assert (report.shards_before, report.shards_after, report.moved, report.merged) == (1, 3, 43, 0)
    assert one.across.count() == 0 and client.exists(one.stores[0].keys.due) == 0
    three = ShardedStore(client, prefix, 3)
    assert three.recorded_shards() == 3 and three.across.count() == 43
    assert {n: three.run_state(n) for n in before} == before
    assert list(three.across.iter_static_names()) == ["static"]
    assert three.due_score("e7") == -1.0  # a pending "run now" moves with the entry
    assert three.due_score("e0") == 0.0  # beat re-derives the due time

    app.conf.redis_scheduler_shards = 3
    sched = RedisScheduler(app)
    sched.tick(now=T0 + 25)
    assert sent(broker, app) == ["e7"]  # nothing else is due before T0 + 30: the move kept last_run_at
    assert three.invalid_reason("broken") is not None
    assert three.due_score("never-ran") == pytest.approx(T0 + 100)  # first seen at T0: the anchor moved too
    sched.tick(now=T0 + 30)
    sched.close()
    assert sorted(sent(broker, app)) == sorted([n for n in names if n != "e7"] + ["tasks.static"])
    assert three.run_state("e0")[0] == 3

    # Re-running is harmless; shrinking to two shards keeps everything too.
    assert reshard(client, prefix, 3).moved == 0
    after = {n: three.run_state(n) for n in before}
    reshard(client, prefix, 2)
    two = ShardedStore(client, prefix, 2)
    assert two.across.count() == 43 and {n: two.run_state(n) for n in before} == after
    assert reshard(client, prefix, 1).moved > 0 and one.across.count() == 43


def test_an_interrupted_reshard_loses_nothing_and_a_rerun_finishes_it(client: redis.Redis, prefix: str,
                                                                      cleanup: None) -> None:
    one = ShardedStore(client, prefix, 1)
    three = ShardedStore(client, prefix, 3)
    one.put_raw({"a": EVERY_10S, "b": EVERY_10S})
    client.hset(one.stores[0].keys.total_run_count, "a", 5)
    # Interrupted after the copy, before the source was cleaned: "a" is in both places.
    exported = one.stores[0].export_names(["a"])
    three.store_for("a").adopt(exported)
    # Meanwhile a beat on the new layout ran it once more.
    client.hincrby(three.store_for("a").keys.total_run_count, "a", 1)
    report = reshard(client, prefix, 3, from_shards=1)
    assert (report.moved, report.merged) == (1, 1)
    assert three.run_state("a")[0] == 6  # the state with more runs wins
    assert three.across.count() == 2 and one.across.count() == 0


def test_export_stops_a_beat_holding_a_claim_from_committing(client: redis.Redis, prefix: str, cleanup: None) -> None:
    store = RedisStore(client, prefix)
    store.put_raw({"a": EVERY_10S})
    claim = store.runs.claim(10, 30, now=T0)
    store.export_names(["a"])
    assert store.runs.commit([Plan("a", claim.lease, T0 + 10, ran=True, run_at="x")]) == [False]
    assert store.run_state("a") == (0, None)


def test_beat_reports_a_layout_other_than_its_setting(app: Celery, client: redis.Redis, prefix: str,
                                                      caplog: pytest.LogCaptureFixture, cleanup: None) -> None:
    RedisStore(client, prefix).put_raw({"a": EVERY_10S})
    app.conf.redis_scheduler_shards = 3
    RedisScheduler(app).close()
    assert any("entries exist under" in r.getMessage() and "--to 3" in r.getMessage() for r in caplog.records)
    caplog.clear()
    reshard(client, prefix, 3)
    RedisScheduler(app).close()
    assert not [r for r in caplog.records if r.levelname == "ERROR"]
    app.conf.redis_scheduler_shards = 2
    RedisScheduler(app).close()
    assert any("laid out in 3 shards" in r.getMessage() for r in caplog.records)


def test_reshard_command(redis_url: str, client: redis.Redis, prefix: str, cleanup: None) -> None:
    ShardedStore(client, prefix, 1).put_raw({f"e{i}": EVERY_10S for i in range(5)})
    assert "5 entries moved" in Cli(f"{redis_url}/0", prefix).ok("reshard", "--to", "3")
    assert ShardedStore(client, prefix, 3).across.count() == 5
    assert "unknown scheme" in Cli("nope://x", prefix).fails("reshard", "--to", "3")


def test_a_one_off_due_during_the_move_runs_once(app: Celery, client: redis.Redis, prefix: str, broker: redis.Redis,
                                                 cleanup: None) -> None:
    at = datetime.fromtimestamp(T0 + 5, timezone.utc)
    ShardedStore(client, prefix, 1).put_raw({"once": json.dumps({"task": "tasks.once", "clocked": at.isoformat()})})
    old = RedisScheduler(app)
    old.tick(now=T0)
    reshard(client, prefix, 3)
    old.tick(now=T0 + 5)  # a beat still on the old layout finds nothing to run
    old.close()
    app.conf.redis_scheduler_shards = 3
    new = RedisScheduler(app)
    new.tick(now=T0 + 6)
    new.tick(now=T0 + 7)
    new.close()
    assert sent(broker, app) == ["tasks.once"]


def test_reshard_keeps_names_that_are_not_utf8(client: redis.Redis, prefix: str, cleanup: None) -> None:
    one = ShardedStore(client, prefix, 1)
    raw = b"\xff\xfe-not-utf8"
    client.hset(one.stores[0].keys.schedule, raw, EVERY_10S)
    client.hset(one.stores[0].keys.total_run_count, raw, 4)
    one.put_raw({"ünïcode {braces}": EVERY_10S})
    assert reshard(client, prefix, 3).moved == 2
    tag = prefix.rstrip(":")
    home = f"{{{tag}:{zlib.crc32(raw) % 3}}}"
    assert client.hget(f"{home}:schedule", raw) == EVERY_10S.encode()
    assert client.hget(f"{home}:total_run_count", raw) == b"4"
    assert ShardedStore(client, prefix, 3).get_raw("ünïcode {braces}") == EVERY_10S.encode()


def test_beat_records_the_schema_version_and_refuses_another_before_writing(
        app: Celery, client: redis.Redis, prefix: str, cleanup: None) -> None:
    tag = prefix.rstrip(":")
    app.conf.beat_schedule = {"tick": {"task": "t.tick", "schedule": 10.0}}
    RedisScheduler(app).close()
    assert client.hget(f"{{{tag}}}:meta", SCHEMA_FIELD) == str(SCHEMA_VERSION).encode()
    assert ShardedStore(client, prefix, 1).check_schema() is None

    client.delete(f"{{{tag}}}:schedule", f"{{{tag}}}:due", f"{{{tag}}}:statics")
    client.hset(f"{{{tag}}}:meta", SCHEMA_FIELD, SCHEMA_VERSION + 1)
    with pytest.raises(Refused) as refused:
        RedisScheduler(app)
    line = refused.value.message
    assert "\n" not in line
    assert f"beat refuses to run: schedule {{{tag}}} is at schema version '{SCHEMA_VERSION + 1}'" in line
    assert f"knows version {SCHEMA_VERSION} only" in line
    assert not client.exists(f"{{{tag}}}:schedule"), "beat_schedule synced into a schedule of another schema"
