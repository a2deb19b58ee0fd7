"""Run outcomes in history: run_outcome.lua writes what a worker reported into the run's record, by its stamp."""

from __future__ import annotations

import pytest

from celerybeatredis.storage.history import LOST_AFTER, RECORD, parse, record, runtime_code, runtime_seconds, stamp
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.wire import Plan

from ..support.helpers import EVERY_10S_DOC as EVERY_10S
from ..support.helpers import put


def ran(store: RedisStore, name: str, *times: float) -> None:
    """Commit one sent run of ``name`` at each of ``times`` (history depth 10)."""
    put(store, name, EVERY_10S, score=1.0)
    for at in times:
        store.client.zadd(store.keys.due, {name: at})
        claim = store.runs.claim(batch=10, lease_seconds=30, now=at)
        plans = [Plan(e.name, claim.lease, at + 10, ran=True, run_at="2026-01-01T00:00:10+00:00",
                      history=record("s", stamp(at), 0.5)) for e in claim.entries]
        assert store.runs.commit(plans, history=10) == [True]


def test_a_reported_run_has_its_outcome_runtime_and_error_in_its_record(store: RedisStore) -> None:
    ran(store, "a", 10.0, 20.0, 30.0)
    assert store.runs.run_outcome("a", stamp(10.0), "k", runtime_code(1.5))
    assert store.runs.run_outcome("a", stamp(20.0), "f", runtime_code(0.02), "ValueError: no rows")
    raw = store.client.hget(store.keys.history, "a")
    assert raw is not None and raw.startswith(b"3,0,0:") and raw.endswith(b"|" + stamp(20.0).encode() + b" ValueError: no rows")
    history = parse(store.keys.tag, "a", raw, now=40.0)
    assert [r.result for r in history.runs] == [None, "failed", "succeeded"]
    assert history.runs[2].runtime == pytest.approx(1.5, rel=0.01) and history.runs[1].error == "ValueError: no rows"
    assert history.last_failure is not None and history.last_failure[1] == "ValueError: no rows"
    assert history.last_success == history.runs[2].sent_at and history.failing
    store.runs.run_outcome("a", stamp(30.0), "k", runtime_code(0.1))
    after = parse(store.keys.tag, "a", store.client.hget(store.keys.history, "a"), now=40.0)
    assert not after.failing and after.last_failure == history.last_failure  # the last failure is kept


def test_a_retry_does_not_replace_an_outcome_that_ended_the_run(store: RedisStore) -> None:
    ran(store, "a", 10.0)
    assert store.runs.run_outcome("a", stamp(10.0), "r", runtime_code(1))
    assert store.runs.run_outcome("a", stamp(10.0), "k", runtime_code(2))
    assert not store.runs.run_outcome("a", stamp(10.0), "r", runtime_code(3))
    assert parse(store.keys.tag, "a", store.client.hget(store.keys.history, "a")).runs[0].result == "succeeded"


def test_records_keep_their_outcomes_as_newer_runs_push_old_ones_out(store: RedisStore) -> None:
    ran(store, "a", *(10.0 * k for k in range(1, 13)))
    assert not store.runs.run_outcome("a", stamp(10.0), "k", runtime_code(1))  # no longer kept: left alone
    store.runs.run_outcome("a", stamp(120.0), "v", runtime_code(0))
    ran(store, "a", 130.0)
    raw = store.client.hget(store.keys.history, "a") or b""
    assert len(raw) == len(b"13,0,0:") + 10 * RECORD
    assert [r.result for r in parse(store.keys.tag, "a", raw, now=140.0).runs][:2] == [None, "revoked"]


def test_a_run_never_reported_reads_as_lost_only_when_the_entrys_worker_reports(store: RedisStore) -> None:
    ran(store, "a", 10.0, 20.0)
    raw = store.client.hget(store.keys.history, "a")
    assert [r.result for r in parse(store.keys.tag, "a", raw, now=20.0 + 2 * LOST_AFTER).runs] == [None, None]
    store.runs.run_outcome("a", stamp(20.0), "k", runtime_code(1))
    raw = store.client.hget(store.keys.history, "a")
    assert [r.result for r in parse(store.keys.tag, "a", raw, now=10.0 + LOST_AFTER / 2).runs] == ["succeeded", None]
    late = parse(store.keys.tag, "a", raw, now=10.0 + 2 * LOST_AFTER)
    assert [r.result for r in late.runs] == ["succeeded", "lost"] and not late.failing


def test_a_field_written_before_outcomes_reads_and_takes_them(store: RedisStore) -> None:
    put(store, "a", EVERY_10S, score=1.0)
    old = "".join(record("s", stamp(t), 0.5)[:14] for t in (20.0, 10.0))
    store.client.hset(store.keys.history, "a", f"2,0,0;{old}")
    assert [r.sent_at.timestamp() for r in parse(store.keys.tag, "a", store.client.hget(store.keys.history, "a")).runs] == [20.0, 10.0]
    assert store.runs.run_outcome("a", stamp(10.0), "f", runtime_code(1), "KeyError: 'x'")
    history = parse(store.keys.tag, "a", store.client.hget(store.keys.history, "a"), now=30.0)
    assert [r.result for r in history.runs] == [None, "failed"] and history.sent == 2


@pytest.mark.parametrize(("args", "position"), [
    (["a", "nope", "k", "00", ""], 2), (["a", stamp(10.0), "x", "00", ""], 3), (["a", stamp(10.0), "k", "0", ""], 4),
    (["a", stamp(10.0), "f", "00", "a|b"], 5)])
def test_run_outcome_refuses_bad_arguments_before_writing(store: RedisStore, args: list[str], position: int) -> None:
    ran(store, "a", 10.0)
    before = store.client.hget(store.keys.history, "a")
    with pytest.raises(Exception, match=f"argument {position}"):
        store.runs.scripts.run("run_outcome", args)
    assert store.client.hget(store.keys.history, "a") == before


@pytest.mark.parametrize("seconds", [0.0, 0.001, 0.25, 3.7, 59.0, 3600.0, 86400.0 * 20])
def test_runtime_codes_are_within_one_percent(seconds: float) -> None:
    code = runtime_code(seconds)
    assert len(code) == 2 and runtime_seconds(code) == pytest.approx(seconds, rel=0.01, abs=0.0005)
