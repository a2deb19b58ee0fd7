"""Each Lua script against a real redis-server, including compare-and-set under concurrent claimers."""

from __future__ import annotations

import json
import math
import re
import threading
from pathlib import Path

import pytest
import redis

from celerybeatredis.storage.history import record, stamp
from celerybeatredis.storage.keys import Keys
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.scripts import INCLUDE, SCRIPT_NAMES, load_script_text, script_keys, script_source
from celerybeatredis.storage.wire import Plan, Revert

LUA_DIR = Path(__file__).resolve().parents[2] / "celerybeatredis" / "storage" / "lua"
DEF = json.dumps({"task": "t", "interval": {"every": 10, "period": "seconds"}})


def add(store: RedisStore, name: str, score: float, definition: str = DEF) -> None:
    store.client.hset(store.keys.schedule, name, definition)
    store.client.zadd(store.keys.due, {name: score})


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_script_header_declares_the_keys_it_is_called_with(name: str) -> None:
    text = (LUA_DIR / f"{name}.lua").read_text()
    header = text.split("]]", 1)[0]
    declared = re.findall(r"KEYS\[(\d+)\]\s+(\{T\}:\w+)", header)
    assert [int(i) for i, _ in declared] == list(range(1, len(declared) + 1))
    keys = script_keys(Keys("T"), name)
    assert [k for _, k in declared] == keys
    assert "ARGV" in header and "Returns" in header
    used = {int(i) for i in re.findall(r"KEYS\[(\d+)\]", script_source(name).split("]]", 1)[1])}
    assert used <= set(range(1, len(keys) + 1))


def test_scripts_ship_with_the_package() -> None:
    for name in SCRIPT_NAMES:
        assert load_script_text(name) == (LUA_DIR / f"{name}.lua").read_text()
    for include in (LUA_DIR / "includes").glob("*.lua"):
        assert load_script_text(f"includes/{include.stem}") == include.read_text()


@pytest.mark.parametrize("name", SCRIPT_NAMES)
def test_includes_are_pulled_in_once_each_and_never_copied(name: str) -> None:
    """A helper lives in lua/includes/ only; the script Redis gets holds it in place of the marker line."""
    text = (LUA_DIR / f"{name}.lua").read_text()
    source = script_source(name)
    assert "--@include" not in source
    defines = {include: re.findall(r"local function (\w+)", (LUA_DIR / "includes" / f"{include}.lua").read_text())
               for include in INCLUDE.findall(text)}
    for include, functions in defines.items():
        assert functions, include
        assert all(source.count(f"local function {f}(") == 1 for f in functions), include
    helpers = {m for f in (LUA_DIR / "includes").glob("*.lua") for m in re.findall(r"local function (\w+)", f.read_text())}
    assert not helpers & set(re.findall(r"local function (\w+)", text))


def test_includes_take_no_keys_or_arguments_of_their_own() -> None:
    """Helpers get what they touch as parameters, so a script's header stays the whole of its contract."""
    for include in (LUA_DIR / "includes").glob("*.lua"):
        body = include.read_text().split("]]", 1)[1]
        assert "KEYS" not in body and "ARGV" not in body, include.name


def test_claim_takes_due_entries_in_score_order_and_leases_them(store: RedisStore) -> None:
    add(store, "later", 2000.0)
    add(store, "due-b", 900.0)
    add(store, "due-a", 0.0)
    add(store, "run-now", -1.0)
    claim = store.runs.claim(batch=10, lease_seconds=30, now=1000.0)
    assert [e.name for e in claim.entries] == ["run-now", "due-a", "due-b"]
    assert [e.score for e in claim.entries] == [-1.0, 0.0, 900.0]
    assert claim.entries[0].definition == DEF.encode()
    assert claim.now == 1000.0 and float(claim.lease) == 1030.0
    assert store.due_score("due-a") == 1030.0
    assert claim.next_score == 2000.0  # the lowest score left unclaimed, not its own lease
    assert store.runs.claim(batch=10, lease_seconds=30, now=1000.0).entries == []


def test_claim_is_bounded_by_the_batch(store: RedisStore) -> None:
    for i in range(25):
        add(store, f"e{i}", 1.0)
    sizes = [len(store.runs.claim(batch=10, lease_seconds=30, now=5.0).entries) for _ in range(4)]
    assert sizes == [10, 10, 5, 0]


