"""Bad input, fuzzed and by hand: a clear error or a quarantine with a reason, never a crash, never another entry lost.

The scheduler's tick runs in-process at chosen times against the suite's
Redis (the honest tool for hundreds of fuzzed cases per second); a canary
entry next to the bad ones must run exactly when it is due.
"""

from __future__ import annotations

import json
import logging
import pickle
import re
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from .support.processes import CeleryProcess, drain_queue, wait_until, write_app

T0 = 1_800_000_000.0
CANARY = "canary"
CANARY_DOC = json.dumps({"task": "tasks.canary", "interval": {"every": 10, "period": "seconds"}, "args": [CANARY]})
FUZZ = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


class Schedule:
    """A fresh schedule, scheduler and queue per fuzzed example."""

    def __init__(self, redis_url: str, client: redis.Redis, broker: redis.Redis) -> None:
        self.prefix = f"fz-{uuid.uuid4().hex[:10]}:"
        self.app = Celery("fuzz", set_as_current=False)
        self.queue = f"q-{self.prefix}"
        self.app.conf.update(broker_url=f"{redis_url}/1", redis_scheduler_url=f"{redis_url}/0",
                             redis_scheduler_key_prefix=self.prefix, result_expires=None, task_default_queue=self.queue,
                             redis_scheduler_reconcile_interval=1e-6)  # a reconciler step every tick
        self.store = RedisStore(client, self.prefix)
        self.broker = broker
        self.scheduler = RedisScheduler(self.app)

    def write(self, entries: dict[bytes, bytes]) -> None:
        """HSET and poke, as a user with redis-cli would."""
        pipe = self.store.client.pipeline()
        for name, raw in entries.items():
            pipe.hset(self.store.keys.schedule, name, raw)
            pipe.zadd(self.store.keys.due, {name: 0})
        pipe.execute()

    def sent(self) -> list[str]:
        return [m.task for m in drain_queue(self.broker, self.queue)]

    def invalid(self) -> dict[bytes, str]:
        return {k: v.decode() for k, v in self.store.client.hgetall(self.store.keys.invalid).items()}

    def close(self) -> None:
        self.scheduler.close()
        keys = list(self.store.client.scan_iter(match=f"{{{self.store.keys.tag}}}:*", count=1000))
        if keys:
            self.store.client.delete(*keys)
        self.broker.delete(self.queue)


def tick_twice(schedule: Schedule) -> None:
    """Tick when the canary is first seen and when it is due; a tick must return a delay, never raise."""
    for now in (T0, T0 + 10):
        delay = schedule.scheduler.tick(now=now)
        assert isinstance(delay, float) and delay >= 0


def assert_nothing_lost(schedule: Schedule, written: dict[bytes, bytes]) -> None:
    """Every definition is still stored byte for byte, indexed, and the canary ran once."""
    store = schedule.store
    assert schedule.sent().count("tasks.canary") == 1
    stored = store.client.hgetall(store.keys.schedule)
    assert stored == written
    for name in written:
        assert store.client.zscore(store.keys.due, name) is not None, name


# --- strategies ------------------------------------------------------------------------------------------

json_leaf = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=30))
json_value = st.recursive(json_leaf, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)
schedule_member = st.sampled_from(["interval", "crontab", "solar", "clocked"])
options = st.dictionaries(st.sampled_from(["queue", "routing_key", "exchange", "priority", "headers", "expires",
                                           "countdown", "serializer", "compression", "retry_policy", "eta", "link"]),
                          json_value, max_size=3)


