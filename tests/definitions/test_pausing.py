"""Pause and resume: the decision (pure), the API and its errors, beat's ticks and history, the command line."""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery

from celerybeatredis.decisions.firetimes import fire_times
from celerybeatredis.definitions.pausing import Pause, parse_pause
from celerybeatredis.exceptions import EntryNotFound, InvalidDefinition
from celerybeatredis.storage.keys import RUN_NOW
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.wire import Claimed
from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli
from ..support.decider import EVERY_10S, Decider, claimed, iso, short
from ..support.helpers import T0, put, run_ticks, sent
from ..support.processes import CeleryProcess, Tally, own_queue, wait_until, write_app


def paused(doc: dict[str, Any], reason: str = "maintenance", at: float = T0 - 100) -> dict[str, Any]:
    return dict(doc, paused={"reason": reason, "by": "ops", "at": iso(at)})


# --- the decision, pure --------------------------------------------------------------------


def test_a_due_paused_entry_is_skipped_and_due_again_at_its_next_time() -> None:
    decider = Decider()
    doc = paused(EVERY_10S)
    decision = decider.pure(claimed(doc, count=3, last=T0 - 10, stored_digest=short(doc)), T0)
    assert (decision.outcome, decision.run, decision.plan.ran, decision.plan.score) == ("paused", None, False, T0 + 10)
    later = decider.pure(claimed(doc, score=T0 + 10, count=3, last=T0 - 10, stored_digest=short(doc)), T0 + 10)
    assert (later.outcome, later.plan.score) == ("paused", T0 + 20)  # the last run stays; the next time moves on


def test_a_paused_entry_not_due_waits_as_it_would_unpaused() -> None:
    decider = Decider()
    doc = paused(EVERY_10S)
    decision = decider.pure(claimed(doc, count=1, last=T0 - 4, stored_digest=short(doc)), T0)
    assert (decision.outcome, decision.plan.score) == ("wait", T0 + 6)


def test_run_now_runs_a_paused_entry() -> None:
    decision = Decider().pure(claimed(paused(EVERY_10S), score=RUN_NOW, count=2, last=T0 - 1), T0)
    assert decision.outcome == "run" and decision.run is not None and decision.run.total_run_count == 3


@pytest.mark.parametrize(("value", "field"), [
    ("yes", "paused"), ({"by": "ops"}, "paused.reason"), ({"reason": 3}, "paused.reason"),
    ({"reason": "x", "by": 1}, "paused.by"), ({"reason": "x", "at": "soon"}, "paused.at"),
    ({"reason": "x", "until": "2030-01-01"}, "paused"),
])
def test_a_bad_pause_quarantines_the_entry_naming_the_field(value: Any, field: str) -> None:
    with pytest.raises(InvalidDefinition) as err:
        parse_pause(value)
    assert err.value.field == field
    decision = Decider().planned(claimed(dict(EVERY_10S, paused=value), last=T0 - 10), T0)
    assert decision.outcome == "quarantined" and f"field '{field}'" in decision.plan.invalid_reason


def test_next_marks_the_times_a_pause_skips() -> None:
    doc = paused(EVERY_10S)
    entry = Claimed("e", T0 + 5, json.dumps(doc).encode(), 1, iso(T0 - 5), short(doc))
    times = fire_times(entry, Celery("t", set_as_current=False), T0, 3)
    assert [(t.at.timestamp(), t.run, t.ruled_out) for t in times] == [
        (T0 + 5, None, "paused"), (T0 + 15, None, "paused"), (T0 + 25, None, "paused")]


# --- the API -------------------------------------------------------------------------------


def test_pause_and_resume_through_the_api(api: ScheduleStore) -> None:
    api.add("report", "tasks.report", 60, description="daily")
    before = api.server_time()
    assert api.pause("report", "db migration", by="alice") is True
    entry = api.get("report")
    pause = entry.paused
    assert pause is not None and (pause.reason, pause.by) == ("db migration", "alice")
    assert pause.at is not None and before - 1 <= pause.at.timestamp() <= api.server_time() + 1
    assert entry.enabled and entry.definition is not None and entry.definition["description"] == "daily"
    assert entry.to_json()["paused"] == {"reason": "db migration", "by": "alice", "at": pause.at.isoformat()}
    listed = api.list().items
    assert [e.paused for e in listed] == [pause]
    assert api.pause("report", "db migration, longer", by="bob") is True
    assert api.get("report").paused == Pause("db migration, longer", "bob", api.get("report").paused.at)  # type: ignore[union-attr]
    assert api.resume("report") is True
    entry = api.get("report")
    assert entry.paused is None and "paused" not in (entry.definition or {}) and entry.to_json()["paused"] is None
    assert api.resume("report") is False


def test_pause_names_who_by_default_and_the_status_says_paused(api: ScheduleStore, store: RedisStore) -> None:
    api.add("report", "tasks.report", 60)
    api.pause("report", "")
    pause = api.get("report").paused
    assert pause is not None and pause.reason == "" and pause.by and "@" in pause.by
    store.client.zadd(store.keys.due, {"report": T0})  # planned by beat
    assert api.get("report").status == "paused"


def test_pause_and_resume_of_an_unknown_entry_raise_not_found(api: ScheduleStore) -> None:
    with pytest.raises(EntryNotFound):
        api.pause("nope", "x")
    with pytest.raises(EntryNotFound):
        api.resume("nope")


