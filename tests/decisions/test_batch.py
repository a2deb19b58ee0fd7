"""Shortcuts the tick takes must give exactly the answers of the general code they bypass."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from celery import Celery
from celery.schedules import schedule
from hypothesis import given, settings
from hypothesis import strategies as st

from celerybeatredis.decisions.batch import interval_is_due
from celerybeatredis.definitions.codec import Codec, _schedule_key

APP = Celery("fast", set_as_current=False)

offsets = st.integers(min_value=-23 * 60, max_value=23 * 60).map(lambda m: timezone(timedelta(minutes=m)))
moments = st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30))
intervals = st.one_of(
    st.timedeltas(min_value=timedelta(microseconds=1), max_value=timedelta(days=400)),
    st.integers(min_value=1, max_value=10**6).map(lambda s: timedelta(seconds=s)),
    st.timedeltas(min_value=timedelta(days=400), max_value=timedelta(days=999_999_999)),
)


def celery_answer(run_every: timedelta, last: datetime, now: datetime) -> object:
    sched = schedule(run_every, nowfun=lambda: now, app=APP)
    try:
        return tuple(sched.is_due(last))
    except Exception as exc:  # noqa: BLE001 - the error is part of the answer
        return type(exc), str(exc)


def fast_answer(run_every: timedelta, last: datetime, now: datetime) -> object:
    sched = schedule(run_every, nowfun=lambda: now, app=APP)
    try:
        return interval_is_due(sched, last, now)
    except Exception as exc:  # noqa: BLE001
        return type(exc), str(exc)


@settings(max_examples=3000, deadline=None)
@given(intervals, moments, offsets, st.timedeltas(min_value=timedelta(days=-3), max_value=timedelta(days=800)), offsets)
def test_interval_shortcut_equals_celery(run_every: timedelta, last: datetime, last_tz: timezone,
                                         later: timedelta, now_tz: timezone) -> None:
    last_at = last.replace(tzinfo=last_tz)
    try:
        now = (last_at + later).astimezone(now_tz)
    except OverflowError:
        now = last_at.astimezone(now_tz) if abs(now_tz.utcoffset(None)) < timedelta(hours=1) else last_at
    assert fast_answer(run_every, last_at, now) == celery_answer(run_every, last_at, now)


@settings(max_examples=500, deadline=None)
@given(intervals, moments, st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=10)))
def test_interval_shortcut_on_the_due_boundary(run_every: timedelta, last: datetime, extra: timedelta) -> None:
    """At, just before and just after the due time, in UTC as beat keeps it."""
    last_at = last.replace(tzinfo=timezone.utc)
    for delta in (run_every, run_every - timedelta(microseconds=1), run_every + timedelta(microseconds=1), extra):
        try:
            now = last_at + delta
        except OverflowError:
            continue
        assert fast_answer(run_every, last_at, now) == celery_answer(run_every, last_at, now)


def test_interval_shortcut_defers_to_celery_for_what_it_does_not_cover() -> None:
    now = datetime(2026, 3, 1, 12, 0, 30, tzinfo=timezone.utc)
    relative = schedule(timedelta(minutes=1), relative=True, nowfun=lambda: now, app=APP)
    last = datetime(2026, 3, 1, 11, 59, 10, tzinfo=timezone.utc)
    assert interval_is_due(relative, last, now) == tuple(relative.is_due(last))
    naive = datetime(2026, 3, 1, 11, 59, 10)
    plain = schedule(timedelta(seconds=30), nowfun=lambda: now, app=APP)
    assert interval_is_due(plain, naive, now) == tuple(plain.is_due(naive))


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
