"""The management API (ScheduleStore) against a real Redis."""

from __future__ import annotations

import hashlib
import json
import math
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from celery import Celery
from celery.schedules import crontab, schedule, solar

from celerybeatredis import CeleryBeatRedisError, EntryChanged, EntryExists, EntryNotFound, InvalidDefinition
from celerybeatredis.store import ScheduleStore

from .support.helpers import tick
from .support.processes import CeleryProcess, drain_queue, wait_until, write_app


def stored(api: ScheduleStore, name: str) -> dict:
    raw = api.sharded.get_raw(name)
    assert raw is not None
    return json.loads(raw)


def test_add_accepts_every_schedule_form(api: ScheduleStore) -> None:
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    api.add("td", "tasks.a", timedelta(minutes=5), args=(1, 2), kwargs={"x": 1})
    api.add("seconds", "tasks.a", 90)
    api.add("sched", "tasks.a", schedule(timedelta(hours=2), relative=True))
    api.add("cron", "tasks.a", crontab(minute="*/15", hour="9-17", day_of_week="mon-fri"))
    api.add("sun", "tasks.a", solar("sunset", 52.5, 13.4))
    api.add("once", "tasks.a", at, options={"queue": "q"})
    api.add("dict", "tasks.a", {"crontab": {"minute": "0", "hour": "3", "timezone": "Europe/Berlin"}})
    api.add("whole", {"task": "tasks.a", "interval": {"every": 1, "period": "days"}, "_owner": "ops"})

    assert stored(api, "td") == {"task": "tasks.a", "enabled": True, "interval": {"every": 5, "period": "minutes"},
                                 "args": [1, 2], "kwargs": {"x": 1}}
    assert stored(api, "seconds")["interval"] == {"every": 90, "period": "seconds"}
    assert stored(api, "sched")["interval"] == {"every": 2, "period": "hours"} and stored(api, "sched")["relative"]
    assert stored(api, "cron")["crontab"]["day_of_week"] == "mon-fri"
    assert stored(api, "sun")["solar"] == {"event": "sunset", "latitude": 52.5, "longitude": 13.4}
    assert stored(api, "once")["clocked"] == "2030-01-02T03:04:05+00:00"
    assert stored(api, "dict")["crontab"]["timezone"] == "Europe/Berlin"
    assert stored(api, "whole")["_owner"] == "ops"
    assert api.count() == 8
    assert api.exists("td") and not api.exists("nope")


def test_add_refuses_an_existing_name_and_replaces_only_when_told(api: ScheduleStore, client: redis.Redis) -> None:
    assert api.add("a", "tasks.a", timedelta(seconds=30)) is True
    client.zadd(api.sharded.keys.due, {"a": 12345})
    client.hset(api.sharded.keys.total_run_count, "a", 7)
    with pytest.raises(EntryExists, match="entry 'a' exists; pass replace=True"):
        api.add("a", "tasks.b", timedelta(seconds=60))
    assert stored(api, "a") == {"task": "tasks.a", "enabled": True, "interval": {"every": 30, "period": "seconds"}}
    assert client.zscore(api.sharded.keys.due, "a") == 12345
    assert api.add("a", "tasks.a", timedelta(seconds=30), replace=True) is False
    assert client.zscore(api.sharded.keys.due, "a") == 12345
    assert api.add("a", "tasks.a", timedelta(seconds=60), replace=True) is True
    assert stored(api, "a")["interval"]["every"] == 1
    assert client.zscore(api.sharded.keys.due, "a") == 0
    assert api.get("a").total_run_count == 7


@pytest.mark.parametrize(("args", "kwargs", "field"), [
    (("tasks.a", {"interval": {"every": 3, "period": "fortnights"}}), {}, "interval.period"),
    (("tasks.a", timedelta(seconds=5)), {"max_run_count": 0}, "max_run_count"),
    (("tasks.a", {"crontab": {"minute": "61"}}), {}, "crontab.minute"),
    (("", timedelta(seconds=5)), {}, "task"),
    (({"task": "tasks.a"},), {}, "schedule"),
    (("tasks.a", timedelta(seconds=5)), {"arg": [1]}, "arg"),
    (("tasks.a", {"interval": {"every": 5}, "crontab": {}}), {}, "schedule"),
])
def test_add_rejects_bad_definitions_naming_entry_and_field(api: ScheduleStore, args: tuple, kwargs: dict, field: str) -> None:
    api.add("keep", "tasks.keep", timedelta(seconds=5))
    with pytest.raises(InvalidDefinition) as caught:
        api.add("bad", *args, **kwargs)
    assert caught.value.entry == "bad"
    assert caught.value.field == field
    assert f"entry 'bad': field '{field}'" in str(caught.value)
    assert api.count() == 1 and not api.exists("bad")


