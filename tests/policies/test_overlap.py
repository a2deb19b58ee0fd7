"""Overlap: the decision (pure), the run markers commit.lua and the worker scripts keep, beat and a worker in-process."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis
from celery import Celery

import celerybeatredis.worker  # noqa: F401 - connects the worker integration's signal handlers
from celerybeatredis.definitions.fields import parse_overlap, parse_timeout
from celerybeatredis.delivery.sending import HEADER, REPORT
from celerybeatredis.exceptions import InvalidDefinition
from celerybeatredis.policies.overlap import HOLD, busy, marker, read_marker
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.history import parse as parse_history
from celerybeatredis.storage.keys import RUN_NOW
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.store import ScheduleStore

from ..support.decider import EVERY_10S, Decider, claimed, iso, short
from ..support.helpers import T0, put, sent

SKIP = dict(EVERY_10S, overlap="skip")
BUFFER = dict(EVERY_10S, overlap="buffer_one", overlap_timeout=300)


def with_marker(doc: dict[str, Any], mark: str | None, **kwargs: Any) -> Any:
    entry = claimed(doc, stored_digest=short(doc), **kwargs)
    entry.running = mark.encode() if mark is not None else None
    return entry


# --- the decision, pure --------------------------------------------------------------------


def test_a_run_of_an_entry_with_an_overlap_mode_gets_a_marker_named_by_its_task_id() -> None:
    decision = Decider().pure(with_marker(SKIP, None, count=1, last=T0 - 10), T0)
    assert decision.outcome == "run"
    found = read_marker(decision.plan.running)
    assert found is not None and found.expires == pytest.approx(T0 + 3600) and not found.held
    assert len(found.task_id) == 36


def test_skip_leaves_out_a_run_due_while_the_last_one_runs_and_records_why() -> None:
    entry = with_marker(SKIP, marker("t-1", T0 - 5, 60), count=1, last=T0 - 10)
    decision = Decider().pure(entry, T0)
    assert (decision.outcome, decision.run, decision.plan.ran, decision.plan.score) == ("overlapped", None, False, T0 + 10)
    assert decision.plan.running == ""  # the marker of the run in progress stays as it is


def test_a_lapsed_marker_no_longer_holds_the_entry_back() -> None:
    entry = with_marker(SKIP, marker("t-1", T0 - 61, 60), count=1, last=T0 - 10)
    decision = Decider().pure(entry, T0)
    assert decision.outcome == "run" and read_marker(decision.plan.running).task_id != "t-1"  # type: ignore[union-attr]


def test_buffer_one_holds_the_run_behind_the_one_in_progress_until_its_marker_lapses() -> None:
    entry = with_marker(BUFFER, marker("t-1", T0 - 5, 300), count=1, last=T0 - 10)
    decision = Decider().pure(entry, T0)
    assert (decision.outcome, decision.run, decision.plan.running, decision.plan.score) == ("buffered", None, HOLD, T0 + 295)


def test_allow_and_run_now_ignore_a_run_in_progress() -> None:
    decider = Decider()
    assert decider.pure(with_marker(EVERY_10S, marker("t-1", T0, 60), count=1, last=T0 - 10), T0).outcome == "run"
    forced = decider.pure(with_marker(SKIP, marker("t-1", T0, 60), score=RUN_NOW, count=1, last=T0 - 1), T0)
    assert forced.outcome == "run" and forced.plan.running


def test_markers_that_do_not_read_hold_nothing_back() -> None:
    assert busy(b"garbage", T0) is None and busy(None, T0) is None and busy(b"id notanumber 60", T0) is None
    assert busy(marker("id", T0, 60).encode(), T0) is not None


@pytest.mark.parametrize(("doc", "field"), [
    (dict(EVERY_10S, overlap="sometimes"), "overlap"), (dict(EVERY_10S, overlap=True), "overlap"),
    (dict(EVERY_10S, overlap="skip", overlap_timeout=-1), "overlap_timeout"),
    (dict(EVERY_10S, overlap_timeout="1h"), "overlap_timeout"),
    (dict(EVERY_10S, pause_after_failures=0), "pause_after_failures"),
])
def test_a_bad_overlap_value_quarantines_the_entry_naming_the_field(doc: dict[str, Any], field: str) -> None:
    decision = Decider().planned(claimed(doc, last=T0 - 10), T0)
    assert decision.outcome == "quarantined" and f"field '{field}'" in decision.plan.invalid_reason


def test_the_parsers_name_their_field() -> None:
    with pytest.raises(InvalidDefinition, match="unknown mode 'never'") as err:
        parse_overlap("never")
    assert err.value.field == "overlap"
    with pytest.raises(InvalidDefinition) as err:
        parse_timeout(0)
    assert err.value.field == "overlap_timeout"


# --- the scripts ---------------------------------------------------------------------------


def claim_and_decide(store: RedisStore, at: float) -> Any:
    """Claim the one due entry (last run one interval ago) and decide it as beat would, with the claim's lease."""
    store.client.hset(store.keys.last_run_at, "e", iso(at - 10))
    claim = store.runs.claim(10, 30, at)
    decision = Decider().pure(claim.entries[0], at)
    decision.lease = claim.lease
    return decision


