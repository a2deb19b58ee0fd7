"""Removing a calendar that entries still name in ``exclude``: refused unless forced (the API and the command line)."""

from __future__ import annotations

import json

import pytest
import redis
from celery import Celery

from celerybeatredis.definitions.calendars import CalendarInUse, CalendarNotFound
from celerybeatredis.managing import calendars as calendars_module
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli, snapshot
from ..support.helpers import run_ticks

DAILY = {"task": "tasks.report", "crontab": {"minute": "0", "hour": "9"}}


def test_the_api_refuses_to_remove_a_calendar_entries_exclude_unless_forced(api: ScheduleStore, client: redis.Redis,
                                                                          tag: str) -> None:
    api.set_calendar("holidays", dates=["2026-12-25"])
    api.set_calendar("spare", weekdays=["sun"])
    for n in range(7):
        api.add(f"e{n}", dict(DAILY, exclude=["spare", "holidays"] if n % 2 else ["holidays"]))
    api.add("plain", DAILY)
    before = snapshot(client, tag)
    with pytest.raises(CalendarInUse) as caught:
        api.remove_calendar("holidays")
    message = str(caught.value)
    assert caught.value.total == 7 and len(caught.value.entries) == 5 and "and 2 more" in message, message
    assert message.startswith("calendar 'holidays' is named in the exclude of entries 'e") and "force" in message
    assert snapshot(client, tag) == before  # nothing removed
    assert api.remove_calendar("holidays", force=True) is True
    with pytest.raises(CalendarNotFound):
        api.calendar("holidays")
    with pytest.raises(CalendarNotFound):
        api.remove_calendar("holidays", force=True)


def test_a_calendar_no_entry_names_is_removed_without_force(api: ScheduleStore) -> None:
    api.set_calendar("holidays", dates=["2026-12-25"])
    api.add("other", dict(DAILY, exclude=[], description="mentions exclude and holidays in its text"))
    assert api.remove_calendar("holidays") is True


def test_the_entries_naming_a_calendar_are_found_a_page_at_a_time(api: ScheduleStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each scan page holds at most a page of definitions, never the schedule."""
    monkeypatch.setattr(calendars_module, "SCAN_PAGE", 10)
    api.set_calendar("holidays", dates=["2026-12-25"])
    api.bulk_add({f"e{n:03}": dict(DAILY, exclude=["holidays"]) if n % 50 == 0 else DAILY for n in range(300)})
    pages: list[int] = []
    scan = api.sharded.across.scan_definitions

    def counted(cursor: int = 0, count: int = 500, match: str | None = None) -> tuple[int, list[tuple[str, bytes]]]:
        found = scan(cursor, count, match)
        pages.append(len(found[1]))
        return found

    monkeypatch.setattr(api.sharded.across, "scan_definitions", counted)
    users, total = api.calendar_users("holidays", 2)
    assert total == 6 and len(users) == 2 and set(users) <= {f"e{n:03}" for n in range(0, 300, 50)}
    assert len(pages) > 10 and max(pages) < 60  # HSCAN's COUNT is a hint: a page may hold a few more


def test_a_forced_removal_leaves_entries_beat_quarantines_naming_exclude_and_the_calendar(
        api: ScheduleStore, store: RedisStore, app: Celery) -> None:
    api.set_calendar("holidays", dates=["2026-12-25"])
    api.add("spread", {"task": "tasks.add", "interval": {"every": 10}, "exclude": ["holidays"]})
    api.remove_calendar("holidays", force=True)
    now = api.server_time()
    run_ticks(app, [now, now + 15])  # first seen, then due
    reason = store.invalid_reason("spread")
    assert reason is not None and "entry 'spread': field 'exclude': unknown calendar 'holidays'" in reason


def test_cli_calendar_remove_refuses_in_use_and_force_removes(cli: Cli, api: ScheduleStore, client: redis.Redis,
                                                              tag: str) -> None:
    cli.ok("calendar", "set", "cli-holidays", "--date", "2026-12-25")
    cli.ok("add", "cli-spread", "--task", "tasks.report", "--cron", "0 9 * * *", "--exclude", '["cli-holidays"]')
    before = snapshot(client, tag)
    error = cli.fails("calendar", "remove", "cli-holidays")
    assert "calendar 'cli-holidays' is named in the exclude of entry 'cli-spread'" in error, error
    assert snapshot(client, tag) == before
    out = cli.ok("calendar", "remove", "cli-holidays", "--force")
    assert out.startswith("removed calendar cli-holidays; entry cli-spread still names it in exclude") and "quarantines" in out, out
    assert "no calendar named 'cli-holidays'" in cli.fails("calendar", "remove", "cli-holidays", "--force")
    assert json.loads(cli.ok("calendar", "list", "--json") or "null") is None
