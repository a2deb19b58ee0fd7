"""What happens to one claimed entry, decided from records built by hand: no Redis, no broker."""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

import pytest

from celerybeatredis.decisions.decide import REASON_LIMIT, Run, quarantine_reason
from celerybeatredis.definitions.codec import SHORT_DIGEST, digest
from celerybeatredis.exceptions import InvalidDefinition
from celerybeatredis.storage.keys import NEVER, RUN_NOW
from celerybeatredis.storage.wire import Claimed, Plan

from ..support.decider import EVERY_10S, Decider, claimed, iso, raw, short
from ..support.helpers import T0


def test_a_due_entry_runs_and_is_due_again_one_interval_later(decider: Decider) -> None:
    entry = claimed(count=3, last=T0 - 10, stored_digest=short(EVERY_10S))
    decision = decider.pure(entry, T0)
    assert decision.outcome == "run"
    assert decision.plan == Plan(name="e", lease="lease-1", score=T0 + 10, ran=True, run_at=iso(T0))
    assert decision.run == Run(definition=decider.codec.parse(entry.definition), total_run_count=4, fire_time=iso(T0))


@pytest.mark.parametrize(("doc", "score", "last", "at", "fired"), [
    (EVERY_10S, T0, T0 - 10, T0 + 3.25, T0),  # late, not missed: the time it was due
    (EVERY_10S, T0 - 25, T0 - 35, T0 + 3.25, T0 - 5),  # missed runs: the latest time the schedule gave
    ({**EVERY_10S, "jitter": 4.0}, T0 + 2.5, T0 - 10, T0 + 3.25, T0),  # jittered: its slot, before jitter
    ({"task": "tasks.add", "crontab": {"minute": "*/5"}}, 1_700_000_100.0, 1_700_000_100.0 - 300, 1_700_000_101.5,
     1_700_000_100.0),
    (EVERY_10S, -1.0, T0 - 3, T0 + 1.5, T0 + 1.5),  # run now: the time it was asked to run
])
def test_a_run_carries_the_time_its_schedule_gave_it(decider: Decider, doc: dict[str, Any], score: float, last: float,
                                                      at: float, fired: float) -> None:
    decision = decider.pure(claimed(doc, score=score, count=1, last=last, stored_digest=short(doc)), at)
    assert decision.run is not None and decision.run.fire_time == iso(fired)


def test_an_entry_not_due_waits_until_its_time_and_sends_nothing(decider: Decider) -> None:
    decision = decider.pure(claimed(count=1, last=T0 - 4, stored_digest=short(EVERY_10S)), T0)
    assert (decision.plan, decision.run, decision.outcome) == (Plan(name="e", lease="lease-1", score=T0 + 6), None, "wait")


def test_a_new_entry_is_anchored_at_the_batch_time_and_runs_one_interval_later(decider: Decider) -> None:
    first = decider.pure(claimed(), T0)
    assert (first.plan, first.run, first.outcome) == (
        Plan(name="e", lease="lease-1", score=T0 + 10, digest=f"{short(EVERY_10S)} {T0:.6f}"), None, "wait")
    later = decider.pure(claimed(stored_digest=f"{short(EVERY_10S)} {T0:.6f}"), T0 + 10)
    assert later.outcome == "run" and later.plan.digest == ""  # the anchor is kept as written until a last run exists
    assert later.run is not None and later.run.total_run_count == 1


@pytest.mark.parametrize(("extra", "count", "last"), [
    ({"max_run_count": 3}, 3, T0 - 60),
    ({"one_off": True}, 1, T0 - 60),
    ({"expires": iso(T0 - 1)}, 0, None),
    ({"enabled": False}, 0, None),
])
def test_a_finished_or_disabled_entry_is_retired_without_a_run(decider: Decider, extra: dict[str, Any], count: int,
                                                               last: float | None) -> None:
    decision = decider.pure(claimed(dict(EVERY_10S, **extra), count=count, last=last), T0)
    assert (decision.outcome, decision.plan.score, decision.plan.ran, decision.run) == ("retired", NEVER, False, None)


def test_the_last_allowed_run_is_sent_and_retires_the_entry(decider: Decider) -> None:
    doc = dict(EVERY_10S, max_run_count=3)
    decision = decider.pure(claimed(doc, count=2, last=T0 - 10, stored_digest=short(doc)), T0)
    assert (decision.outcome, decision.plan.score, decision.plan.ran) == ("run", NEVER, True)
    assert decision.run is not None and decision.run.total_run_count == 3


def test_a_clocked_entry_runs_once_at_its_time(decider: Decider) -> None:
    doc = {"task": "tasks.once", "clocked": iso(T0 + 30)}
    assert decider.pure(claimed(doc), T0).plan.score == pytest.approx(T0 + 30)
    at_time = decider.pure(claimed(doc), T0 + 30)
    assert (at_time.outcome, at_time.plan.score) == ("run", NEVER)
    assert decider.pure(claimed(doc, count=1, last=T0 + 30), T0 + 60).outcome == "retired"


def test_a_start_time_in_the_future_holds_the_entry_until_then(decider: Decider) -> None:
    decision = decider.pure(claimed(dict(EVERY_10S, start_time=iso(T0 + 100))), T0)
    assert (decision.outcome, decision.plan.score, decision.run) == ("held", pytest.approx(T0 + 100), None)


