"""The one strict model: unknown members, crontabs that never fire, and names, refused in one line naming the member."""

from __future__ import annotations

import pytest
from celery import Celery

from celerybeatredis.definitions.codec import Codec, load_document
from celerybeatredis.definitions.kinds import KINDS
from celerybeatredis.definitions.names import NAME_LIMIT, check_name, name_problem, shown_name
from celerybeatredis.exceptions import InvalidDefinition

from ..support.helpers import SEED


@pytest.fixture
def codec() -> Codec:
    return Codec(Celery("strict", set_as_current=False))


def refusal(codec: Codec, doc: dict) -> InvalidDefinition:
    with pytest.raises(InvalidDefinition) as caught:
        codec.from_document(doc)
    return caught.value


@pytest.mark.parametrize(("doc", "field", "hint"), [
    ({"task": "t", "interval": {"every": 5}, "enabeld": False}, "enabeld", "did you mean 'enabled'?"),
    ({"task": "t", "intreval": {"every": 5}}, "intreval", "did you mean 'interval'?"),
    ({"tsak": "t", "interval": {"every": 5}}, "tsak", "did you mean 'task'?"),
    ({"task": "t", "interval": {"every": 5}, "max_runs": 3}, "max_runs", "did you mean 'max_run_count'?"),
    ({"task": "t", "interval": {"every": 5, "perod": "minutes"}}, "interval.perod", "did you mean 'period'?"),
    ({"task": "t", "crontab": {"minutes": "5"}}, "crontab.minutes", "did you mean 'minute'?"),
    ({"task": "t", "solar": {"event": "sunset", "lattitude": 1, "longitude": 2}}, "solar.lattitude", "did you mean 'latitude'?"),
    ({"task": "t", "clocked": {"when": "2030-01-01T00:00:00Z"}}, "clocked.when", "known: at"),
])
def test_a_misspelled_member_is_refused_naming_the_nearest_known_one(codec: Codec, doc: dict, field: str, hint: str) -> None:
    error = refusal(codec, doc)
    assert error.field == field and "unknown member" in error.message and hint in error.message


def test_members_of_the_users_own_and_the_seeds_name_are_kept(codec: Codec) -> None:
    codec.from_document({"task": "t", "interval": {"every": 5}, "_owner": "ops", "_meta": {"a": 1}, "name": "old"})
    for text in SEED.values():  # the old README's documents, slips and all, read unchanged
        codec.from_document(load_document(text))


@pytest.mark.parametrize(("fields", "field"), [
    ({"minute": "0", "hour": "3", "day_of_month": "31", "month_of_year": "2"}, "crontab.day_of_month"),
    ({"minute": "0", "hour": "3", "day_of_month": "30", "month_of_year": "2"}, "crontab.day_of_month"),
    ({"minute": "0", "hour": "3", "day_of_month": "31", "month_of_year": "4,6,9,11"}, "crontab.day_of_month"),
    ({"minute": "*/0"}, "crontab.minute"),
    ({"minute": "61"}, "crontab.minute"),
])
def test_a_crontab_that_cannot_fire_is_refused_by_field_not_a_plain_value_error(codec: Codec, fields: dict, field: str) -> None:
    error = refusal(codec, {"task": "t", "crontab": fields})
    assert error.field == field, error.reason
    codec.from_document({"task": "t", "crontab": {"minute": "0", "day_of_month": "29", "month_of_year": "2"}})  # leap years


@pytest.mark.parametrize("spec", [{"minute": "*/0"}, {"minute": "61"}, {"hour": "25", "minute": "0"},
                                  {"minute": "0", "hour": "3", "day_of_month": "31", "month_of_year": "2"}])
def test_an_invalid_crontab_is_not_described_as_if_it_ran(spec: dict) -> None:
    assert KINDS["crontab"].describe(spec) == "invalid crontab"
    assert KINDS["interval"].describe({"every": 10, "period": "fortnights"}) == "invalid interval"
    assert KINDS["crontab"].describe({"minute": "*/5"}) == "every 5 minutes"


@pytest.mark.parametrize("name", ["a\nforged line", "tab\there", "nul\x00", "right\u202eleft", "zero\u200bwidth",
                                  "nbsp\u00a0", " lead", "trail ", "../../etc/passwd", "a/./b", "x" * (NAME_LIMIT + 1), ""])
def test_names_with_control_direction_or_path_tricks_are_refused(name: str) -> None:
    assert name_problem(name) is not None
    with pytest.raises(InvalidDefinition) as caught:
        check_name(name)
    assert caught.value.field == "name" and "\n" not in caught.value.reason


@pytest.mark.parametrize("name", ["nightly-report", "reports/daily", "büro täglich", "漢字", "a:b.c_d", "x" * NAME_LIMIT])
def test_ordinary_names_pass(name: str) -> None:
    assert check_name(name) == name and shown_name(name) == name


def test_a_stored_name_is_shown_escaped_on_one_line() -> None:
    assert shown_name("bad\nname") == "bad\\nname"
    assert shown_name("x\u202ey") == "x\\u202ey"
    assert "\n" not in shown_name("a\r\n\x00b")


def test_a_schedule_class_refusing_its_spec_is_one_line_naming_the_kind(codec: Codec) -> None:
    """Whatever a kind's own checks let through and its schedule class then refuses with a plain ValueError (as Celery's
    crontab does with the 31st of February) reads as an invalid definition, not a crash of the reader."""
    from celerybeatredis.definitions.registry import ScheduleKind, register

    def build(spec: object, relative: bool, nowfun: object, app: Celery) -> object:
        raise ValueError("no such\nday")

    register(ScheduleKind(name="picky", build=build, from_celery=lambda value: None, describe=str))  # type: ignore[arg-type]
    try:
        error = refusal(codec, {"task": "t", "picky": {"on": "never"}})
    finally:
        KINDS.pop("picky")
    assert (error.field, error.message) == ("picky", "cannot be used: no such day")
