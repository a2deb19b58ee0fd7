"""One shard's batches in a tick (``beat/dispatch.py``): full batches until one is not, stop signals held until the
batch is sent. Every test publishes to the suite's real Redis broker and reads the queue back."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

import pytest
import redis
from celery import Celery

from celerybeatredis.beat.dispatch import log_commit_quarantines
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.runs import Committed
from celerybeatredis.storage.wire import Claim, Claimed

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


def test_an_entry_quarantined_is_logged_once_across_beats_by_the_beat_whose_commit_quarantined_it(
        app: Celery, store: RedisStore, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """Three beats on one schedule. Beat A claims a bad entry and stalls past its lease before committing; beat B claims
    it then and commits its quarantine; beat C ticks after. Only B says so, once."""
    put(store, "bad", {"task": "tasks.t", "interval": {"every": 10, "period": "fortnights"}})
    beats = [RedisScheduler(app) for _ in range(3)]
    first, second, third = beats
    plan = first.planner.plan

    def stalled_plan(claim: Any) -> Any:
        planned = plan(claim)
        second.tick(now=T0 + first.settings.lease_seconds + 1)  # A's lease has ended: B claims the entry
        return planned

    monkeypatch.setattr(first.planner, "plan", stalled_plan)
    try:
        with caplog.at_level(logging.DEBUG, logger="celerybeatredis.schedulers"):
            first.tick(now=T0)
            third.tick(now=T0 + 10)
    finally:
        for beat in beats:
            beat.close()
    reason = store.invalid_reason("bad") or ""
    assert reason.startswith("entry 'bad': field 'interval.period'")
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [f"beat: {reason}; entry quarantined in {{{store.keys.tag}}}:invalid"]


def test_the_traceback_of_an_unforeseen_error_goes_with_the_quarantines_one_error(
        scheduler: RedisScheduler, store: RedisStore, caplog: pytest.LogCaptureFixture) -> None:
    odd = Claimed("e", T0, b"{}", None, 12345, None)  # type: ignore[arg-type]  # not text, as no store hands over
    planned = scheduler.planner.plan(Claim(now=T0, lease="lease-1", next_score=None, removed=0, entries=[odd]))
    with caplog.at_level(logging.ERROR, logger="celerybeatredis.schedulers"):
        log_commit_quarantines(store, planned, Committed([False]))  # lost its lease: another beat's to say
        log_commit_quarantines(store, planned, Committed([True]))
    (record,) = caplog.records
    assert record.getMessage().startswith("beat: entry 'e': cannot be scheduled: TypeError: ")
    assert record.exc_info is not None and record.exc_info[1] is planned.errors["e"]
