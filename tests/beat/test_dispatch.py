"""One shard's batches in a tick (``beat/dispatch.py``): full batches until one is not, stop signals held until the
batch is sent. Every test publishes to the suite's real Redis broker and reads the queue back."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest
import redis
from celery import Celery

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from ..support.helpers import EVERY_10S_DOC as EVERY_10S
from ..support.helpers import T0, put, sent, sigterm_exits


def test_a_tick_takes_full_batches_until_one_is_not_full_then_sleeps_until_the_next_due(
        app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    app.conf.redis_scheduler_batch_size = 5
    sched = RedisScheduler(app)
    sched.max_interval = 60.0  # time enough for every batch, however slow the machine
    for i in range(12):
        put(store, f"e{i}", EVERY_10S)
    assert sched.tick(now=T0) == 10.0  # batches of 5, 5 and 2 in one tick; the next run is 10 s away
    assert store.client.zcount(store.keys.due, 0, 0) == 0
    assert sched.tick(now=T0 + 9.5) == pytest.approx(0.5)
    sched.close()


def test_a_stop_signal_during_publishing_lands_after_the_whole_committed_batch_is_sent(
        scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGTERM arriving while a committed batch is being published (celery beat's handler raises
    SystemExit) stops beat only after every committed run of the batch reached the broker."""
    names = [f"s{i:02d}" for i in range(30)]
    for name in names:
        put(store, name, dict(EVERY_10S, args=[name]))
    scheduler.tick(now=T0)  # first seen: due at T0 + 10
    real_send = app.send_task
    signalled: list[int] = []

    def send_and_signal(*args: Any, **kwargs: Any) -> Any:
        if not signalled:  # the first publish of the batch: the stop request arrives now
            signalled.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_send(*args, **kwargs)

    monkeypatch.setattr(app, "send_task", send_and_signal)  # the batch's first message is built by Celery
    # Another thread alive, as in a worker with an embedded beat: the kernel may hand it the signal.
    idle = threading.Event()
    other = threading.Thread(target=idle.wait, daemon=True)
    other.start()
    try:
        with sigterm_exits(), pytest.raises(SystemExit):
            scheduler.tick(now=T0 + 10)
    finally:
        idle.set()
        other.join()
    assert signalled == [1]
    published = sorted(m.args[0] for m in sent(broker, app))
    assert published == names
    assert all(store.run_state(n)[0] == 1 for n in names)


@pytest.mark.parametrize("claim_ahead", [False, True], ids=["batch", "streamed"])
def test_a_stop_signal_between_claim_and_commit_lands_after_the_batch_leaving_nothing_reserved(
        app: Celery, store: RedisStore, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch, claim_ahead: bool) -> None:
    """SIGTERM while beat decides a batch it claimed: the batch is committed and sent, then beat stops."""
    names = [f"s{i:02d}" for i in range(30)]
    for name in names:
        put(store, name, dict(EVERY_10S, args=[name]))
    app.conf.update(redis_scheduler_batch_size=10, redis_scheduler_claim_ahead=claim_ahead)
    sched = RedisScheduler(app)
    sched.tick(now=T0)  # first seen: due at T0 + 10
    real_plan = sched.planner.plan
    signalled: list[int] = []

    def plan_and_signal(claim: Any) -> Any:
        if not signalled:  # deciding the first batch: the stop request arrives now
            signalled.append(1)
            os.kill(os.getpid(), signal.SIGTERM)
        return real_plan(claim)

    monkeypatch.setattr(sched.planner, "plan", plan_and_signal)
    try:
        with sigterm_exits(), pytest.raises(SystemExit):
            sched.tick(now=T0 + 10)
    finally:
        sched.close()
    sent_now = sorted(m.args[0] for m in sent(broker, app))
    assert sent_now and len(sent_now) % 10 == 0 and len(sent_now) < len(names)
    assert all(store.run_state(n)[0] == 1 for n in sent_now)
    leased = store.client.zrangebyscore(store.keys.due, f"({T0 + 20}", T0 + 60)  # after the next run at T0 + 20
    assert leased == []
    assert sorted(n.decode() for n in store.client.zrangebyscore(store.keys.due, T0 + 20, T0 + 20)) == sent_now
