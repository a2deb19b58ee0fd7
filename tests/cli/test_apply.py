"""``celerybeatredis apply``: a file of export lines made an owner's whole set of entries, as a subprocess would."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli, snapshot


def line(name: str, task: str, every: int = 60, **members: object) -> str:
    return json.dumps({"name": name, "definition": {"task": task, "interval": {"every": every, "period": "seconds"},
                                                    **members}})


def write(path: Path, *lines: str) -> str:
    path.write_text("".join(f"{text}\n" for text in lines), encoding="utf-8")
    return str(path)


def test_apply_then_dry_run_then_apply_again(cli: Cli, api: ScheduleStore, tmp_path: Path) -> None:
    api.add("hand", "t.hand", 60)
    first = write(tmp_path / "v1.jsonl", line("a", "t.a"), line("b", "t.b", labels={"team": "billing"}))
    out = cli.ok("apply", first, "--owner", "repo")
    assert out.splitlines() == ["+ a", "+ b", "owner 'repo': 2 added, 0 changed, 0 removed, 0 unchanged"]
    assert json.loads(api.sharded.get_raw("b") or b"")["labels"] == {"owner": "repo", "team": "billing"}
    listed = cli.ok("list", "--label", "owner=repo", "--json")
    assert sorted(json.loads(row)["name"] for row in listed.splitlines()) == ["a", "b"]

    second = write(tmp_path / "v2.jsonl", line("a", "t.a", 120), line("c", "t.c"))
    out = cli.ok("apply", second, "--owner", "repo", "--dry-run")
    assert out.splitlines() == ["+ c", "~ a: interval", "- b",
                                "dry run for owner 'repo': 1 added, 1 changed, 1 removed, 0 unchanged; nothing written"]
    assert api.exists("b") and not api.exists("c")
    assert json.loads(cli.ok("apply", second, "--owner", "repo", "--json"))["removed"] == ["b"]
    assert not api.exists("b") and api.exists("c") and api.exists("hand")
    assert cli.ok("apply", second, "--owner", "repo").splitlines()[-1].endswith("0 removed, 2 unchanged")


def test_exported_lines_apply_and_a_bad_line_applies_nothing(cli: Cli, api: ScheduleStore, client: redis.Redis,
                                                             tag: str, tmp_path: Path) -> None:
    cli.ok("add", "x", "--task", "t.x", "--every", "60", "--label", "team=ops")
    exported = tmp_path / "export.jsonl"
    cli.ok("export", str(exported))
    cli.ok("apply", str(exported), "--owner", "ops")  # the entry is taken over: it had no owner
    assert json.loads(api.sharded.get_raw("x") or b"")["labels"] == {"owner": "ops", "team": "ops"}
    before = snapshot(client, tag)
    bad = write(tmp_path / "bad.jsonl", line("y", "t.y"), line("z", "t.z", labels={"team": ["a"]}), "{")
    err = cli.fails("apply", bad, "--owner", "ops")
    assert "line 2: entry 'z': field 'labels.team': must be a string, not an array" in err
    assert "(and 1 more bad lines); nothing applied" in err
    calendar = write(tmp_path / "cal.jsonl", json.dumps({"calendar": "h", "definition": {"dates": ["2030-01-01"]}}))
    assert "apply writes entries only" in cli.fails("apply", calendar, "--owner", "ops")
    assert snapshot(client, tag) == before
    cli.ok("apply", write(tmp_path / "other.jsonl", line("x2", "t.x2")), "--owner", "other")
    theirs = write(tmp_path / "theirs.jsonl", line("x2", "t.x2"))
    assert "entry 'x2': field 'labels.owner': the entry belongs to owner 'other'" in cli.fails(
        "apply", theirs, "--owner", "ops")
    assert "Missing option '--owner'" in cli.fails("apply", theirs, code=2)
    assert api.exists("x") and api.exists("x2") and not api.exists("y")
