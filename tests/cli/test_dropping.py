"""``drop``: one schedule's keys listed, confirmed and deleted; nothing of another schedule touched."""

from __future__ import annotations

import json
from datetime import timedelta

import redis
from celery import Celery

from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli, snapshot
from ..support.helpers import tick

EVERY_5S = {"task": "tasks.a", "interval": {"every": 5, "period": "seconds"}}


def fill(api: ScheduleStore, app: Celery) -> None:
    api.add("a", EVERY_5S)
    api.add("b", "tasks.b", timedelta(seconds=10))
    api.set_calendar("holidays", dates=["2030-12-25"])
    api.sharded.put_raw({"s": json.dumps(EVERY_5S)}, static=True)
    tick(app)


def test_drop_lists_the_keys_asks_and_deletes_only_this_schedule(cli: Cli, api: ScheduleStore, app: Celery,
                                                                 client: redis.Redis, tag: str) -> None:
    fill(api, app)
    other = ScheduleStore.from_url(cli.url, f"other-{tag}:")
    other.add("keep", EVERY_5S)
    kept = snapshot(client, f"other-{tag}")
    present = sorted(key.decode() for key in client.scan_iter(match=f"{{{tag}}}:*"))
    assert f"{{{tag}}}:schedule" in present and f"{{{tag}}}:calendars" in present

    refused = cli.run("drop", input="n\n", tty=True)
    assert refused.returncode == 1 and "Aborted" in refused.stderr
    assert sorted(key.decode() for key in client.scan_iter(match=f"{{{tag}}}:*")) == present
    listed = [line.strip() for line in refused.stdout.splitlines() if line.startswith("  ")]
    assert listed == [key for key in api.sharded.keys.all() if key in present]

    done = cli.run("drop", input="y\n", tty=True)
    assert done.returncode == 0, done.stderr
    assert f"dropped {len(present)} keys of {{{tag}}} at {cli.url}" in done.stdout
    assert list(client.scan_iter(match=f"{{{tag}}}:*")) == []
    assert snapshot(client, f"other-{tag}") == kept
    assert "nothing to drop: no keys of" in cli.ok("drop", "--yes")


def test_drop_without_a_terminal_refuses_unless_told_yes(cli: Cli, api: ScheduleStore, client: redis.Redis,
                                                        app: Celery, tag: str) -> None:
    fill(api, app)
    before = snapshot(client, tag)
    error = cli.fails("drop")
    assert error.startswith("Error: drop: no terminal to confirm on; pass --yes to drop the ")
    assert snapshot(client, tag) == before
    out = cli.ok("drop", "--yes")
    assert out.splitlines()[0] == f"the {len(before)} keys of {{{tag}}} at {cli.url}:"
    assert snapshot(client, tag) == {}


def test_drop_of_a_sharded_schedule_takes_every_shard_and_the_layout(cli: Cli, api: ScheduleStore, client: redis.Redis,
                                                                     tag: str) -> None:
    sharded = ScheduleStore.from_url(cli.url, cli.prefix, shards=3)
    for i in range(12):
        sharded.add(f"e{i}", EVERY_5S)
    client.hset(f"{{{tag}}}:meta", "shards", 3)
    assert any(client.scan_iter(match=f"{{{tag}:2}}:*"))
    out = cli.ok("drop", "--yes", env={"CELERYBEATREDIS_SHARDS": "3"})
    assert f"of {{{tag}:0}} .. {{{tag}:2}} at {cli.url}" in out
    assert [key for key in client.scan_iter(match=f"{{{tag}*")] == []
