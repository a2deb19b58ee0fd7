"""The registry of schedule kinds and the table of definition fields drive parsing, the API, the CLI and show."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import timedelta
from typing import Any

import pytest
from celery import Celery
from celery.schedules import BaseSchedule, schedule
from click.testing import CliRunner

from celerybeatredis.cli import main
from celerybeatredis.definitions.codec import Codec, schedule_to_json
from celerybeatredis.definitions.documents import build_definition
from celerybeatredis.definitions.fields import FIELDS as FIELD_TABLE
from celerybeatredis.definitions.fields import OPTIONAL_MEMBERS
from celerybeatredis.definitions.fields import USER_FIELDS as FIELDS
from celerybeatredis.definitions.kinds import KINDS, Flag, NowFun, ScheduleKind, register
from celerybeatredis.exceptions import InvalidDefinition
from celerybeatredis.managing.display import describe_schedule


class fortnightly(schedule):
    """A kind of this test's own: every two weeks."""

    def __init__(self, nowfun: NowFun | None = None, app: Celery | None = None) -> None:
        super().__init__(timedelta(weeks=2), nowfun=nowfun, app=app)


def _build(spec: Any, relative: bool, nowfun: NowFun | None, app: Celery) -> BaseSchedule:
    if spec is not True:
        raise InvalidDefinition("fortnightly", "must be true")
    return fortnightly(nowfun=nowfun, app=app)


@pytest.fixture
def with_fortnightly() -> Iterator[ScheduleKind]:
    kind = register(ScheduleKind(
        name="fortnightly", build=_build, describe=lambda spec: "every other week",
        from_celery=lambda value: {"fortnightly": True} if isinstance(value, fortnightly) else None,
        flags=(Flag("fortnightly", "Every other week."),), from_flags=lambda flags, current: True,
    ), before="interval")  # a schedule subclass: interval would take it as a plain interval
    yield kind
    KINDS.pop("fortnightly")


def test_a_registered_kind_is_parsed_written_and_described_everywhere(with_fortnightly: ScheduleKind) -> None:
    codec = Codec(Celery("k", set_as_current=False))
    parsed = codec.from_document({"task": "tasks.report", "fortnightly": True})
    assert parsed.kind == "fortnightly" and isinstance(parsed.schedule, fortnightly) and not parsed.runs_once
    assert schedule_to_json(fortnightly()) == {"fortnightly": True}
    assert build_definition("tasks.report", fortnightly()) == {"task": "tasks.report", "enabled": True, "fortnightly": True}
    assert describe_schedule({"task": "t", "fortnightly": True, "max_run_count": 3}) == "every other week, at most 3 runs"
    with pytest.raises(InvalidDefinition, match="field 'fortnightly': must be true"):
        codec.from_document({"task": "t", "fortnightly": 1})
    with pytest.raises(InvalidDefinition, match="exactly one of fortnightly, interval, crontab, solar, clocked"):
        codec.from_document({"task": "t", "fortnightly": True, "interval": {"every": 5}})


def test_an_unknown_schedule_member_is_no_kind_at_all() -> None:
    """It used to become a one-time 'clocked' schedule when it slipped past the kind check."""
    codec = Codec(Celery("k", set_as_current=False))
    with pytest.raises(InvalidDefinition, match=r"exactly one of interval, crontab, solar, clocked, rrule is required \(found none\)"):
        codec.from_document({"task": "t", "fortnightly": True})
    assert describe_schedule({"task": "t", "fortnightly": True}) == "?"


def test_each_kind_says_whether_it_runs_once() -> None:
    assert {name: kind.runs_once for name, kind in KINDS.items()} == {
        "interval": False, "crontab": False, "solar": False, "clocked": True, "rrule": False}


def test_every_field_of_the_table_is_read_by_beat_taken_by_the_api_and_has_its_flag() -> None:
    help_text = CliRunner().invoke(main, ["add", "--help"], terminal_width=200).output
    for row in FIELD_TABLE:
        assert row.name in OPTIONAL_MEMBERS
        assert (row.name in FIELDS) is row.user
        if row.flag:
            assert row.flag in help_text, row.flag
    codec = Codec(Celery("k", set_as_current=False))
    doc = {"task": "t", "interval": {"every": 5}, "max_run_count": 0}
    with pytest.raises(InvalidDefinition, match="field 'max_run_count'"):
        codec.from_document(doc)


def test_a_document_with_only_common_members_reads_as_the_long_way_does() -> None:
    codec = Codec(Celery("k", set_as_current=False))
    short = {"task": "t", "interval": {"every": 5}, "args": [1], "kwargs": {"a": 1}, "enabled": False}
    long: Mapping[str, Any] = {**short, "description": ""}
    assert codec.from_document(short)[:7] == codec.from_document(long)[:7]
