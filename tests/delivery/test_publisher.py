"""Publishing committed batches (``delivery/publisher.py``): a batch sent after its commit, runs put back when the
broker fails, pending runs of ``at-least-once`` forgotten once the broker took them and sent again by the next beat."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis
from celery import Celery

from celerybeatredis.delivery.modes import AT_LEAST_ONCE, AT_MOST_ONCE
from celerybeatredis.delivery.redis_messages import RedisWriter, encode
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.wire import Plan
from celerybeatredis.store import ScheduleStore

from ..support.helpers import EVERY_10S_DOC, T0, assert_fire_identity, entries, first_interval, put, sent, unhurried


def test_at_most_once_sends_a_batch_as_it_did_one_by_one(app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    app.conf.update(redis_scheduler_delivery="at-most-once", redis_scheduler_batch_size=6)
    names = entries(store, 20)
    assert first_interval(app) == AT_MOST_ONCE
    messages = sent(broker, app)
    assert sorted(m.args[0] for m in messages) == names
    assert_fire_identity(messages, store)


def test_at_least_once_forgets_each_run_once_the_broker_took_it(app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    app.conf.update(redis_scheduler_delivery="at-least-once", redis_scheduler_batch_size=6)
    names = entries(store, 20)
    assert first_interval(app) == AT_LEAST_ONCE
    messages = sent(broker, app)
    assert sorted(m.args[0] for m in messages) == names
    assert_fire_identity(messages, store)
    assert store.client.zcard(store.keys.pending) == 0
    assert store.client.hlen(store.keys.pending_ids) == 0


def test_at_least_once_keeps_each_run_pending_while_its_message_is_written(
        app: Celery, store: RedisStore, broker: redis.Redis, monkeypatch: pytest.MonkeyPatch) -> None:
    """A run's pending record is in Redis all the time its message is written, so a beat that dies during the write
    leaves the run to be sent again; it is forgotten once the broker took the message, not before."""
    app.conf.update(redis_scheduler_delivery="at-least-once")
    names = entries(store, 12)
    during: list[tuple[list[str], dict[str, str]]] = []  # at each write: the pending runs, and their task ids
    write = RedisWriter.write

    def write_seeing_pending(self: RedisWriter, *args: Any) -> BaseException | None:
        pending = sorted(n.decode() for n in store.client.zrange(store.keys.pending, 0, -1))
        ids = {n.decode(): tid.decode().split()[0] for n, tid in store.client.hgetall(store.keys.pending_ids).items()}
        during.append((pending, ids))
        return write(self, *args)

    monkeypatch.setattr(RedisWriter, "write", write_seeing_pending)
    sched = unhurried(app)
    try:
        sched.tick(now=T0)  # first look at each entry: nothing due yet
        assert during == []
        sched.tick(now=T0 + 10)  # one batch of twelve runs
    finally:
        sched.close()
    messages = sent(broker, app)
    assert sorted(m.args[0] for m in messages) == names
    assert during == [(names, {m.args[0]: m.id for m in messages})]
    assert store.client.zcard(store.keys.pending) == 0 and store.client.hlen(store.keys.pending_ids) == 0


def test_a_pending_run_is_sent_again_after_the_lease_with_its_task_id(app: Celery, store: RedisStore,
                                                                      broker: redis.Redis) -> None:
    """A beat that committed a run and died before the broker took it: the next beat sends it, same id."""
    app.conf.update(redis_scheduler_delivery="at-least-once", redis_scheduler_lease_seconds=5)
    put(store, "a", dict(EVERY_10S_DOC, args=["a"]), score=T0 + 20)
    plan = Plan("a", repr(T0 + 20), T0 + 30, True, "2026-03-02T12:00:20+00:00")  # ran at T0 + 20
    assert store.runs.commit([plan], 0, encode({1: [("pending", "the-task-id", repr(T0 + 25))]})) == [True]
    assert store.client.zscore(store.keys.pending, "a") == T0 + 25
    sched = unhurried(app)
    try:
        assert sched.publisher.resend(store, now=T0 + 24) == 0  # not before its resend time
        sched.tick(now=T0 + 26)
        assert sched.publisher.resend(store, now=T0 + 60) == 0  # sent once, then forgotten
    finally:
        sched.close()
    messages = sent(broker, app)
    assert [(m.args[0], m.id) for m in messages] == [("a", "the-task-id")]
    assert store.client.zcard(store.keys.pending) == 0
    assert store.run_state("a")[0] == 1, "sending it again is not another run"


@pytest.mark.parametrize("kept", ["the-task-id 2026-03-02T12:00:20+00:00 0000abcd", "the-task-id"])
def test_a_pending_run_is_sent_again_with_its_fire_id_time_and_history_record(app: Celery, store: RedisStore,
                                                                               broker: redis.Redis, kept: str) -> None:
    """The run's fire time and history stamp are kept with its task id, so its second send carries the headers (and
    the keyword argument) of the first; a record of an older beat (a bare task id) still sends it, with its fire id."""
    app.conf.update(redis_scheduler_delivery="at-least-once", redis_scheduler_lease_seconds=5)
    put(store, "a", dict(EVERY_10S_DOC, args=["a"], scheduled_time_kwarg="due"), score=T0 + 20)
    plan = Plan("a", repr(T0 + 20), T0 + 30, True, "2026-03-02T12:00:20+00:00")
    assert store.runs.commit([plan], 0, encode({1: [("pending", kept, repr(T0 + 25))]})) == [True]
    sched = unhurried(app)
    try:
        assert sched.publisher.resend(store, now=T0 + 26) == 1
    finally:
        sched.close()
    [message] = sent(broker, app)
    full = " " in kept
    assert message.id == message.headers["periodic_task_fire_id"] == "the-task-id"
    assert message.headers.get("periodic_task_fire_time") == ("2026-03-02T12:00:20+00:00" if full else None)
    assert message.kwargs == {"due": "2026-03-02T12:00:20+00:00" if full else None}
    assert message.headers.get("periodic_task_run") == (f"0000abcd {store.keys.tag}" if full else None)
    assert store.client.zcard(store.keys.pending) == 0


def test_a_never_run_entry_whose_publish_failed_is_retried_from_its_anchor(
        app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    put(store, "add", EVERY_10S_DOC)
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0)
        failing = sched.apply_async

        def broker_down(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("broker down")

        sched.apply_async = broker_down  # type: ignore[method-assign]
        sched.tick(now=T0 + 10)
        assert sent(broker, app) == [] and store.run_state("add") == (0, None)
        sched.apply_async = failing  # type: ignore[method-assign]
        sched.tick(now=T0 + 10 + sched.settings.publish_retry_seconds)
        assert len(sent(broker, app)) == 1
    finally:
        sched.close()


def strict_task(app: Celery) -> str:
    """Register a task that takes exactly one argument, ``x``, as a user's ``@app.task`` would; its name."""

    @app.task(name=f"tasks.strict-{app.conf.redis_scheduler_key_prefix}", shared=False)
    def strict(x: int) -> int:
        return x

    return str(strict.name)


