"""``migrate``: schedules written exactly as the old celerybeat-redis and RedBeat write them.

The celerybeat-redis fixtures are raw Redis commands reproducing its layout (it
is not installed for the tests); RedBeat's are both raw commands (every field
its encoder writes, rrule included) and entries saved and run through RedBeat's
own API (celery-redbeat is in the test extra).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from celery import Celery
from celery.schedules import crontab, schedule

from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli, snapshot
from ..support.helpers import SEED_CRONTAB, SEED_INTERVAL_30S, celery_schedule, redbeat_save
from ..support.processes import write_app

# The old README's documents as printed there (slips included), shared with the codec tests.
SEED_INTERVAL = SEED_INTERVAL_30S



def old_datetime(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> dict:
    """The old scheduler's DateTimeEncoder form (naive, UTC)."""
    return {"__type__": "datetime", "year": year, "month": month, "day": day, "hour": hour, "minute": minute,
            "second": second, "microsecond": 0}


def redbeat_datetime(year: int, month: int, day: int, hour: int, zone: str | float = "UTC") -> dict:
    """RedBeatJSONEncoder's form: a zone name, or an offset in seconds for fixed offsets."""
    return {"__type__": "datetime", "year": year, "month": month, "day": day, "hour": hour, "minute": 0, "second": 0,
            "microsecond": 0, "timezone": zone}


@pytest.fixture
def old_prefix(client: redis.Redis) -> Iterator[str]:
    """A key prefix for the old tool's keys, removed afterwards."""
    name = f"old{uuid.uuid4().hex[:8]}"
    yield f"{name}:meta:"
    for key in client.scan_iter(match=f"{name}*"):
        client.delete(key)


def sha() -> str:
    return uuid.uuid4().hex + uuid.uuid4().hex[:8]


@pytest.fixture
def celerybeat_redis_keys(client: redis.Redis, old_prefix: str) -> dict[str, str]:
    """Old celerybeat-redis string keys ``<prefix><name>:<sha1>`` (and one later-release key without the sha1)."""
    keys = {
        "seed-interval": f"{old_prefix}seed-interval:{sha()}",
        "seed-crontab": f"{old_prefix}add-every-monday-morning:{sha()}",
        "fib": f"{old_prefix}test-fib-every-3s:efff8ee06703c4cffad73834154a609dab0e1161",
        "fib-older": f"{old_prefix}test-fib-every-3s:{sha()}",
        "later": f"{old_prefix}later-release",
    }
    client.set(keys["seed-interval"], SEED_INTERVAL)
    client.set(keys["seed-crontab"], SEED_CRONTAB)
    client.set(keys["fib"], json.dumps({
        "name": "test-fib-every-3s", "task": "tasks.fib", "enabled": True, "interval": {"every": 3, "period": "seconds"},
        "args": [30], "kwargs": {}, "options": {"queue": "math"}, "total_run_count": 12,
        "last_run_at": old_datetime(2015, 1, 2, 3, 4, 5),
    }))
    client.set(keys["fib-older"], json.dumps({
        "name": "test-fib-every-3s", "task": "tasks.fib", "enabled": True, "interval": {"every": 9, "period": "seconds"},
        "args": [30], "kwargs": {}, "total_run_count": 4, "last_run_at": old_datetime(2014, 12, 1),
    }))
    client.set(keys["later"], json.dumps({
        "name": f"{old_prefix}later-release", "key": f"{old_prefix}later-release",
        "delete_key": f"deleted:{old_prefix}later-release", "task": "tasks.later", "enabled": False,
        "schedule": {"every": 10, "period": "minutes"}, "args": [], "kwargs": {"a": 1}, "options": {},
        "last_run_at": old_datetime(2016, 5, 6, 7, 8, 9), "last_task_id": "abc", "total_run_count": 2,
        "running": False,
    }))
    client.hset(f"{old_prefix}not-an-entry", "schedule", "{}")
    return keys