def test_update_changes_given_fields_and_keeps_the_rest(api: ScheduleStore) -> None:
    api.add("a", {"task": "tasks.a", "interval": {"every": 5, "period": "seconds"}, "_owner": "ops",
                  "description": "old", "args": [1]})
    assert api.update("a", schedule=crontab(minute="0"), description=None, kwargs={"k": 2}) is True
    doc = stored(api, "a")
    assert "interval" not in doc and doc["crontab"]["minute"] == "0"
    assert doc["_owner"] == "ops" and doc["args"] == [1] and doc["kwargs"] == {"k": 2}
    assert "description" not in doc
    assert api.update("a", kwargs={"k": 2}) is False
    with pytest.raises(InvalidDefinition, match=r"interval\.every"):
        api.update("a", schedule={"interval": {"every": -1}})
    assert stored(api, "a") == doc
    with pytest.raises(EntryNotFound):
        api.update("nope", args=[1])


def test_enable_and_disable_rewrite_only_enabled(api: ScheduleStore, client: redis.Redis, app: Celery) -> None:
    doc = {"task": "tasks.a", "interval": {"every": 5, "period": "seconds"}, "_owner": {"team": "ops"},
           "args": [1, 2.5, "x"], "options": {"queue": "low", "headers": {"h": 1}}, "description": "keep me"}
    api.add("a", doc)
    tick(app)
    assert api.disable("a") is True
    assert stored(api, "a") == {**doc, "enabled": False}
    assert client.zscore(api.sharded.keys.due, "a") == 0, "beat must look at the disabled entry at once"
    assert api.disable("a") is False
    tick(app)
    assert api.get("a").status == "disabled"
    assert api.enable("a") is True
    assert stored(api, "a") == {**doc, "enabled": True}
    with pytest.raises(EntryNotFound):
        api.enable("nope")


def test_disable_refuses_an_unreadable_definition_and_changes_nothing(api: ScheduleStore, client: redis.Redis) -> None:
    client.hset(api.sharded.keys.schedule, "broken", "{not json")
    with pytest.raises(InvalidDefinition, match="entry 'broken'"):
        api.disable("broken")
    assert client.hget(api.sharded.keys.schedule, "broken") == b"{not json"
    assert api.replace("broken", {"task": "tasks.a", "interval": {"every": 5, "period": "seconds"}}) is True
    assert api.get("broken").invalid_reason is None


def test_edits_compare_and_set_against_the_text_they_read(api: ScheduleStore) -> None:
    api.add("a", "tasks.a", timedelta(seconds=5))
    raw = api.sharded.get_raw("a")
    api.add("a", "tasks.b", timedelta(seconds=5), replace=True)
    assert api.sharded.replace_raw([("a", raw, '{"task": "tasks.c", "interval": {"every": 1}}'), ("zz", "", "{}")]) == [0, -1]
    assert stored(api, "a")["task"] == "tasks.b"


