"""Run-state values read one way: ``last_run_at`` as an aware time or nothing, run counts as non-negative integers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from celerybeatredis.definitions.fields import check_run_count
from celerybeatredis.exceptions import InvalidDefinition
from celerybeatredis.storage.wire import parse_last_run_at

NOON = datetime(2026, 3, 2, 12, 0, 0, tzinfo=timezone.utc)


@pytest.mark.parametrize(("value", "expected"), [
    ("2026-03-02T12:00:00+00:00", NOON),
    (b"2026-03-02T12:00:00+00:00", NOON),
    ("2026-03-02T12:00:00Z", NOON),
    ("2026-03-02T12:00:00", NOON),  # no zone: UTC, as beat writes it
    ("2026-03-02T07:00:00-05:00", NOON),
    (None, None), ("", None), (b"", None), ("yesterday", None), (b"\xff\xfe", None), ("2026-13-40T00:00:00", None),
])
def test_a_stored_last_run_reads_as_an_aware_time_or_none(value: str | bytes | None, expected: datetime | None) -> None:
    parsed = parse_last_run_at(value)
    assert parsed == expected
    assert parsed is None or parsed.tzinfo is not None


def test_a_last_run_keeps_the_zone_it_was_written_in() -> None:
    parsed = parse_last_run_at("2026-03-02T07:00:00-05:00")
    assert parsed is not None and parsed.utcoffset() == timedelta(hours=-5)  # crontab reads local fields


@pytest.mark.parametrize("value", [None, 0, 1, 2**63])
def test_a_run_count_is_a_non_negative_integer_or_absent(value: int | None) -> None:
    assert check_run_count(value) == value


@pytest.mark.parametrize("value", [-1, True, False, 1.0, "3", [1]])
def test_anything_else_is_refused_naming_the_field_and_entry(value: object) -> None:
    with pytest.raises(InvalidDefinition) as refused:
        check_run_count(value, "meta.total_run_count", "e")
    assert refused.value.reason == "entry 'e': field 'meta.total_run_count': must be a non-negative integer"
    with pytest.raises(InvalidDefinition, match=r"^field 'total_run_count': must be a non-negative integer$"):
        check_run_count(value)