def ended(store: RedisStore, name: str, task_id: str, has_marker: bool = True, outcome: str = "ok",
          limit: int = 0) -> list[int]:
    return [int(v) for v in store.scripts.run("run_ended", [name, task_id, "1" if has_marker else "0", outcome, limit])]


def test_commit_writes_the_marker_and_a_worker_ends_only_its_own_run(store: RedisStore) -> None:
    put(store, "e", SKIP, score=T0)
    decision = claim_and_decide(store, T0)
    assert store.runs.commit([decision.plan]) == [True]
    mark = store.client.hget(store.keys.running, "e")
    assert mark is not None and mark.decode() == decision.plan.running
    tid = mark.split(b" ")[0].decode()
    assert ended(store, "e", "another-run") == [0, 0]
    assert store.client.hget(store.keys.running, "e") == mark
    assert ended(store, "e", tid) == [1, 0]
    assert store.client.hget(store.keys.running, "e") is None
    # The next claim hands the marker over only while there is one.
    store.client.zadd(store.keys.due, {"e": T0})
    assert store.runs.claim(10, 30, T0 + 1).entries[0].running is None


def test_a_held_run_becomes_due_when_the_run_in_progress_ends(store: RedisStore) -> None:
    put(store, "e", BUFFER, score=T0)
    store.client.hset(store.keys.running, "e", marker("t-1", T0 - 5, 300))
    decision = claim_and_decide(store, T0)
    assert store.runs.commit([decision.plan]) == [True]
    assert store.client.hget(store.keys.running, "e").endswith(b" h")  # type: ignore[union-attr]
    assert store.client.zscore(store.keys.due, "e") == T0 + 295
    assert ended(store, "e", "t-1") == [2, 0]
    assert store.client.zscore(store.keys.due, "e") == 0


def test_a_hold_whose_run_ended_meanwhile_makes_the_entry_due_at_once(store: RedisStore) -> None:
    put(store, "e", BUFFER, score=T0)
    store.client.hset(store.keys.running, "e", marker("t-1", T0 - 5, 300))
    decision = claim_and_decide(store, T0)
    ended(store, "e", "t-1")  # between the claim and the commit
    assert store.runs.commit([decision.plan]) == [True]
    assert store.client.zscore(store.keys.due, "e") == 0 and store.client.hget(store.keys.running, "e") is None


def test_run_started_renews_only_its_own_marker(store: RedisStore) -> None:
    store.client.hset(store.keys.running, "e", marker("t-1", T0 - 100, 60) + HOLD)
    assert store.scripts.run("run_started", ["e", "t-2"]) == 0
    assert store.scripts.run("run_started", ["e", "t-1"]) == 1
    found = read_marker(store.client.hget(store.keys.running, "e"))
    assert found is not None and found.held and found.expires == pytest.approx(store.server_time() + 60, abs=5)


def test_failures_in_a_row_are_counted_reset_by_a_success_and_reported_once_at_the_limit(store: RedisStore) -> None:
    assert ended(store, "e", "t", False, "failed", 3) == [0, 1]
    assert ended(store, "e", "t", False, "failed", 3) == [0, 2]
    assert ended(store, "e", "t", False, "ok", 3) == [0, 0]
    assert [ended(store, "e", "t", False, "failed", 3)[1] for _ in range(4)] == [1, 2, 3, 1]
    assert ended(store, "e", "t", False, "other", 3) == [0, 0]
    assert store.client.hget(store.keys.failures, "e") == b"1"


def test_a_revert_drops_the_marker_of_the_run_never_sent(store: RedisStore) -> None:
    from celerybeatredis.storage.wire import Revert

    put(store, "e", SKIP, score=T0)
    decision = claim_and_decide(store, T0)
    store.runs.commit([decision.plan])
    assert store.runs.revert([Revert("e", decision.plan.score, T0 + 5, None)]) == [True]
    assert store.client.hget(store.keys.running, "e") is None


# --- beat and a worker, in-process ---------------------------------------------------------


def worker_app(app: Celery, calls: list[str], fail: bool = False) -> Any:
    """The task entries send, in ``app`` (a name of its own when it fails: Celery keeps the first task of a name)."""
    def add(*args: Any) -> None:
        calls.append("ran")
        if fail:
            raise RuntimeError("disk full")

    return app.task(name="tasks.fail" if fail else "tasks.add", shared=False)(add)


def run_as_worker(task: Any, message_headers: dict[str, Any], task_id: str) -> None:
    """Run ``task`` in this process as a worker would for the message, with the task signals the integration hears."""
    headers = {HEADER: message_headers[HEADER], REPORT: message_headers[REPORT]}
    task.apply(task_id=task_id, headers=headers)


