"""The codec: every schedule kind, round trips, the seed's documents, bad documents."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from celery import Celery
from celery.schedules import crontab, schedule, solar
from hypothesis import given, settings
from hypothesis import strategies as st

from celerybeatredis.definitions.codec import (
    Codec,
    _schedule_key,
    digest,
    dump_document,
    entry_to_document,
    load_document,
    schedule_to_json,
)
from celerybeatredis.definitions.kinds import ZonedCrontab, clocked, interval_to_json
from celerybeatredis.exceptions import InvalidDefinition

from ..support.helpers import SEED, SEED_CRONTAB, SEED_INTERVAL, SEED_INTERVAL_30S

APP = Celery("fast", set_as_current=False)


@pytest.fixture
def codec() -> Codec:
    app = Celery("codec", set_as_current=False)
    app.conf.timezone = "UTC"
    return Codec(app)


def test_the_seed_fixture_keeps_the_old_readmes_slips_as_printed() -> None:
    """The documents stay as the old README printed them: a tidied copy would test nothing."""
    assert set(SEED) == {"interval", "interval-30s", "crontab"}
    for name, doc in SEED.items():
        assert doc.lstrip().startswith("{") and doc.rstrip().endswith("}"), name
        assert '"__type__", "datetime",' in doc, name  # a comma where a colon belongs
        with pytest.raises(json.JSONDecodeError):
            json.loads(doc)  # not strict JSON: the codec's slip reader is what reads it
    assert 'ObjectId("53a91dfd455d1c1a4345fb59")' in SEED_CRONTAB
    assert '"period" : "seconds",\n        }' in SEED_INTERVAL_30S  # trailing comma
    assert '}\n        "total_run_count": 5,' in SEED_INTERVAL_30S  # missing comma


def test_seed_interval_document(codec: Codec) -> None:
    d = codec.parse(SEED_INTERVAL)
    assert d.task == "task-name-goes-here"
    assert d.kind == "interval"
    assert isinstance(d.schedule, schedule) and d.schedule.run_every == timedelta(minutes=5)
    assert d.args == ("param1", "param2")
    assert d.kwargs == {"max_targets": 100}
    assert d.seed_total_run_count == 5
    assert d.seed_last_run_at == datetime(2014, 8, 30, 8, 10, 6, 667, tzinfo=timezone.utc)


def test_seed_crontab_document(codec: Codec) -> None:
    d = codec.parse(SEED_CRONTAB)
    assert d.kind == "crontab"
    assert isinstance(d.schedule, crontab)
    assert d.schedule.minute == {30} and d.schedule.hour == {7} and d.schedule.day_of_week == {1}
    assert d.args == ("16", "16") and d.seed_total_run_count == 1


def test_seed_second_interval_document(codec: Codec) -> None:
    d = codec.parse(SEED_INTERVAL_30S)
    assert d.schedule.run_every == timedelta(seconds=30)
    assert d.seed_total_run_count == 5


def test_valid_json_is_never_rewritten() -> None:
    text = '{"task": "t", "interval": {"every": 1, "period": "seconds"}, "args": ["a,\\n\\"b\\""]}'
    assert load_document(text)["args"] == ['a,\n"b"']


@pytest.mark.parametrize("period", ["days", "hours", "minutes", "seconds", "microseconds"])
def test_every_interval_period(codec: Codec, period: str) -> None:
    d = codec.from_document({"task": "t", "interval": {"every": 3, "period": period}})
    assert d.schedule.run_every == timedelta(**{period: 3})


def test_relative_interval(codec: Codec) -> None:
    d = codec.from_document({"task": "t", "interval": {"every": 1, "period": "hours"}, "relative": True})
    assert d.schedule.relative is True


def test_crontab_fields_as_numbers_and_timezone(codec: Codec) -> None:
    d = codec.from_document({"task": "t", "crontab": {"minute": 0, "hour": "*/2", "timezone": "Europe/Berlin"}})
    assert isinstance(d.schedule, ZonedCrontab)
    assert d.schedule.minute == {0} and d.schedule.hour == set(range(0, 24, 2))
    assert str(d.schedule.tz) == "Europe/Berlin"


def test_crontab_timezone_changes_when_it_runs() -> None:
    now = datetime(2026, 6, 1, 5, 0, tzinfo=timezone.utc)
    app = Celery("tz", set_as_current=False)
    codec = Codec(app, nowfun=lambda: now)
    berlin = codec.from_document({"task": "t", "crontab": {"minute": 0, "hour": 9, "timezone": "Europe/Berlin"}})
    utc = codec.from_document({"task": "t", "crontab": {"minute": 0, "hour": 9}})
    # 09:00 in Berlin (CEST, UTC+2) is 07:00 UTC: two hours from now; 09:00 UTC is four.
    assert berlin.schedule.is_due(now)[1] == pytest.approx(2 * 3600)
    assert utc.schedule.is_due(now)[1] == pytest.approx(4 * 3600)


def test_solar(codec: Codec) -> None:
    d = codec.from_document({"task": "t", "solar": {"event": "sunset", "latitude": 52.5, "longitude": 13.4}})
    assert isinstance(d.schedule, solar) and d.schedule.event == "sunset"


def test_clocked_bare_and_object(codec: Codec) -> None:
    a = codec.from_document({"task": "t", "clocked": "2030-01-01T10:00:00+01:00"})
    b = codec.from_document({"task": "t", "clocked": {"at": "2030-01-01T09:00:00Z"}})
    assert isinstance(a.schedule, clocked) and a.schedule.run_at == b.schedule.run_at
    assert a.runs_once


def test_optional_fields(codec: Codec) -> None:
    d = codec.from_document({
        "task": "t", "interval": {"every": 1}, "enabled": False, "one_off": True, "max_run_count": 3,
        "start_time": "2030-01-01T00:00:00", "expires": {"__type__": "datetime", "year": 2031, "month": 1, "day": 1},
        "description": "d", "options": {"queue": "q", "priority": 3, "expires": "2030-01-02T00:00:00+00:00", "headers": {"h": 1}},
    })
    assert not d.enabled and d.one_off and d.max_run_count == 3 and d.description == "d"
    assert d.start_time == datetime(2030, 1, 1, tzinfo=timezone.utc)
    assert d.expires == datetime(2031, 1, 1, tzinfo=timezone.utc)
    assert d.options["queue"] == "q" and d.options["expires"] == datetime(2030, 1, 2, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    ("doc", "field"),
    [
        ('{"task": "t", "interval": ', ""),
        ("[1, 2]", ""),
        ('{"interval": {"every": 1}}', "task"),
        ('{"task": "", "interval": {"every": 1}}', "task"),
        ('{"task": 7, "interval": {"every": 1}}', "task"),
        ('{"task": "t"}', "schedule"),
        ('{"task": "t", "interval": {"every": 1}, "crontab": {"minute": "*"}}', "schedule"),
        ('{"task": "t", "interval": {"every": 1, "period": "fortnights"}}', "interval.period"),
        ('{"task": "t", "interval": {"every": 0}}', "interval.every"),
        ('{"task": "t", "interval": {"every": "5"}}', "interval.every"),
        ('{"task": "t", "interval": 5}', "interval"),
        ('{"task": "t", "crontab": {"minute": "61"}}', "crontab.minute"),
        ('{"task": "t", "crontab": {"hour": [1, 2]}}', "crontab.hour"),
        ('{"task": "t", "crontab": {"minute": "0", "timezone": "Mars/Olympus"}}', "crontab.timezone"),
        ('{"task": "t", "solar": {"event": "teatime", "latitude": 0, "longitude": 0}}', "solar.event"),
        ('{"task": "t", "solar": {"event": "dawn_civil", "latitude": 100, "longitude": 0}}', "solar.latitude"),
        ('{"task": "t", "clocked": "tomorrow"}', "clocked"),
        ('{"task": "t", "interval": {"every": 1}, "args": {"a": 1}}', "args"),
        ('{"task": "t", "interval": {"every": 1}, "kwargs": [1]}', "kwargs"),
        ('{"task": "t", "interval": {"every": 1}, "options": "fast"}', "options"),
        ('{"task": "t", "interval": {"every": 1}, "options": {"priority": "high"}}', "options.priority"),
        ('{"task": "t", "interval": {"every": 1}, "enabled": "yes"}', "enabled"),
        ('{"task": "t", "interval": {"every": 1}, "max_run_count": 0}', "max_run_count"),
        ('{"task": "t", "interval": {"every": 1}, "start_time": "soon"}', "start_time"),
        ('{"task": "t", "interval": {"every": 1}, "total_run_count": -1}', "total_run_count"),
    ],
)
def test_bad_documents_name_the_field(codec: Codec, doc: str, field: str) -> None:
    with pytest.raises(InvalidDefinition) as caught:
        codec.parse(doc)
    assert caught.value.field == field
    assert caught.value.for_entry("my-entry").reason.startswith("entry 'my-entry': ")
    if field:
        assert f"field {field!r}" in caught.value.reason


def test_non_utf8_bytes(codec: Codec) -> None:
    with pytest.raises(InvalidDefinition, match="UTF-8"):
        codec.parse(b"\xff\xfe{")


@pytest.mark.parametrize(
    "value",
    [
        timedelta(seconds=30),
        timedelta(minutes=5),
        timedelta(days=2),
        timedelta(milliseconds=1500),
        timedelta(microseconds=7),
        schedule(timedelta(hours=1), relative=True),
        crontab(minute="*/15", hour="9-17", day_of_week="mon-fri"),
        crontab(minute=0, hour=7, day_of_week=1),
        solar("sunrise", -33.87, 151.21),
    ],
)
def test_celery_schedule_round_trip(codec: Codec, value: object) -> None:
    doc = {"task": "t", **schedule_to_json(value)}
    parsed = codec.from_document(json.loads(dump_document(doc)))
    original = value if not isinstance(value, timedelta) else schedule(value)
    assert parsed.schedule == original


def test_beat_schedule_entry_to_document(codec: Codec) -> None:
    doc = entry_to_document({
        "task": "tasks.add", "schedule": 30.0, "args": (1, 2), "kwargs": {"x": 1},
        "options": {"queue": "q", "expires": datetime(2030, 1, 1, tzinfo=timezone.utc)},
    })
    assert doc == {
        "task": "tasks.add", "enabled": True, "interval": {"every": 30, "period": "seconds"}, "args": [1, 2],
        "kwargs": {"x": 1}, "options": {"queue": "q", "expires": "2030-01-01T00:00:00+00:00"},
    }
    assert codec.from_document(json.loads(dump_document(doc))).options["expires"].year == 2030


def test_interval_to_json_picks_the_largest_exact_period() -> None:
    assert interval_to_json(timedelta(hours=2)) == {"every": 2, "period": "hours"}
    assert interval_to_json(timedelta(seconds=90)) == {"every": 90, "period": "seconds"}
    assert interval_to_json(timedelta(seconds=0.25)) == {"every": 0.25, "period": "seconds"}


def test_digest_matches_redis_sha1hex(client) -> None:  # type: ignore[no-untyped-def]
    text = '{"task": "ü", "interval": {"every": 1}}'
    assert client.eval("return redis.sha1hex(ARGV[1])", 0, text).decode() == digest(text)


def test_parse_cache_is_bounded() -> None:
    codec = Codec(Celery("c", set_as_current=False), cache_size=10)
    for i in range(50):
        codec.parse(json.dumps({"task": f"t{i}", "interval": {"every": i + 1}}))
    assert len(codec._definitions) == 10 and len(codec._schedules) == 10


# --- the codec's shortcuts give the answers of the general code they bypass ---------------------------------


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=5))


specs = st.one_of(
    st.dictionaries(st.text(max_size=6), json_scalars, max_size=4),
    st.dictionaries(st.text(max_size=6), st.one_of(json_scalars, st.lists(json_scalars, max_size=2)), max_size=3),
    json_scalars,
    st.lists(json_scalars, max_size=3),
)


@settings(max_examples=1000, deadline=None)
@given(st.sampled_from(["interval", "crontab"]), specs, specs, st.booleans(), st.booleans())
def test_schedule_cache_key_tells_apart_what_json_tells_apart(kind: str, a: object, b: object, ra: bool, rb: bool) -> None:
    import json

    same_json = json.dumps([kind, a, ra], sort_keys=True, default=str) == json.dumps([kind, b, rb], sort_keys=True, default=str)
    if not same_json:
        assert _schedule_key(kind, a, ra) != _schedule_key(kind, b, rb)


def test_schedule_cache_key_shares_equal_specs() -> None:
    assert _schedule_key("interval", {"every": 5, "period": "minutes"}, False) == \
        _schedule_key("interval", {"period": "minutes", "every": 5}, False)
    assert _schedule_key("interval", {"every": 1}, False) != _schedule_key("interval", {"every": True}, False)
    assert _schedule_key("interval", {"every": 1}, False) != _schedule_key("interval", {"every": 1.0}, False)


def test_entries_with_one_schedule_share_the_compiled_schedule() -> None:
    codec = Codec(APP)
    first = codec.parse('{"task": "a", "args": [1], "interval": {"every": 30, "period": "seconds"}}')
    second = codec.parse('{"task": "b", "args": [2], "interval": {"period": "seconds", "every": 30}}')
    assert first.schedule is second.schedule
    bad = '{"task": "c", "interval": {"every": true, "period": "seconds"}}'
    try:
        codec.parse(bad)
    except Exception as exc:  # noqa: BLE001
        assert "interval.every" in str(exc)
    else:
        raise AssertionError("a boolean interval must be refused even when an equal-looking schedule is cached")


#: Every optional member written out at the value that means "absent": such a document takes the general path.
SPELLED_OUT = {"options": None, "start_time": None, "expires": None, "one_off": False, "max_run_count": None,
               "description": "", "total_run_count": None, "last_run_at": None}


json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 st.dictionaries(st.text(max_size=4), inner, max_size=3)),
                           max_leaves=6)


@settings(max_examples=500, deadline=None)
@given(st.fixed_dictionaries({}, optional={"args": json_values, "kwargs": json_values, "enabled": json_values,
                                           "relative": st.one_of(st.none(), st.booleans())}))
def test_a_definition_with_only_common_members_parses_as_the_general_path_does(members: dict[str, object]) -> None:
    """from_document reads only the members a document has; the answer (or the error) is the same as in full."""
    codec = Codec(APP)

    def outcome(doc: dict[str, object]) -> object:
        try:
            return codec.from_document(doc)
        except Exception as exc:  # noqa: BLE001 - the error is part of the answer
            return type(exc), str(exc)

    doc = {"task": "t", "interval": {"every": 30, "period": "seconds"}, **members}
    assert outcome(doc) == outcome({**doc, **SPELLED_OUT})


any_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.integers(min_value=2**62, max_value=2**70),
              st.integers(min_value=-(2**70), max_value=-(2**62)), st.floats(allow_nan=False), st.text()),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)),
    max_leaves=12,
)


@settings(max_examples=1500, deadline=None)
@given(any_json, st.booleans(), st.booleans())
def test_a_document_reads_as_json_reads_it(value: object, as_bytes: bool, ascii_only: bool) -> None:
    """load_document's fast reader gives json's answer, big integers, -0.0 and infinities included."""
    import json

    from celerybeatredis.definitions.codec import load_document

    text = json.dumps(value, ensure_ascii=ascii_only, indent=None if as_bytes else 1)
    expected = json.loads(text)
    got = load_document(text.encode("utf-8", "surrogatepass") if as_bytes else text)
    assert repr(got) == repr(expected)
