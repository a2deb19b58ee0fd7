"""A tick sends each full batch's commit and the next claim ahead, on one connection (ScriptStream).

Every test publishes to the suite's real Redis broker and reads the queue back.
Publishing there costs far more than deciding, so beat on its own would not claim
ahead (``redis_scheduler_claim_ahead`` on auto); these tests turn it on, and the
last ones check what auto does.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from typing import Any

import pytest
import redis
from celery import Celery

from celerybeatredis.delivery.redis_messages import RedisShapes
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.wire import Claim

from ..support.helpers import T0, entries, sent, sigterm_exits, unhurried
from ..support.processes import drain_queue
from ..support.redis_server import RedisServer


def patient(app: Celery) -> RedisScheduler:
    """A scheduler that claims ahead and whose tick has an hour to stream, so no test depends on how fast this machine is."""
    app.conf.redis_scheduler_claim_ahead = True
    return unhurried(app)


def looked_at_later(store: RedisStore) -> int:
    """Entries still waiting for their first look (score 0)."""
    return int(store.client.zcount(store.keys.due, 0, 0))


def scores(store: RedisStore) -> dict[str, float]:
    return {name.decode(): score for name, score in store.client.zrange(store.keys.due, 0, -1, withscores=True)}


def on_publish(app: Celery, monkeypatch: pytest.MonkeyPatch, at: int, action: Callable[[], None]) -> list[int]:
    """Run ``action`` just before the ``at``-th run's message is made (1-based): by Celery's ``send_task``, or filled
    in from the shape of an earlier one (:mod:`celerybeatredis.delivery.shapes`); the message itself still goes out."""
    real_send, real_fill = app.send_task, RedisShapes.fill_in
    count: list[int] = []

    def made() -> None:
        count.append(1)
        if len(count) == at:
            action()

    def send(*args: Any, **kwargs: Any) -> Any:
        made()
        return real_send(*args, **kwargs)

    def fill_in(self: RedisShapes, *args: Any) -> Any:
        made()
        return real_fill(self, *args)

    monkeypatch.setattr(app, "send_task", send)
    monkeypatch.setattr(RedisShapes, "fill_in", fill_in)
    return count


def test_one_tick_takes_every_full_batch_and_sends_each_due_entry_once(
        app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    app.conf.redis_scheduler_batch_size = 7
    names = entries(store, 100, "s")
    sched = patient(app)
    try:
        assert sched.tick(now=T0) == 10.0  # 15 batches in one tick; the next run is 10 s away
        assert looked_at_later(store) == 0
        assert set(scores(store).values()) == {T0 + 10}
        assert sched.tick(now=T0 + 10) == 10.0
    finally:
        sched.close()
    assert sorted(m.args[0] for m in sent(broker, app)) == names
    assert all(store.run_state(n)[0] == 1 for n in names)
    assert set(scores(store).values()) == {T0 + 20}


def test_a_tick_out_of_time_stops_after_a_batch_and_asks_for_another_at_once(app: Celery, store: RedisStore) -> None:
    app.conf.redis_scheduler_batch_size = 5
    app.conf.redis_scheduler_claim_ahead = True
    entries(store, 12, "s")
    sched = RedisScheduler(app)
    sched.max_interval = 0.0  # a tick's time is up as soon as it starts: one batch each
    try:
        left = []
        for _ in range(3):
            assert sched.tick(now=T0) == 0.0
            left.append(looked_at_later(store))
    finally:
        sched.close()
    assert left == [7, 2, 0]


def test_scripts_flushed_before_and_during_a_streamed_tick_are_loaded_again_and_no_run_is_lost(
        app: Celery, store: RedisStore, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """NOSCRIPT for a commit (flushed before the tick) and for a claim sent after a flush mid-tick."""
    app.conf.redis_scheduler_batch_size = 5
    names = entries(store, 50, "s")
    sched = patient(app)
    try:
        sched.tick(now=T0)
        store.client.script_flush()
        flushes = on_publish(app, monkeypatch, 12, store.client.script_flush)
        sched.tick(now=T0 + 10)
    finally:
        sched.close()
    assert len(flushes) == 50
    assert sorted(m.args[0] for m in sent(broker, app)) == names
    assert all(store.run_state(n)[0] == 1 for n in names)


def test_a_connection_lost_mid_stream_loses_no_committed_run_and_sends_none_twice(
        app: Celery, store: RedisStore, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    """The commit whose reply was lost is sent again; the claim whose reply was lost waits out its lease."""
    app.conf.redis_scheduler_batch_size = 5
    app.conf.redis_scheduler_lease_seconds = 5
    names = entries(store, 60, "s")
    sched = patient(app)
    own = store.client.client_id()

    def kill_schedule_connections() -> None:
        for info in store.client.client_list():
            if info["db"] == "0" and int(info["id"]) != own:
                store.client.client_kill_filter(_id=info["id"])

    try:
        sched.tick(now=T0)
        on_publish(app, monkeypatch, 8, kill_schedule_connections)
        sched.tick(now=T0 + 10)
        first = sorted(m.args[0] for m in sent(broker, app))
        sched.tick(now=T0 + 16)  # every lease has run out
        later = sorted(m.args[0] for m in sent(broker, app))
    finally:
        sched.close()
    assert any("connection to Redis lost while claiming" in r.getMessage() for r in caplog.records)
    assert 8 <= len(first) < 60
    assert sorted(first + later) == names
    assert all(store.run_state(n)[0] == 1 for n in names)


def test_a_stop_signal_mid_stream_ends_the_tick_with_every_committed_run_sent_and_no_lease_left(
        app: Celery, store: RedisStore, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """celery beat's SIGTERM handler raises SystemExit: the stream claims nothing more, publishes what it
    committed, and only then lets the signal in; the entries it did not reach are due as before."""
    app.conf.redis_scheduler_batch_size = 5
    names = entries(store, 40, "s")
    sched = patient(app)

    try:
        with sigterm_exits():
            sched.tick(now=T0)
            on_publish(app, monkeypatch, 3, lambda: os.kill(os.getpid(), signal.SIGTERM))
            with pytest.raises(SystemExit):
                sched.tick(now=T0 + 10)
    finally:
        sched.close()
    published = sorted(m.args[0] for m in sent(broker, app))
    assert 3 <= len(published) < 40
    ran = sorted(n for n in names if store.run_state(n)[0] == 1)
    assert published == ran
    after = scores(store)
    assert {after[n] for n in ran} == {T0 + 20}
    assert {after[n] for n in names if n not in ran} == {T0 + 10}  # not leased: due at once for the next beat


def test_a_broker_lost_mid_stream_puts_back_every_run_not_sent_and_the_next_tick_sends_them_once(
        app: Celery, store: RedisStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A broker of its own, stopped just before the 8th publish (in the second batch of 5, written in one pipelined
    round trip): the first batch's runs stay counted; every run of the second batch, and of the batches already
    claimed, is put back uncounted and retried."""
    server = RedisServer("--appendonly", "yes", "--appendfsync", "always").start()
    retry = 2.0
    app.conf.update(broker_url=f"{server.url}/1", redis_scheduler_batch_size=5,
                    redis_scheduler_publish_retry_seconds=retry, broker_connection_timeout=1)
    names = entries(store, 30, "s")
    sched = patient(app)
    try:
        sched.tick(now=T0)
        on_publish(app, monkeypatch, 8, server.stop)
        assert sched.tick(now=T0 + 10) == retry
        server.start()
        conn = redis.Redis.from_url(f"{server.url}/1")
        first = sorted(m.args[0] for m in drain_queue(conn, app.conf.task_default_queue))
        counted = sorted(n for n in names if store.run_state(n)[0] == 1)
        assert len(first) == 5
        assert counted == first
        after = scores(store)
        # Put back to be retried, or never claimed (the stream claims nothing after a failed publish): no lease.
        assert {after[n] for n in names if n not in first} == {T0 + 10 + retry, T0 + 10}
        sched.tick(now=T0 + 10 + retry)
        later = sorted(m.args[0] for m in drain_queue(conn, app.conf.task_default_queue))
        conn.close()
    finally:
        sched.close()
        server.cleanup()
    assert sorted(first + later) == names
    assert all(store.run_state(n)[0] == 1 for n in names)


