"""Backfill: send the runs an entry's schedule had in a past range, each marked with the time it was due.

The times are the schedule's own (:func:`backfill_times` is pure): a
crontab's or a solar schedule's times in the range, a clocked entry's time
if it falls in it, and an interval's times counted in whole intervals from
the entry's last run (from the start of the range for an entry that never
ran). The runs are sent as beat sends them (the entry's task, arguments,
options and the ``periodic_task_name`` header), with the headers
``periodic_task_scheduled_at`` and ``periodic_task_fire_time`` (the time, and
as the entry's ``scheduled_time_kwarg``), and a task id (also
``periodic_task_fire_id``) made from the entry and the time, so a worker sees the same id for the same time however often it is
sent. They are not runs of the entry: its run count, last run, history and
next run stay as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta, timezone

from celery import Celery
from celery.schedules import BaseSchedule
from celery.schedules import schedule as interval_schedule

from ..definitions.codec import Definition
from ..definitions.kinds import clocked
from ..exceptions import CeleryBeatRedisError
from ..policies.catchup import due_times
from ..storage.history import task_id
from .headers import FIRE_ID, FIRE_TIME, HEADER, SCHEDULED

#: Most runs one backfill sends unless told otherwise (``--limit``).
DEFAULT_LIMIT = 1000


def backfill_times(sched: BaseSchedule, start: datetime, end: datetime, last_run: datetime | None,
                   limit: int = DEFAULT_LIMIT) -> list[datetime]:
    """The due times of ``sched`` from ``start`` to ``end`` (both included), oldest first.

    Raises:
        CeleryBeatRedisError: the range is empty or reversed, or has more than ``limit`` times.
    """
    if end < start:
        raise CeleryBeatRedisError(f"--to {end.isoformat()} is before --from {start.isoformat()}")
    since = start - timedelta(microseconds=1)
    if isinstance(sched, clocked):
        return [sched.run_at] if start <= sched.run_at <= end else []
    origin = last_run if last_run is not None and type(sched) is interval_schedule else start  # may follow the range
    times, count = due_times(sched, origin, since, end, limit + 1)
    if count > limit:
        raise CeleryBeatRedisError(f"the range has {count} runs, more than --limit {limit}; narrow it or raise the limit")
    return times


def backfill_task_id(tag: str, name: str, due: datetime) -> str:
    """The task id of the backfilled run of entry ``name`` due at ``due``: the same for the same time."""
    return task_id(tag, name, "backfill " + due.astimezone(timezone.utc).isoformat())


def send_backfill(app: Celery, tag: str, name: str, defn: Definition, times: Sequence[datetime]) -> list[str]:
    """Send one run of the entry per time, oldest first; returns their task ids."""
    ids = []
    with app.producer_or_acquire() as producer:
        for due in times:
            options = dict(defn.options)
            tid = backfill_task_id(tag, name, due)
            fire_time = due.astimezone(timezone.utc).isoformat()
            headers = {**options.pop("headers", {}), HEADER: name, SCHEDULED: due.isoformat(), FIRE_TIME: fire_time,
                       FIRE_ID: tid}
            kwargs = dict(defn.kwargs)
            if defn.scheduled_time_kwarg:
                kwargs[defn.scheduled_time_kwarg] = fire_time
            app.send_task(defn.task, args=list(defn.args), kwargs=kwargs, task_id=tid, headers=headers,
                          producer=producer, **options)
            ids.append(tid)
    return ids
