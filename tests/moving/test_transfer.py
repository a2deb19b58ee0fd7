"""Export and import as JSON lines (``moving/transfer.py``): what an export of a schedule whose calendar was removed by
force carries, and that it imports."""

from __future__ import annotations

import json
from pathlib import Path

import redis
from celery import Celery

from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli
from ..support.helpers import run_ticks


def test_an_export_taken_after_a_forced_calendar_removal_imports(cli: Cli, api: ScheduleStore, prefix: str,
                                                                 client: redis.Redis, app: Celery, tmp_path: Path) -> None:
    cli.ok("calendar", "set", "cli-holidays", "--date", "2026-12-25")
    cli.ok("calendar", "set", "cli-kept", "--weekday", "sun")
    cli.ok("add", "cli-spread", "--task", "tasks.report", "--every", "10s", "--exclude", '["cli-holidays", "cli-kept"]')
    cli.ok("add", "cli-plain", "--task", "tasks.report", "--every", "60s")
    cli.ok("calendar", "remove", "cli-holidays", "--force")
    dump = tmp_path / "schedule.jsonl"
    cli.ok("export", str(dump))
    lines = [json.loads(line) for line in dump.read_text().splitlines()]
    spread = next(line for line in lines if line.get("name") == "cli-spread")
    assert spread["missing_calendars"] == ["cli-holidays"]
    assert "missing_calendars" not in next(line for line in lines if line.get("name") == "cli-plain")

    other = Cli(cli.url, f"{prefix}copy:")
    target = ScheduleStore(client, other.prefix)
    try:
        done = other.run("import", str(dump))
        assert done.returncode == 0, done.stderr
        assert "imported 2 entries: 2 added or changed" in done.stdout
        assert "entry 'cli-spread': field 'exclude': calendar 'cli-holidays' does not exist; imported as exported" \
            in done.stderr
        assert target.get("cli-spread").definition == api.get("cli-spread").definition
        assert sorted(target.calendars()) == ["cli-kept"]
        copy_app = Celery("copy", set_as_current=False)
        copy_app.conf.update(app.conf, redis_scheduler_key_prefix=other.prefix)
        now = target.server_time()
        run_ticks(copy_app, [now, now + 15])  # first seen, then due
        reason = target.sharded.first.invalid_reason("cli-spread")
        assert reason is not None and "field 'exclude': unknown calendar 'cli-holidays'" in reason
        other.ok("calendar", "set", "cli-holidays", "--date", "2026-12-25")
        again = other.run("import", str(dump))  # the calendar exists again: nothing is said of it
        assert again.returncode == 0 and "2 unchanged" in again.stdout and "does not exist" not in again.stderr
    finally:
        target.drop()


def test_an_import_still_refuses_a_calendar_the_line_does_not_list_as_missing(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"name": "x", "definition": {"task": "t", "interval": {"every": 5}, "exclude": ["a", "b"]},
                                "missing_calendars": ["a"]}) + "\n")
    assert "line 1: entry 'x': field 'exclude': unknown calendar 'b'" in cli.fails("import", str(path))
    path.write_text(json.dumps({"name": "x", "definition": {"task": "t", "interval": {"every": 5}},
                                "missing_calendars": "a"}) + "\n")
    assert "line 1: entry 'x': field 'missing_calendars': must be a list" in cli.fails("import", str(path))
