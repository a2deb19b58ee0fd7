"""Documents written with redis-cli that no door would accept: every reading command copes, beat names the member."""

from __future__ import annotations

import json
import logging

import pytest
import redis

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli
from ..support.helpers import T0

NEVER_FIRES = {"task": "tasks.c4", "crontab": {"minute": "0", "hour": "3", "day_of_month": "31", "month_of_year": "2"}}
MISSPELLED = {"task": "tasks.m", "interval": {"every": 5, "period": "seconds"}, "enabeld": False}


def write(client: redis.Redis, tag: str, name: str, doc: dict) -> None:
    client.hset(f"{{{tag}}}:schedule", name, json.dumps(doc))
    client.zadd(f"{{{tag}}}:due", {name: 0})


def test_a_crontab_that_never_fires_reads_as_invalid_everywhere_and_can_be_removed(cli: Cli, api: ScheduleStore,
                                                                                   client: redis.Redis, tag: str) -> None:
    write(client, tag, "c4", NEVER_FIRES)
    reason = "entry 'c4': field 'crontab.day_of_month': day '31' never occurs in month_of_year '2'"
    listing = cli.ok("list")
    assert "c4" in listing and "invalid crontab" in listing and "(invalid)" in listing
    shown = cli.ok("show", "c4")
    assert reason in shown and "status:    invalid" in shown
    assert reason in cli.fails("next", "c4")
    assert "c4" in cli.ok("export", "-")
    assert "removed 1 entry" in cli.ok("remove", "c4")
    assert not api.exists("c4")


def test_adding_a_crontab_that_never_fires_is_one_line(cli: Cli, api: ScheduleStore) -> None:
    error = cli.fails("add", "c4", "--task", "tasks.c4", "--cron", "0 3 31 2 *")
    assert error == ("Error: entry 'c4': field 'crontab.day_of_month': day '31' never occurs in month_of_year '2', "
                     "so the entry would never run\n")
    assert not api.exists("c4")


@pytest.mark.parametrize(("doc", "reason"), [
    (NEVER_FIRES, "entry 'bad': field 'crontab.day_of_month': day '31' never occurs in month_of_year '2'"),
    (MISSPELLED, "entry 'bad': field 'enabeld': unknown member (did you mean 'enabled'?"),
    ({"task": "tasks.i", "intreval": {"every": 5}}, "entry 'bad': field 'intreval': unknown member (did you mean 'interval'?"),
])
def test_beat_quarantines_naming_the_member_without_a_traceback(scheduler: RedisScheduler, client: redis.Redis, tag: str,
                                                                doc: dict, reason: str, caplog: pytest.LogCaptureFixture) -> None:
    write(client, tag, "bad", doc)
    write(client, tag, "good", {"task": "tasks.g", "interval": {"every": 5, "period": "seconds"}})
    with caplog.at_level(logging.ERROR):
        scheduler.tick(now=T0)
    stored = client.hget(f"{{{tag}}}:invalid", "bad")
    assert stored is not None and stored.decode().startswith(reason)
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().startswith(f"beat: {reason}") for r in errors] == [True]
    assert errors[0].exc_info is None  # a refusal, not a crash
    assert client.hget(f"{{{tag}}}:invalid", "good") is None  # the others go on


def test_a_name_written_with_a_line_break_is_shown_escaped(cli: Cli, client: redis.Redis, tag: str) -> None:
    write(client, tag, "forged\nINFO beat: all good", {"task": "tasks.f", "interval": {"every": 5, "period": "seconds"}})
    listing = cli.ok("list")
    assert "forged\\nINFO beat: all good" in listing and "\nINFO beat" not in listing
    assert "name:      forged\\nINFO beat: all good" in cli.ok("show", "forged\nINFO beat: all good")
    assert "removed 1 entry" in cli.ok("remove", "forged\nINFO beat: all good")


def test_no_door_adds_a_name_with_a_line_break(cli: Cli, api: ScheduleStore) -> None:
    error = cli.fails("add", "forged\nline", "--task", "tasks.f", "--every", "5s")
    assert error.startswith("Error: entry 'forged\\nline': field 'name': holds the character \\n")
    assert not api.exists("forged\nline")
