"""Short leases kept alive while their beat works on the batch, and given up when it is done or gone."""

from __future__ import annotations

import time
from typing import Any

import pytest
import redis
from celery import Celery

from celerybeatredis.beat.leases import LeaseKeeper
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from ..support.helpers import EVERY_10S, put, sent
from ..support.processes import wait_until


def test_a_beat_slow_on_its_batch_keeps_its_claim_past_the_lease_and_sends_it(
        app: Celery, store: RedisStore, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    app.conf.redis_scheduler_lease_seconds = 0.6
    for name in ("a", "b", "c"):
        put(store, name, EVERY_10S, -1)  # run now
    scheduler = RedisScheduler(app)
    other = RedisStore(redis.Redis.from_url(app.conf.redis_scheduler_url), app.conf.redis_scheduler_key_prefix)
    plan = scheduler.planner.plan
    taken: list[str] = []

    def slow_plan(claim: Any) -> Any:
        # Work on the batch past the end of the lease it was claimed with, then let another beat try to claim it.
        wait_until(lambda: store.server_time() > float(claim.lease) + 0.3, timeout=10, interval=0.02, what="the lease to pass")
        taken.extend(e.name for e in other.runs.claim(10, 0.6).entries)
        return plan(claim)

    monkeypatch.setattr(scheduler.planner, "plan", slow_plan)
    try:
        scheduler.tick()
    finally:
        scheduler.close()
        other.client.close()
    assert taken == []  # the lease was extended while the beat worked
    assert sorted(m.headers["periodic_task_name"] for m in sent(broker, app)) == ["a", "b", "c"]
    assert [store.run_state(n)[0] for n in ("a", "b", "c")] == [1, 1, 1]


def test_renewal_moves_only_entries_that_still_hold_the_lease(store: RedisStore) -> None:
    for name in ("a", "b"):
        put(store, name, EVERY_10S, 0)
    claim = store.runs.claim(10, 0.6)
    store.client.zadd(store.keys.due, {"b": -1})  # a user asked for a run meanwhile
    keeper = LeaseKeeper(0.6)
    try:
        keeper.hold(store, claim, None)
        wait_until(lambda: keeper.renewals >= 2, timeout=10, what="two renewals")
    finally:
        keeper.close()
    assert store.due_score("a") > float(claim.lease)  # type: ignore[operator]
    assert store.due_score("b") == -1


def test_a_claim_dropped_by_its_tick_is_renewed_no_more(store: RedisStore) -> None:
    put(store, "a", EVERY_10S, 0)
    claim = store.runs.claim(10, 0.6)
    keeper = LeaseKeeper(0.6)
    try:
        keeper.hold(store, claim, None)
        keeper.drop()
        # Renewed, the lease would stay ahead of the clock; dropped, it ends and the entry can be claimed again.
        wait_until(lambda: store.server_time() > (store.due_score("a") or 0), timeout=10, what="the lease to end")
        assert [e.name for e in store.runs.claim(10, 0.6).entries] == ["a"]
    finally:
        keeper.close()


def test_a_claim_is_renewed_once_held_a_third_of_a_lease_and_not_before(store: RedisStore) -> None:
    """One pass of the renewal thread (``renew_due``), with the time each claim has been held set by hand."""
    lease = 300.0  # long: nothing here waits on it
    put(store, "a", EVERY_10S, 0)
    put(store, "b", EVERY_10S, 1)
    past = store.server_time() - 100  # claimed 100 s ago: the lease a renewal sets is later than the one claimed
    held_long, held_short = store.runs.claim(1, lease, past), store.runs.claim(1, lease, past)
    assert [e.name for e in held_long.entries + held_short.entries] == ["a", "b"]
    keeper = LeaseKeeper(lease)
    keeper.close()  # its thread stops at once: only the passes this test makes renew
    try:
        keeper.hold(store, held_long, None)
        keeper.hold(store, held_short, None)
        long, short = keeper.held[id(held_long)], keeper.held[id(held_short)]
        long.since = time.monotonic() - 0.4 * lease  # more than a third of a lease since its lease was set
        short.since = time.monotonic() - 0.2 * lease  # less than a third
        assert keeper.renew_due() == 1
    finally:
        keeper.drop()
    assert keeper.renewals == 1
    assert long.lease != held_long.lease and float(long.lease) > float(held_long.lease)
    assert store.due_score("a") == float(long.lease)  # the entry moved to the new lease
    assert short.lease == held_short.lease and store.due_score("b") == float(held_short.lease)