def test_beat_skips_while_a_worker_runs_the_entry_and_sends_once_it_has_ended(app: Celery, store: RedisStore,
                                                                          broker: redis.Redis) -> None:
    put(store, "e", SKIP)
    task = worker_app(app, calls := [])
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0 - 10)  # planned: a new entry runs one interval after beat first sees it
        sched.tick(now=T0)
        first = sent(broker, app)
        assert len(first) == 1 and first[0].headers[REPORT] == {"tag": store.keys.tag, "overlap": True, "failures": 0}
        assert store.client.hget(store.keys.running, "e").split(b" ")[0].decode() == first[0].id  # type: ignore[union-attr]
        sched.tick(now=T0 + 10)
        sched.tick(now=T0 + 20)
        assert sent(broker, app) == []  # the first run has not ended
        run_as_worker(task, first[0].headers, first[0].id)
        assert calls == ["ran"] and store.client.hget(store.keys.running, "e") is None
        sched.tick(now=T0 + 30)
        assert len(sent(broker, app)) == 1
    finally:
        sched.close()
    history = parse_history(store.keys.tag, "e", store.client.hget(store.keys.history, "e"))
    assert (history.sent, history.skipped) == (2, 2)
    assert [r.outcome for r in history.runs][1:3] == ["skipped: overlap: the last run had not finished"] * 2


def test_buffer_one_sends_the_held_run_as_soon_as_the_worker_ends_the_last(app: Celery, store: RedisStore,
                                                                         broker: redis.Redis) -> None:
    put(store, "e", BUFFER)
    task = worker_app(app, [])
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0 - 10)  # planned: a new entry runs one interval after beat first sees it
        sched.tick(now=T0)
        first = sent(broker, app)
        sched.tick(now=T0 + 10)
        sched.tick(now=T0 + 20)
        assert sent(broker, app) == []
        run_as_worker(task, first[0].headers, first[0].id)
        assert store.client.zscore(store.keys.due, "e") == 0
        sched.tick(now=T0 + 21)
        assert len(sent(broker, app)) == 1  # one run held, not the two that fell due
    finally:
        sched.close()


def test_tasks_sent_by_others_are_not_reported(app: Celery, store: RedisStore) -> None:
    task = worker_app(app, calls := [])
    task.apply(task_id="plain")
    task.apply(task_id="foreign", headers={HEADER: "e", REPORT: {"tag": "another-schedule", "overlap": True}})
    assert calls == ["ran", "ran"] and store.client.exists(store.keys.running, store.keys.failures) == 0


def test_an_entry_is_paused_after_failures_in_a_row_with_the_failure_as_reason(app: Celery, store: RedisStore,
                                                                               api: ScheduleStore,
                                                                               broker: redis.Redis) -> None:
    api.add("e", "tasks.fail", 10, pause_after_failures=2)
    task = worker_app(app, [], fail=True)
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0 - 10)
        for at in (T0, T0 + 10):
            sched.tick(now=at)
            (message,) = sent(broker, app)
            assert message.headers[REPORT] == {"tag": store.keys.tag, "overlap": False, "failures": 2}
            run_as_worker(task, message.headers, message.id)
    finally:
        sched.close()
    pause = api.get("e").paused
    assert pause is not None and pause.reason == "2 failed runs in a row; last: RuntimeError: disk full"
    assert pause.by == "celerybeatredis.worker"
    assert json.loads(store.client.hget(store.keys.schedule, "e"))["pause_after_failures"] == 2  # type: ignore[arg-type]


# --- the API and the command line ----------------------------------------------------------


def test_the_fields_are_set_shown_and_checked_by_the_api_and_the_command_line(api: ScheduleStore, cli: Any) -> None:
    api.add("e", "tasks.add", 30, overlap="skip", overlap_timeout=120)
    assert api.get("e").definition == {"task": "tasks.add", "interval": {"every": 30, "period": "seconds"},
                                       "enabled": True, "overlap": "skip", "overlap_timeout": 120}
    with pytest.raises(InvalidDefinition, match="entry 'e': field 'overlap'"):
        api.update("e", overlap="sometimes")
    cli.ok("edit", "e", "--overlap", "buffer_one", "--pause-after-failures", "2")
    shown = cli.ok("show", "e")
    assert "hold one if running" in shown and "overlap:   buffer_one" in shown and "max fails: 2" in shown
    assert "every 30 seconds, hold one if running" in cli.ok("list")
    assert "field 'overlap_timeout'" in cli.fails("edit", "e", "--overlap-timeout", "-5")
    assert api.get("e").definition["overlap_timeout"] == 120  # type: ignore[index]


def test_removing_an_entry_drops_its_marker_and_failure_count(api: ScheduleStore, store: RedisStore) -> None:
    api.add("e", "tasks.add", 30, overlap="skip", pause_after_failures=3)
    store.client.hset(store.keys.running, "e", marker("t-1", T0, 60))
    store.client.hset(store.keys.failures, "e", 2)
    api.remove("e")
    assert store.client.exists(store.keys.running, store.keys.failures) == 0
