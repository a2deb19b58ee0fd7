"""``ScheduleStore.apply``: an owner's entries made exactly those given, nobody else's touched, all or nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from celerybeatredis.exceptions import InvalidDefinition
from celerybeatredis.store import ScheduleStore

from ..support.cli import snapshot

EVERY = {"interval": {"every": 60, "period": "seconds"}}


def every(task: str, **members: Any) -> dict[str, Any]:
    return {"task": task, **EVERY, **members}


def stored(api: ScheduleStore, name: str) -> dict[str, Any]:
    raw = api.sharded.get_raw(name)
    assert raw is not None, name
    return json.loads(raw)


def test_apply_upserts_labels_and_removes_what_the_owner_no_longer_lists(api: ScheduleStore) -> None:
    first = api.apply({"a": every("t.a"), "b": every("t.b", labels={"team": "x"})}, "repo-1")
    assert (first.added, first.changed, first.removed, first.unchanged) == (["a", "b"], [], [], [])
    assert stored(api, "b")["labels"] == {"team": "x", "owner": "repo-1"}
    api.add("hand", "t.hand", 60)  # no owner: apply never removes it
    again = api.apply({"a": every("t.a"), "c": every("t.c")}, "repo-1")
    assert (again.added, again.changed, again.removed, again.unchanged) == (["c"], [], ["b"], ["a"])
    assert not api.exists("b") and api.exists("hand")
    edited = api.apply({"a": every("t.a2", args=[1]), "c": every("t.c")}, "repo-1")
    assert edited.changed == ["a"] and edited.members == {"a": ["args", "task"]}
    assert stored(api, "a")["task"] == "t.a2"
    taken = api.apply({"a": every("t.a2", args=[1]), "c": every("t.c"), "hand": stored(api, "hand")}, "repo-1")
    assert taken.changed == ["hand"] and taken.members == {"hand": ["labels"]}  # no owner before: taken over
    assert stored(api, "hand")["labels"] == {"owner": "repo-1"} and stored(api, "hand")["task"] == "t.hand"


def test_a_dry_run_tells_the_diff_and_writes_nothing(api: ScheduleStore, client: redis.Redis, tag: str) -> None:
    api.apply({"a": every("t.a"), "b": every("t.b")}, "repo-1")
    before = snapshot(client, tag)
    plan = api.apply({"a": every("t.a"), "b": every("t.b", args=[2]), "c": every("t.c")}, "repo-1", dry_run=True)
    assert plan.to_json() == {"added": ["c"], "changed": ["b"], "removed": [], "unchanged": ["a"],
                              "members": {"b": ["args"]}, "dry_run": True}
    assert api.apply({}, "repo-1", dry_run=True).removed == ["a", "b"]
    assert snapshot(client, tag) == before


def test_other_owners_and_beat_schedule_entries_are_never_touched(api: ScheduleStore, client: redis.Redis,
                                                                 tag: str) -> None:
    api.apply({"theirs": every("t.theirs")}, "repo-2")
    api.sharded.put_raw({"static": json.dumps(every("t.static", labels={"owner": "repo-1"}))}, static=True)
    api.apply({"mine": every("t.mine")}, "repo-1")
    assert api.apply({}, "repo-1").removed == ["mine"]  # the static entry with the owner's label stays
    assert api.exists("theirs") and api.exists("static")
    before = snapshot(client, tag)
    with pytest.raises(InvalidDefinition, match=r"entry 'theirs': field 'labels.owner': the entry belongs to owner 'repo-2'"):
        api.apply({"new": every("t.new"), "theirs": every("t.theirs")}, "repo-1")
    with pytest.raises(InvalidDefinition, match=r"entry 'static'.*beat_schedule entry"):
        api.apply({"new": every("t.new"), "static": every("t.static")}, "repo-1")
    assert snapshot(client, tag) == before


def test_one_bad_entry_applies_nothing(api: ScheduleStore, client: redis.Redis, tag: str) -> None:
    api.apply({"old": every("t.old")}, "repo-1")
    before = snapshot(client, tag)
    entries = [("new", every("t.new")), ("bad", every("t.bad", labels={"team": 1}))]
    with pytest.raises(InvalidDefinition, match=r"entry 'bad': field 'labels.team'"):
        api.apply(entries, "repo-1")
    with pytest.raises(InvalidDefinition, match=r"entry 'new'.*given twice"):
        api.apply([("new", every("t.new")), ("new", every("t.new"))], "repo-1")
    with pytest.raises(InvalidDefinition, match=r"labels.owner.*'repo-2', not the owner applying it"):
        api.apply([("new", every("t.new", labels={"owner": "repo-2"}))], "repo-1")
    with pytest.raises(InvalidDefinition, match="the owner must be a non-empty string"):
        api.apply([], "")
    assert snapshot(client, tag) == before


def test_apply_covers_every_shard(client: redis.Redis, prefix: str, app: Any) -> None:
    store = ScheduleStore(client, prefix, app, shards=3)
    try:
        names = [f"s{i:03d}" for i in range(60)]
        assert len(store.apply({name: every("t.s") for name in names}, "repo-1").added) == 60
        kept = names[:10]
        result = store.apply({name: every("t.s") for name in kept}, "repo-1")
        assert result.removed == names[10:] and result.unchanged == kept
        assert sorted(e.name for e in store.iter_entries(labels={"owner": "repo-1"})) == kept
    finally:
        store.drop()
