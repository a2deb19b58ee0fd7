"""``celery -A proj schedule add`` / ``edit`` / ``show`` check task names against the app's tasks (cli/unregistered.py),
run as a user runs them, in a project directory."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import redis

from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli, snapshot
from ..support.helpers import celery_schedule
from ..support.processes import write_app

REFUSED = ("Error: entry 't1': field 'task': 'proj.adds' is not a task the app registers (nearest: 'proj.add'); "
           "--allow-unregistered writes it anyway\n")


def project(directory: Path, redis_url: str, prefix: str, tasks: bool = True) -> None:
    """proj.py; with ``tasks``, its tasks in proj_tasks.py, which the app imports through ``include`` (as a worker)."""
    write_app(directory, f"{redis_url}/1", f"{redis_url}/0", prefix,
              extra='app.conf.include = ["proj_tasks"]\n' if tasks else "")
    if tasks:
        (directory / "proj_tasks.py").write_text(textwrap.dedent("""
            from proj import app

            @app.task(name="proj.add")
            def add(x, y):
                return x + y

            @app.task(name="proj.report")
            def report():
                return None
        """))


def test_add_and_edit_refuse_a_task_the_app_does_not_register_unless_allowed(
        redis_url: str, prefix: str, tag: str, client: redis.Redis, api: ScheduleStore, tmp_path: Path) -> None:
    project(tmp_path, redis_url, prefix)
    before = snapshot(client, tag)
    done = celery_schedule(tmp_path, "add", "t1", "--task", "proj.adds", "--every", "5s")
    assert (done.returncode, done.stderr) == (1, REFUSED)
    assert snapshot(client, tag) == before
    done = celery_schedule(tmp_path, "add", "t1", "--json", '{"task": "proj.adds", "interval": {"every": 5}}')
    assert (done.returncode, done.stderr) == (1, REFUSED)

    done = celery_schedule(tmp_path, "add", "t1", "--task", "proj.adds", "--every", "5s", "--allow-unregistered")
    assert done.returncode == 0 and done.stdout.startswith("added t1"), done.stderr
    shown = celery_schedule(tmp_path, "show", "t1").stdout
    assert "warning:   field 'task': 'proj.adds' is not a task the app registers (nearest: 'proj.add')\n" in shown, shown
    assert "is not a task the app registers" in json.loads(celery_schedule(tmp_path, "show", "t1", "--json").stdout)[
        "task_warning"]
    assert celery_schedule(tmp_path, "edit", "t1", "--every", "10s").returncode == 0  # its task is not what changes

    assert celery_schedule(tmp_path, "add", "t2", "--task", "proj.add", "--every", "5s").returncode == 0
    assert "warning" not in celery_schedule(tmp_path, "show", "t2").stdout
    done = celery_schedule(tmp_path, "edit", "t2", "--task", "proj.reprot")
    assert done.returncode == 1 and done.stderr == (
        "Error: entry 't2': field 'task': 'proj.reprot' is not a task the app registers (nearest: 'proj.report'); "
        "--allow-unregistered writes it anyway\n")
    done = celery_schedule(tmp_path, "edit", "t2", "--json", '{"task": "proj.adds", "interval": {"every": 5}}')
    assert done.returncode == 1 and "field 'task': 'proj.adds'" in done.stderr
    assert api.get("t2").task == "proj.add"
    assert celery_schedule(tmp_path, "edit", "t2", "--task", "proj.reprot", "--allow-unregistered").returncode == 0


def test_an_app_with_no_tasks_of_its_own_refuses_and_reports_nothing(redis_url: str, prefix: str, tmp_path: Path) -> None:
    project(tmp_path, redis_url, prefix, tasks=False)
    done = celery_schedule(tmp_path, "add", "t1", "--task", "proj.adds", "--every", "5s")
    assert done.returncode == 0, done.stderr
    assert "warning" not in celery_schedule(tmp_path, "show", "t1").stdout


def test_the_plain_script_cannot_check(cli: Cli) -> None:
    assert cli.ok("add", "t1", "--task", "proj.adds", "--every", "5s").startswith("added t1")
    assert "warning" not in cli.ok("show", "t1")
