"""Sentry Crons: with ``CeleryIntegration(monitor_beat_tasks=True)`` in beat and worker, the runs ``RedisScheduler``
sends in each delivery mode give the check-ins (beat's "in_progress", the worker's "ok" or "error") and monitor
configuration Celery's own scheduler gives for the same entries, run beside it as a control.

Every process writes the check-ins it captures to one file through a ``Transport`` of its own (nothing leaves
the machine); the entries of ``RedisScheduler`` are added through Redis while its beats run.
"""

from __future__ import annotations

import json
import textwrap
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery import Celery
from celery.beat import PersistentScheduler
from celery.schedules import crontab, schedule

from celerybeatredis.store import ScheduleStore

from ..support.processes import CeleryProcess, wait_until, write_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

MODES = ("at-most-once", "at-least-once", "exactly-once")

#: The tasks, and Sentry with a transport writing every check-in to ``CHECKINS`` (each process's app module).
SENTRY_APP = """
    import json as _json
    import sentry_sdk
    from sentry_sdk.integrations.celery import CeleryIntegration
    from sentry_sdk.transport import Transport

    class CheckInFile(Transport):
        def capture_envelope(self, envelope):
            with open({checkins!r}, "a") as out:
                for item in envelope.items:
                    if item.type == "check_in":
                        out.write(_json.dumps(item.payload.json) + "\\n")

    sentry_sdk.init(dsn="https://key@sentry.invalid/1", transport=CheckInFile,
                    integrations=[CeleryIntegration(monitor_beat_tasks=True)])

    @app.task(name="obs.ok")
    def ok():
        return "fine"

    @app.task(name="obs.fail")
    def fail():
        raise RuntimeError("as planned")
"""

#: Each monitored entry: its task, its schedule (Sentry monitors crontabs and intervals of whole minutes) and the
#: check-ins its run gives.
ENTRIES: dict[str, tuple[str, Any, list[str]]] = {
    "cron": ("obs.ok", crontab(), ["in_progress", "ok"]),
    "every": ("obs.fail", schedule(60), ["in_progress", "error"]),
}


def checkins(path: Path) -> dict[str, list[dict[str, Any]]]:
    """The check-ins written so far, by monitor slug, in the order written."""
    found: dict[str, list[dict[str, Any]]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            item = json.loads(line)
            found.setdefault(item["monitor_slug"], []).append(item)
    return found


def control_schedule(directory: Path, broker: str, queue: str) -> Path:
    """A ``celerybeat-schedule`` file of Celery's ``PersistentScheduler`` whose entries last ran two minutes ago,
    so its beat sends them at once."""
    app = Celery("proj", broker=broker, set_as_current=False)
    app.conf.update(beat_schedule=control_beat_schedule(queue))
    path = directory / "celerybeat-schedule"
    sched = PersistentScheduler(app=app, schedule_filename=str(path), lazy=False)
    for entry in sched.schedule.values():
        entry.last_run_at = app.now() - timedelta(minutes=2)
    sched.sync()
    sched.close()
    return path


def control_beat_schedule(queue: str) -> dict[str, Any]:
    return {f"ctl-{kind}": {"task": task, "schedule": when, "options": {"queue": queue}}
            for kind, (task, when, _) in ENTRIES.items()}


def test_every_delivery_mode_gives_the_check_ins_and_monitor_config_of_celerys_own_scheduler(
        tmp_path: Path, redis_url: str, prefix: str) -> None:
    url = f"{redis_url}/0"
    path = tmp_path / "checkins.jsonl"
    sentry = textwrap.dedent(SENTRY_APP.format(checkins=str(path)))
    control_dir = tmp_path / "control"
    control_dir.mkdir()
    control_queue = f"q-{prefix}ctl"
    write_app(control_dir, url, url, prefix + "ctl:", extra=sentry + textwrap.dedent(f"""
        app.conf.beat_schedule = {{
            "ctl-cron": {{"task": "obs.ok", "schedule": crontab(), "options": {{"queue": {control_queue!r}}}}},
            "ctl-every": {{"task": "obs.fail", "schedule": timedelta(seconds=60), "options": {{"queue": {control_queue!r}}}}},
        }}
    """))
    schedule_file = control_schedule(control_dir, url, control_queue)
    queues = [control_queue]
    dirs: dict[str, Path] = {}
    for mode in MODES:
        directory = dirs[mode] = tmp_path / mode
        directory.mkdir()
        queues.append(f"q-{prefix}{mode}")
        write_app(directory, url, url, f"{prefix}{mode}:", extra=sentry + textwrap.dedent(f"""
            app.conf.update(redis_scheduler_delivery={mode!r}, task_default_queue={queues[-1]!r})
        """))
    worker = CeleryProcess.worker(control_dir, "-Q", ",".join(queues))
    processes = [worker, CeleryProcess(control_dir, "beat", "-S", "celery.beat.PersistentScheduler", "-s",
                                       str(schedule_file), "-l", "INFO", "--pidfile=", name="beat")]
    processes += [CeleryProcess.beat(dirs[mode]) for mode in MODES]
    try:
        for process in processes[2:]:
            process.wait_for_output("beat: Starting", timeout=60)
        for mode in MODES:
            store = ScheduleStore.from_url(url, f"{prefix}{mode}:")
            for kind, (task, when, _) in ENTRIES.items():
                store.add(f"{mode}-{kind}", task, when)
                store.run_now(f"{mode}-{kind}")
        slugs = [f"{who}-{kind}" for who in ("ctl", *MODES) for kind in ENTRIES]
        wait_until(lambda: all(len(checkins(path).get(slug, [])) >= 2 for slug in slugs), timeout=60,
                   what="two check-ins of every monitor")
    finally:
        for process in processes:
            process.stop()
    found = checkins(path)
    for kind, (_, _, statuses) in ENTRIES.items():
        config = None
        for who in ("ctl", *MODES):
            items = found[f"{who}-{kind}"]
            assert [i["status"] for i in items] == statuses, (who, kind, items)
            assert items[0]["check_in_id"] == items[1]["check_in_id"], (who, kind)
            assert items[1]["duration"] is not None
            config = config or items[0]["monitor_config"]
            assert [i["monitor_config"] for i in items] == [config, config], (who, kind)
    assert found["ctl-cron"][0]["monitor_config"]["schedule"] == {"type": "crontab", "value": "* * * * *"}
    assert found["ctl-every"][0]["monitor_config"]["schedule"] == {"type": "interval", "value": 1, "unit": "minute"}