@st.composite
def documents(draw: st.DrawFn) -> bytes:
    """Definition documents: near-valid ones with fuzzed fields, arbitrary JSON, and bytes that are not JSON."""
    kind = draw(st.sampled_from(["near", "near", "near", "json", "bytes", "huge-args"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_value)).encode()
    doc: dict[str, Any] = {"task": draw(st.one_of(st.just("tasks.fuzz"), json_value))}
    member = draw(schedule_member)
    doc[member] = draw(st.one_of(
        st.fixed_dictionaries({"every": st.one_of(st.integers(-5, 10**12), st.floats(allow_nan=False), json_value),
                               "period": st.one_of(st.sampled_from(["seconds", "minutes", "days", "microseconds"]),
                                                   json_value)}),
        st.fixed_dictionaries({"minute": json_value, "hour": st.sampled_from(["*", "3", "25", "*/0", "1-2"]),
                               "timezone": st.one_of(st.sampled_from(["Europe/Berlin", "Australia/Lord_Howe"]), json_value)}),
        json_value))
    for field in draw(st.lists(st.sampled_from(["args", "kwargs", "enabled", "one_off", "max_run_count", "start_time",
                                                "expires", "relative", "description", "total_run_count",
                                                "last_run_at"]), max_size=3, unique=True)):
        doc[field] = draw(json_value)
    doc["options"] = draw(st.one_of(st.none(), options))
    if kind == "huge-args":
        doc["args"] = ["x" * 100_000, list(range(5000))]
    return json.dumps(doc, allow_nan=True).encode()


names = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["", " ", "a:b:c", "{T}", "{", "}", "name with spaces", "x" * 1024, "é🙂\u200b", "\x00"]),
    st.binary(max_size=40),
).map(lambda n: n if isinstance(n, bytes) else n.encode()).filter(lambda n: n != CANARY.encode())


# --- fuzzed ------------------------------------------------------------------------------------------------


@FUZZ
@given(entries=st.dictionaries(names, documents(), min_size=1, max_size=6))
def test_fuzzed_definitions_and_names_never_stop_beat_or_lose_an_entry(redis_url: str, client: redis.Redis,
                                                                       broker: redis.Redis,
                                                                       entries: dict[bytes, bytes]) -> None:
    schedule = Schedule(redis_url, client, broker)
    try:
        written = {CANARY.encode(): CANARY_DOC.encode(), **entries}
        schedule.write(written)
        tick_twice(schedule)
        assert_nothing_lost(schedule, written)
        for name, reason in schedule.invalid().items():
            # the reason names the entry (as Python writes its name) and, after it, what is wrong
            assert reason.startswith("entry "), reason
            assert name in written
    finally:
        schedule.close()


run_state_values = st.one_of(st.binary(max_size=30), st.sampled_from([b"abc", b"-", b"1.5", b"", b"99999999999999999999",
                                                                     b"not a date", b"\xff\xfe", b"x 1e400"]))


@FUZZ
@given(count=st.one_of(st.none(), run_state_values), last=st.one_of(st.none(), run_state_values),
       dig=st.one_of(st.none(), run_state_values))
def test_fuzzed_run_state_never_stops_beat(redis_url: str, client: redis.Redis, broker: redis.Redis,
                                          count: bytes | None, last: bytes | None, dig: bytes | None) -> None:
    """Run-state hashes edited by hand: the entry runs, or is quarantined naming ``total_run_count``; others run."""
    schedule = Schedule(redis_url, client, broker)
    try:
        name = b"edited"
        written = {CANARY.encode(): CANARY_DOC.encode(), name: CANARY_DOC.replace("canary", "edited").encode()}
        schedule.write(written)
        keys = schedule.store.keys
        for key, value in ((keys.total_run_count, count), (keys.last_run_at, last), (keys.digest, dig)):
            if value is not None:
                client.hset(key, name, value)
        tick_twice(schedule)
        assert_nothing_lost(schedule, written)
        reason = schedule.invalid().get(name)
        assert reason is None or "field 'total_run_count'" in reason
    finally:
        schedule.close()


# --- by hand -------------------------------------------------------------------------------------------------


@pytest.fixture
def schedule(redis_url: str, client: redis.Redis, broker: redis.Redis) -> Iterator[Schedule]:
    sched = Schedule(redis_url, client, broker)
    yield sched
    sched.close()


def every_10s(task: str = "tasks.t", **extra: Any) -> bytes:
    return json.dumps({"task": task, "interval": {"every": 10, "period": "seconds"}, **extra}).encode()


def test_deeply_nested_json_is_quarantined(schedule: Schedule) -> None:
    deep = b'{"task": "t", "interval": {"every": 1}, "args": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    written = {CANARY.encode(): CANARY_DOC.encode(), b"deep": deep}
    schedule.write(written)
    tick_twice(schedule)
    assert_nothing_lost(schedule, written)
    assert schedule.invalid()[b"deep"] == "entry 'deep': nested too deeply to read"


