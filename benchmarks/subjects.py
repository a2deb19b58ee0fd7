"""The schedulers under test, each driven through its own public API.

A subject writes a :class:`~benchmarks.workload.Workload` into its own store,
makes scheduler instances for the in-process figures, and names what a real
``celery beat`` process needs for the end-to-end figures.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from celery.beat import PersistentScheduler, Scheduler
from celery.schedules import BaseSchedule, crontab, schedule
from celery.signals import beat_init
from celery.utils import uuid

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from .workload import TASK, Entry, Workload

CHUNK = 1000
#: ``beat_max_loop_interval`` for every scheduler: celerybeat-redis's own default.
#: (At Celery's default of 300 s, RedBeat can sleep 300 s while entries fall due:
#: a tick that dispatches everything it loaded returns ``max_interval``.)
MAX_INTERVAL = 1.0


class Recorder:
    """Stands in for ``app.send_task``: counts publishes and notes when each entry's was.

    The scheduler still does all of its own work up to the publish call, and the task id is made as
    ``send_task`` makes it (a new UUID unless the caller chose one), so a scheduler that chooses its own ids
    is charged for them and one that does not is charged for Celery's.
    """

    def __init__(self) -> None:
        self.count = 0
        self.task_id = ""
        self.times: dict[int, float] = {}

    def __call__(self, name: str, args: Any = None, kwargs: Any = None, **options: Any) -> None:
        self.task_id = options.get("task_id") or uuid()
        self.count += 1
        self.times[args[0]] = time.time()


def utc(ts: float) -> datetime:
    """Unix seconds -> aware UTC datetime."""
    return datetime.fromtimestamp(ts, timezone.utc)


class Subject:
    """One scheduler under test.

    Args:
        redis_url: Base URL of the benchmark's private Redis (no database number).
        workdir: A directory the subject may write files into.
    """

    key = ""
    label = ""
    #: Dotted path given to ``celery beat -S``.
    scheduler_path = ""
    in_redis = True

    def __init__(self, redis_url: str, workdir: Path) -> None:
        self.redis_url = redis_url
        self.schedule_url = f"{redis_url}/0"
        self.workdir = workdir

    def conf(self) -> dict[str, Any]:
        """Celery configuration this subject's scheduler reads."""
        return {"beat_max_loop_interval": MAX_INTERVAL}

    def app(self, broker: str = "memory://", **conf: Any) -> Celery:
        """A fresh Celery app for this subject."""
        app = Celery("bench", set_as_current=False)
        app.conf.update(broker_url=broker, result_expires=None, beat_schedule={}, **self.conf())
        app.conf.update(conf)
        return app

    def stub_app(self, **conf: Any) -> tuple[Celery, Recorder]:
        """An app whose ``send_task`` is a :class:`Recorder`."""
        app = self.app(**conf)
        recorder = Recorder()
        app.send_task = recorder  # type: ignore[method-assign]
        return app, recorder

    def insert(self, workload: Workload, indices: Iterable[int]) -> None:
        """Write entries through the project's own API."""
        raise NotImplementedError

    def prepare(self, workload: Workload) -> None:
        """Bring the written entries to the state of a beat that ran at ``workload.t0``."""

    def scheduler(self, app: Celery) -> Scheduler:
        """A scheduler instance as ``celery beat`` makes it (setup done)."""
        raise NotImplementedError

    def close(self, sched: Scheduler) -> None:
        """Stop a scheduler instance made by :meth:`scheduler`."""
        sched.close()

    def beat_args(self) -> list[str]:
        """Extra ``celery beat`` arguments."""
        return []

    def beat_schedule_config(self) -> list[list[Any]]:
        """``beat_schedule`` entries the beat process's app must define (Celery's own scheduler)."""
        return []

    def reset(self) -> None:
        """Forget every entry (the benchmark flushes Redis itself)."""


def interval_state(workload: Workload, entry: Entry) -> tuple[float, float]:
    """``(last_run_at, every)`` of an interval entry: it last ran at ``t0`` and is due at ``entry.due``."""
    assert entry.due is not None
    return workload.t0, round(entry.due - workload.t0, 6)


def cron_fields(entry: Entry) -> dict[str, str]:
    """The five crontab fields of a crontab entry."""
    assert entry.cron is not None
    minute, hour = entry.cron
    return {"minute": minute, "hour": hour, "day_of_week": "*", "day_of_month": "*", "month_of_year": "*"}


def celery_schedule(workload: Workload, entry: Entry) -> tuple[BaseSchedule, float]:
    """A Celery schedule object and the last run time for ``entry``."""
    if entry.cron is not None:
        return crontab(**cron_fields(entry)), workload.t0
    last, every = interval_state(workload, entry)
    return schedule(timedelta(seconds=every)), last


def next_due(workload: Workload, entry: Entry) -> float:
    """When ``entry`` is due after running at ``t0``, as Celery computes it at ``t0``."""
    sched, last = celery_schedule(workload, entry)
    at_last = utc(last)
    sched.nowfun = lambda: at_last
    return last + sched.remaining_estimate(at_last).total_seconds()