def leased(store: RedisStore, now: float) -> int:
    """Entries that hold a claim (a score of ``now`` + lease, beyond every run's next due time)."""
    return int(store.client.zcount(store.keys.due, now + 20, now + 40))


@pytest.mark.parametrize(("setting", "holds"), [(None, False), ("auto", False), (False, False), (True, True)])
def test_a_beat_holds_a_batch_claimed_ahead_while_it_publishes_only_when_told_to(
        app: Celery, store: RedisStore, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch,
        setting: bool | str | None, holds: bool) -> None:
    """On auto, once a batch showed that publishing dominates, a beat claims no batch it cannot send at once.

    The batch it would hold waits a whole publish while another beat could send
    it: with two beats, a burst of two batches would go to one.
    """
    app.conf.redis_scheduler_batch_size = 7
    app.conf.redis_scheduler_lease_seconds = 30
    if setting is not None:
        app.conf.redis_scheduler_claim_ahead = setting
    names = entries(store, 28, "s")
    sched = unhurried(app)
    seen: list[int] = []
    try:
        for _ in range(6):  # first looks, nothing to publish: one batch a tick until it asks for a later one
            if sched.tick(now=T0) > 0:
                break
        assert looked_at_later(store) == 0
        # Four batches due: sample the claims held when the third batch's first run is published.
        on_publish(app, monkeypatch, 15, lambda: seen.append(leased(store, T0 + 10)))
        for _ in range(6):
            sched.tick(now=T0 + 10)
    finally:
        sched.close()
    assert len(seen) == 1
    assert seen[0] >= 7 if holds else seen[0] == 0  # claimed ahead: the fourth batch
    assert sorted(m.args[0] for m in sent(broker, app)) == names


def test_a_beat_claims_ahead_on_auto_once_publishing_costs_less_than_deciding(app: Celery) -> None:
    sched = RedisScheduler(app)
    try:
        ahead = sched.dispatcher.claim_ahead
        full = Claim(0.0, "", None, 0, [None] * sched.settings.batch_size)  # type: ignore[list-item]
        assert not ahead.wanted()  # not measured yet: assume a real broker
        ahead.measured(full, plan_seconds=0.010, publish_seconds=0.004)
        assert ahead.wanted()
        ahead.measured(Claim(0.0, "", None, 0, []), plan_seconds=0.010, publish_seconds=9.0)  # a small batch says nothing
        assert ahead.wanted()
        ahead.measured(full, plan_seconds=0.010, publish_seconds=0.250)
        assert not ahead.wanted()
    finally:
        sched.close()
