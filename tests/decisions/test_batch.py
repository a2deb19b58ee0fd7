"""What a batch's decisions share (``decisions/batch.py``): answers worked out once per batch, and the interval
shortcut, which must give exactly Celery's answers."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from celery import Celery
from celery.schedules import schedule
from hypothesis import given, settings
from hypothesis import strategies as st

from celerybeatredis.decisions.batch import interval_is_due

from ..support.decider import Decider, iso, raw
from ..support.helpers import T0

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


# --- the batch's shared answers ---------------------------------------------------------------------------


def test_entries_sharing_a_crontab_and_a_last_run_share_one_answer_and_others_get_their_own(decider: Decider) -> None:
    hourly = {"task": "tasks.cron", "crontab": {"minute": "0"}}
    batch = decider.batch(T0 + 1)
    sched = decider.codec.parse(raw(hourly)).schedule
    half_past = datetime.fromtimestamp(T0 - 1800, timezone.utc)
    assert batch.is_due(sched, half_past) is batch.is_due(sched, half_past)
    assert batch.is_due(sched, half_past)[0] is True
    assert batch.is_due(sched, datetime.fromtimestamp(T0, timezone.utc))[0] is False
    in_new_york = half_past.astimezone(timezone(timedelta(hours=-5)))  # the same instant, read in its own zone
    assert batch.is_due(sched, in_new_york) == tuple(sched.is_due(in_new_york))
    assert batch.last_run(iso(T0)) is batch.last_run(iso(T0))
    assert batch.last_run("not a time") is None
    assert batch.anchor(T0) == datetime.fromtimestamp(T0, timezone.utc)