class Ours(Subject):
    """celerybeat-redis: definitions written with ``RedisStore``, run state set by a beat pass at ``t0``."""

    key = "ours"
    label = "celerybeat-redis"
    scheduler_path = "celerybeatredis.schedulers.RedisScheduler"
    prefix = "bench:ours:"

    def __init__(self, redis_url: str, workdir: Path) -> None:
        super().__init__(redis_url, workdir)
        self.store = RedisStore(redis.Redis.from_url(self.schedule_url), self.prefix)

    #: ``redis_scheduler_delivery``: the end-to-end figures' broker is another database, so at-most-once.
    delivery = "at-most-once"

    def conf(self) -> dict[str, Any]:
        """The scheduler's URL, key prefix and delivery mode (trees that predate the setting ignore it)."""
        return dict(super().conf(), redis_scheduler_url=self.schedule_url, redis_scheduler_key_prefix=self.prefix,
                    redis_scheduler_delivery=self.delivery)

    def document(self, workload: Workload, entry: Entry) -> dict[str, Any]:
        """The definition JSON object of ``entry``."""
        doc: dict[str, Any] = {"task": TASK, "enabled": True}
        if entry.cron is not None:
            doc["crontab"] = cron_fields(entry)
        else:
            doc["interval"] = {"every": interval_state(workload, entry)[1], "period": "seconds"}
        doc["args"] = [entry.index]
        doc["kwargs"] = {}
        return doc

    def insert(self, workload: Workload, indices: Iterable[int]) -> None:
        """``RedisStore.bulk_add`` when the store has it, else ``put_raw`` in chunks."""
        bulk = getattr(self.store, "bulk_add", None)
        chunk: dict[str, Any] = {}
        for i in indices:
            entry = workload.entry(i)
            doc = self.document(workload, entry)
            chunk[entry.name] = doc if bulk is not None else json.dumps(doc)
            if len(chunk) >= CHUNK:
                self._write(chunk, bulk)
                chunk = {}
        if chunk:
            self._write(chunk, bulk)

    def _write(self, chunk: dict[str, Any], bulk: Any) -> None:
        if bulk is not None:
            bulk(chunk)
        else:
            self.store.put_raw(chunk)

    def prepare(self, workload: Workload) -> None:
        """Tick at ``t0`` until every new entry has been looked at (nothing is due then)."""
        app, recorder = self.stub_app()
        sched = self.scheduler(app)
        try:
            assert isinstance(sched, RedisScheduler)
            while sched.tick(now=workload.t0) == 0.0:
                pass
        finally:
            self.close(sched)
        left = self.store.client.zcount(self.store.keys.due, 0, 0)
        if recorder.count or left:
            raise RuntimeError(f"preparing the schedule went wrong: {recorder.count} published, {left} not looked at")

    def scheduler(self, app: Celery) -> Scheduler:
        """``RedisScheduler(app)``."""
        return RedisScheduler(app)


class OursAtLeastOnce(Ours):
    """celerybeat-redis with ``at-least-once`` delivery: each commit records its runs as pending, cleared once sent."""

    key = "ours-atleast"
    label = "celerybeat-redis at-least-once"
    prefix = "bench:ours-atleast:"
    delivery = "at-least-once"


class OursEvents(Ours):
    """celerybeat-redis (``at-most-once``) with ``task_send_sent_event`` on: each run's ``task-sent`` event too."""

    key = "ours-events"
    label = "celerybeat-redis with sent events"
    prefix = "bench:ours-events:"

    def conf(self) -> dict[str, Any]:
        return dict(super().conf(), task_send_sent_event=True)


class OursExactlyOnce(Ours):
    """celerybeat-redis with ``exactly-once`` delivery: its schedule in the broker's database (db 1), whose
    commits write the task messages."""

    key = "ours-exactly"
    label = "celerybeat-redis exactly-once"
    prefix = "bench:ours-exactly:"
    delivery = "exactly-once"

    def __init__(self, redis_url: str, workdir: Path) -> None:
        super().__init__(redis_url, workdir)
        self.schedule_url = f"{redis_url}/1"
        self.store = RedisStore(redis.Redis.from_url(self.schedule_url), self.prefix)

    def app(self, broker: str = "memory://", **conf: Any) -> Celery:
        """In process (the scheduler-only figures) there is no Redis broker: at-most-once to the stand-in."""
        app = super().app(broker, **conf)
        if broker == "memory://":
            app.conf.redis_scheduler_delivery = "at-most-once"
        return app