def test_a_pause_that_is_not_text_is_refused_naming_the_entry_and_field(api: ScheduleStore) -> None:
    api.add("report", "tasks.report", 60)
    with pytest.raises(InvalidDefinition, match=r"entry 'report': field 'paused\.reason'"):
        api.pause("report", 5)  # type: ignore[arg-type]
    with pytest.raises(InvalidDefinition, match=r"field 'paused\.by'"):
        api.pause("report", "x", by=["me"])  # type: ignore[arg-type]
    assert api.get("report").paused is None


def test_the_pause_is_a_definition_field_the_api_edits(api: ScheduleStore) -> None:
    api.add("report", "tasks.report", 60, paused={"reason": "set with add"})
    assert api.get("report").paused == Pause("set with add")
    api.update("report", paused=None)
    assert api.get("report").paused is None


# --- beat ----------------------------------------------------------------------------------


def test_beat_sends_no_run_of_a_paused_entry_and_records_each_as_skipped(
        app: Celery, store: RedisStore, broker: redis.Redis, api: ScheduleStore) -> None:
    put(store, "add", paused(EVERY_10S, "reindexing"))
    put(store, "other", EVERY_10S)
    run_ticks(app, [T0 + 10 * i for i in range(4)])  # seen at T0, then three due times
    assert {m.headers.get("periodic_task_name") for m in sent(broker, app)} == {"other"}
    history = api.history("add")
    assert (history.sent, history.skipped) == (0, 3)
    assert [r.outcome for r in history.runs] == ["skipped: paused: reindexing"] * 3
    assert store.run_state("add")[0] == 0
    assert api.history("other").sent == 3


def test_skips_before_the_pause_in_force_keep_no_reason(app: Celery, store: RedisStore, api: ScheduleStore) -> None:
    put(store, "add", paused(EVERY_10S, "first", at=T0 - 100))
    store.client.hset(store.keys.last_run_at, "add", iso(T0 - 100))  # it ran before: an edit keeps it due
    run_ticks(app, [T0, T0 + 10])
    api.update("add", paused={"reason": "second", "at": iso(T0 + 15)})  # beat looks at it at once: nothing due was skipped
    run_ticks(app, [T0 + 20, T0 + 30])
    assert [r.outcome for r in api.history("add").runs] == ["skipped: paused: second", "skipped: paused"]


def test_a_resumed_entry_runs_again(app: Celery, store: RedisStore, broker: redis.Redis, api: ScheduleStore) -> None:
    put(store, "add", EVERY_10S)
    run_ticks(app, [T0, T0 + 10])
    api.pause("add", "short")
    run_ticks(app, [T0 + 20, T0 + 30])
    assert len(sent(broker, app)) == 1
    api.resume("add")
    run_ticks(app, [T0 + 40, T0 + 50])
    assert len(sent(broker, app)) == 2
    assert store.run_state("add")[0] == 3


# --- the command line ----------------------------------------------------------------------


def test_cli_pause_list_show_resume(cli: Cli, api: ScheduleStore, store: RedisStore) -> None:
    api.add("report", "tasks.report", 60)
    assert cli.ok("pause", "report", "--reason", "quarterly close", "--by", "carol") == "paused report: quarterly close\n"
    listing = cli.ok("list")
    assert "yes (paused: quarterly close)" in listing
    store.client.zadd(store.keys.due, {"report": datetime(2030, 1, 1, tzinfo=timezone.utc).timestamp()})
    assert "report" in cli.ok("list", "--status", "paused")
    shown = cli.ok("show", "report")
    assert "paused:    'quarterly close' (by carol, since " in shown and "status:    paused" in shown
    assert json.loads(cli.ok("show", "report", "--json"))["paused"]["by"] == "carol"
    assert cli.ok("resume", "report") == "resumed report\n"
    assert cli.ok("resume", "report") == "report was not paused\n"
    assert "paused" not in cli.ok("show", "report")
    assert "no entry named 'nope'" in cli.fails("pause", "nope", "--reason", "x")
    assert "no entry named 'nope'" in cli.fails("resume", "nope")
    cli.ok("edit", "report", "--set", 'paused={"reason": "by edit"}')
    assert api.get("report").paused == Pause("by edit")


@pytest.mark.e2e
@pytest.mark.slow
def test_a_real_beat_skips_a_paused_entry_and_sends_it_again_after_resume(
        tmp_path: Path, redis_url: str, prefix: str, client: redis.Redis, broker: redis.Redis) -> None:
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=own_queue(prefix))
    api = ScheduleStore(client, prefix)
    api.add("paused-1s", "tasks.paused", 1)
    api.add("other-1s", "tasks.other", 1)
    tally = Tally(broker, prefix)
    beat = CeleryProcess.beat(tmp_path)
    try:
        tally.wait_for("tasks.paused", 1)

        def skipped() -> int:
            return sum(1 for r in api.history("paused-1s", 50).runs if r.outcome == "skipped: paused: e2e check")

        api.pause("paused-1s", "e2e check", by="test")
        wait_until(lambda: skipped() >= 1, what="a run skipped as paused")
        sent_while_paused = tally.poll()["tasks.paused"]
        others = tally.poll()["tasks.other"]
        wait_until(lambda: skipped() >= 3, what="two more runs skipped as paused")
        assert tally.poll()["tasks.paused"] == sent_while_paused
        assert tally.poll()["tasks.other"] > others  # beat kept sending the other entry meanwhile
        api.resume("paused-1s")
        tally.wait_for("tasks.paused", sent_while_paused + 1)
    finally:
        assert beat.stop() == 0, beat.output()
    assert "Traceback" not in beat.output()
