"""Backfill: the times a schedule had in a past range (pure), and the command that lists, then sends, them."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
import redis
from celery.schedules import crontab, schedule

from celerybeatredis.definitions.kinds import clocked
from celerybeatredis.delivery.backfill import backfill_task_id, backfill_times
from celerybeatredis.delivery.headers import FIRE_ID, FIRE_TIME
from celerybeatredis.delivery.sending import HEADER, SCHEDULED
from celerybeatredis.exceptions import CeleryBeatRedisError
from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli
from ..support.processes import drain_queue

DAY = datetime(2026, 3, 2, tzinfo=timezone.utc)


def at(hours: float) -> datetime:
    return DAY + timedelta(hours=hours)


def test_a_crontab_s_times_in_the_range_both_ends_included() -> None:
    six_hourly = crontab(minute=0, hour="*/6")
    assert backfill_times(six_hourly, at(0), at(18), None) == [at(0), at(6), at(12), at(18)]
    assert backfill_times(six_hourly, at(1), at(5), None) == []


def test_an_interval_s_times_follow_its_last_run_even_from_after_the_range() -> None:
    hourly = schedule(timedelta(hours=1))
    assert backfill_times(hourly, at(0), at(3), at(10.5)) == [at(0.5), at(1.5), at(2.5)]
    assert backfill_times(hourly, at(0), at(2), None) == [at(0), at(1), at(2)]  # never ran: from the range's start


def test_a_clocked_entry_s_one_time_if_in_the_range() -> None:
    once = clocked(at(5))
    assert backfill_times(once, at(0), at(6), None) == [at(5)]
    assert backfill_times(once, at(6), at(7), None) == []


def test_a_reversed_or_too_large_range_is_refused() -> None:
    with pytest.raises(CeleryBeatRedisError, match="before --from"):
        backfill_times(schedule(timedelta(hours=1)), at(3), at(1), None)
    with pytest.raises(CeleryBeatRedisError, match="more than --limit 10"):
        backfill_times(schedule(timedelta(minutes=1)), at(0), at(1), None, limit=10)


def test_the_task_id_is_the_same_for_the_same_time() -> None:
    assert backfill_task_id("t", "e", at(1)) == backfill_task_id("t", "e", at(1).astimezone(timezone(timedelta(hours=2))))
    assert backfill_task_id("t", "e", at(1)) != backfill_task_id("t", "e", at(2))


def test_backfill_lists_then_sends_each_run_with_its_time_and_leaves_the_run_state(
        cli: Cli, api: ScheduleStore, redis_url: str, broker: redis.Redis, prefix: str) -> None:
    api.add("report", "proj.report", crontab(minute=0, hour="*/6"), args=[1], options={"queue": f"q-{prefix}"})
    before = api.get("report")
    listed = cli.ok("backfill", "report", "--from", "2026-03-02T00:00:00", "--to", "2026-03-02T12:00:00Z")
    assert listed.splitlines() == ["would send 3 runs of report (proj.report):", "  2026-03-02T00:00:00+00:00",
                                   "  2026-03-02T06:00:00+00:00", "  2026-03-02T12:00:00+00:00", "add --yes to send them"]
    assert drain_queue(broker, f"q-{prefix}") == []
    assert "--yes needs --broker" in cli.fails("backfill", "report", "--from", "2026-03-02", "--to", "2026-03-02T12:00",
                                               "--yes", code=2)
    sent = json.loads(cli.ok("backfill", "report", "--from", "2026-03-02T00:00:00", "--to", "2026-03-02T12:00:00",
                             "--yes", "--broker", f"{redis_url}/1", "--json"))
    messages = drain_queue(broker, f"q-{prefix}")
    assert [m.headers[SCHEDULED] for m in messages] == sent["times"] == [at(h).isoformat() for h in (0, 6, 12)]
    assert [m.id for m in messages] == sent["task_ids"] and all(m.headers[HEADER] == "report" for m in messages)
    assert all(m.headers[FIRE_ID] == m.id and m.headers[FIRE_TIME] == m.headers[SCHEDULED] for m in messages)
    assert all(m.task == "proj.report" and m.args == [1] for m in messages)
    after = api.get("report")
    assert (after.total_run_count, after.last_run_at) == (before.total_run_count, before.last_run_at)


def test_backfill_errors_are_one_line(cli: Cli, api: ScheduleStore) -> None:
    assert "no entry" in cli.fails("backfill", "nope", "--from", "2026-03-02", "--to", "2026-03-03").lower()
    api.add("report", "proj.report", 60)
    assert "--from" in cli.fails("backfill", "report", "--from", "yesterday", "--to", "2026-03-03", code=2)
    assert "more than --limit 5" in cli.fails("backfill", "report", "--from", "2026-03-02", "--to", "2026-03-03",
                                              "--limit", "5")
