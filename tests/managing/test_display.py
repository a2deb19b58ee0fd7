"""Entries in words: why ``show`` says an entry never runs again (disabled, quarantined, one run done, max_run_count,
expires), and durations."""

from __future__ import annotations

import math
from datetime import datetime, timezone
from typing import Any

import pytest
from celery import Celery

from celerybeatredis.managing.display import duration, relative, why_never
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli
from ..support.decider import iso
from ..support.helpers import T0, put, run_ticks

EVERY_10S: dict[str, Any] = {"task": "tasks.add", "interval": {"every": 10, "period": "seconds"}}


@pytest.mark.parametrize(("doc", "runs", "why"), [
    (dict(EVERY_10S, enabled=False), 0, "disabled (enabled is false)"),
    (dict(EVERY_10S, one_off=True), 1, "one_off: it ran once"),
    ({"task": "tasks.add", "clocked": iso(T0 - 60)}, 1, "clocked: its one run is done"),
    (dict(EVERY_10S, max_run_count=3), 3, "max_run_count: 3 of 3 runs done"),
    (dict(EVERY_10S, expires=iso(T0 - 5)), 2, f"expires: {iso(T0 - 5)} has passed"),
    ({"task": "tasks.add", "interval": {"every": 1, "period": "fortnights"}}, 0, "quarantined: entry 'e': field "),
])
def test_why_an_entry_never_runs_again(app: Celery, store: RedisStore, api: ScheduleStore, doc: dict[str, Any], runs: int,
                                       why: str) -> None:
    put(store, "e", doc, score=T0 - 1)
    if runs:
        store.client.hset(store.keys.total_run_count, "e", runs)
        store.client.hset(store.keys.last_run_at, "e", iso(T0 - 10))
    run_ticks(app, [T0])
    entry = api.get("e")
    assert entry.next_run_at is None and math.isinf(store.due_score("e") or 0)
    text = why_never(entry, datetime.fromtimestamp(T0, timezone.utc))
    assert text is not None and text.startswith(why), text


def test_a_scheduled_entry_has_no_reason(api: ScheduleStore, store: RedisStore, cli: Cli) -> None:
    api.add("e", EVERY_10S)
    store.client.zadd(store.keys.due, {"e": T0 + 10})
    assert why_never(api.get("e"), datetime.fromtimestamp(T0, timezone.utc)) is None
    assert "why never" not in cli.ok("show", "e")
    api.disable("e")
    store.client.zadd(store.keys.due, {"e": math.inf})
    assert "why never: disabled (enabled is false)" in cli.ok("show", "e")


@pytest.mark.parametrize(("seconds", "words"), [
    (0, "0s"), (0.4, "0s"), (59, "59s"), (60, "1m"), (61, "1m1s"), (3600, "1h"), (8 * 3600 + 48, "8h1m"),
    (8 * 3600 + 20, "8h"), (3903, "1h5m"), (86400 + 5, "1d"), (2 * 86400 + 3 * 3600, "2d3h"), (-125, "2m5s"),
    (23 * 3600 + 59 * 60 + 40, "1d"), (3599.6, "1h"), (1120 * 86400 + 3 * 3600 + 37 * 60, "1120d4h"),
])
def test_a_duration_is_its_largest_unit_and_the_next_never_skipping_one(seconds: float, words: str) -> None:
    assert duration(seconds) == words


def test_relative_times_read_with_no_unit_skipped() -> None:
    now = datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert relative(datetime(2030, 1, 1, 8, 0, 48, tzinfo=timezone.utc), now) == "in 8h1m"