def test_replace_from_a_version_writes_only_over_that_version(api: ScheduleStore, client: redis.Redis, app: Celery,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    api.add("a", "tasks.a", timedelta(seconds=5))
    read = api.get("a")
    assert read.version == hashlib.sha1(client.hget(api.sharded.keys.schedule, "a")).hexdigest()
    api.pause("a", "disk full", by="worker")  # made meanwhile, as pause_after_failures does
    edited = {**(read.definition or {}), "task": "tasks.edited"}
    with pytest.raises(EntryChanged, match="entry 'a' changed since it was read; nothing written") as refused:
        api.replace("a", edited, expected=read.version)
    assert stored(api, "a")["paused"]["reason"] == "disk full" and stored(api, "a")["task"] == "tasks.a"
    assert json.loads(refused.value.current) == stored(api, "a") and refused.value.version == api.get("a").version
    # made from the version stored now, it is written
    assert api.replace("a", {**edited, "paused": stored(api, "a")["paused"]}, expected=refused.value.version) is True
    assert stored(api, "a")["task"] == "tasks.edited"

    # a change landing between the store's read and its write is caught by the script's compare-and-set
    other = ScheduleStore(client, api.sharded.tag + ":", app)
    version = api.get("a").version
    original = api.sharded.get_raw

    def read_then_pause(name: str) -> bytes | None:
        raw = original(name)
        if "paused" in json.loads(raw or b"{}"):
            other.resume(name)
        return raw

    monkeypatch.setattr(api.sharded, "get_raw", read_then_pause)
    with pytest.raises(EntryChanged):
        api.replace("a", {"task": "tasks.third", "interval": {"every": 5, "period": "seconds"}}, expected=version)
    assert "paused" not in stored(api, "a") and stored(api, "a")["task"] == "tasks.edited"
    with pytest.raises(EntryNotFound):
        api.replace("nope", edited, expected=version)


def test_get_reports_state_next_run_and_problems(api: ScheduleStore, client: redis.Redis, app: Celery) -> None:
    api.add("a", "tasks.a", timedelta(hours=1), args=[1])
    before = api.get("a")
    assert before.status == "pending" and before.next_run_at is None and before.total_run_count == 0
    assert before.task == "tasks.a" and before.enabled and not before.static
    tick(app)
    planned = api.get("a")
    assert planned.status == "scheduled"
    now = datetime.fromtimestamp(api.server_time(), timezone.utc)
    assert timedelta(minutes=59) < planned.next_run_at - now <= timedelta(hours=1)
    client.hset(api.sharded.keys.schedule, "bad", json.dumps({"task": "t", "interval": {"every": 1, "period": "weeks"}}))
    assert "field 'interval.period'" in api.get("bad").invalid_reason
    with pytest.raises(EntryNotFound, match="no entry named 'nope'"):
        api.get("nope")


def test_a_stored_schedule_celery_refuses_reads_as_invalid(api: ScheduleStore, client: redis.Redis) -> None:
    crontab_doc = {"minute": "0", "hour": "3", "day_of_month": "31", "month_of_year": "2"}  # never occurs
    client.hset(api.sharded.keys.schedule, "feb", json.dumps({"task": "t.x", "crontab": crontab_doc}))
    entry = api.get("feb")
    assert entry.status == "invalid" and entry.invalid_reason is not None
    assert entry.invalid_reason.startswith("entry 'feb': field 'crontab.day_of_month': day '31' never occurs")
    assert [e.name for e in api.list().items] == ["feb"]
    with pytest.raises(InvalidDefinition, match=r"entry 'feb': .*never occurs"):
        api.next_runs("feb")


def test_remove_drops_entry_and_state(api: ScheduleStore, client: redis.Redis) -> None:
    api.add("a", "tasks.a", timedelta(seconds=5))
    api.sharded.restore_state([("a", 3, "2024-01-01T00:00:00+00:00")])
    api.remove("a")
    assert not api.exists("a")
    assert client.hget(api.sharded.keys.total_run_count, "a") is None and client.zscore(api.sharded.keys.due, "a") is None
    with pytest.raises(EntryNotFound):
        api.remove("a")


def test_run_now_marks_the_entry_and_rejects_unknown_names(api: ScheduleStore, client: redis.Redis) -> None:
    api.add("a", "tasks.a", crontab(minute="0", hour="0", day_of_month="1", month_of_year="1"))
    api.run_now("a")
    assert client.zscore(api.sharded.keys.due, "a") == -1
    assert api.get("a").status == "run-now"
    with pytest.raises(EntryNotFound):
        api.run_now("nope")


def test_list_pages_with_a_cursor_and_filters_by_name(api: ScheduleStore) -> None:
    docs = {f"e{i:04d}": {"task": "tasks.a", "interval": {"every": 10 + i, "period": "seconds"}} for i in range(1500)}
    api.bulk_add(docs)
    seen: set[str] = set()
    pages = 0
    cursor = 0
    while True:
        page = api.list(cursor, count=100)
        assert len(page.items) < 1500
        seen.update(e.name for e in page.items)
        pages += 1
        if page.done:
            break
        cursor = page.cursor
    assert seen == set(docs)
    assert pages > 1
    assert {e.name for e in api.iter_entries(match="e00[0-4]*")} == {f"e{i:04d}" for i in range(50)}


def test_upcoming_is_in_due_order_and_leaves_out_never(api: ScheduleStore, app: Celery) -> None:
    api.add("in-20s", "tasks.a", timedelta(seconds=20))
    api.add("in-5s", "tasks.a", timedelta(seconds=5))
    api.add("in-10s", "tasks.a", timedelta(seconds=10))
    api.add("off", "tasks.a", timedelta(seconds=1), enabled=False)
    tick(app)
    assert [e.name for e in api.upcoming(10)] == ["in-5s", "in-10s", "in-20s"]
    assert [e.name for e in api.upcoming(2)] == ["in-5s", "in-10s"]
    assert [e.name for e in api.upcoming(2, offset=2)] == ["in-20s"]
    api.run_now("in-20s")
    assert api.upcoming(1)[0].name == "in-20s"


def test_invalid_lists_quarantined_entries_with_reasons(api: ScheduleStore, client: redis.Redis, app: Celery) -> None:
    api.add("good", "tasks.a", timedelta(seconds=5))
    client.hset(api.sharded.keys.schedule, "bad", json.dumps({"task": "t", "crontab": {"minute": "99"}}))
    client.zadd(api.sharded.keys.due, {"bad": 0})
    tick(app)
    page = api.invalid()
    assert page.done
    assert [i.name for i in page.items] == ["bad"]
    assert "field 'crontab.minute'" in page.items[0].reason
    assert api.get("bad").status == "invalid"


def test_bulk_add_writes_in_batches_and_stops_at_the_first_bad_batch(api: ScheduleStore) -> None:
    docs = [(f"b{i}", {"task": "tasks.a", "interval": {"every": 5, "period": "seconds"}}) for i in range(2500)]
    result = api.bulk_add(docs, batch_size=1000)
    assert (result.written, result.unchanged) == (2500, 0)
    with pytest.raises(EntryExists, match="entry 'b2000' exists"):
        api.bulk_add([("new-one", docs[0][1]), *docs[2000:]], batch_size=1000)
    assert not api.exists("new-one")
    assert api.bulk_add(docs, batch_size=1000, replace=True).unchanged == 2500
    more = [(f"c{i}", {"task": "tasks.a", "interval": {"every": 5, "period": "seconds"}}) for i in range(1500)]
    more[1200] = ("c1200", {"task": "tasks.a", "interval": {"every": 5, "period": "years"}})
    with pytest.raises(InvalidDefinition, match=r"entry 'c1200': field 'interval\.period'"):
        api.bulk_add(more, batch_size=1000)
    assert api.count() == 3500
    assert api.bulk_remove([f"b{i}" for i in range(2500)] + ["missing"], batch_size=700) == 2500
    assert api.count() == 1000


def test_stats_counts_and_memory(api: ScheduleStore, client: redis.Redis, app: Celery) -> None:
    api.add("a", "tasks.a", timedelta(hours=1))
    api.add("b", "tasks.a", timedelta(hours=1), enabled=False)
    client.hset(api.sharded.keys.schedule, "bad", json.dumps({"task": "t", "interval": {"every": 0}}))
    tick(app)
    api.add("new", "tasks.a", timedelta(hours=1))
    client.zadd(api.sharded.keys.due, {"a": api.server_time() - 3600})
    stats = api.stats()
    assert (stats.entries, stats.enabled, stats.invalid) == (4, 3, 1)
    assert (stats.scheduled, stats.never, stats.pending) == (1, 2, 1)
    assert (stats.due_now, stats.overdue) == (2, 1)
    assert stats.memory_bytes[api.sharded.keys.schedule] > 0 and stats.memory_total >= stats.memory_bytes[api.sharded.keys.schedule]
    assert api.stats(scan=False).enabled is None


def test_from_app_uses_the_schedulers_settings(app: Celery, prefix: str, client: redis.Redis) -> None:
    store = ScheduleStore.from_app(app)
    try:
        store.add("x", "tasks.a", timedelta(seconds=5))
        assert client.hexists(f"{{{prefix.rstrip(':')}}}:schedule", "x")
    finally:
        store.drop()


def test_restore_state_never_overwrites_state_beat_wrote(api: ScheduleStore, client: redis.Redis) -> None:
    assert api.sharded.restore_state([("a", 5, "2024-01-01T00:00:00+00:00"), ("b", None, None)]) == 1
    assert api.sharded.restore_state([("a", 9, "2025-01-01T00:00:00+00:00")]) == 0
    assert client.hget(api.sharded.keys.total_run_count, "a") == b"5"
    assert client.hget(api.sharded.keys.last_run_at, "a") == b"2024-01-01T00:00:00+00:00"


def test_never_is_infinite_score(api: ScheduleStore, app: Celery) -> None:
    api.add("off", "tasks.a", timedelta(seconds=1), enabled=False)
    tick(app)
    assert math.isinf(api.sharded.due_score("off"))
    assert api.get("off").next_run_at is None


@pytest.mark.e2e
def test_running_beat_dispatches_api_changes(tmp_path: Path, redis_url: str, prefix: str, api: ScheduleStore) -> None:
    broker = redis.Redis.from_url(f"{redis_url}/1")
    queue = f"q-{prefix}"  # a queue of its own: nothing another test sent, nothing to empty first
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=f"app.conf.task_default_queue = {queue!r}\n")
    beat = CeleryProcess.beat(tmp_path)
    try:
        beat.wait_for_output("beat: Starting")
        api.add("yearly", "tasks.yearly", crontab(minute="0", hour="0", day_of_month="1", month_of_year="1"), args=[7])
        wait_until(lambda: api.get("yearly").status == "scheduled", what="beat to plan the new entry")
        assert drain_queue(broker, queue) == []
        api.run_now("yearly")
        sent = wait_until(lambda: drain_queue(broker, queue), what="the run-now dispatch")
        assert [(m.task, m.args) for m in sent] == [("tasks.yearly", [7])]
        entry = wait_until(lambda: (e := api.get("yearly")).status == "scheduled" and e, what="the next plan")
        assert entry.total_run_count == 1 and entry.last_run_at is not None
        api.disable("yearly")
        wait_until(lambda: api.get("yearly").status == "disabled", what="beat to retire the disabled entry")
        assert beat.alive()
    finally:
        code = beat.stop()
    assert code == 0, beat.output()