def test_migrate_from_celerybeat_redis(cli: Cli, api: ScheduleStore, client: redis.Redis, old_prefix: str,
                                       celerybeat_redis_keys: dict[str, str]) -> None:
    tag = api.sharded.keys.tag
    before = snapshot(client, tag)
    out = cli.ok("migrate", "--from", "celerybeat-redis", "--prefix", old_prefix, "--dry-run")
    assert "found 4 celerybeat-redis entries in 5 keys" in out and "(1 older copies)" in out
    assert "dry run: nothing written" in out
    assert snapshot(client, tag) == before

    out = cli.ok("migrate", "--from", "celerybeat-redis", "--prefix", old_prefix)
    assert "migrated 4 entries: 4 added or changed, 0 unchanged, 4 run states restored" in out
    assert "old keys kept" in out
    assert sorted(e.name for e in api.iter_entries()) == [
        "add-every-monday-morning", "later-release", "seed-interval", "test-fib-every-3s"]

    seed = api.get("seed-interval")
    assert seed.definition == {"name": "interval test schedule", "task": "task.add", "enabled": True,
                               "interval": {"every": 30, "period": "seconds"}, "args": ["param1", "param2"],
                               "kwargs": {"max_targets": 100}}
    assert seed.total_run_count == 5 and seed.last_run_at.isoformat() == "2014-08-30T08:10:06.000667+00:00"
    cron = api.get("add-every-monday-morning")
    assert cron.definition["crontab"]["day_of_week"] == "1" and "_id" not in cron.definition
    assert cron.total_run_count == 1

    fib = api.get("test-fib-every-3s")
    assert fib.definition["interval"] == {"every": 3, "period": "seconds"}, "the copy that ran last wins"
    assert fib.total_run_count == 12 and fib.last_run_at.isoformat() == "2015-01-02T03:04:05+00:00"
    assert fib.definition["options"] == {"queue": "math"}

    later = api.get("later-release")
    assert later.definition["interval"] == {"every": 10, "period": "minutes"} and later.definition["enabled"] is False
    assert not {"key", "delete_key", "running", "last_task_id", "schedule", "total_run_count"} & set(later.definition)
    assert later.total_run_count == 2

    for key in celerybeat_redis_keys.values():
        assert client.exists(key), "old keys stay until --delete-old"
    out = cli.ok("migrate", "--from", "celerybeat-redis", "--prefix", old_prefix)
    assert "0 added or changed, 4 unchanged, 0 run states restored" in out

    out = cli.ok("migrate", "--from", "celerybeat-redis", "--prefix", old_prefix, "--delete-old")
    assert "deleted 5 old keys" in out
    assert not any(client.exists(key) for key in celerybeat_redis_keys.values())
    assert client.exists(f"{old_prefix}not-an-entry")
    assert api.count() == 4


def test_migrate_with_the_same_prefix_leaves_new_keys_alone(cli: Cli, api: ScheduleStore, client: redis.Redis,
                                                            prefix: str) -> None:
    key = f"{prefix}same:{sha()}"
    client.set(key, SEED_INTERVAL)
    try:
        cli.ok("migrate", "--from", "celerybeat-redis", "--prefix", prefix)
        out = cli.ok("migrate", "--from", "celerybeat-redis", "--prefix", prefix)
        assert "found 1 celerybeat-redis entries in 1 keys" in out and "1 unchanged" in out
    finally:
        client.delete(key)


def test_migrate_invalid_old_entries_changes_nothing_unless_skipped(cli: Cli, api: ScheduleStore, client: redis.Redis,
                                                                   old_prefix: str) -> None:
    client.set(f"{old_prefix}good:{sha()}", json.dumps({"task": "t", "interval": {"every": 5, "period": "seconds"}}))
    bad_key = f"{old_prefix}bad:{sha()}"
    client.set(bad_key, json.dumps({"task": "t", "interval": {"every": 5, "period": "fortnights"}}))
    client.set(f"{old_prefix}garbage", "not json at all")
    before = snapshot(client, api.sharded.keys.tag)
    err = cli.fails("migrate", "--from", "celerybeat-redis", "--prefix", old_prefix)
    assert "entry 'bad': field 'interval.period'" in err or "entry 'garbage'" in err
    assert "(and 1 more)" in err and "nothing migrated" in err
    assert snapshot(client, api.sharded.keys.tag) == before

    done = cli.run("migrate", "--from", "celerybeat-redis", "--prefix", old_prefix, "--skip-invalid", "--delete-old")
    assert done.returncode == 0, done.stderr
    assert "migrated 1 entries" in done.stdout
    assert f"skipped old key {bad_key!r}: entry 'bad': field 'interval.period'" in done.stderr
    assert [e.name for e in api.iter_entries()] == ["good"]
    assert client.exists(bad_key), "entries not migrated keep their old keys"


