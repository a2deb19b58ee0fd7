"""Data safety: beat never deletes or rewrites a user's dynamic entry; a changed beat_schedule removes only statics beat made."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis

from celerybeatredis.storage.redis_store import RedisStore
from celerybeatredis.storage.scripts import script_source

from .support.processes import CeleryProcess, drain_queue, wait_until, write_app

LUA_DIR = Path(__file__).resolve().parent.parent / "celerybeatredis" / "storage" / "lua"
#: The modules beat runs (celerybeatredis/schedulers.py and what it is made of).
#: What beat runs: the scheduler and the wings it wires (every module of them).
BEAT_MODULES = ("schedulers.py", "beat", "decisions", "delivery", "policies", "observe")


def test_only_remove_lua_deletes_definitions() -> None:
    """The one script that deletes from {T}:schedule is remove.lua (statics that left beat_schedule, or a user's request)."""
    writes = {}
    for path in sorted(LUA_DIR.glob("*.lua")):
        header, body = path.read_text().split("]]", 1)
        body = script_source(path.stem).split("]]", 1)[1]  # with its shared helpers
        slot = re.search(r"KEYS\[(\d+)\]\s+\{T\}:schedule", header)
        if slot is None:
            continue
        key = f"KEYS[{slot.group(1)}]"
        names = {key}
        for lhs, rhs in re.findall(r"local ([\w, ]+?)\s*=\s*([^\n]+)", body):  # local a, b = KEYS[1], KEYS[2]
            names |= {n.strip() for n, v in zip(lhs.split(","), rhs.split(",")) if v.strip() == key}
        found = [cmd for name in sorted(names)
                 for cmd in re.findall(rf"'(\w+)',\s*{re.escape(name)}(?![\w\[])", body)
                 if cmd in ("HDEL", "DEL", "UNLINK", "HSET", "HMSET", "HSETNX", "RENAME")]
        if found:
            writes[path.stem] = found
    # upsert and replace write only what their caller asks (replace is the API's compare-and-set edit);
    # adopt (resharding) only stores a definition that is not there yet, the one it moves from another shard
    assert writes == {"adopt": ["HSETNX"], "remove": ["HDEL"], "replace": ["HSET"], "upsert": ["HSET"]}
    package = Path(__file__).resolve().parent.parent / "celerybeatredis"
    files = [path for part in BEAT_MODULES for path in ([package / part] if part.endswith(".py")
                                                         else sorted((package / part).glob("*.py")))]
    assert len(files) > 30
    for path in files:
        assert "replace_raw" not in path.read_text(), path  # beat itself never edits a definition


@pytest.mark.e2e
@pytest.mark.slow
def test_beat_never_deletes_dynamic_entries_and_a_changed_beat_schedule_removes_only_its_statics(
        tmp_path: Path, redis_url: str, prefix: str, store: RedisStore) -> None:
    now = datetime.now(timezone.utc)
    every = {"interval": {"every": 1, "period": "seconds"}}
    dynamic = {
        "dyn-interval": {"task": "tasks.dyn", **every},
        "dyn-broken-json": '{"task": "tasks.dyn", "interval": ',
        "dyn-bad-period": {"task": "tasks.dyn", "interval": {"every": 1, "period": "fortnights"}},
        "dyn-disabled": {"task": "tasks.dyn", "enabled": False, **every},
        "dyn-one-off": {"task": "tasks.dyn", "one_off": True, **every},
        "dyn-max-runs": {"task": "tasks.dyn", "max_run_count": 2, **every},
        "dyn-expired": {"task": "tasks.dyn", "expires": (now - timedelta(days=1)).isoformat(), **every},
        "dyn-clocked-past": {"task": "tasks.dyn", "clocked": (now - timedelta(minutes=5)).isoformat()},
        "dyn-later": {"task": "tasks.dyn", "start_time": (now + timedelta(days=30)).isoformat(), **every},
        "dyn-cron": {"task": "tasks.dyn", "crontab": {"minute": "0", "hour": "4"}},
        "static-b": {"task": "tasks.user-owned", **every},  # a user's entry with a beat_schedule name
    }
    raw = {name: doc if isinstance(doc, str) else json.dumps(doc) for name, doc in dynamic.items()}
    for name, text in raw.items():
        store.client.hset(store.keys.schedule, name, text)  # bare HSET, as with redis-cli; the reconciler finds them
    queue = f"q-{prefix}"

    def run_beat(beat_schedule: str) -> str:
        write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix,
                  extra=f"app.conf.task_default_queue = {queue!r}\napp.conf.beat_schedule = {beat_schedule}\n")
        beat = CeleryProcess.beat(tmp_path)
        try:
            wait_until(lambda: beat.alive() and int(store.client.hget(store.keys.total_run_count, "dyn-interval") or 0) >= 2
                       and store.client.hlen(store.keys.invalid) >= 2, timeout=60, what="beat to work through the entries")
            store.run_now_names(["dyn-disabled", "dyn-cron"])  # explicit requests, run once
            wait_until(lambda: store.due_score("dyn-cron") not in (None, -1.0), timeout=10, what="the run-now request")
        finally:
            code = beat.stop()
        assert code == 0, beat.output()
        return beat.output()

    first = run_beat('{"static-a": {"task": "tasks.a", "schedule": 1.0}, "static-b": {"task": "tasks.b", "schedule": 1.0},'
                     ' "static-c": {"task": "tasks.c", "schedule": 1.0}}')
    assert "not synced: a dynamic entry of that name exists" in first
    assert store.client.smembers(store.keys.statics) == {b"static-a", b"static-c"}
    run_state_before = store.client.hgetall(store.keys.total_run_count)

    second = run_beat('{"static-a": {"task": "tasks.a2", "schedule": 2.0}, "static-d": {"task": "tasks.d", "schedule": 1.0}}')
    assert "1 removed" in second
    stored = {k.decode(): v.decode() for k, v in store.client.hgetall(store.keys.schedule).items()}
    for name, text in raw.items():
        assert stored[name] == text, name  # never deleted, never rewritten
        assert store.due_score(name) is not None, name  # still indexed
    assert "static-c" not in stored and store.client.hget(store.keys.total_run_count, "static-c") is None
    assert json.loads(stored["static-a"])["task"] == "tasks.a2" and "static-d" in stored
    assert store.client.smembers(store.keys.statics) == {b"static-a", b"static-d"}
    after = store.client.hgetall(store.keys.total_run_count)
    assert int(after[b"static-a"]) >= int(run_state_before[b"static-a"])  # run state kept across the change
    assert int(after[b"dyn-max-runs"]) == 2 and int(after[b"dyn-one-off"]) == 1
    broker = redis.Redis.from_url(f"{redis_url}/1")
    tasks = {m.task for m in drain_queue(broker, queue)}
    broker.close()
    assert "tasks.user-owned" in tasks and "tasks.b" not in tasks