def test_a_name_that_is_not_utf8_runs_and_keeps_its_exact_bytes(schedule: Schedule) -> None:
    name = b"\xff\xfe-binary"
    written = {CANARY.encode(): CANARY_DOC.encode(), name: every_10s("tasks.binary")}
    schedule.write(written)
    tick_twice(schedule)
    assert sorted(schedule.sent()) == ["tasks.binary", "tasks.canary"]
    assert schedule.store.client.hget(schedule.store.keys.total_run_count, name) == b"1"


def test_a_run_count_that_is_not_an_integer_quarantines_that_entry_until_fixed(schedule: Schedule) -> None:
    keys = schedule.store.keys
    written = {CANARY.encode(): CANARY_DOC.encode(), b"edited": every_10s("tasks.edited")}
    schedule.write(written)
    schedule.store.client.hset(keys.total_run_count, "edited", "lots")
    tick_twice(schedule)
    assert schedule.sent() == ["tasks.canary"]
    reason = schedule.invalid()[b"edited"]
    assert reason.startswith("entry 'edited': field 'total_run_count':") and "'lots'" in reason
    schedule.store.client.hset(keys.total_run_count, "edited", 3)  # the fix the reason asks for
    schedule.store.client.zadd(keys.due, {"edited": 0})
    schedule.scheduler.tick(now=T0 + 20)
    schedule.scheduler.tick(now=T0 + 30)
    runs = schedule.sent().count("tasks.edited")
    assert runs > 0 and schedule.store.run_state("edited")[0] == 3 + runs  # counting on from the fixed value


@pytest.mark.parametrize("bad", [{"compression": "nope"}, {"queue": 123}, {"countdown": "soon"}, {"retry_policy": 5},
                                 {"serializer": "nope"}])
def test_options_that_cannot_be_sent_quarantine_that_entry_and_the_batch_goes_on(schedule: Schedule,
                                                                                 bad: dict[str, Any]) -> None:
    """A task that cannot be sent because of its own options is not a broker outage: the rest is sent at once."""
    written = {b"a-bad": every_10s("tasks.bad", options=bad), CANARY.encode(): CANARY_DOC.encode(),
               **{f"z-{i}".encode(): every_10s("tasks.later") for i in range(5)}}
    schedule.write(written)
    tick_twice(schedule)
    assert sorted(schedule.sent()) == ["tasks.canary"] + ["tasks.later"] * 5  # sent in the same tick as the failure
    reason = schedule.invalid()[b"a-bad"]
    assert reason.startswith("entry 'a-bad': field 'options': the task cannot be sent")
    assert schedule.store.run_state("a-bad")[0] == 0  # never sent, never counted
    assert schedule.store.due_score("a-bad") == float("inf")


@pytest.mark.parametrize("key", ["due", "schedule", "total_run_count", "last_run_at", "digest", "invalid", "meta"])
def test_a_key_of_the_wrong_type_is_named_in_the_log_and_beat_resumes_once_it_is_fixed(
        schedule: Schedule, key: str, caplog: pytest.LogCaptureFixture) -> None:
    store, keys = schedule.store, schedule.store.keys
    schedule.write({CANARY.encode(): CANARY_DOC.encode()})
    schedule.scheduler.tick(now=T0)
    bad_key = getattr(keys, key)
    saved = store.client.dump(bad_key)
    store.client.delete(bad_key)
    store.client.set(bad_key, "oops")  # a user made it a string
    schedule.store.client.zadd(keys.due, {CANARY: 0}) if key != "due" else None
    with caplog.at_level(logging.ERROR):
        for now in (T0 + 10, T0 + 11):
            delay = schedule.scheduler.tick(now=now)
            assert isinstance(delay, float) and delay > 0
    assert any(f"{bad_key} is a string, not a" in r.getMessage() for r in caplog.records), caplog.text
    store.client.delete(bad_key)
    if saved is not None:
        store.client.restore(bad_key, 0, saved)
    store.client.zadd(keys.due, {CANARY: 0})
    schedule.scheduler.tick(now=T0 + 40)
    schedule.scheduler.tick(now=T0 + 50)
    assert "tasks.canary" in schedule.sent()


