"""Labels through the command line: add and edit them, list by them, show them, carry them through export and import."""

from __future__ import annotations

import json
from pathlib import Path

from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli


def labels(api: ScheduleStore, name: str) -> dict[str, str] | None:
    raw = api.sharded.get_raw(name)
    assert raw is not None
    return json.loads(raw).get("labels")


def test_add_and_edit_set_and_drop_labels(cli: Cli, api: ScheduleStore) -> None:
    cli.ok("add", "bill", "--task", "tasks.bill", "--every", "60", "--label", "team=billing", "--label", "env=prod")
    assert labels(api, "bill") == {"team": "billing", "env": "prod"}
    cli.ok("edit", "bill", "--label", "env=dev", "--label", "zone=eu")
    assert labels(api, "bill") == {"team": "billing", "env": "dev", "zone": "eu"}
    cli.ok("edit", "bill", "--unlabel", "zone", "--unlabel", "env")
    assert labels(api, "bill") == {"team": "billing"}
    cli.ok("edit", "bill", "--unlabel", "team")  # the last one dropped: no member left
    assert labels(api, "bill") is None
    assert api.get("bill").definition["task"] == "tasks.bill"


def test_bad_labels_are_one_line_naming_the_flag_or_field(cli: Cli, api: ScheduleStore) -> None:
    assert "--label: 'team' is not KEY=VALUE" in cli.fails("add", "x", "--task", "t.x", "--every", "60", "--label", "team")
    assert "'-t' is not a label key" in cli.fails("add", "x", "--task", "t.x", "--every", "60", "--label", "-t=1")
    err = cli.fails("add", "x", "--task", "t.x", "--every", "60", "--label", f"team={'v' * 257}")
    assert "entry 'x'" in err and "labels.team" in err and "at most 256" in err
    err = cli.fails("add", "x", "--json", '{"task": "t.x", "interval": {"every": 60}, "labels": {"team": 1}}')
    assert "labels.team" in err and "must be a string" in err
    assert not api.exists("x")


def test_list_filters_by_every_label_given_and_show_shows_them(cli: Cli, api: ScheduleStore) -> None:
    every = {"interval": {"every": 60, "period": "seconds"}}
    api.bulk_add({
        "a": {"task": "t.a", **every, "labels": {"team": "billing", "env": "prod"}},
        "b": {"task": "t.b", **every, "labels": {"team": "billing", "env": "dev"}},
        "c": {"task": "t.c", **every, "labels": {"team": "search"}},
        "d": {"task": "t.d", **every},
    })
    listed = cli.ok("list", "--label", "team=billing", "--json")
    assert sorted(json.loads(line)["name"] for line in listed.splitlines()) == ["a", "b"]
    listed = cli.ok("list", "--label", "team=billing", "--label", "env=prod", "--json")
    assert [json.loads(line)["name"] for line in listed.splitlines()] == ["a"]
    assert cli.ok("list", "--label", "team=none", "--json") == ""
    assert "Invalid value for --label: 'team' is not KEY=VALUE" in cli.fails("list", "--label", "team", code=2)
    shown = cli.ok("show", "a")
    assert any(line.split() == ["labels:", "env=prod,", "team=billing"] for line in shown.splitlines()), shown
    assert [e.name for e in api.iter_entries(labels={"team": "search"})] == ["c"]


def test_labels_travel_through_export_and_import(cli: Cli, api: ScheduleStore, tmp_path: Path) -> None:
    cli.ok("add", "bill", "--task", "tasks.bill", "--every", "60", "--label", "team=billing")
    exported = tmp_path / "schedule.jsonl"
    cli.ok("export", str(exported))
    api.remove("bill")
    cli.ok("import", str(exported))
    assert labels(api, "bill") == {"team": "billing"}
