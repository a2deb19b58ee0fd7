"""Every Lua script does all of its work or none: what could fail is checked before the first write.

Redis does not roll back a script that fails half-way, so a key of another
type or a run count that is not an integer must be found before anything is
written; a bad entry is quarantined by name and the rest of its batch goes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from celery import Celery

from celerybeatredis.delivery.publisher import log_quarantines
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.scripts import SCRIPT_KEYS, SCRIPT_NAMES
from celerybeatredis.storage.wire import Plan, Revert

from ..support.helpers import EVERY_10S, T0, put, sent

DEF = json.dumps({"task": "t", "interval": {"every": 10, "period": "seconds"}})
DEF2 = json.dumps({"task": "t", "interval": {"every": 20, "period": "seconds"}})
RUN_AT = "2026-03-02T12:00:00+00:00"
#: The type each key a script writes must have (history is left alone when it is not a hash; synced is only read).
KINDS = {"schedule": "hash", "due": "zset", "total_run_count": "hash", "last_run_at": "hash", "digest": "hash",
         "invalid": "hash", "statics": "set", "static_digest": "hash", "meta": "hash", "beats": "hash",
         "running": "hash", "failures": "hash", "pending": "zset", "pending_ids": "hash", "outcomes": "hash"}


def snapshot(store: RedisStore) -> dict[bytes, bytes | None]:
    """Every key of the schedule, dumped: two equal snapshots mean nothing was written."""
    return {key: store.client.dump(key) for key in sorted(store.client.scan_iter(match=f"{{{store.keys.tag}}}:*"))}


def arguments(store: RedisStore, script: str) -> list[Any]:
    """Arguments with which ``script`` writes to the schedule laid out by :func:`layout`."""
    if script == "commit":
        claim = store.runs.claim(10, 30, T0)
        return store.runs.commit_args([Plan(e.name, claim.lease, T0 + 100, True, RUN_AT, "abc") for e in claim.entries])
    return {
        "claim": [10, 30, repr(T0)],
        "revert": ["a", repr(T0 + 5), repr(T0 + 50), "", "", "", "b", repr(T0 + 5), repr(T0 + 50), "", "", ""],
        "reconcile": [100],
        "upsert": ["dynamic", "a", DEF2, "new", DEF],
        "remove": ["a", "b"],
        "run_now": ["a", "b"],
        "replace": ["a", DEF, DEF2, "b", DEF, DEF2],
        "restore_state": ["new", 3, RUN_AT],
        "export": ["a", "b"],
        "adopt": ["new", DEF, "3", RUN_AT, "", "1", "0"],
        "heartbeat": ["beat-1", "{}", 60],
        "renew": [repr(T0 + 5), 3, "a", "b"],
        "run_started": ["a", "t-a"],
        "run_ended": ["a", "t-a", "1", "failed", 3],
        "run_outcome": ["a", "0000000a", "f", "0a", "KeyError: 'x'"],
        "pending_claim": [10, 3, repr(T0 + 100)],
        "pending_clear": ["a", "t-a"],
    }[script]


def layout(store: RedisStore) -> None:
    """Two entries with run state, a static and a heartbeat: every key a script reads exists."""
    client, keys = store.client, store.keys
    for name in ("a", "b"):
        put(store, name, DEF, T0 + 5)
        client.hset(keys.total_run_count, name, 1)
        client.hset(keys.last_run_at, name, RUN_AT)
        client.hset(keys.digest, name, "0123456789ab")
    client.hset(keys.invalid, "a", "old reason")
    client.sadd(keys.statics, "b")
    client.hset(keys.static_digest, "b", "0123456789ab")
    client.hset(keys.meta, "reconcile_schedule_cursor", "0")
    client.hset(keys.beats, "old", "{}")
    client.hset(keys.running, "a", f"t-a {T0 + 60:.3f} 60 h")  # a run in progress, one held behind it
    client.hset(keys.failures, "a", 1)
    client.zadd(keys.pending, {"a": T0})  # a run whose beat died before the broker took it (at-least-once)
    client.hset(keys.pending_ids, "a", "t-a")


CASES = [(script, key) for script in SCRIPT_NAMES for key in SCRIPT_KEYS[script] if key not in ("history", "synced")]


@pytest.mark.parametrize(("script", "key"), CASES, ids=[f"{s}-{k}" for s, k in CASES])
def test_a_key_of_another_type_fails_the_script_before_it_writes(store: RedisStore, script: str, key: str) -> None:
    layout(store)
    args = arguments(store, script)
    name = getattr(store.keys, key)
    store.client.delete(name)
    store.client.set(name, "x")
    before = snapshot(store)
    with pytest.raises(redis.ResponseError, match=f"WRONGTYPE {name} is a string, not a {KINDS[key]}"):
        store.scripts.run(script, args)
    assert snapshot(store) == before


@pytest.fixture
def entries(store: RedisStore) -> Iterator[list[str]]:
    names = [f"e{i}" for i in range(5)]
    for name in names:
        put(store, name, DEF, T0)
    yield names


def test_commit_quarantines_an_entry_whose_count_is_not_an_integer_and_commits_the_rest(
        store: RedisStore, entries: list[str], caplog: pytest.LogCaptureFixture) -> None:
    claim = store.runs.claim(10, 30, T0)
    store.client.hset(store.keys.total_run_count, mapping={"e1": 4, "e2": "x", "e3": "9223372036854775807"})
    plans = [Plan(e.name, claim.lease, T0 + 10, True, RUN_AT) for e in claim.entries]
    committed = store.runs.commit(plans)
    assert committed == [True, True, False, False, True] and committed.quarantined == ["e2", "e3"]
    with caplog.at_level(logging.ERROR, logger="celerybeatredis.schedulers"):
        log_quarantines(store, committed.quarantined)  # what beat does with the commit's answer
    assert [store.run_state(n)[0] for n in ("e0", "e1", "e4")] == [1, 5, 1]
    assert [store.due_score(n) for n in entries] == [T0 + 10, T0 + 10, float("inf"), float("inf"), T0 + 10]
    for name, value in (("e2", "x"), ("e3", "9223372036854775807")):
        reason = store.invalid_reason(name)
        assert reason is not None and reason.startswith(f"entry '{name}': field 'total_run_count': ")
        assert f"holds '{value}'" in reason and "\n" not in reason
        assert store.client.hget(store.keys.last_run_at, name) is None
    logged = [r.getMessage() for r in caplog.records]
    assert sum("entry 'e2': field 'total_run_count'" in m for m in logged) == 1
    assert sum("entry 'e3': field 'total_run_count'" in m for m in logged) == 1


def test_commit_checks_its_arguments_before_it_writes(store: RedisStore, entries: list[str]) -> None:
    claim = store.runs.claim(10, 30, T0)
    args = store.runs.commit_args([Plan(e.name, claim.lease, T0 + 10, True, RUN_AT) for e in claim.entries])
    args[1 + 11 * 3 + 2] = "soon"  # the fourth entry's next score
    before = snapshot(store)
    with pytest.raises(redis.ResponseError, match=r"commit: argument 37 must be a score"):
        store.scripts.run("commit", args)
    assert snapshot(store) == before


def test_revert_quarantines_an_entry_whose_count_is_not_an_integer(store: RedisStore, entries: list[str]) -> None:
    claim = store.runs.claim(10, 30, T0)
    assert all(store.runs.commit([Plan(e.name, claim.lease, T0 + 10, True, RUN_AT) for e in claim.entries]))
    store.client.hset(store.keys.total_run_count, "e1", "many")
    store.runs.revert([Revert(n, T0 + 10, T0 + 15, None) for n in ("e0", "e1", "e2")])
    assert store.run_state("e0") == (0, None) and store.due_score("e0") == T0 + 15
    assert store.due_score("e1") == float("inf")
    assert (store.invalid_reason("e1") or "").startswith("entry 'e1': field 'total_run_count': ")
    assert store.run_state("e2") == (0, None) and store.due_score("e2") == T0 + 15


def test_restore_state_and_adopt_refuse_a_count_that_is_not_an_integer_before_writing(store: RedisStore) -> None:
    before = snapshot(store)
    with pytest.raises(redis.ResponseError, match="restore_state: entry 'b': field 'total_run_count': 'x'"):
        store.scripts.run("restore_state", ["a", 1, RUN_AT, "b", "x", ""])
    with pytest.raises(redis.ResponseError, match=r"adopt: entry 'b': field 'total_run_count': '1\.5'"):
        store.scripts.run("adopt", ["a", DEF, "1", "", "", "0", "0", "b", DEF, "1.5", "", "", "0", "0"])
    assert snapshot(store) == before


def test_adopt_replaces_a_stored_count_that_is_not_an_integer(store: RedisStore) -> None:
    put(store, "a", DEF, T0)
    store.client.hset(store.keys.total_run_count, "a", "x")
    store.scripts.run("adopt", ["a", DEF, "7", RUN_AT, "", "0", "0"])
    assert store.run_state("a")[0] == 7


def test_a_claim_that_fails_leases_nothing_so_runs_go_out_as_soon_as_the_key_is_fixed(
        app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    for name in ("a", "b", "c"):
        put(store, name, EVERY_10S, -1)  # run now
    store.client.set(store.keys.total_run_count, "x")
    scheduler = RedisScheduler(app)
    try:
        scheduler.tick()
        assert [store.due_score(n) for n in ("a", "b", "c")] == [-1, -1, -1]
        store.client.delete(store.keys.total_run_count)
        scheduler.tick()
    finally:
        scheduler.close()
    assert sorted(m.headers["periodic_task_name"] for m in sent(broker, app)) == ["a", "b", "c"]