class RedBeat(Subject):
    """RedBeat: ``RedBeatSchedulerEntry(...).save()`` per entry; its lock taken as ``celery beat`` takes it.

    ``save()`` computes an entry's first due time as if it had last run when it
    was saved (``last_run_at + remaining_estimate(last_run_at)``), which is
    early when ``last_run_at`` is in the past. :meth:`prepare` therefore sets
    each new entry's score to what RedBeat's own tick writes after a run at
    ``t0``, the state a RedBeat that ran at ``t0`` would be in.
    """

    key = "redbeat"
    label = "RedBeat"
    scheduler_path = "redbeat.RedBeatScheduler"
    prefix = "bench:redbeat:"

    def __init__(self, redis_url: str, workdir: Path) -> None:
        super().__init__(redis_url, workdir)
        self.admin = self.app()
        self.client = redis.Redis.from_url(self.schedule_url)
        self.pending: list[tuple[str, float]] = []

    def conf(self) -> dict[str, Any]:
        """RedBeat's URL and key prefix, and a lock that outlasts its longest tick.

        One RedBeat tick sends every due entry; at N=100k that tick takes longer
        than its default lock timeout (five times ``beat_max_loop_interval``),
        after which the tick's ``lock.extend`` raises and the run stops.
        """
        return dict(super().conf(), redbeat_redis_url=self.schedule_url, redbeat_key_prefix=self.prefix,
                    redbeat_lock_timeout=3600)

    def insert(self, workload: Workload, indices: Iterable[int]) -> None:
        """One ``save()`` per entry (RedBeat's API)."""
        from redbeat import RedBeatSchedulerEntry

        app = self.admin
        for i in indices:
            entry = workload.entry(i)
            sched, last = celery_schedule(workload, entry)
            saved = RedBeatSchedulerEntry(
                entry.name, TASK, sched, args=[entry.index], kwargs={}, app=app, last_run_at=utc(last)
            ).save()
            # RedBeat scores are whole seconds (calendar.timegm of the due time).
            self.pending.append((saved.key, float(math.floor(next_due(workload, entry)))))

    def prepare(self, workload: Workload) -> None:
        """Give the new entries the scores RedBeat's tick writes after a run at ``t0``."""
        if not self.pending:
            return
        schedule_key = self.admin.redbeat_conf.schedule_key
        for start in range(0, len(self.pending), CHUNK):
            self.client.zadd(schedule_key, dict(self.pending[start : start + CHUNK]))
        self.pending = []

    def reset(self) -> None:
        """Forget entries not yet prepared."""
        self.pending = []

    def scheduler(self, app: Celery) -> Scheduler:
        """``RedBeatScheduler(app)`` holding its lock, as after ``beat_init``."""
        from redbeat import RedBeatScheduler

        sched = RedBeatScheduler(app)
        beat_init.send(sender=_Service(sched))
        return sched


class _Service:
    """What ``beat_init`` receivers get as sender: something with a ``scheduler``."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler


class CeleryPersistent(Subject):
    """Celery's own ``PersistentScheduler``: ``beat_schedule`` plus a shelve file."""

    key = "celery"
    label = "Celery PersistentScheduler"
    scheduler_path = "celery.beat.PersistentScheduler"
    in_redis = False

    def __init__(self, redis_url: str, workdir: Path) -> None:
        super().__init__(redis_url, workdir)
        self.path = workdir / "celerybeat-schedule"
        self.entries: dict[str, dict[str, Any]] = {}
        self.config_entries: list[list[Any]] = []

    def app(self, broker: str = "memory://", **conf: Any) -> Celery:
        """An app whose ``beat_schedule`` is every entry written so far."""
        app = super().app(broker, **conf)
        app.conf.beat_schedule = dict(self.entries)
        return app

    def insert(self, workload: Workload, indices: Iterable[int]) -> None:
        """Add the entries to ``beat_schedule``, start the scheduler once and sync its file."""
        last_runs: dict[str, float] = {}
        for i in indices:
            entry = workload.entry(i)
            sched, last = celery_schedule(workload, entry)
            self.entries[entry.name] = {"task": TASK, "schedule": sched, "args": [entry.index]}
            last_runs[entry.name] = last
            if entry.cron is None:
                self.config_entries.append([entry.name, interval_state(workload, entry)[1], entry.index])
        sched_obj = self.scheduler(self.app())
        for name, last in last_runs.items():
            sched_obj.schedule[name].last_run_at = utc(last)
        self.close(sched_obj)

    def scheduler(self, app: Celery) -> Scheduler:
        """``PersistentScheduler`` on the subject's shelve file."""
        return PersistentScheduler(app, schedule_filename=str(self.path))

    def beat_args(self) -> list[str]:
        """The shelve file."""
        return ["-s", str(self.path)]

    def beat_schedule_config(self) -> list[list[Any]]:
        """``[name, every, index]`` per interval entry."""
        return self.config_entries

    def reset(self) -> None:
        """Remove the shelve file and forget the entries."""
        self.entries = {}
        self.config_entries = []
        for found in self.workdir.glob(self.path.name + "*"):
            if found.is_dir():
                shutil.rmtree(found)
            else:
                found.unlink()


SUBJECTS: dict[str, type[Subject]] = {"ours": Ours, "ours-atleast": OursAtLeastOnce, "ours-exactly": OursExactlyOnce,
                                      "ours-events": OursEvents,
                                      "redbeat": RedBeat,
                                      "celery": CeleryPersistent}