def test_migrate_nothing_found_is_an_error(cli: Cli, old_prefix: str) -> None:
    assert f"no celerybeat-redis entries under {old_prefix!r}" in cli.fails(
        "migrate", "--from", "celerybeat-redis", "--prefix", old_prefix)
    assert "--dry-run and --delete-old" in cli.fails(
        "migrate", "--from", "redbeat", "--dry-run", "--delete-old", code=2)


# --- RedBeat -----------------------------------------------------------------------------




@pytest.fixture
def redbeat_keys(client: redis.Redis, old_prefix: str) -> dict[str, str]:
    prefix = old_prefix
    keys = {
        "interval": redbeat_save(
            client, prefix, "rb-interval", "tasks.add", {"__type__": "interval", "every": 30.0, "relative": False},
            1700000000, args=[1, 2], options={"queue": "low", "expires": 25},
            meta={"last_run_at": redbeat_datetime(2024, 3, 1, 10), "total_run_count": 7}),
        "cron": redbeat_save(
            client, prefix, "rb-cron", "tasks.report",
            {"__type__": "crontab", "minute": "*/15", "hour": "9-17", "day_of_week": "mon-fri", "day_of_month": "*",
             "month_of_year": "*"},
            1700000100, kwargs={"fmt": "pdf"},
            meta={"last_run_at": redbeat_datetime(2024, 3, 1, 11, "Europe/Berlin"), "total_run_count": 3}),
        "static": redbeat_save(
            client, prefix, "rb-static", "tasks.hourly", {"__type__": "interval", "every": 3600.0, "relative": True},
            1700000200),
        "disabled": redbeat_save(
            client, prefix, "rb-disabled", "tasks.off", {"__type__": "interval", "every": 0.5, "relative": False},
            1700000300, enabled=False,
            meta={"last_run_at": redbeat_datetime(2024, 3, 1, 12, 3600.0), "total_run_count": 1}),
        "rrule": redbeat_save(
            client, prefix, "rb-rrule", "tasks.rr",
            {"__type__": "rrule", "freq": 3, "interval": 1, "dtstart": 1700000000, "dtstart_tz": 0, "byhour": [9],
             "byminute": [0], "byweekday": [{"__type__": "weekday", "wkday": 0}]}, 1700000400),
        "bad": redbeat_save(
            client, prefix, "rb-bad", "tasks.bad", {"__type__": "rrule", "freq": 9, "dtstart": 1700000000}, 1700000500),
    }
    client.sadd(prefix + ":statics", "rb-static")
    client.set(prefix + ":lock", "token")
    return keys