class PausingStore(ScheduleStore):
    """An editor that stops after each read of a definition until ``between`` (the other editor) has run."""

    def __init__(self, client: redis.Redis, prefix: str, app: Celery, between: Callable[[int], None]) -> None:
        super().__init__(client, prefix, app)
        self.between = between
        self.reads = 0
        read = self.sharded.get_raw

        def get_raw(name: str) -> bytes | None:  # the edit's read, through the store it holds
            raw = read(name)
            self.reads += 1
            self.between(self.reads)
            return raw

        self.sharded.get_raw = get_raw  # type: ignore[method-assign]


def other_editor(redis_url: str, prefix: str, app: Celery, edit: Callable[[ScheduleStore, int], object],
                 when: Callable[[int], bool]) -> tuple[Callable[[int], None], list[BaseException]]:
    """A second editor, on its own connection and thread, that edits the entry while the first is between read and write."""
    errors: list[BaseException] = []

    def between(reads: int) -> None:
        if not when(reads):
            return

        def run() -> None:
            store = ScheduleStore(redis.Redis.from_url(f"{redis_url}/0"), prefix, app)
            try:
                edit(store, reads)
            except BaseException as exc:  # noqa: BLE001 - reported by the test
                errors.append(exc)
            finally:
                store.close()

        thread = threading.Thread(target=run)
        thread.start()
        thread.join(30)

    return between, errors