def test_nothing_read_from_redis_is_unpickled(schedule: Schedule, tmp_path: Path) -> None:
    """Definitions are JSON only: a pickle that would run code when loaded is quarantined, and runs nothing."""
    marker = tmp_path / "unpickled"

    class Exploit:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    written = {CANARY.encode(): CANARY_DOC.encode(), b"pickled": pickle.dumps(Exploit())}
    schedule.write(written)
    tick_twice(schedule)
    assert_nothing_lost(schedule, written)
    assert not marker.exists()
    assert "not UTF-8" in schedule.invalid()[b"pickled"] or "not valid JSON" in schedule.invalid()[b"pickled"]


#: Test-app code: while ``fail-ticks`` (beside the module) holds a number above 0, each tick counts it down
#: and raises an error of a type no part of beat knows: neither Redis's nor the broker's.
FAILING_TICKS = """
from pathlib import Path as _Path
from celerybeatredis.storage.sharded_store import ShardedStore as _Sharded

class Unforeseen(Exception):
    pass

_armed = _Path(__file__).with_name("fail-ticks")
_in_turn = _Sharded.in_turn  # called once by every tick
def _in_turn_or_fail(self, start):
    left = int(_armed.read_text()) if _armed.exists() else 0
    if left > 0:
        _armed.write_text(str(left - 1))
        raise Unforeseen(f"injected fault, {left - 1} more to come")
    return _in_turn(self, start)
_Sharded.in_turn = _in_turn_or_fail
"""

#: celery beat's log line prefix: ``[2026-03-02 12:00:00,123: ERROR/MainProcess] ...``.
LOGGED_AT = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/\w+\] (.*)$")


@pytest.mark.e2e
@pytest.mark.slow
def test_an_unforeseen_error_in_a_tick_of_a_real_beat_is_logged_with_its_traceback_backed_off_and_survived(
        tmp_path: Path, redis_url: str, prefix: str, store: RedisStore, broker: redis.Redis) -> None:
    queue = f"q-{prefix}"
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix,
              extra=f"app.conf.task_default_queue = {queue!r}\n" + FAILING_TICKS)
    store.put_raw({"every-second": json.dumps({"task": "tasks.tick", "interval": {"every": 1}})})
    beat = CeleryProcess.beat(tmp_path)
    sent = 0
    try:
        wait_until(lambda: beat.alive() and drain_queue(broker, queue), timeout=30, what="a first run")
        armed = tmp_path / "fail-ticks.new"
        armed.write_text("3")
        armed.replace(tmp_path / "fail-ticks")  # whole, never half written when beat reads it
        beat.wait_for_output("retrying in 2.0s")
        wait_until(lambda: (tmp_path / "fail-ticks").read_text() == "0", timeout=10, what="the third failure")
        drain_queue(broker, queue)  # anything sent before the faults were over
        sent = len(wait_until(lambda: beat.alive() and drain_queue(broker, queue), timeout=30,
                              what="a run after the faults"))
        assert beat.alive()
    finally:
        code = beat.stop()
    assert code == 0, beat.output()
    assert sent >= 1  # beat went on
    failures: list[tuple[float, str]] = []
    lines = beat.output().splitlines()
    for i, line in enumerate(lines):
        logged = LOGGED_AT.match(line)
        if logged and "beat: tick failed" in logged.group(2):
            at = datetime.strptime(logged.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            failures.append((at, logged.group(2)))
            trace = "\n".join(lines[i + 1 : i + 30])
            assert trace.startswith("Traceback (most recent call last):"), trace
            assert f"proj.Unforeseen: injected fault, {3 - len(failures)} more to come" in trace, trace
    assert [message for _, message in failures] == [f"beat: tick failed; retrying in {delay}s" for delay in ("0.5", "1.0", "2.0")]
    # Backed off: each failed tick was followed by at least the pause it announced (log times have 1 ms steps).
    for (first, _), (second, _), pause in zip(failures, failures[1:], (0.5, 1.0)):
        assert second - first >= pause - 0.002, (first, second, pause)