def test_migrate_from_redbeat(cli: Cli, api: ScheduleStore, client: redis.Redis, old_prefix: str,
                              redbeat_keys: dict[str, str]) -> None:
    tag = api.sharded.keys.tag
    before = snapshot(client, tag)
    err = cli.fails("migrate", "--from", "redbeat", "--prefix", old_prefix)
    assert "entry 'rb-bad': field 'schedule.freq': must be a dateutil frequency from 0 to 6, not 9" in err
    assert snapshot(client, tag) == before

    done = cli.run("migrate", "--from", "redbeat", "--prefix", old_prefix, "--skip-invalid")
    assert done.returncode == 0, done.stderr
    assert "found 5 redbeat entries in 6 keys" in done.stdout
    assert "migrated 5 entries: 5 added or changed, 0 unchanged, 3 run states restored" in done.stdout
    assert "rb-bad" in done.stderr and "rb-rrule" not in done.stderr
    assert api.get("rb-rrule").definition["rrule"] == {"rule": "FREQ=DAILY;BYDAY=MO;BYHOUR=9;BYMINUTE=0",
                                                       "dtstart": "2023-11-14T22:13:20+00:00"}

    interval = api.get("rb-interval")
    assert interval.definition == {"task": "tasks.add", "enabled": True, "interval": {"every": 30, "period": "seconds"},
                                   "args": [1, 2], "options": {"queue": "low", "expires": 25}}
    assert interval.total_run_count == 7 and interval.last_run_at.isoformat() == "2024-03-01T10:00:00+00:00"
    cron = api.get("rb-cron")
    assert cron.definition["crontab"] == {"minute": "*/15", "hour": "9-17", "day_of_week": "mon-fri",
                                          "day_of_month": "*", "month_of_year": "*"}
    assert cron.definition["kwargs"] == {"fmt": "pdf"}
    assert cron.last_run_at.isoformat() == "2024-03-01T11:00:00+01:00"
    static = api.get("rb-static")
    assert static.static and static.definition["relative"] is True
    assert static.definition["interval"] == {"every": 1, "period": "hours"}
    assert static.total_run_count == 0 and static.last_run_at is None
    disabled = api.get("rb-disabled")
    assert disabled.definition["enabled"] is False
    assert disabled.definition["interval"] == {"every": 0.5, "period": "seconds"}
    assert disabled.last_run_at.isoformat() == "2024-03-01T12:00:00+01:00"

    done = cli.run("migrate", "--from", "redbeat", "--prefix", old_prefix, "--skip-invalid", "--delete-old")
    assert done.returncode == 0, done.stderr
    assert "0 added or changed, 5 unchanged" in done.stdout and "deleted 5 old keys" in done.stdout
    for name in ("interval", "cron", "static", "disabled", "rrule"):
        assert not client.exists(redbeat_keys[name])
    assert client.zrange(old_prefix + ":schedule", 0, -1) == [redbeat_keys["bad"].encode()]
    assert client.smembers(old_prefix + ":statics") == set()
    assert client.exists(redbeat_keys["bad"]) and client.get(old_prefix + ":lock") == b"token"


