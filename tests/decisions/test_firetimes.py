"""``next``: the fire times it computes are those beat uses, and each message names its entry.

Each case computes an entry's next times with :meth:`ScheduleStore.next_runs`,
then drives an in-process beat (``tick(now=...)``) at the due score it stores
after each tick and checks that beat sends at exactly those times and stops
where ``next`` marks a time as ruled out. The header case runs a real worker.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import redis
from celery import Celery
from click.testing import CliRunner

from celerybeatredis.cli import main
from celerybeatredis.decisions.firetimes import FireTime
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.store import ScheduleStore

from ..support.processes import CeleryProcess, drain_queue, wait_until, write_app

T0 = datetime(2026, 3, 27, 12, 0, 0, tzinfo=timezone.utc).timestamp()  # two days before Europe's DST change


@pytest.fixture
def api(client: redis.Redis, prefix: str, app: Celery, store: RedisStore) -> ScheduleStore:
    return ScheduleStore(client, prefix, app)


def beat_runs(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery, api: ScheduleStore,
              name: str, start: float, runs: int) -> tuple[list[float], list[FireTime]]:
    """Tick at ``start``, then at each due score beat stores, until ``runs`` sends (and three ticks more).

    Returns the times beat sent at, and ``next_runs`` as computed just after the first send (from the run state
    beat wrote).
    """
    sent: list[float] = []
    later: list[FireTime] = []
    at = start
    extra = 3
    while extra:
        scheduler.tick(now=at)
        messages = drain_queue(broker, app.conf.task_default_queue)
        assert len(messages) <= 1
        if messages:
            assert messages[0].headers["periodic_task_name"] == name
            sent.append(at)
            if len(sent) == 1:
                later = api.next_runs(name, 10, now=at + 0.0005)
        if len(sent) >= runs:
            extra -= 1
        score = store.due_score(name)
        if score is None or math.isinf(score):
            break
        # claim.lua compares scores with now to the microsecond: tick at the score rounded up to one.
        at = max(math.ceil(score * 1e6) / 1e6, at + 0.001)
    return sent, later


def check(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery, api: ScheduleStore,
          name: str, definition: dict[str, Any], count: int = 4) -> list[FireTime]:
    """Add ``definition``, compute its next ``count`` times, and check beat runs at them and no more."""
    api.add(name, definition)
    times = api.next_runs(name, count, now=T0)
    runs = [t for t in times if t.ruled_out is None]
    assert [t.run for t in runs] == list(range(1, len(runs) + 1))
    sent, later = beat_runs(scheduler, store, broker, app, api, name, T0, len(runs))
    if len(runs) < count:  # a limit stops it: beat must send these and nothing after
        assert sent == pytest.approx([t.at.timestamp() for t in runs], abs=1e-3)
    else:
        assert sent[:count] == pytest.approx([t.at.timestamp() for t in runs], abs=1e-3)
    # Computed again from the run state beat stored after its first run: the same times from there on.
    after = [(t.at, t.ruled_out) for t in times if t.at > runs[0].at]
    assert [(t.at, t.ruled_out) for t in later[:len(after)]] == after
    return times


def test_interval(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery, api: ScheduleStore) -> None:
    times = check(scheduler, store, broker, app, api, "every-10s", {"task": "t.a", "interval": {"every": 10}})
    assert [t.at.timestamp() - T0 for t in times] == pytest.approx([10, 20, 30, 40])


def test_relative_interval(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery,
                           api: ScheduleStore) -> None:
    check(scheduler, store, broker, app, api, "rel", {"task": "t.a", "interval": {"every": 7, "period": "minutes"},
                                                      "relative": True})


@pytest.mark.parametrize(("name", "kind", "spec"), [
    ("nightly", "crontab", {"minute": "30", "hour": "2", "timezone": "Europe/Berlin"}),
    ("rrule-nightly", "rrule", {"rule": "FREQ=DAILY;BYHOUR=2;BYMINUTE=30", "dtstart": "2026-01-01T00:00:00",
                                "timezone": "Europe/Berlin"}),
])
def test_a_daily_0230_in_its_zone_across_dst(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery,
                                             api: ScheduleStore, name: str, kind: str, spec: dict) -> None:
    times = check(scheduler, store, broker, app, api, name, {"task": "t.a", kind: spec})
    berlin = [t.at.astimezone(ZoneInfo("Europe/Berlin")).isoformat() for t in times]
    # 02:30 does not exist on 29 March (clocks go 02:00 -> 03:00): Celery runs it at 03:30 summer time, an rrule too.
    assert berlin == ["2026-03-28T02:30:00+01:00", "2026-03-29T03:30:00+02:00", "2026-03-30T02:30:00+02:00",
                      "2026-03-31T02:30:00+02:00"]


def test_rrule_count_retires_the_entry(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery,
                                       api: ScheduleStore) -> None:
    spec = {"rule": "FREQ=MINUTELY;INTERVAL=15", "dtstart": "2026-03-27T12:00:00+00:00", "count": 3}
    times = check(scheduler, store, broker, app, api, "rrule-thrice", {"task": "t.a", "rrule": spec}, count=3)
    # The first occurrence (12:00) is the time the entry was added: not after it, so not run.
    assert [t.at.timestamp() - T0 for t in times] == [900, 1800]


def test_crontab_with_seconds(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery,
                              api: ScheduleStore) -> None:
    times = check(scheduler, store, broker, app, api, "sub-minute", {"task": "t.a", "crontab": {"second": "10,40"}})
    assert [t.at.timestamp() - T0 for t in times] == [10, 40, 70, 100]


def test_interval_with_a_phase_across_dst(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery,
                                          api: ScheduleStore) -> None:
    spec = {"every": 6, "period": "hours", "offset": 5, "timezone": "Europe/Berlin"}
    times = check(scheduler, store, broker, app, api, "phased", {"task": "t.a", "interval": spec}, count=8)
    berlin = [t.at.astimezone(ZoneInfo("Europe/Berlin")).strftime("%d %H:%M%z") for t in times]
    assert berlin == ["27 17:00+0100", "27 23:00+0100", "28 05:00+0100", "28 11:00+0100", "28 17:00+0100",
                      "28 23:00+0100", "29 05:00+0200", "29 11:00+0200"]


def test_crontab_in_the_apps_zone(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery,
                                  api: ScheduleStore) -> None:
    app.conf.timezone = "America/New_York"  # read by beat and by the store, as they share the app
    times = check(scheduler, store, broker, app, api, "ny", {"task": "t.a", "crontab": {"minute": "0", "hour": "9"}}, count=2)
    assert [t.at.astimezone(ZoneInfo("America/New_York")).hour for t in times] == [9, 9]


def test_clocked(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery, api: ScheduleStore) -> None:
    at = datetime.fromtimestamp(T0 + 3600, timezone.utc)
    times = check(scheduler, store, broker, app, api, "once", {"task": "t.a", "clocked": at.isoformat()})
    assert times == [FireTime(at, 1)]


def test_max_run_count(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery, api: ScheduleStore) -> None:
    times = check(scheduler, store, broker, app, api, "thrice", {"task": "t.a", "interval": {"every": 10}, "max_run_count": 3},
                  count=5)
    assert [(t.at.timestamp() - T0, t.run, t.ruled_out) for t in times] == [
        (10, 1, None), (20, 2, None), (30, 3, None), (40, None, "max_run_count"), (50, None, "max_run_count")]


def test_expires(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery, api: ScheduleStore) -> None:
    expires = datetime.fromtimestamp(T0 + 35, timezone.utc).isoformat()
    times = check(scheduler, store, broker, app, api, "expiring", {"task": "t.a", "interval": {"every": 10}, "expires": expires})
    assert [(t.at.timestamp() - T0, t.ruled_out) for t in times] == [(10, None), (20, None), (30, None), (40, "expires")]


def test_start_time(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery, api: ScheduleStore) -> None:
    start = datetime.fromtimestamp(T0 + 95, timezone.utc).isoformat()
    times = check(scheduler, store, broker, app, api, "later", {"task": "t.a", "interval": {"every": 60}, "start_time": start,
                                                                "max_run_count": 2}, count=4)
    # Held until start_time (it runs then), then every 60s from that run, twice.
    assert [(t.at.timestamp() - T0, t.ruled_out) for t in times] == [
        (95, None), (155, None), (215, "max_run_count"), (275, "max_run_count")]


def test_start_time_marks_the_times_it_holds(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery,
                                            api: ScheduleStore) -> None:
    at, start = (datetime.fromtimestamp(T0 + s, timezone.utc).isoformat() for s in (60, 95))
    times = check(scheduler, store, broker, app, api, "held", {"task": "t.a", "clocked": at, "start_time": start})
    assert [(t.at.timestamp() - T0, t.run, t.ruled_out) for t in times] == [(60, None, "start_time"), (95, 1, None)]


def test_disabled_times_are_all_marked(api: ScheduleStore) -> None:
    api.add("off", {"task": "t.a", "interval": {"every": 10}, "enabled": False})
    times = api.next_runs("off", 3, now=T0)
    assert [(t.at.timestamp() - T0, t.run, t.ruled_out) for t in times] == [(10, None, "enabled"), (20, None, "enabled"),
                                                                              (30, None, "enabled")]


def test_sharded_schedule(client: redis.Redis, prefix: str, app: Celery) -> None:
    sharded = ScheduleStore(client, prefix, app, shards=3)
    try:
        for i in range(6):  # spread over the shards
            sharded.add(f"s{i}", {"task": "t.a", "interval": {"every": 10 + i}})
        for i in range(6):
            assert [t.at.timestamp() - T0 for t in sharded.next_runs(f"s{i}", 2, now=T0)] == [10 + i, 20 + 2 * i]
    finally:
        sharded.drop()


def test_solar(scheduler: RedisScheduler, store: RedisStore, broker: redis.Redis, app: Celery, api: ScheduleStore) -> None:
    pytest.importorskip("ephem")
    times = check(scheduler, store, broker, app, api, "sunset",
                  {"task": "t.a", "solar": {"event": "sunset", "latitude": 52.52, "longitude": 13.4}}, count=3)
    assert [t.at.date().isoformat() for t in times] == ["2026-03-27", "2026-03-28", "2026-03-29"]


def test_cli_next(api: ScheduleStore, redis_url: str, prefix: str) -> None:
    api.add("cli-once", {"task": "t.a", "clocked": "2030-01-01T09:00:00+00:00"})
    env = {"CELERYBEATREDIS_URL": f"{redis_url}/0", "CELERYBEATREDIS_PREFIX": prefix}
    result = CliRunner().invoke(main, ["next", "cli-once", "--json"], env=env)
    assert result.exit_code == 0, result.output
    assert [json.loads(line) for line in result.output.splitlines()] == [
        {"name": "cli-once", "at": "2030-01-01T09:00:00+00:00", "run": 1, "ruled_out": None}]
    result = CliRunner().invoke(main, ["next", "cli-once", "-n", "3"], env=env)
    assert result.output.splitlines()[1].split()[:2] == ["1", "2030-01-01T09:00:00+00:00"]
    missing = CliRunner().invoke(main, ["next", "nope"], env=env)
    assert missing.exit_code == 1 and "no entry named 'nope'" in missing.output


@pytest.mark.slow
@pytest.mark.e2e
def test_worker_sees_the_entry_name(tmp_path: Path, redis_url: str, prefix: str, client: redis.Redis,
                                    scheduler: RedisScheduler, api: ScheduleStore, app: Celery) -> None:
    """A real worker reads the header as ``self.request.periodic_task_name`` and in ``self.request.headers``."""
    seen = f"{prefix}seen"
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=f"""
        import json, redis
        app.conf.task_default_queue = {app.conf.task_default_queue!r}

        @app.task(bind=True, name="proj.who")
        def who(self):
            headers = self.request.headers or {{}}
            redis.Redis.from_url({redis_url + "/0"!r}).rpush({seen!r}, json.dumps(
                [getattr(self.request, "periodic_task_name", None), headers.get("periodic_task_name")]))
    """)
    worker = CeleryProcess.worker(tmp_path)
    try:
        worker.wait_for_output("ready.")
        api.add("who-runs", {"task": "proj.who", "interval": {"every": 60}})
        now = api.server_time()
        api.run_now("who-runs")
        scheduler.tick(now=now)
        raw = wait_until(lambda: client.lpop(seen), what="the task to run on the worker")
        assert json.loads(raw) == ["who-runs", "who-runs"]
    finally:
        worker.stop()
        client.delete(seen)
