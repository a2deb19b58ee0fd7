"""RedisStore's writes and reads of one schedule (``storage/redis_store.py``), against a real redis-server."""

from __future__ import annotations

import json

from celerybeatredis.storage.redis_store import RedisStore

DEF = json.dumps({"task": "t", "interval": {"every": 10, "period": "seconds"}})


def test_upsert_pokes_only_changed_definitions_and_respects_dynamic_entries(store: RedisStore) -> None:
    assert store.put_raw({"a": DEF, "b": DEF}) == (2, 0, [], [])
    store.client.zadd(store.keys.due, {"a": 500.0, "b": 500.0})
    other = json.dumps({"task": "t2", "interval": {"every": 1}})
    assert store.put_raw({"a": DEF, "b": other}) == (1, 1, [], [])
    assert store.due_score("a") == 500.0 and store.due_score("b") == 0.0
    assert store.put_raw({"a": other, "s": DEF}, static=True) == (1, 0, ["a"], [])
    assert store.get_raw("a") == DEF.encode()
    assert store.client.smembers(store.keys.statics) == {b"s"}


def test_a_static_sync_reports_the_statics_it_overwrote_after_an_edit_in_redis_not_after_a_config_change(
        store: RedisStore) -> None:
    other = json.dumps({"task": "t2", "interval": {"every": 1}})
    assert store.put_raw({"s": DEF}, static=True).overwritten == []
    assert store.put_raw({"s": other}, static=True) == (1, 0, [], [])  # beat_schedule changed: not an edit
    store.client.hset(store.keys.schedule, "s", DEF)  # a user's HSET over the static entry
    assert store.put_raw({"s": other}, static=True) == (1, 0, [], ["s"])
    assert store.get_raw("s") == other.encode()
    assert store.put_raw({"s": other}, static=True) == (0, 1, [], [])
    store.remove_names(["s"])
    assert not store.client.exists(store.keys.static_digest)


def test_remove_and_run_now(store: RedisStore) -> None:
    store.put_raw({"a": DEF, "b": DEF}, static=True)
    store.client.hset(store.keys.total_run_count, "a", 1)
    assert store.run_now_names(["b", "nope"]) == [True, False]
    assert store.due_score("b") == -1.0
    assert store.remove_names(["a", "nope"]) == 1
    assert store.get_raw("a") is None and store.due_score("a") is None
    assert store.client.hget(store.keys.total_run_count, "a") is None
    assert store.client.smembers(store.keys.statics) == {b"b"}
