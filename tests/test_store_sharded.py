"""The management API and the command line on a sharded schedule: routing, merged listings, the layout guard, reshard."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import redis
from celery import Celery

from celerybeatredis.definitions.calendars import CalendarInUse
from celerybeatredis.exceptions import CeleryBeatRedisError, EntryExists, EntryNotFound
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.connection import make_client
from celerybeatredis.storage.keys import RUN_NOW, shard_for
from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.sharded_store import ShardedStore
from celerybeatredis.store import ScheduleStore

from .support.cli import Cli, snapshot
from .support.cluster import LocalCluster
from .support.helpers import SEED_INTERVAL_30S, T0, celery_schedule, redbeat_save, spread_prefix
from .support.processes import drain_queue, write_app

K = 3


def every(seconds: int, name: str = "") -> dict:
    return {"task": "tasks.add", "interval": {"every": seconds, "period": "seconds"}, "kwargs": {"name": name}}


@pytest.fixture
def cleanup(client: redis.Redis, tag: str) -> Iterator[None]:
    yield
    for pattern in (f"{{{tag}}}:*", f"{{{tag}:*}}:*"):
        for key in client.scan_iter(match=pattern, count=1000):
            client.delete(key)


@pytest.fixture
def api(client: redis.Redis, prefix: str, app: Celery, cleanup: None) -> ScheduleStore:
    return ScheduleStore(client, prefix, app, shards=K)


@pytest.fixture
def cli(redis_url: str, prefix: str) -> Cli:
    return Cli(f"{redis_url}/0", prefix)


def where(client: redis.Redis, tag: str, name: str) -> list[str]:
    """The hash tags whose schedule holds ``name``."""
    found = []
    for key in client.scan_iter(match=f"{{{tag}*}}:schedule", count=1000):
        if client.hexists(key, name):
            found.append(key.decode().split("}")[0][1:])
    return sorted(found)


def test_an_add_that_names_an_existing_entry_writes_nothing_on_any_shard(api: ScheduleStore, client: redis.Redis,
                                                                         tag: str) -> None:
    names = [f"job-{i}" for i in range(12)]
    taken = names[0]
    api.add(taken, every(10, taken))
    others = [n for n in names[1:] if shard_for(n, K) != shard_for(taken, K)]
    with pytest.raises(EntryExists, match=f"entry '{taken}' exists"):
        api.bulk_add({**{n: every(10, n) for n in others}, taken: every(5, taken)})
    assert not any(api.find(others)) and api.get(taken).definition == every(10, taken)
    assert api.bulk_add({**{n: every(10, n) for n in others}, taken: every(5, taken)}, replace=True).written == len(others) + 1


def test_every_per_name_call_works_in_the_shard_of_the_name(api: ScheduleStore, client: redis.Redis, tag: str) -> None:
    names = [f"job-{i}" for i in range(12)]
    assert len({shard_for(n, K) for n in names}) == K
    for name in names:
        assert api.add(name, "tasks.add", timedelta(seconds=10), kwargs={"name": name})
        assert where(client, tag, name) == [f"{tag}:{shard_for(name, K)}"]
        assert api.exists(name) and api.get(name).status == "pending"
    name = names[4]
    assert api.update(name, args=[1, 2]) and api.get(name).definition["args"] == [1, 2]
    assert api.disable(name) and not api.get(name).enabled
    assert api.enable(name) and not api.enable(name)
    assert api.replace(name, every(20, name))
    assert api.get(name).definition == every(20, name)
    api.run_now(name)
    assert api.sharded.due_score(name) == RUN_NOW and api.get(name).status == "run-now"
    assert [e.name if e else None for e in api.find([names[1], "missing", names[2]])] == [names[1], None, names[2]]
    api.remove(name)
    assert not api.exists(name) and where(client, tag, name) == []
    for call in (api.remove, api.run_now, api.enable, api.get):
        with pytest.raises(EntryNotFound):
            call(name)
    assert api.count() == 11 and client.exists(f"{{{tag}}}:schedule") == 0  # nothing under the unsharded tag


def test_listings_counts_and_bulk_calls_cover_every_shard(api: ScheduleStore, client: redis.Redis, tag: str,
                                                          app: Celery) -> None:
    app.conf.redis_scheduler_shards = K
    docs = {f"e{i:03}": every(10 + i, f"e{i:03}") for i in range(200)}
    assert api.bulk_add(docs, batch_size=64).written == 200
    assert [api.sharded.stores[i].count() for i in range(K)] == [sum(shard_for(n, K) == i for n in docs) for i in range(K)]
    assert api.count() == 200
    # Pagination across shards: small pages, every name exactly once, the API shape unchanged.
    seen: list[str] = []
    cursor, pages = 0, 0
    while True:
        page = api.list(cursor, count=10)
        seen += [e.name for e in page.items]
        pages += 1
        if page.done:
            break
        cursor = page.cursor
    assert sorted(seen) == sorted(docs) and pages > K
    assert sorted(e.name for e in api.iter_entries(match="e01*")) == [f"e{i:03}" for i in range(10, 20)]
    # Upcoming: beat plans them (due = T0 + every), then the soonest across all shards come first.
    sched = RedisScheduler(app)
    while sched.tick(now=T0) == 0.0:
        pass
    sched.close()
    soon = api.upcoming(5)
    assert [e.name for e in soon] == ["e000", "e001", "e002", "e003", "e004"]
    assert [e.name for e in api.upcoming(3, offset=4)] == ["e004", "e005", "e006"]
    # Quarantined entries and stats across shards.
    bad = [*[n for n in docs if shard_for(n, K) != shard_for("e000", K)][:2], "e000"]
    for name in bad:
        client.hset(f"{{{tag}:{shard_for(name, K)}}}:schedule", name, '{"task": "tasks.add", "interval": {"every": 0}}')
        client.zadd(f"{{{tag}:{shard_for(name, K)}}}:due", {name: 0})
    sched = RedisScheduler(app)
    sched.tick(now=T0 + 1)
    sched.close()
    found, cursor = [], 0
    while True:
        page = api.invalid(cursor, count=1)
        found += [item.name for item in page.items]
        if page.done:
            break
        cursor = page.cursor
    assert sorted(found) == sorted(bad)
    stats = api.stats()
    assert (stats.entries, stats.invalid, stats.enabled) == (200, 3, 200)
    assert stats.scheduled == 197 and stats.never == 3
    assert {key.split("}")[0] for key in stats.memory_bytes} == {f"{{{tag}:{i}" for i in range(K)}
    assert api.bulk_remove([*docs, "missing"], batch_size=50) == 200 and api.count() == 0


def test_beat_runs_what_the_sharded_api_wrote(app: Celery, client: redis.Redis, prefix: str, cleanup: None) -> None:
    app.conf.redis_scheduler_shards = K
    api = ScheduleStore.from_app(app)
    assert api.shards == K
    names = [f"job-{i}" for i in range(9)]
    for name in names:
        api.add(name, every(10, name))
    api.run_now("job-3")
    sched = RedisScheduler(app)
    sched.tick(now=T0)
    sched.close()
    broker = redis.Redis.from_url(app.conf.broker_url)
    sent = sorted(m.kwargs["name"] for m in drain_queue(broker, app.conf.task_default_queue))
    broker.close()
    assert sent == ["job-3"]
    assert api.get("job-3").total_run_count == 1 and api.get("job-0").total_run_count == 0
    api.close()


def test_writes_are_refused_while_the_layout_differs(client: redis.Redis, prefix: str, tag: str, app: Celery,
                                                      cleanup: None) -> None:
    three = ScheduleStore(client, prefix, app, shards=3)
    three.add("a", every(10))
    assert three.recorded_shards() == 3
    two = ScheduleStore(client, prefix, app, shards=2)
    before = snapshot(client, f"{tag}:0") | snapshot(client, f"{tag}:1") | snapshot(client, tag)
    for write in (lambda: two.add("b", every(10)), lambda: two.remove("a"), lambda: two.run_now("a"),
                  lambda: two.bulk_add({"c": every(5)}), lambda: two.disable("a")):
        with pytest.raises(CeleryBeatRedisError, match=r"nothing written: schedule .* laid out in 3 shards but "
                                                       r"redis_scheduler_shards is 2.*reshard --to 2"):
            write()
    assert snapshot(client, f"{tag}:0") | snapshot(client, f"{tag}:1") | snapshot(client, tag) == before
    # Entries under the unsharded tag and nothing recorded: a sharded store writes nothing either.
    client.delete(f"{{{tag}}}:meta")
    RedisStore(client, prefix).put_raw({"old": json.dumps(every(10))})
    with pytest.raises(CeleryBeatRedisError, match=r"entries exist under .*1 shard.*reshard --to 3"):
        three.add("b", every(10))
    assert not three.exists("b")


def test_cli_on_a_sharded_schedule(cli: Cli, client: redis.Redis, prefix: str, tag: str, app: Celery,
                                   cleanup: None, tmp_path: Path) -> None:
    env = {"CELERYBEATREDIS_SHARDS": str(K)}
    names = [f"job-{i}" for i in range(9)]
    for name in names:
        assert cli.ok("add", name, "--task", "tasks.add", "--every", "30s", env=env).startswith(f"added {name}")
        assert where(client, tag, name) == [f"{tag}:{shard_for(name, K)}"]
    cli.ok("--shards", str(K), "edit", "job-4", "--every", "5m")
    api = ScheduleStore(client, prefix, app, shards=K)
    assert api.get("job-4").definition["interval"] == {"every": 5, "period": "minutes"}
    assert "job-4" in cli.ok("show", "job-4", env=env)
    cli.ok("disable", "job-1", "job-2", env=env)
    assert not api.get("job-1").enabled and not api.get("job-2").enabled
    cli.ok("run-now", "job-5", env=env)
    assert api.sharded.due_score("job-5") == RUN_NOW
    listed = [json.loads(line)["name"] for line in cli.ok("list", "--json", "--limit", "0", env=env).splitlines()]
    assert sorted(listed) == names
    assert cli.ok("list", env=env).splitlines()[-1] == "9 shown of 9 entries"
    stats = cli.ok("stats", env=env)
    assert f"{{{tag}:0}} .. {{{tag}:2}}" in stats and "entries:    9" in stats
    exported = cli.ok("export", env=env)
    assert sorted(json.loads(line)["name"] for line in exported.splitlines()) == names
    assert cli.ok("remove", "job-0", "job-8", env=env).strip() == "removed 2 entries"
    assert api.count() == 7
    # Import into a sharded schedule of another prefix puts every entry in its shard.
    other = Cli(cli.url, f"{tag}-copy:")
    assert "imported 9 entries" in other.ok("import", "-", input=exported, env=env)
    copy = ScheduleStore(client, f"{tag}-copy:", app, shards=K)
    assert all(where(client, f"{tag}-copy", n) == [f"{tag}-copy:{shard_for(n, K)}"] for n in names)
    copy.drop()
    # Without --shards the command sees the recorded layout disagree and writes nothing.
    err = cli.fails("add", "x", "--task", "tasks.add", "--every", "1m")
    assert "nothing written" in err and "laid out in 3 shards" in err and "reshard --to 1" in err
    assert not api.exists("x") and client.hexists(f"{{{tag}}}:schedule", "x") == 0
    # celery -A proj schedule takes the shards from the app's settings.
    write_app(tmp_path, app.conf.broker_url, app.conf.redis_scheduler_url, prefix,
              extra=f"app.conf.redis_scheduler_shards = {K}\n")
    done = celery_schedule(tmp_path, "add", "nightly", "--task", "tasks.report", "--cron", "0 3 * * *")
    assert done.returncode == 0, done.stderr
    assert where(client, tag, "nightly") == [f"{tag}:{shard_for('nightly', K)}"]
    done = celery_schedule(tmp_path, "list", "--json", "--limit", "0")
    assert done.returncode == 0 and len(done.stdout.splitlines()) == 8


def test_reshard_command_keeps_run_state_and_can_be_repeated(cli: Cli, client: redis.Redis, prefix: str, tag: str,
                                                             app: Celery, cleanup: None, tmp_path: Path) -> None:
    one = ScheduleStore(client, prefix, app)
    one.bulk_add({f"e{i}": every(10, f"e{i}") for i in range(30)})
    sched = RedisScheduler(app)
    sched.tick(now=T0)
    sched.tick(now=T0 + 10)
    sched.close()
    one.run_now("e7")
    before = {f"e{i}": one.sharded.run_state(f"e{i}") for i in range(30)}
    assert before["e0"][0] == 1

    out = cli.ok("reshard", "--to", str(K))
    assert out.startswith(f"30 entries moved, 0 merged, 60 scanned; shards 1 -> {K}\n")  # {T}, then its new shards
    assert f"redis_scheduler_shards = {K}" in out
    three = ScheduleStore(client, prefix, app, shards=K)
    assert three.recorded_shards() == K and three.count() == 30 and one.count() == 0
    assert {n: three.sharded.run_state(n) for n in before} == before
    assert three.sharded.due_score("e7") == RUN_NOW
    assert cli.ok("reshard", "--to", str(K)).startswith("0 entries moved, 0 merged, 30 scanned")
    assert {n: three.sharded.run_state(n) for n in before} == before
    # The management commands follow once they are told the new layout.
    assert "30 shown of 30 entries" in cli.ok("--shards", str(K), "list", "--limit", "0")
    # Usage errors exit 2; a Redis that cannot be reached exits 1 with one line.
    cli.fails("reshard", "--to", "0", code=2)
    cli.fails("reshard", code=2)
    assert "cannot reach Redis" in Cli("redis://127.0.0.1:1/0", prefix).fails("reshard", "--to", "2")
    # celery -A proj schedule reshard: back to one shard.
    write_app(tmp_path, app.conf.broker_url, app.conf.redis_scheduler_url, prefix)
    done = celery_schedule(tmp_path, "reshard", "--to", "1")
    assert done.returncode == 0 and f"shards {K} -> 1" in done.stdout, done.stderr
    assert one.count() == 30 and {n: one.sharded.run_state(n) for n in before} == before
    assert ShardedStore(client, prefix, 1).recorded_shards() == 1


def test_one_shard_keeps_the_cursor_of_hscan(cleanup: None, client: redis.Redis, prefix: str, app: Celery) -> None:
    one = ScheduleStore(client, prefix, app)
    one.bulk_add({f"e{i}": every(10) for i in range(300)})
    cursor, page = client.hscan(one.sharded.keys.schedule, 0, count=50)
    assert one.list(0, 50).cursor == cursor and one.sharded.keys.schedule == f"{{{prefix.rstrip(':')}}}:schedule"
    assert sorted(e.name for e in one.list(cursor, 50).items) == sorted(
        n.decode() for n in client.hscan(one.sharded.keys.schedule, cursor, count=50)[1])
    assert len(page) > 0


def test_api_and_commands_on_a_sharded_schedule_across_cluster_masters(redis_cluster: LocalCluster) -> None:
    client = make_client(redis_cluster.url)
    prefix = spread_prefix(client, f"cl{uuid.uuid4().hex[:6]}-", K)
    tag = prefix.rstrip(":")
    old = f"old{uuid.uuid4().hex[:6]}:"
    try:
        masters = {client.get_node_from_key(f"{{{tag}:{i}}}:due").name for i in range(K)}
        assert len(masters) == K
        cli = Cli(redis_cluster.url, prefix)
        env = {"CELERYBEATREDIS_SHARDS": str(K)}
        names = [f"job-{i}" for i in range(9)]
        for name in names:
            cli.ok("add", name, "--task", "tasks.add", "--every", "30s", env=env)
        api = ScheduleStore.from_url(redis_cluster.url, prefix, shards=K)
        assert [s.count() for s in api.sharded.stores] == [sum(shard_for(n, K) == i for n in names) for i in range(K)]
        assert all(s.count() > 0 for s in api.sharded.stores)  # so every master holds entries
        # A redis:// URL of one node with --cluster (redis_scheduler_cluster) reaches the same schedule.
        by_node = Cli(redis_cluster.first_url, prefix)
        listed = by_node.ok("--cluster", "list", "--json", "--limit", "0", env=env).splitlines()
        assert sorted(json.loads(line)["name"] for line in listed) == names
        assert cli.ok("remove", "job-0", "job-5", env=env).strip() == "removed 2 entries"
        assert api.count() == 7 and not api.exists("job-5")
        assert sorted(e.name for e in api.iter_entries(page_size=2)) == sorted(set(names) - {"job-0", "job-5"})
        api.run_now("job-1")
        assert [e.name for e in api.upcoming(1)] == ["job-1"]
        assert "entries:    7" in cli.ok("stats", env=env)
        # migrate finds old keys on every master (SCAN on each primary) and deletes them slot by slot.
        for i in range(12):
            client.set(f"{old}meta:old-{i}:{'0' * 40}", SEED_INTERVAL_30S)
        assert len({client.get_node_from_key(f"{old}meta:old-{i}:{'0' * 40}").name for i in range(12)}) > 1
        for i in range(6):
            redbeat_save(client, f"{old}rb:", f"rb-{i}", "tasks.add", {"__type__": "interval", "every": 30.0}, 1.0,
                         meta={"last_run_at": None, "total_run_count": 4})
        out = cli.ok("migrate", "--from", "celerybeat-redis", "--prefix", f"{old}meta:", "--delete-old", env=env)
        assert "migrated 12 entries" in out and "deleted 12 old keys" in out
        out = cli.ok("migrate", "--from", "redbeat", "--prefix", f"{old}rb:", "--delete-old", env=env)
        assert "migrated 6 entries" in out and "deleted 6 old keys" in out
        assert api.count() == 7 + 12 + 6 and api.get("rb-3").total_run_count == 4
        assert all(api.sharded.stores[shard_for(f"old-{i}", K)].exists(f"old-{i}") for i in range(12))
        assert not list(client.scan_iter(match=f"{old}meta:*")) and not client.exists(f"{old}rb:rb-0")
        # Resharding on the cluster, from the command line.
        assert "shards 3 -> 2" in cli.ok("reshard", "--to", "2")
        assert ScheduleStore.from_url(redis_cluster.url, prefix, shards=2).count() == 25
    finally:
        for pattern in (f"{{{tag}*", f"{old}*"):
            for key in client.scan_iter(match=pattern):
                client.delete(key)
        client.close()


def test_a_calendar_removal_finds_the_entries_that_name_it_in_every_shard(api: ScheduleStore, client: redis.Redis,
                                                                          tag: str) -> None:
    api.set_calendar("holidays", dates=["2026-12-25"])
    names = [f"e{n}" for n in range(12)]
    api.bulk_add({name: dict(every(60, name), exclude=["holidays"]) for name in names})
    assert len({shard for name in names for shard in where(client, tag, name)}) == K
    users, total = api.calendar_users("holidays", 100)
    assert sorted(users) == sorted(names) and total == 12
    with pytest.raises(CalendarInUse, match="and 7 more"):
        api.remove_calendar("holidays")