def test_claim_returns_run_state_and_drops_entries_whose_definition_is_gone(store: RedisStore) -> None:
    add(store, "kept", 1.0)
    store.client.hset(store.keys.total_run_count, "kept", 4)
    store.client.hset(store.keys.last_run_at, "kept", "2026-01-01T00:00:00+00:00")
    store.client.zadd(store.keys.due, {"ghost": 1.0})
    store.client.hset(store.keys.total_run_count, "ghost", 9)
    claim = store.runs.claim(batch=10, lease_seconds=30, now=5.0)
    assert claim.removed == 1
    (entry,) = claim.entries
    assert entry.total_run_count == 4 and entry.last_run_at == "2026-01-01T00:00:00+00:00"
    assert store.due_score("ghost") is None
    assert store.client.hget(store.keys.total_run_count, "ghost") is None


def test_claim_uses_redis_time_when_no_now_is_given(store: RedisStore) -> None:
    add(store, "e", 1.0)
    claim = store.runs.claim(batch=10, lease_seconds=30)
    assert abs(claim.now - store.server_time()) < 5
    assert len(claim.entries) == 1


def test_two_concurrent_claimers_never_claim_the_same_entry(redis_url: str, store: RedisStore) -> None:
    for i in range(2000):
        store.client.hset(store.keys.schedule, f"e{i}", DEF)
    store.client.zadd(store.keys.due, {f"e{i}": 1.0 for i in range(2000)})
    claimed: list[list[str]] = [[], []]

    def claimer(slot: int) -> None:
        own = RedisStore(redis.Redis.from_url(f"{redis_url}/0"), store.keys.tag + ":")
        while True:
            got = own.runs.claim(batch=50, lease_seconds=60, now=10.0).entries
            if not got:
                return
            claimed[slot] += [e.name for e in got]

    threads = [threading.Thread(target=claimer, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(claimed[0]) + len(claimed[1]) == 2000
    assert not set(claimed[0]) & set(claimed[1])


def test_commit_is_a_compare_and_set_on_the_lease(store: RedisStore) -> None:
    add(store, "mine", 1.0)
    add(store, "stolen", 1.0)
    add(store, "edited", 1.0)
    claim = store.runs.claim(batch=10, lease_seconds=30, now=10.0)
    store.client.zadd(store.keys.due, {"stolen": 99.0})  # another beat re-claimed it after the lease
    store.client.zadd(store.keys.due, {"edited": 0.0})  # the API poked it meanwhile
    plans = [Plan(e.name, claim.lease, 50.0, ran=True, run_at="2026-01-01T00:00:10+00:00", digest="d 1") for e in claim.entries]
    assert dict(zip([p.name for p in plans], store.runs.commit(plans))) == {"mine": True, "stolen": False, "edited": False}
    # Committing the same lease twice fails: the first commit moved the score off the lease.
    assert store.runs.commit(plans[:1]) == [False]
    assert store.due_score("mine") == 50.0
    assert store.due_score("stolen") == 99.0 and store.due_score("edited") == 0.0
    assert store.run_state("mine")[0] == 1
    assert store.run_state("stolen") == (0, None)


def test_commit_writes_run_state_digest_and_quarantine(store: RedisStore) -> None:
    add(store, "ok", 1.0)
    add(store, "bad", 1.0, "{not json")
    claim = store.runs.claim(batch=10, lease_seconds=30, now=10.0)
    result = store.runs.commit([
        Plan("ok", claim.lease, 20.0, ran=True, run_at="2026-01-01T00:00:10+00:00", digest="abc 10.0",
             seed_total_run_count=5, seed_last_run_at="2014-08-30T08:10:06+00:00"),
        Plan("bad", claim.lease, math.inf, digest="def 10.0", invalid_reason="entry 'bad': not valid JSON"),
    ])
    assert result == [True, True]
    count, last = store.run_state("ok")
    assert count == 6 and last is not None and last.isoformat() == "2026-01-01T00:00:10+00:00"
    assert store.client.hget(store.keys.digest, "ok") == b"abc 10.0"
    assert store.due_score("bad") == math.inf
    assert store.invalid_reason("bad") == "entry 'bad': not valid JSON"
    store.client.zadd(store.keys.due, {"bad": 1.0})
    claim = store.runs.claim(batch=10, lease_seconds=30, now=11.0)
    store.runs.commit([Plan("bad", claim.lease, 30.0, digest="xyz 11.0")])
    assert store.invalid_reason("bad") is None


def test_claim_and_commit_of_batches_larger_than_one_multi_field_command(store: RedisStore) -> None:
    """claim.lua and commit.lua send multi-field commands in slices; every entry of a big batch is handled."""
    pipe = store.client.pipeline(transaction=False)
    for i in range(2600):
        pipe.hset(store.keys.schedule, f"e{i}", DEF)
        pipe.zadd(store.keys.due, {f"e{i}": 1.0 + i / 10000})
        pipe.hset(store.keys.total_run_count, f"e{i}", i)
        pipe.hset(store.keys.digest, f"e{i}", f"d{i} 1")
    pipe.execute()
    gone = {f"e{i}" for i in range(0, 2600, 7)}
    store.client.hdel(store.keys.schedule, *gone)
    store.client.hset(store.keys.invalid, "e1", "old reason")
    claim = store.runs.claim(batch=2500, lease_seconds=30, now=10.0)
    expected = [f"e{i}" for i in range(2500) if f"e{i}" not in gone]
    assert [e.name for e in claim.entries] == expected
    assert claim.removed == len([i for i in range(2500) if f"e{i}" in gone])
    assert all(e.total_run_count == int(e.name[1:]) and e.digest == f"{e.name[1:].join(['d', ' 1'])}" for e in claim.entries)
    assert store.client.zmscore(store.keys.due, expected) == [float(claim.lease)] * len(expected)
    assert not any(store.client.hexists(store.keys.total_run_count, n) for n in ("e0", "e7", "e2499"))
    plans = [Plan(e.name, claim.lease, 100.0 + i, ran=i % 2 == 0, run_at=f"2026-01-01T00:00:{i % 60:02d}+00:00" * (i % 2 == 0),
                  digest="" if i % 3 else f"new {i}", invalid_reason="broken" if i == 5 else "")
             for i, e in enumerate(claim.entries)]
    store.client.zadd(store.keys.due, {expected[3]: 0.0})  # poked meanwhile: its commit must fail
    flags = store.runs.commit(plans)
    assert flags == [i != 3 for i in range(len(plans))]
    scores = store.client.zmscore(store.keys.due, expected)
    assert scores == [0.0 if i == 3 else 100.0 + i for i in range(len(plans))]
    counts = store.client.hmget(store.keys.total_run_count, expected)
    assert counts == [str(int(n[1:]) + (1 if i % 2 == 0 and i != 3 else 0)).encode() for i, n in enumerate(expected)]
    lasts = store.client.hmget(store.keys.last_run_at, expected)
    assert lasts == [f"2026-01-01T00:00:{i % 60:02d}+00:00".encode() if i % 2 == 0 and i != 3 else None
                     for i in range(len(plans))]
    digests = store.client.hmget(store.keys.digest, expected)
    assert digests == [f"new {i}".encode() if i % 3 == 0 and i != 3 else f"d{n[1:]} 1".encode()
                       for i, n in enumerate(expected)]
    assert store.client.hgetall(store.keys.invalid) == {expected[5].encode(): b"broken"}


def test_seeded_run_state_is_written_once(store: RedisStore) -> None:
    add(store, "e", 1.0)
    store.client.hset(store.keys.total_run_count, "e", 2)
    claim = store.runs.claim(batch=10, lease_seconds=30, now=10.0)
    store.runs.commit([Plan("e", claim.lease, 20.0, digest="d 1", seed_total_run_count=5)])
    assert store.run_state("e")[0] == 2


def test_revert_undoes_a_run_only_if_unchanged(store: RedisStore) -> None:
    add(store, "a", 1.0)
    add(store, "b", 1.0)
    store.client.hset(store.keys.total_run_count, "b", 3)
    store.client.hset(store.keys.last_run_at, "b", "2026-01-01T00:00:00+00:00")
    claim = store.runs.claim(batch=10, lease_seconds=30, now=10.0)
    store.runs.commit([Plan(n, claim.lease, 20.0, ran=True, run_at="2026-01-01T00:00:10+00:00", digest="d 1") for n in ("a", "b")])
    store.client.zadd(store.keys.due, {"a": 0.0})
    assert store.runs.revert([Revert("a", 20.0, 15.0, None), Revert("b", 20.0, 15.0, "2026-01-01T00:00:00+00:00")]) == [False, True]
    assert store.run_state("a")[0] == 1
    count, last = store.run_state("b")
    assert count == 3 and last is not None and last.isoformat() == "2026-01-01T00:00:00+00:00"
    assert store.due_score("b") == 15.0


def test_revert_uncounts_its_runs_history_record_even_after_the_entry_ran_again(store: RedisStore) -> None:
    """Another beat ran the entry since (its record is the newest): the run not sent is found by its stamp, marked
    as a publish error and taken off the sent counters, though its run state is left to the newer run."""
    mine, theirs = record("s", stamp(10.0), 0.0), record("m", stamp(20.0), 5.0)
    add(store, "a", 30.0)
    store.client.hset(store.keys.history, "a", f"2,0,1:{theirs}{mine}")
    store.client.hset(store.keys.total_run_count, "a", 2)
    assert store.runs.revert([Revert("a", 20.0, 15.0, None, "", stamp(10.0))]) == [False]
    assert store.client.hget(store.keys.history, "a") == f"1,0,1:{theirs}e{mine[1:]}".encode()
    assert (store.run_state("a")[0], store.due_score("a")) == (2, 30.0)
    assert store.runs.revert([Revert("a", 20.0, 15.0, None, "", stamp(10.0))]) == [False]  # marked once only
    assert store.client.hget(store.keys.history, "a") == f"1,0,1:{theirs}e{mine[1:]}".encode()


def test_reconcile_finds_bare_hset_edits_and_hdel(store: RedisStore) -> None:
    add(store, "planned", 500.0)
    store.client.hset(store.keys.digest, "planned", "0" * 40 + " 1.0")
    store.client.hset(store.keys.schedule, "bare", DEF)
    store.client.zadd(store.keys.due, {"deleted": 500.0})
    store.client.hset(store.keys.last_run_at, "deleted", "x")
    steps = []
    while True:
        steps.append(store.runs.reconcile_step(1000))
        if steps[-1].wrapped:
            break
    assert sum(s.poked for s in steps) == 2  # "bare" (not indexed) and "planned" (digest differs)
    assert sum(s.dropped for s in steps) == 1
    assert store.due_score("bare") == 0.0 and store.due_score("planned") == 0.0
    assert store.due_score("deleted") is None and store.client.hget(store.keys.last_run_at, "deleted") is None


def test_reconcile_leaves_up_to_date_entries_alone(store: RedisStore) -> None:
    from celerybeatredis.definitions.codec import digest

    add(store, "fresh", 500.0)
    store.client.hset(store.keys.digest, "fresh", f"{digest(DEF)} 1.0")
    step = store.runs.reconcile_step(1000)
    assert step.poked == 0 and store.due_score("fresh") == 500.0


def test_one_reconciler_pass_over_100k_entries_takes_about_n_over_batch_steps(store: RedisStore) -> None:
    """At the default pace (one step of 2,000 a second) a bare HSET is found within 60 s at 100,000 entries."""
    pipe = store.client.pipeline(transaction=False)
    for i in range(100_000):
        pipe.hset(store.keys.schedule, f"e{i}", DEF)
        if i % 10_000 == 9_999:
            pipe.execute()
    pipe.execute()
    steps, seen = 0, 0
    while True:
        step = store.runs.reconcile_step(2000)
        steps += 1
        seen += step.seen
        if step.wrapped:
            break
    assert seen == 100_000
    assert store.client.zcard(store.keys.due) == 100_000
    assert steps <= 55


def test_reconcile_reads_short_full_and_anchorless_digests(store: RedisStore) -> None:
    from celerybeatredis.definitions.codec import digest

    sha = digest(DEF)
    fresh = {"short": f"{sha[:12]} 1.0", "full": f"{sha} 1.0", "ran": sha[:12]}
    stale = {"other": f"{'0' * 12} 1.0", "too-short": f"{sha[:6]} 1.0", "garbage": "not a digest"}
    for name, value in {**fresh, **stale}.items():
        add(store, name, 500.0)
        store.client.hset(store.keys.digest, name, value)
    while not store.runs.reconcile_step(1000).wrapped:
        pass
    assert {n: store.due_score(n) for n in fresh} == dict.fromkeys(fresh, 500.0)
    assert {n: store.due_score(n) for n in stale} == dict.fromkeys(stale, 0.0)