def test_a_run_now_score_runs_even_a_disabled_entry_not_yet_due(decider: Decider) -> None:
    doc = dict(EVERY_10S, enabled=False)
    decision = decider.pure(claimed(doc, score=RUN_NOW, count=5, last=T0 - 1), T0)
    assert (decision.outcome, decision.plan.ran, decision.plan.score) == ("run", True, NEVER)  # disabled: runs once, then retired
    enabled = decider.pure(claimed(EVERY_10S, score=RUN_NOW, count=5, last=T0 - 1), T0)
    assert (enabled.outcome, enabled.plan.score) == ("run", pytest.approx(T0 + 10))
    assert enabled.run is not None and enabled.run.total_run_count == 6


def test_seed_run_state_of_the_definition_is_taken_when_the_hashes_have_none(decider: Decider) -> None:
    seed_last = datetime(2014, 8, 30, 8, 10, 6, tzinfo=timezone.utc)
    doc = dict(EVERY_10S, total_run_count=5, last_run_at=seed_last.isoformat())
    decision = decider.pure(claimed(doc), T0)
    assert decision.outcome == "run" and decision.run is not None and decision.run.total_run_count == 6
    assert (decision.plan.seed_total_run_count, decision.plan.seed_last_run_at) == (5, seed_last.isoformat())
    counted = decider.pure(claimed(doc, count=9, last=T0 - 10), T0)
    assert counted.run is not None and counted.run.total_run_count == 10  # the hashes win
    assert (counted.plan.seed_total_run_count, counted.plan.seed_last_run_at) == (None, None)


def test_a_last_run_that_is_not_a_time_counts_as_never_run(decider: Decider) -> None:
    decision = decider.pure(claimed(count=2, last="yesterday-ish"), T0)
    assert (decision.outcome, decision.plan.score) == ("wait", T0 + 10)  # timed from the anchor, now


# --- quarantine ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("definition", "reason"), [
    (b'{"task": "t", "interval": ', "entry 'e': not valid JSON"),
    (raw({"task": "t", "interval": {"every": 1, "period": "fortnights"}}), "entry 'e': field 'interval.period': unknown period"),
    (raw({"task": "t", "interval": {"every": 999_999_999, "period": "days"}}),
     "entry 'e': field 'interval': cannot compute the next run: "),
])
def test_a_definition_beat_cannot_use_is_quarantined_with_its_reason(decider: Decider, caplog: pytest.LogCaptureFixture,
                                                                     definition: bytes, reason: str) -> None:
    with caplog.at_level(logging.ERROR):
        decision = decider.planned(claimed(definition, last=T0 - 60), T0)
    assert (decision.outcome, decision.plan.score, decision.plan.ran, decision.run) == ("quarantined", NEVER, False, None)
    assert decision.plan.invalid_reason.startswith(reason), decision.plan.invalid_reason
    assert decision.plan.digest == digest(definition)[:SHORT_DIGEST]
    assert caplog.records == []  # said by the beat whose commit quarantines it (tests/beat/test_dispatch.py)


def test_a_task_outside_the_allowlist_and_a_run_count_that_is_no_integer_are_quarantined_naming_the_field() -> None:
    decider = Decider(redis_scheduler_task_allowlist=["tasks.*"])
    outside = decider.planned(claimed(dict(EVERY_10S, task="other.add")), T0)
    assert outside.plan.invalid_reason == "entry 'e': field 'task': 'other.add' is not in redis_scheduler_task_allowlist"
    edited = decider.planned(claimed(bad_count="lots"), T0)
    assert edited.outcome == "quarantined"
    assert edited.plan.invalid_reason.startswith("entry 'e': field 'total_run_count': {tasks:meta}:total_run_count holds 'lots'")
    assert decider.planned(claimed(), T0).outcome == "wait"


def test_anything_unforeseen_quarantines_the_entry_keeping_the_error_for_its_traceback(decider: Decider) -> None:
    odd = Claimed("e", T0, raw(EVERY_10S), None, 12345, None)  # type: ignore[arg-type]  # not text, as no store hands over
    errors: dict[str, BaseException] = {}
    decision = decider.planned(odd, T0, errors)
    assert decision.outcome == "quarantined" and decision.plan.score == NEVER
    assert decision.plan.invalid_reason.startswith("entry 'e': cannot be scheduled: TypeError: ")
    assert decision.plan.digest == f"{short(EVERY_10S)} {T0:.6f}"
    assert isinstance(errors["e"], TypeError)  # logged with the quarantine, once committed


def test_a_quarantine_reason_is_one_text_cut_to_its_limit() -> None:
    assert quarantine_reason("e", InvalidDefinition("options", "the task cannot be sent: x")) == \
        "entry 'e': field 'options': the task cannot be sent: x"
    assert quarantine_reason("e", InvalidDefinition("", "nested too deeply to read")) == "entry 'e': nested too deeply to read"
    long = quarantine_reason("e", InvalidDefinition("args", "y" * 5000))
    assert len(long) == REASON_LIMIT and long.startswith("entry 'e': field 'args': yyy")


# --- the batch's shared answers ------------------------------------------------------------------------------------


