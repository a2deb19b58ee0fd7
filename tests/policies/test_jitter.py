"""Jitter: bounds and determinism of the offset (pure), beat's decisions and ``next`` agreeing, the spread, bad values."""

from __future__ import annotations

import json
import math
import random
import struct
from datetime import datetime, timezone
from typing import Any

import pytest
import redis
from celery import Celery

from celerybeatredis.decisions.firetimes import fire_times
from celerybeatredis.definitions.fields import parse_jitter
from celerybeatredis.exceptions import InvalidDefinition
from celerybeatredis.policies.jitter import offset, to_microsecond
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.wire import Claimed
from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli
from ..support.decider import Decider, claimed, iso, short
from ..support.helpers import T0, put, run_ticks, sent

HOURLY: dict[str, Any] = {"task": "tasks.add", "interval": {"every": 1, "period": "hours"}, "jitter": 600}
MIDNIGHT: dict[str, Any] = {"task": "tasks.report", "crontab": {"minute": "0", "hour": "0"}, "jitter": 3600}


# --- the offset, pure ----------------------------------------------------------------------


def test_offsets_stay_in_bounds_and_spread_over_the_window() -> None:
    offsets = [offset(f"entry-{i}", T0, 300.0) for i in range(5000)]
    assert all(0 <= o < 300 for o in offsets)
    buckets = [0] * 10
    for o in offsets:
        buckets[int(o // 30)] += 1
    assert min(buckets) > 400 and max(buckets) < 600  # near 500 each: spread out, not bunched


def test_an_offset_depends_on_the_name_and_the_slot_only() -> None:
    assert offset("a", T0, 60) == offset("a", T0, 60) == offset("a", T0 + 0.4, 60)  # the slot to the second
    assert len({offset("a", T0 + 3600 * i, 60) for i in range(50)}) > 40
    assert offset("a", T0, 60) != offset("b", T0, 60)
    assert offset("a", T0, 0) == 0.0
    assert offset("a", T0, 1e-300) < 1e-300


def test_a_jittered_time_is_rounded_to_the_microsecond_exactly_as_round_does() -> None:
    """The shortcut must give ``round(x, 6)`` bit for bit: beat, ``next`` and older stored scores agree on it."""
    rng = random.Random(7)
    values = [rng.uniform(1.6e9, 4.2e9) for _ in range(50_000)]  # Unix times until past 2100
    values += [(rng.randrange(1_600_000_000_000_000, 4_200_000_000_000_000) + 0.5) / 1e6 for _ in range(20_000)]  # ties
    values += [rng.uniform(-1, 1) * 10.0 ** rng.randint(-12, 16) for _ in range(20_000)]
    values += [0.0, -0.0, 5e-7, -5e-7, 1.5e-6, 2.5e-6, 2.0**52 / 1e6, 1e300, -1e300, math.inf, -math.inf]
    for value in values:
        assert struct.pack("<d", to_microsecond(value)) == struct.pack("<d", round(value, 6)), value
    assert math.isnan(to_microsecond(math.nan))


@pytest.mark.parametrize("bad", [-1, -0.5, float("inf"), float("nan"), "60", True, None, [1]])
def test_bad_jitter_is_refused_naming_the_field(bad: Any) -> None:
    with pytest.raises(InvalidDefinition) as err:
        parse_jitter(bad)
    assert err.value.field == "jitter"


def test_a_negative_jitter_quarantines_the_entry_naming_the_field() -> None:
    decision = Decider().planned(claimed(dict(HOURLY, jitter=-5), last=T0 - 10), T0)
    assert decision.outcome == "quarantined" and "field 'jitter'" in decision.plan.invalid_reason


# --- decisions ------------------------------------------------------------------------------


def test_a_jittered_entry_waits_for_its_slot_plus_its_offset_then_runs() -> None:
    decider = Decider()
    delay = offset("e", T0 + 3600, 600)
    waiting = decider.pure(claimed(HOURLY, count=1, last=T0, stored_digest=short(HOURLY)), T0 + 10)
    assert (waiting.outcome, waiting.plan.score) == ("wait", pytest.approx(T0 + 3600 + delay))
    early = decider.pure(claimed(HOURLY, score=0, count=1, last=T0, stored_digest=short(HOURLY)), T0 + 3600)
    assert (early.outcome, early.plan.score) == ("wait", pytest.approx(T0 + 3600 + delay))  # a look-now keeps the offset
    run = decider.pure(claimed(HOURLY, score=waiting.plan.score, count=1, last=T0, stored_digest=short(HOURLY)),
                       waiting.plan.score)
    assert run.outcome == "run"
    # The slot is recorded as the last run, so the interval keeps its period: the next slot is T0 + 2h, not 2h + delay.
    assert run.plan.run_at == iso(T0 + 3600)
    assert run.plan.score == pytest.approx(T0 + 7200 + offset("e", T0 + 7200, 600))


def test_a_late_jittered_run_is_timed_from_when_it_ran() -> None:
    decision = Decider().pure(claimed(HOURLY, score=T0, count=1, last=T0 - 5 * 3600, stored_digest=short(HOURLY)), T0)
    assert decision.outcome == "run" and decision.plan.run_at == iso(T0)  # four slots late: no burst of catch-up runs
    assert decision.plan.score == pytest.approx(T0 + 3600 + offset("e", T0 + 3600, 600))


def test_entries_due_at_midnight_spread_over_the_jitter_window() -> None:
    decider = Decider()
    last = datetime(2026, 3, 2, 0, 0, tzinfo=timezone.utc).timestamp()
    scores = []
    for i in range(200):
        entry = Claimed(f"r{i}", last + 60, json.dumps(MIDNIGHT).encode(), 1, iso(last), short(MIDNIGHT))
        scores.append(decider.pure(entry, last + 60).plan.score)
    midnight = last + 86400
    assert all(midnight <= s < midnight + 3600 for s in scores)
    assert max(scores) - min(scores) > 3000 and len(set(scores)) == 200


def test_next_shows_the_jittered_times_beat_uses() -> None:
    app = Celery("t", set_as_current=False)
    entry = Claimed("e", 0.0, json.dumps(MIDNIGHT).encode(), None, None, None)
    times = fire_times(entry, app, T0, 4)
    day = datetime(2026, 3, 3, tzinfo=timezone.utc).timestamp()
    assert [t.at.timestamp() for t in times] == pytest.approx(
        [day + 86400 * i + offset("e", day + 86400 * i, 3600) for i in range(4)])
    assert [t.run for t in times] == [1, 2, 3, 4]


def test_run_now_is_not_jittered_but_the_run_after_it_is() -> None:
    decision = Decider().pure(claimed(HOURLY, score=-1, count=1, last=T0 - 10), T0)
    assert decision.outcome == "run" and decision.plan.run_at == iso(T0)
    assert decision.plan.score == pytest.approx(T0 + 3600 + offset("e", T0 + 3600, 600))


# --- beat, the API, the command line --------------------------------------------------------


def test_beat_sends_a_jittered_entry_at_the_time_next_and_list_show(app: Celery, store: RedisStore,
                                                                    broker: redis.Redis, api: ScheduleStore,
                                                                    cli: Cli) -> None:
    doc = {"task": "tasks.add", "interval": {"every": 60, "period": "seconds"}, "jitter": 30}
    api.add("j", doc)
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0)  # first look: anchored at T0
        predicted = [t.at.timestamp() for t in api.next_runs("j", 3, now=T0)]
        entry = api.get("j")
        assert entry.next_run_at is not None and entry.next_run_at.timestamp() == pytest.approx(predicted[0])
        assert T0 + 60 <= predicted[0] < T0 + 90 and T0 + 120 <= predicted[1] < T0 + 150
        sched.tick(now=predicted[0] - 0.5)
        assert sent(broker, app) == []
        for at in predicted:
            sched.tick(now=at)
            assert len(sent(broker, app)) == 1
    finally:
        sched.close()
    assert store.run_state("j")[0] == 3
    assert "jitter 30s" in cli.ok("list") and "jitter:    30\n" in cli.ok("show", "j")


def test_add_refuses_a_negative_jitter_naming_entry_and_field(api: ScheduleStore, cli: Cli) -> None:
    with pytest.raises(InvalidDefinition, match=r"entry 'j': field 'jitter'"):
        api.add("j", "tasks.add", 60, jitter=-1)
    assert "field 'jitter'" in cli.fails("add", "j", "--task", "tasks.add", "--every", "1m", "--jitter", "-1")
    cli.ok("add", "j", "--task", "tasks.add", "--every", "1m", "--jitter", "15")
    assert api.get("j").definition == {"task": "tasks.add", "enabled": True, "interval": {"every": 1, "period": "minutes"},
                                       "jitter": 15}


def test_a_stored_negative_jitter_is_quarantined_by_beat(app: Celery, store: RedisStore) -> None:
    put(store, "bad", dict(HOURLY, jitter=-3))
    run_ticks(app, [T0])
    reason = store.invalid_reason("bad")
    assert reason is not None and "entry 'bad': field 'jitter'" in reason