def test_migrate_entries_saved_and_run_through_redbeats_own_api(cli: Cli, api: ScheduleStore, redis_url: str,
                                                                 old_prefix: str, client: redis.Redis) -> None:
    """RedBeat's scheduler syncs a beat_schedule (its statics), its entry API saves the rest, and runs are
    recorded as RedBeat's tick records them; each migrated entry matches what RedBeat itself reads back."""
    from dateutil.rrule import MO, WE
    from redbeat import RedBeatScheduler, RedBeatSchedulerEntry
    from redbeat.schedules import rrule

    from celerybeatredis.definitions.rrules import zoned_rrule

    source = Celery("redbeat-source", set_as_current=False)
    source.conf.update(redbeat_redis_url=f"{redis_url}/0", redbeat_key_prefix=old_prefix, timezone="UTC", result_expires=None,
                       beat_schedule={"rb-static": {"task": "tasks.hourly", "schedule": timedelta(hours=1)}})
    RedBeatScheduler(source, lazy=False).close()  # syncs beat_schedule into RedBeat's keys and statics set
    saved = {
        "rb-interval": RedBeatSchedulerEntry("rb-interval", "tasks.add", schedule(timedelta(seconds=30)), args=[1, 2],
                                             options={"queue": "low"}, app=source),
        "rb-cron": RedBeatSchedulerEntry("rb-cron", "tasks.report", crontab(minute="*/15", hour="9-17", day_of_week="mon-fri"),
                                         kwargs={"fmt": "pdf"}, app=source),
        "rb-disabled": RedBeatSchedulerEntry("rb-disabled", "tasks.off", schedule(timedelta(seconds=0.5)), enabled=False,
                                             app=source),
        "rb-rrule": RedBeatSchedulerEntry("rb-rrule", "tasks.rr", rrule(
            "weekly", dtstart=datetime(2026, 1, 5, 9, tzinfo=timezone(timedelta(hours=1))), byweekday=[MO, WE],
            byhour=9, byminute=0, count=40, app=source), app=source),
        "rb-until": RedBeatSchedulerEntry("rb-until", "tasks.rr", rrule(
            "hourly", interval=5, dtstart=datetime(2026, 3, 1, 4, 30, tzinfo=timezone.utc),
            until=datetime(2026, 4, 1, tzinfo=timezone.utc), app=source), app=source),
    }
    for entry in saved.values():
        entry.save()
    ran = next(next(saved["rb-interval"]))  # two runs, as RedBeat's tick records them (meta: last run, run count)
    next(saved["rb-cron"])
    keys = [key.decode() for key in client.zrange(old_prefix + ":schedule", 0, -1)]
    assert sorted(keys) == sorted(old_prefix + name for name in (*saved, "rb-static"))
    theirs = {entry.name: entry for entry in (RedBeatSchedulerEntry.from_key(key, app=source) for key in keys)}
    assert theirs["rb-interval"].total_run_count == ran.total_run_count == 2

    done = cli.run("migrate", "--from", "redbeat", "--prefix", old_prefix)
    assert done.returncode == 0, done.stderr
    assert "migrated 6 entries: 6 added or changed" in done.stdout
    for name, entry in theirs.items():
        ours = api.get(name)
        definition = ours.definition or {}
        assert (definition["task"], definition.get("args", []), definition.get("kwargs", {})) == (
            entry.task, list(entry.args or []), dict(entry.kwargs or {})), name
        assert definition.get("options", {}) == dict(entry.options or {}), name
        assert definition.get("enabled", True) is entry.enabled, name
        assert ours.total_run_count == (entry.total_run_count or 0), name
        if entry.total_run_count:
            assert ours.last_run_at == entry.last_run_at, name
        assert ours.static is (name == "rb-static"), name
        kind = "crontab" if isinstance(entry.schedule, crontab) else "rrule" if isinstance(entry.schedule, rrule) else "interval"
        parsed = api.codec.from_document(definition).schedule
        if kind == "rrule":  # the same times as RedBeat's own rule, to its end
            start = datetime(2026, 1, 1, tzinfo=timezone.utc)
            assert isinstance(parsed, zoned_rrule) and list(parsed.occurrences(start)) == [
                t.astimezone(timezone.utc) for t in entry.schedule.rrule.xafter(start)], name
        elif kind == "crontab":
            assert isinstance(parsed, crontab) and (parsed.minute, parsed.hour, parsed.day_of_week) == (
                entry.schedule.minute, entry.schedule.hour, entry.schedule.day_of_week), name
        else:
            assert parsed.run_every == entry.schedule.run_every, name


# --- the Celery plugin -------------------------------------------------------------------




def test_celery_plugin_reads_the_apps_settings(tmp_path: Path, redis_url: str, prefix: str, api: ScheduleStore,
                                               client: redis.Redis, old_prefix: str) -> None:
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra="""
        app.conf.beat_schedule = {"fib-static": {"task": "tasks.fib", "schedule": timedelta(seconds=3)}}
    """)
    done = celery_schedule(tmp_path, "add", "nightly", "--task", "tasks.report", "--cron", "0 3 * * *")
    assert done.returncode == 0, done.stdout + done.stderr
    assert api.get("nightly").definition["crontab"]["hour"] == "3"
    listed = celery_schedule(tmp_path, "list", "--json")
    assert [json.loads(line)["name"] for line in listed.stdout.splitlines()] == ["nightly"]

    client.set(f"{old_prefix}fib-static:{sha()}", json.dumps(
        {"task": "tasks.fib", "enabled": True, "interval": {"every": 3, "period": "seconds"}, "total_run_count": 9}))
    client.set(f"{old_prefix}dynamic:{sha()}", json.dumps(
        {"task": "tasks.dyn", "enabled": True, "interval": {"every": 3, "period": "seconds"}}))
    done = celery_schedule(tmp_path, "migrate", "--from", "celerybeat-redis", "--prefix", old_prefix)
    assert done.returncode == 0, done.stdout + done.stderr
    assert api.get("fib-static").static and api.get("fib-static").total_run_count == 9
    assert not api.get("dynamic").static

    bad = celery_schedule(tmp_path, "show", "ghost")
    assert bad.returncode == 1 and bad.stderr.startswith(f"Error: no entry named 'ghost' in {{{prefix.rstrip(':')}}} at ")
    assert celery_schedule(tmp_path, "--prefix", "{x}", "list").returncode == 2