def test_two_editors_racing_on_one_entry_both_keep_their_change(api: ScheduleStore, redis_url: str, prefix: str,
                                                                app: Celery, client: redis.Redis) -> None:
    """The other editor writes between this one's read and its compare-and-set: this one reads again and keeps both."""
    api.add("e", "tasks.a", timedelta(minutes=5), args=[0])
    between, errors = other_editor(redis_url, prefix, app, lambda store, _: store.update("e", kwargs={"by": "other"}),
                                   when=lambda reads: reads == 1)
    editor = PausingStore(client, prefix, app, between)
    assert editor.update("e", args=[1]) is True
    assert errors == []
    assert editor.reads == 2  # its first compare-and-set lost, the second won
    definition = api.get("e").definition or {}
    assert (definition["args"], definition["kwargs"]) == ([1], {"by": "other"})


def test_an_editor_that_loses_every_race_gets_the_documented_error_and_writes_nothing(
        api: ScheduleStore, redis_url: str, prefix: str, app: Celery, client: redis.Redis) -> None:
    api.add("e", "tasks.a", timedelta(minutes=5), args=[0])
    between, errors = other_editor(redis_url, prefix, app, lambda store, n: store.update("e", kwargs={"n": n}),
                                   when=lambda reads: True)
    editor = PausingStore(client, prefix, app, between)
    with pytest.raises(CeleryBeatRedisError, match=r"entry 'e' kept changing while being edited; try again"):
        editor.disable("e")
    assert errors == []
    assert editor.reads == ScheduleStore.EDIT_ATTEMPTS
    definition = api.get("e").definition or {}
    assert definition.get("enabled", True) is True  # the loser wrote nothing
    assert definition["kwargs"] == {"n": ScheduleStore.EDIT_ATTEMPTS}  # and every change of the other editor stands
