"""The ``celerybeatredis`` console script, run as a subprocess against a real Redis."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from celery import Celery

from celerybeatredis.store import ScheduleStore

from ..support.cli import SCRIPT, Cli, snapshot
from ..support.helpers import tick
from ..support.redis_server import free_port


def doc(api: ScheduleStore, name: str) -> dict:
    raw = api.sharded.get_raw(name)
    assert raw is not None, f"no entry {name}"
    return json.loads(raw)


# --- add / show / list -------------------------------------------------------------------


def test_add_with_flags_then_show_and_list(cli: Cli, api: ScheduleStore) -> None:
    out = cli.ok("add", "report", "--task", "tasks.report", "--cron", "30 7 * * 1", "--timezone", "Europe/Berlin",
                 "--args", "[1, 2]", "--kwargs", '{"k": "v"}', "--queue", "low", "--description", "weekly")
    assert "added report: Mondays at 07:30 (Europe/Berlin)" in out
    assert doc(api, "report") == {
        "task": "tasks.report", "enabled": True, "args": [1, 2], "kwargs": {"k": "v"}, "options": {"queue": "low"},
        "description": "weekly",
        "crontab": {"minute": "30", "hour": "7", "day_of_month": "*", "month_of_year": "*", "day_of_week": "1",
                    "timezone": "Europe/Berlin"},
    }
    cli.ok("add", "ping", "--task", "tasks.ping", "--every", "90s", "--max-runs", "3")
    cli.ok("add", "once", "--task", "tasks.once", "--at", "2030-01-01T00:00:00+00:00", "--disabled")
    assert doc(api, "ping")["interval"] == {"every": 90, "period": "seconds"}
    assert doc(api, "once")["enabled"] is False

    shown = cli.ok("show", "ping")
    assert re.search(r"^schedule:\s+every 90 seconds, at most 3 runs$", shown, re.M), shown
    assert re.search(r"^next run:\s+now \(pending\)$", shown, re.M), shown
    assert re.search(r"^runs:\s+0$", shown, re.M)
    assert json.loads(cli.ok("show", "ping", "--json"))["definition"]["max_run_count"] == 3

    listing = cli.ok("list")
    header, *rows, footer = listing.strip().splitlines()
    assert header.split() == ["NAME", "TASK", "SCHEDULE", "ENABLED", "NEXT", "RUN", "LAST", "RUN", "RUNS"]
    assert sorted(r.split()[0] for r in rows) == ["once", "ping", "report"]
    assert footer == "3 shown of 3 entries"
    once_row = next(r for r in rows if r.startswith("once"))
    assert " no " in once_row
    lines = [json.loads(line) for line in cli.ok("list", "--json").splitlines()]
    assert {item["name"] for item in lines} == {"once", "ping", "report"}


def test_list_filters_limits_and_upcoming(cli: Cli, api: ScheduleStore, app: Celery) -> None:
    api.add("a-5s", "tasks.a", timedelta(seconds=50))
    api.add("a-1s", "tasks.a", timedelta(seconds=10))
    api.add("b-3s", "tasks.b", timedelta(seconds=30), enabled=False)
    tick(app)

    def names(*args: str) -> list[str]:
        return [json.loads(line)["name"] for line in cli.ok("list", "--json", *args).splitlines()]

    assert sorted(names("--match", "a-*")) == ["a-1s", "a-5s"]
    assert names("--task", "tasks.b") == ["b-3s"]
    assert sorted(names("--enabled")) == ["a-1s", "a-5s"]
    assert names("--status", "disabled") == ["b-3s"]
    assert names("--upcoming") == ["a-1s", "a-5s"]
    assert names("--upcoming", "--limit", "1") == ["a-1s"]
    assert len(names("--limit", "2")) == 2
    assert "2 shown of 3 entries; more match" in cli.ok("list", "--limit", "2")
    assert "0 shown of 3 entries" in cli.ok("list", "--match", "zzz*")


def test_add_refuses_to_overwrite_without_replace(cli: Cli, api: ScheduleStore, client: redis.Redis, tag: str) -> None:
    cli.ok("add", "a", "--task", "tasks.a", "--every", "5m")
    before = snapshot(client, tag)
    err = cli.fails("add", "a", "--task", "tasks.b", "--every", "1m")
    assert "entry 'a' exists; use --replace" in err
    assert snapshot(client, tag) == before
    assert "saved a" in cli.ok("add", "a", "--task", "tasks.b", "--every", "1m", "--replace")
    assert doc(api, "a")["task"] == "tasks.b"


def test_add_with_json(cli: Cli, api: ScheduleStore, tmp_path: Path) -> None:
    definition = {"task": "tasks.j", "interval": {"every": 2, "period": "hours"}, "_owner": "ops"}
    cli.ok("add", "j1", "--json", json.dumps(definition))
    cli.ok("add", "j2", "--json", "-", input=json.dumps(definition))
    (tmp_path / "d.json").write_text(json.dumps(definition))
    cli.ok("add", "j3", "--json", f"@{tmp_path / 'd.json'}")
    for name in ("j1", "j2", "j3"):
        assert doc(api, name) == definition


@pytest.mark.parametrize(("args", "message"), [
    (["add", "x", "--task", "t", "--every", "fortnight"], "--every: 'fortnight' is not a duration"),
    (["add", "x", "--task", "t", "--every", "0s"], "must be greater than 0"),
    (["add", "x", "--task", "t", "--cron", "61 * * * *"], "entry 'x': field 'crontab.minute'"),
    (["add", "x", "--task", "t", "--cron", "* * *"], "needs five fields"),
    (["add", "x", "--task", "t", "--cron", "0 3 * * *", "--timezone", "Mars/Olympus"], "field 'crontab.timezone'"),
    (["add", "x", "--task", "t", "--at", "tomorrow"], "entry 'x': field 'clocked'"),
    (["add", "x", "--task", "t", "--solar", "sunset"], "field 'solar.latitude'"),
    (["add", "x", "--task", "t", "--every", "5s", "--args", "[1,"], "--args: not valid JSON"),
    (["add", "x", "--task", "t", "--every", "5s", "--args", '{"a": 1}'], "field 'args': must be a JSON array"),
    (["add", "x", "--json", '{"task": "t"'], "--json: not valid JSON"),
    (["add", "x", "--json", "[1]"], "must be a JSON object"),
    (["add", "x", "--json", '{"task": "t", "interval": {"every": 5, "period": "weeks"}}'], "field 'interval.period'"),
    (["add", "x", "--json", "@/nonexistent/file.json"], "cannot read /nonexistent/file.json"),
])
def test_add_bad_input_fails_cleanly_and_changes_nothing(cli: Cli, api: ScheduleStore, client: redis.Redis, tag: str,
                                                          args: list[str], message: str) -> None:
    api.add("keep", "tasks.keep", timedelta(seconds=5))
    before = snapshot(client, tag)
    assert message in cli.fails(*args)
    assert snapshot(client, tag) == before


@pytest.mark.parametrize("args", [
    ["add", "x", "--every", "5s"],
    ["add", "x", "--task", "t"],
    ["add", "x", "--task", "t", "--every", "5s", "--cron", "* * * * *"],
    ["add", "x", "--task", "t", "--json", "{}"],
    ["list", "--limit", "-1"],
    ["frobnicate"],
    ["show"],
    ["remove"],
    ["migrate", "--from", "cron"],
    ["--prefix", "{bad}", "list"],
])
def test_usage_errors_exit_2(cli: Cli, client: redis.Redis, tag: str, args: list[str]) -> None:
    before = snapshot(client, tag)
    cli.fails(*args, code=2)
    assert snapshot(client, tag) == before


@pytest.mark.parametrize("command", [
    ["show", "ghost"], ["edit", "ghost", "--every", "5s"], ["remove", "ghost"], ["enable", "ghost"],
    ["disable", "ghost"], ["run-now", "ghost"],
])
def test_missing_entry_fails_cleanly(cli: Cli, api: ScheduleStore, client: redis.Redis, tag: str, command: list[str]) -> None:
    api.add("keep", "tasks.keep", timedelta(seconds=5))
    before = snapshot(client, tag)
    assert "no entry named 'ghost'" in cli.fails(*command)
    assert snapshot(client, tag) == before


@pytest.mark.parametrize("command", ["remove", "enable", "disable", "run-now"])
def test_one_missing_name_among_several_changes_nothing(cli: Cli, api: ScheduleStore, client: redis.Redis, tag: str,
                                                        command: str) -> None:
    api.add("a", "tasks.a", timedelta(seconds=5), enabled=False)
    api.add("b", "tasks.a", timedelta(seconds=5))
    before = snapshot(client, tag)
    err = cli.fails(command, "a", "ghost1", "b", "ghost2")
    assert "'ghost1', 'ghost2'" in err and "nothing changed" in err
    assert snapshot(client, tag) == before


def test_cannot_reach_redis_is_a_one_line_error(prefix: str) -> None:
    err = Cli(f"redis://127.0.0.1:{free_port()}/0", prefix).fails("list")
    assert "cannot reach Redis at redis://127.0.0.1:" in err


@pytest.mark.parametrize(("url", "says"), [
    ("redis//localhost:6411/1", "not a URL (no '://')"),
    ("http://localhost:6411/1", "unknown scheme 'http'"),
    ("redis://localhost:abc/1", "Port could not be cast"),
    ("redis://localhost:6411/x", "database must be a number, not 'x'"),
    ("redis://:pw@localhost:99999/1", "Port out of range"),
])
def test_a_bad_url_is_one_line_naming_the_option_with_exit_1(prefix: str, url: str, says: str) -> None:
    err = Cli(url, prefix).fails("list")
    assert err.startswith("Error: --url ") and says in err
    assert "pw" not in err
    assert says in Cli("redis://unused:1/0", prefix).fails("--url", url, "list")


def test_password_is_masked_in_errors(prefix: str) -> None:
    err = Cli(f"redis://user:s3cret@127.0.0.1:{free_port()}/0", prefix).fails("stats")
    assert "s3cret" not in err and "****" in err


def test_url_and_prefix_options_override_the_environment(redis_url: str, prefix: str, api: ScheduleStore) -> None:
    api.add("here", "tasks.a", timedelta(seconds=5))
    elsewhere = Cli(f"redis://127.0.0.1:{free_port()}/0", "nothing:here:")
    out = elsewhere.ok("--url", f"{redis_url}/0", "--prefix", prefix, "list", "--json")
    assert [json.loads(line)["name"] for line in out.splitlines()] == ["here"]


# --- edit / enable / disable / remove / run-now -----------------------------------------


def test_edit_with_flags_set_and_unset_keeps_other_fields(cli: Cli, api: ScheduleStore) -> None:
    api.add("e", {"task": "tasks.e", "interval": {"every": 5, "period": "seconds"}, "_owner": "ops",
                  "description": "d", "options": {"priority": 3}})
    assert "updated e" in cli.ok("edit", "e", "--cron", "0 * * * *", "--queue", "high")
    assert doc(api, "e") == {"task": "tasks.e", "crontab": {"minute": "0", "hour": "*", "day_of_month": "*",
                             "month_of_year": "*", "day_of_week": "*"}, "_owner": "ops", "description": "d",
                             "options": {"priority": 3, "queue": "high"}}
    cli.ok("edit", "e", "--set", '_owner={"team": "data"}', "--unset", "description", "--set", "args=[1]")
    after = doc(api, "e")
    assert after["_owner"] == {"team": "data"} and after["args"] == [1] and "description" not in after
    assert "e unchanged" in cli.ok("edit", "e", "--set", "args=[1]")


def test_edit_of_the_cron_keeps_its_time_zone_and_timezone_alone_changes_only_the_zone(cli: Cli, api: ScheduleStore) -> None:
    cli.ok("add", "nightly", "--task", "tasks.report", "--cron", "0 3 * * *", "--timezone", "Europe/Berlin")
    assert "daily at 03:00 (Europe/Berlin)" in cli.ok("show", "nightly")
    cli.ok("edit", "nightly", "--cron", "0 4 * * *")
    assert doc(api, "nightly")["crontab"] == {"minute": "0", "hour": "4", "day_of_month": "*", "month_of_year": "*",
                                              "day_of_week": "*", "timezone": "Europe/Berlin"}
    assert "daily at 04:00 (Europe/Berlin)" in cli.ok("show", "nightly")
    cli.ok("edit", "nightly", "--timezone", "Asia/Tokyo")
    assert doc(api, "nightly")["crontab"]["timezone"] == "Asia/Tokyo" and doc(api, "nightly")["crontab"]["hour"] == "4"
    cli.ok("edit", "nightly", "--cron", "30 5 * * 1", "--timezone", "UTC")
    assert doc(api, "nightly")["crontab"] == {"minute": "30", "hour": "5", "day_of_month": "*", "month_of_year": "*",
                                              "day_of_week": "1", "timezone": "UTC"}
    api.add("ping", "tasks.ping", timedelta(seconds=30))
    assert "field 'interval.timezone': goes with interval.offset" in cli.fails("edit", "ping", "--timezone", "UTC")
    api.add("once", "tasks.ping", datetime(2030, 1, 1, tzinfo=timezone.utc))
    err = cli.fails("edit", "once", "--timezone", "UTC", code=2)
    assert "--timezone goes with --every or --cron or --rrule (or edits an entry's interval or crontab or rrule)" in err


def test_edit_with_json_and_in_the_editor(cli: Cli, api: ScheduleStore) -> None:
    api.add("e", "tasks.old", timedelta(seconds=5), description="keep")
    cli.ok("edit", "e", "--json", '{"task": "tasks.new", "interval": {"every": 1, "period": "minutes"}}')
    assert doc(api, "e") == {"task": "tasks.new", "interval": {"every": 1, "period": "minutes"}}
    cli.ok("edit", "e", env={"EDITOR": "sed -i -e s/tasks.new/tasks.edited/", "VISUAL": ""}, tty=True)
    assert doc(api, "e")["task"] == "tasks.edited"


def test_an_edit_in_the_editor_over_a_pause_made_meanwhile_writes_nothing(cli: Cli, api: ScheduleStore,
                                                                         tmp_path: Path) -> None:
    api.add("e", "tasks.e", timedelta(seconds=5))
    editor = tmp_path / "editor.sh"  # pauses the entry from another process while the user edits, then saves
    editor.write_text(f'#!/bin/sh\n{SCRIPT} pause e --reason "disk full" --by ops >/dev/null || exit 3\n'
                      'sed -i -e s/tasks.e/tasks.edited/ "$1"\n')
    editor.chmod(0o755)
    error = cli.fails("edit", "e", env={"EDITOR": str(editor), "VISUAL": ""}, tty=True)
    assert "entry 'e' changed since the editor opened; nothing written; your text is in " in error
    kept = Path(re.search(r"your text is in (\S+)", error).group(1))  # type: ignore[union-attr]
    try:
        assert json.loads(kept.read_text())["task"] == "tasks.edited"
    finally:
        kept.unlink()
    after = doc(api, "e")
    assert after["task"] == "tasks.e" and after["paused"]["reason"] == "disk full"  # the pause is kept


@pytest.mark.parametrize(("args", "env", "message"), [
    (["--every", "-5s"], None, "not a duration"),
    (["--set", "max_run_count=0"], None, "field 'max_run_count'"),
    (["--set", "args=[1"], None, "--set args: not valid JSON"),
    (["--json", '{"task": 5, "interval": {"every": 1}}'], None, "field 'task'"),
    ([], {"EDITOR": "sed -i -e s/tasks.e/tasks.f/ -e s/every/evry/", "VISUAL": ""}, "field 'interval.evry': unknown member"),
    ([], {"EDITOR": "sed -i -e s/{/[/", "VISUAL": ""}, "not valid JSON"),
])
def test_edit_bad_input_changes_nothing(cli: Cli, api: ScheduleStore, client: redis.Redis, tag: str,
                                        args: list[str], env: dict | None, message: str) -> None:
    api.add("e", "tasks.e", timedelta(seconds=5))
    before = snapshot(client, tag)
    assert message in cli.fails("edit", "e", *args, env=env, tty=True)
    assert snapshot(client, tag) == before


def test_enable_disable_remove_and_run_now(cli: Cli, api: ScheduleStore, client: redis.Redis) -> None:
    api.add("a", {"task": "tasks.a", "interval": {"every": 5, "period": "seconds"}, "_owner": "ops"})
    api.add("b", "tasks.b", timedelta(seconds=5))
    out = cli.ok("disable", "a", "b")
    assert "disabled a" in out and "disabled b" in out
    assert doc(api, "a") == {"task": "tasks.a", "interval": {"every": 5, "period": "seconds"}, "_owner": "ops",
                             "enabled": False}
    assert "b was already disabled" in cli.ok("disable", "b")
    assert "enabled a" in cli.ok("enable", "a")
    assert doc(api, "a")["enabled"] is True and doc(api, "a")["_owner"] == "ops"
    assert "a runs within a second" in cli.ok("run-now", "a")
    assert client.zscore(api.sharded.keys.due, "a") == -1
    assert "removed 2 entries" in cli.ok("remove", "a", "b")
    assert api.count() == 0
    assert "removed 0 entries" in cli.ok("remove", "a", "--missing-ok")


def test_disable_an_unreadable_definition_fails_cleanly(cli: Cli, api: ScheduleStore, client: redis.Redis, tag: str) -> None:
    client.hset(api.sharded.keys.schedule, "broken", '{"task": "t", ')
    before = snapshot(client, tag)
    assert "entry 'broken'" in cli.fails("disable", "broken")
    assert snapshot(client, tag) == before


# --- invalid / stats ---------------------------------------------------------------------


def test_invalid_and_stats(cli: Cli, api: ScheduleStore, client: redis.Redis, app: Celery) -> None:
    api.add("ok", "tasks.ok", timedelta(hours=1))
    api.add("off", "tasks.ok", timedelta(hours=1), enabled=False)
    client.hset(api.sharded.keys.schedule, "bad", json.dumps({"task": "t", "interval": {"every": 5, "period": "weeks"}}))
    tick(app)
    out = cli.ok("invalid")
    assert re.search(r"^bad\s+entry 'bad': field 'interval.period': unknown period 'weeks'", out, re.M), out
    assert "1 invalid entries" in out
    assert json.loads(cli.ok("invalid", "--json"))["name"] == "bad"
    listing = cli.ok("list")
    assert re.search(r"^bad\s.*yes \(invalid\)", listing, re.M), listing

    stats = json.loads(cli.ok("stats", "--json"))
    assert (stats["entries"], stats["enabled"], stats["invalid"], stats["scheduled"], stats["never"]) == (3, 2, 1, 1, 2)
    assert stats["memory_bytes"] > 0
    text = cli.ok("stats")
    assert re.search(r"^entries:\s+3$", text, re.M) and re.search(r"^memory:\s+\d", text, re.M), text
    assert "not counted" in cli.ok("stats", "--no-scan")


# --- export / import ---------------------------------------------------------------------


def test_export_import_round_trip_is_idempotent(cli: Cli, api: ScheduleStore, app: Celery, redis_url: str,
                                                prefix: str, client: redis.Redis, tmp_path: Path) -> None:
    api.add("a", "tasks.a", timedelta(seconds=30), args=[1, "x"], kwargs={"k": [1, 2]})
    api.add("b", {"task": "tasks.b", "crontab": {"minute": "*/5"}, "_owner": "ops", "enabled": False})
    api.add("c", "tasks.c", timedelta(minutes=1))
    client.hset(api.sharded.keys.schedule, "raw", "{not json")
    tick(app)
    api.sharded.restore_state([("a", 41, "2024-05-01T12:00:00+00:00")])

    dump = tmp_path / "schedule.jsonl"
    done = cli.run("export", str(dump))
    assert done.returncode == 0 and "exported 4 entries" in done.stderr
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    by_name = {line["name"]: line for line in lines}
    assert by_name["a"]["total_run_count"] == 41 and by_name["a"]["last_run_at"] == "2024-05-01T12:00:00+00:00"
    assert by_name["raw"]["definition"] == "{not json"
    assert cli.ok("export", "-").count("\n") == 4

    err = cli.fails("import", str(dump))
    assert "entry 'raw'" in err and "nothing imported" in err

    other = Cli(cli.url, f"{prefix}copy:")
    target = ScheduleStore(client, other.prefix)
    try:
        out = other.ok("import", str(dump), "--skip-invalid")
        assert "imported 3 entries: 3 added or changed, 0 unchanged, 1 run states restored, 1 bad lines skipped" in out
        assert target.get("a").total_run_count == 41
        assert target.get("b").definition == api.get("b").definition
        out = other.ok("import", "-", "--skip-invalid", input=dump.read_text())
        assert "0 added or changed, 3 unchanged, 0 run states restored" in out
        again = {json.loads(x)["name"]: json.loads(x) for x in other.ok("export").splitlines()}
        for name in ("a", "b", "c"):
            assert again[name]["definition"] == by_name[name]["definition"]
        assert again["a"]["total_run_count"] == 41
    finally:
        target.drop()


def test_export_carries_calendars_first_and_import_writes_them_before_the_entries_that_name_them(
        cli: Cli, api: ScheduleStore, prefix: str, client: redis.Redis, tmp_path: Path) -> None:
    api.set_calendar("holidays", dates=["2024-12-25"], ranges=[("2024-12-30", "2025-01-01")], weekdays=["sun"],
                     description="office closed")
    api.add("report", {"task": "tasks.report", "crontab": {"minute": "0", "hour": "9"}, "exclude": ["holidays"]})
    dump = tmp_path / "schedule.jsonl"
    done = cli.run("export", str(dump))
    assert done.returncode == 0 and "exported 1 entries and 1 calendars" in done.stderr, done.stderr
    first, second = (json.loads(line) for line in dump.read_text().splitlines())
    assert first == {"calendar": "holidays", "definition": api.calendar("holidays").to_json()}
    assert second["name"] == "report"

    other = Cli(cli.url, f"{prefix}copy:")
    target = ScheduleStore(client, other.prefix)
    try:
        assert "imported 1 entries: 1 added or changed, 0 unchanged, 0 run states restored, 1 calendars" in \
            other.ok("import", str(dump))
        assert target.calendar("holidays") == api.calendar("holidays")
        assert target.get("report").definition == api.get("report").definition
        assert "0 added or changed, 1 unchanged" in other.ok("import", str(dump))
    finally:
        target.drop()


@pytest.mark.parametrize(("content", "message"), [
    ('{"calendar": "h", "definition": {"dates": ["2024-02-30"]}}\n', "line 1: calendar 'h': field 'dates"),
    ('{"calendar": "", "definition": {}}\n', "line 1: calendar '': field 'name'"),
    ('{"name": "x", "definition": {"task": "t", "interval": {"every": 5}, "exclude": ["h"]}}\n'
     '{"calendar": "h", "definition": {"dates": []}}\n', "line 1: entry 'x': field 'exclude': unknown calendar 'h'"),
])
def test_an_import_with_a_bad_calendar_line_imports_nothing(cli: Cli, client: redis.Redis, tag: str, tmp_path: Path,
                                                            content: str, message: str) -> None:
    before = snapshot(client, tag)
    path = tmp_path / "in.jsonl"
    path.write_text(content)
    assert message in cli.fails("import", str(path))
    assert snapshot(client, tag) == before


@pytest.mark.parametrize(("content", "message"), [
    ('{"name": "x", "definition": {"task": "t", "interval": {"every": 5}}}\nnot json\n', "line 2: not valid JSON"),
    ('{"definition": {"task": "t", "interval": {"every": 5}}}\n', 'line 1: needs "name"'),
    ('[1, 2]\n', "line 1: expected a JSON object"),
    ('{"name": "x", "definition": {"task": "t", "interval": {"every": 5, "period": "eons"}}}\n',
     "line 1: entry 'x': field 'interval.period'"),
    ('{"name": "x", "definition": {"task": "t", "interval": {"every": 5}}, "total_run_count": -1}\n',
     "field 'total_run_count'"),
    ('{"name": "x", "definition": {"task": "t", "interval": {"every": 5}}, "last_run_at": "yesterday"}\n',
     "field 'last_run_at'"),
])
def test_import_bad_input_imports_nothing(cli: Cli, api: ScheduleStore, client: redis.Redis, tag: str, tmp_path: Path,
                                          content: str, message: str) -> None:
    api.add("keep", "tasks.keep", timedelta(seconds=5))
    before = snapshot(client, tag)
    path = tmp_path / "in.jsonl"
    path.write_text(content)
    assert message in cli.fails("import", str(path))
    assert message in cli.fails("import", "-", input=content)
    assert snapshot(client, tag) == before


def test_import_missing_file_is_a_usage_error(cli: Cli) -> None:
    assert "No such file or directory" in cli.fails("import", "/nonexistent/in.jsonl", code=2)


def test_long_import_shows_progress_and_a_summary(cli: Cli, api: ScheduleStore, tmp_path: Path) -> None:
    path = tmp_path / "many.jsonl"
    with path.open("w") as fh:
        for i in range(3000):
            fh.write(json.dumps({"name": f"n{i}", "definition": {"task": "t", "interval": {"every": 5 + i}}}) + "\n")
    done = cli.run("import", str(path), "--batch-size", "700")
    assert done.returncode == 0, done.stderr
    assert "importing" in done.stderr
    assert "imported 3000 entries: 3000 added or changed" in done.stdout
    assert api.count() == 3000


def test_rrule_through_the_flags_show_next_edit_and_export(cli: Cli, api: ScheduleStore, tmp_path: Path) -> None:
    out = cli.ok("add", "standup", "--task", "tasks.report", "--rrule", "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0",
                 "--dtstart", "2026-01-05T09:00:00", "--timezone", "Europe/Berlin")
    assert "added standup: rrule FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0 from 2026-01-05T09:00:00 (Europe/Berlin)" in out
    assert doc(api, "standup")["rrule"] == {"rule": "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0",
                                            "dtstart": "2026-01-05T09:00:00", "timezone": "Europe/Berlin"}
    times = [json.loads(line) for line in cli.ok("next", "standup", "-n", "3", "--json").splitlines()]
    assert len(times) == 3 and all(t["ruled_out"] is None for t in times)
    assert {t["at"][11:16] for t in times} <= {"07:00", "08:00"}  # 09:00 in Berlin, summer or winter
    cli.ok("edit", "standup", "--timezone", "Asia/Tokyo")
    assert doc(api, "standup")["rrule"]["timezone"] == "Asia/Tokyo"
    assert doc(api, "standup")["rrule"]["rule"] == "FREQ=WEEKLY;BYDAY=MO,WE;BYHOUR=9;BYMINUTE=0"
    cli.ok("edit", "standup", "--rrule", "FREQ=DAILY;BYHOUR=6")
    assert doc(api, "standup")["rrule"] == {"rule": "FREQ=DAILY;BYHOUR=6", "dtstart": "2026-01-05T09:00:00",
                                            "timezone": "Asia/Tokyo"}
    assert {t["at"][11:16] for t in map(json.loads, cli.ok("next", "standup", "--json").splitlines())} == {"21:00"}
    err = cli.fails("add", "bad", "--task", "t", "--rrule", "FREQ=DAILY;BYHOUR=25")
    assert re.fullmatch(r"Error: entry 'bad': field 'rrule\.rule': cannot read .*\n", err), err
    exported = tmp_path / "out.jsonl"
    exported.write_text(cli.ok("export"))
    api.remove("standup")
    cli.ok("import", str(exported))
    assert doc(api, "standup")["rrule"]["timezone"] == "Asia/Tokyo"


def test_six_field_cron_and_an_interval_offset_through_the_flags(cli: Cli, api: ScheduleStore) -> None:
    assert "added fast: cron */15 * * * * *" in cli.ok("add", "fast", "--task", "t.a", "--cron", "*/15 * * * * *")
    assert doc(api, "fast")["crontab"] == {"second": "*/15", "minute": "*", "hour": "*", "day_of_month": "*",
                                           "month_of_year": "*", "day_of_week": "*"}
    cli.ok("edit", "fast", "--cron", "0 3 * * *")
    assert "second" not in doc(api, "fast")["crontab"]
    assert "(or six, the second first)" in cli.fails("add", "x", "--task", "t", "--cron", "1 2 3")
    out = cli.ok("add", "phased", "--task", "t.a", "--every", "6h", "--offset", "5h", "--timezone", "Europe/Berlin")
    assert "added phased: every 6 hours, offset 5 hours (Europe/Berlin)" in out
    assert doc(api, "phased")["interval"] == {"every": 6, "period": "hours", "offset": 5, "timezone": "Europe/Berlin"}
    hours = {t["at"][11:16] for t in map(json.loads, cli.ok("next", "phased", "-n", "4", "--json").splitlines())}
    assert hours in ({"04:00", "10:00", "16:00", "22:00"}, {"03:00", "09:00", "15:00", "21:00"})  # UTC, winter or summer
    cli.ok("edit", "phased", "--offset", "30m")
    assert doc(api, "phased")["interval"]["offset"] == 0.5
    err = cli.fails("edit", "phased", "--offset", "7h")
    assert "field 'interval.offset': must be a number from 0 to less than every (6), not 7" in err