def errors(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize(("arguments", "field", "says"), [
    ({"args": [1], "kwargs": {"verbose": True}}, "kwargs", "got an unexpected keyword argument 'verbose'"),
    ({"args": [1, 2]}, "args", "takes 1 positional argument but 2 were given"),
    ({"args": [1, 2], "kwargs": {"verbose": True}}, "args", "takes 1 positional argument but 2 were given"),
    ({"kwargs": {"x": 1, "y": 2}}, "kwargs", "got an unexpected keyword argument 'y'"),
    ({}, "args", "missing 1 required positional argument: 'x'"),
])
def test_arguments_the_task_refuses_quarantine_the_entry_naming_args_or_kwargs_and_count_no_run(
        app: Celery, store: RedisStore, api: ScheduleStore, broker: redis.Redis, caplog: pytest.LogCaptureFixture,
        arguments: dict[str, Any], field: str, says: str) -> None:
    task = strict_task(app)
    put(store, "strict", {"task": task, "interval": {"every": 10, "period": "seconds"}, **arguments})
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0)
        with caplog.at_level(logging.DEBUG, logger="celerybeatredis.schedulers"):
            sched.tick(now=T0 + 10)
    finally:
        sched.close()
    assert sent(broker, app) == []
    reason = store.invalid_reason("strict") or ""
    assert reason.startswith(f"entry 'strict': field '{field}': the task cannot be sent: TypeError: "), reason
    assert says in reason
    assert errors(caplog) == [f"beat: {reason}; entry quarantined in {{{store.keys.tag}}}:invalid"]
    history = api.history("strict")
    assert (history.sent, [run.outcome for run in history.runs]) == (0, ["publish-error"])
    assert store.run_state("strict") == (0, None)


def test_arguments_edited_into_ones_the_task_refuses_are_refused_though_its_message_is_filled_in_from_a_shape(
        app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    """Beat builds the first message of a task and options with Celery, which checks its arguments, and fills in the
    next ones from it: those are checked as Celery would, not sent to fail on the worker."""
    task = strict_task(app)
    doc = {"task": task, "interval": {"every": 10, "period": "seconds"}, "args": [1]}
    put(store, "strict", doc)
    put(store, "other", dict(doc, args=[2]))
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0)
        sched.tick(now=T0 + 10)
        assert sorted(m.args for m in sent(broker, app)) == [[1], [2]]
        put(store, "strict", dict(doc, kwargs={"verbose": True}), score=None)  # edited; same task and options
        sched.tick(now=T0 + 20)
    finally:
        sched.close()
    assert [m.args for m in sent(broker, app)] == [[2]]
    assert (store.invalid_reason("strict") or "").startswith("entry 'strict': field 'kwargs': ")
    assert store.run_state("strict")[0] == 1


def test_a_run_not_sent_is_not_counted_and_its_quarantine_is_logged_once_when_another_beat_ran_the_entry_meanwhile(
        app: Celery, store: RedisStore, api: ScheduleStore, broker: redis.Redis, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Beat A commits a run and is slow to publish it; beat B runs the entry's next run meanwhile. Neither run can be
    sent: the history counts none as sent, and only B, whose revert quarantined the entry, says so."""
    task = strict_task(app)
    put(store, "strict", {"task": task, "interval": {"every": 10, "period": "seconds"}, "kwargs": {"verbose": True}})
    first, second = RedisScheduler(app), RedisScheduler(app)
    try:
        first.tick(now=T0)
        publish = first.publisher.publish

        def slow_publish(*args: Any, **kwargs: Any) -> Any:
            second.tick(now=T0 + 20)  # the run after A's, due while A has not published yet
            return publish(*args, **kwargs)

        monkeypatch.setattr(first.publisher, "publish", slow_publish)
        with caplog.at_level(logging.WARNING, logger="celerybeatredis.schedulers"):
            first.tick(now=T0 + 10)
    finally:
        first.close()
        second.close()
    assert sent(broker, app) == []
    history = api.history("strict")
    assert (history.sent, [run.outcome for run in history.runs]) == (0, ["publish-error", "publish-error"])
    assert [e for e in errors(caplog) if "quarantined" in e] == \
        [f"beat: {store.invalid_reason('strict')}; entry quarantined in {{{store.keys.tag}}}:invalid"]
