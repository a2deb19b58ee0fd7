"""Sending one run as Celery beat sends it: through the scheduler's ``apply_async`` and producer, with the headers
that name the entry and the task id chosen for it; and telling a broker's failure from the entry's own.

:class:`~.publisher.Publisher` sends whole batches on top of this.
"""

from __future__ import annotations

import inspect
import logging
from datetime import datetime
from typing import Any

from celery import Celery
from celery.beat import ScheduleEntry, Scheduler, SchedulingError
from celery.utils import uuid
from kombu import Producer
from kombu.exceptions import OperationalError

from ..decisions.decide import Decision, Run
from ..definitions.codec import Definition
from ..definitions.names import shown_name
from ..observe.log import logger
from ..policies.overlap import HOLD
from ..storage.history import newest_stamp, task_id
from .headers import FIRE_ID, FIRE_TIME, HEADER, REPORT, RUN, SCHEDULED
from .observing import apply_entry_wrapped, run_span, through_apply_entry


class Sender:
    """One run at a time through a Celery beat ``Scheduler`` (its ``apply_async``, producer and broker connection)."""

    def __init__(self, scheduler: Scheduler) -> None:
        self.scheduler = scheduler

    def producer(self) -> Producer | None:
        """The scheduler's producer, connected; None, logged, when the broker cannot be reached.

        Read once per batch: it is a lazy property that takes a lock on every read,
        and its first read connects, which fails like a publish when the broker is down.
        """
        try:
            producer: Producer = self.scheduler.producer
        except Exception as exc:  # kombu raises the transport's own connection errors; anything else goes on up
            if not self.broker_fault(exc):
                raise
            logger.error("beat: cannot reach the broker to publish: %s", exc)
            return None
        return producer

    def send(self, name: str, run: Run, now: datetime, producer: Producer | None,
             tid: str | None = None, tag: str = "", due: float = 0.0) -> BaseException | None:
        """Send one task as Celery beat would (with task id ``tid``, if given); the error if it could not be published.

        ``tag`` is the hash tag of the entry's shard, for the worker integration to report the run to; ``due`` the
        Unix time the run was due (its entry's score; 0 when unknown), for a trace (:mod:`.observing`).
        """
        defn, runs, scheduled, fire_time, run_stamp = run
        options = dict(defn.options)
        if tid is None:
            tid = uuid()
        options["task_id"] = tid
        # The entry's name rides in a header (as django-celery-beat's), so a worker, a result backend or Flower can
        # tell which entry sent a task: ``self.request.periodic_task_name`` in the task; the run's own in others.
        headers: dict[str, Any] = {**options.get("headers", {}), **run_headers(name, tid, fire_time, run_stamp, tag)}
        if scheduled:
            headers[SCHEDULED] = scheduled
        if reported(defn):
            headers[REPORT] = {"tag": tag, "overlap": defn.overlap != "allow", "failures": defn.pause_after_failures or 0}
        options["headers"] = headers
        kwargs = defn.kwargs
        if defn.scheduled_time_kwarg:
            kwargs = {**kwargs, defn.scheduled_time_kwarg: fire_time or None}
        entry = ScheduleEntry(
            name=name, task=defn.task, last_run_at=now, total_run_count=runs, schedule=defn.schedule,
            args=defn.args, kwargs=kwargs, options=options, app=self.scheduler.app,
        )
        wrapped = apply_entry_wrapped()  # by a monitor (Sentry's Crons): it sees the run as Celery's scheduler sends it
        if not wrapped and logger.isEnabledFor(logging.INFO):  # else said by Celery's apply_entry
            logger.info("Scheduler: Sending due task %s (%s)", shown_name(name), defn.task)
        try:
            with run_span(name, defn.task, due, scheduled, now, headers, fire_time):
                if wrapped:
                    through_apply_entry(self.scheduler, entry, producer)
                else:
                    self.scheduler.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:  # noqa: BLE001 - SchedulingError, or the broker connection failing
            cause = (exc.__context__ if isinstance(exc, SchedulingError) else None) or exc
            # A fault of the entry's own is said by what the caller does with it (a quarantine: once, by one beat).
            level = logging.ERROR if self.broker_fault(cause) else logging.DEBUG
            logger.log(level, "beat: could not publish %r (%s): %s", name, defn.task, exc)
            return cause
        return None

    def broker_fault(self, error: BaseException) -> bool:
        """Whether a publish failed because of the broker (retry later) rather than the entry."""
        conn = self.scheduler.connection
        # Transports list their own error classes; a builtin one there (kombu's Redis transport lists KeyError)
        # says nothing about the broker.
        listed = [e for e in (*conn.connection_errors, *conn.channel_errors) if e.__module__ != "builtins"]
        while isinstance(error, OperationalError):  # kombu wraps what its transport raised
            inner = error.__cause__ or error.__context__
            if inner is None:
                break
            error = inner
        return isinstance(error, (*listed, OperationalError, OSError))


class ArgumentsRefused(TypeError):
    """The task's signature refuses a run's arguments (Celery's argument check); ``field`` is ``args`` or ``kwargs``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def refused_arguments(app: Celery, defn: Definition) -> ArgumentsRefused | None:
    """What Celery's argument check (``Task.typing``, before it sends a task) says of a run of ``defn``, naming the
    field at fault: ``args`` when the positional arguments alone do not fit, else ``kwargs`` when there are any.
    None when they fit, or when Celery does not check (a task not registered in ``app``, or not typed)."""
    task: Any = app.tasks.get(defn.task)
    check = getattr(task, "__header__", None) if task is not None and getattr(task, "typing", False) else None
    if check is None:
        return None
    args, kwargs = list(defn.args or ()), dict(defn.kwargs or {})
    try:
        check(*args, **kwargs)
    except TypeError as exc:
        refused = exc
    else:
        return None
    try:
        inspect.signature(check).bind_partial(*args)
    except (TypeError, ValueError):
        try:
            check(*args)  # for Celery's words about the positional arguments alone
        except TypeError as exc:
            refused = exc
        return ArgumentsRefused("args", str(refused))
    return ArgumentsRefused("kwargs" if kwargs else "args", str(refused))


def run_headers(name: str, tid: str, fire_time: str, run_stamp: str, tag: str) -> dict[str, str]:
    """The headers beat sets on a run of entry ``name`` (shard ``tag``): its name, fire id, fire time (when known)
    and where its history record is (with history on)."""
    headers = {HEADER: name, FIRE_ID: tid}
    if fire_time:
        headers[FIRE_TIME] = fire_time
    if run_stamp and tag:
        headers[RUN] = f"{run_stamp} {tag}"
    return headers


def reported(defn: Definition) -> bool:
    """Whether a run of ``defn`` asks the worker integration to report it (its message then has a header of its own)."""
    return defn.overlap != "allow" or bool(defn.pause_after_failures)


def chosen_task_id(tag: str, decision: Decision) -> str | None:
    """The task id of ``decision``'s run, chosen before the worker can see it: the one its run marker names
    (:mod:`~celerybeatredis.policies.overlap`), else one made from its history stamp (None without history)."""
    if decision.running and decision.running != HOLD:
        return decision.running.partition(" ")[0]
    run_stamp = newest_stamp(decision.history)
    return task_id(tag, decision.name, run_stamp) if run_stamp else None
