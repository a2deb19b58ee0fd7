"""Publishing a committed batch: each run sent as Celery beat sends it, and runs that could not be sent put back.

A failed publish is sorted by its cause: the broker (every run not yet sent
is put back, due again after ``redis_scheduler_publish_retry_seconds``) or the
entry itself (its options, say: that entry is quarantined, the others are sent).
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import NamedTuple

from celery.beat import ScheduleEntry, Scheduler, SchedulingError
from kombu import Producer
from kombu.exceptions import OperationalError

from .beatstats import BeatStats
from .decisions import Run, log_quarantined, quarantine_reason
from .exceptions import InvalidDefinition
from .history import STAMP, task_id
from .keys import NEVER
from .planning import Planned
from .redis_store import RedisStore
from .settings import Settings
from .wire import Revert

#: The message header naming the entry that sent a task (the name django-celery-beat uses).
HEADER = "periodic_task_name"

#: A history record's stamp is its characters 1 .. STAMP.
HISTORY_STAMP_END = 1 + STAMP

#: Beat logs under the name of the module users configure it by, whichever of its modules speaks.
logger = logging.getLogger("celerybeatredis.schedulers")


class Published(NamedTuple):
    """How publishing a batch went: whether runs were withheld (put back unsent), and the seconds it took."""

    withheld: bool
    seconds: float


class Publisher:
    """Sends runs through a Celery beat ``Scheduler`` (its ``apply_async``, producer and broker connection)."""

    def __init__(self, scheduler: Scheduler, settings: Settings, stats: BeatStats | None = None) -> None:
        self.scheduler = scheduler
        self.settings = settings
        self.stats = stats or BeatStats()

    def publish(self, store: RedisStore, planned: Planned, committed: list[bool], withheld: bool) -> Published:
        """Publish the runs of ``planned`` that ``committed`` says were committed, reverting those that cannot be sent.

        With ``withheld`` (the commit is not safe to act on) or once the broker
        fails, the rest are reverted unsent.
        """
        started = time.perf_counter()
        claim, now = planned.claim, planned.now
        reverts: list[Revert] = []
        late: list[float] = []  # seconds each run sent was late (run-now and new entries: 0)
        unsafe, producer = withheld, None
        for (plan, run, _), ok, claimed in zip(planned.decisions, committed, claim.entries):
            if not ok or run is None:
                continue
            if not withheld and producer is None:
                producer = self.producer()
                withheld = producer is None
            # The history's stamp names the run: its task id is chosen here, before the worker can see it.
            run_stamp = plan.history[1:HISTORY_STAMP_END]
            if not withheld:
                tid = task_id(self.settings.tag, claimed.name, run_stamp) if run_stamp else None
                error = self.send(claimed.name, run, now, producer, tid)
                if error is None:
                    late.append(max(0.0, claim.now - claimed.score) if claimed.score > 0 else 0.0)
                    continue
                if not self.broker_fault(error):
                    # Only this entry's task cannot be sent (its options, say): quarantine it, send the others.
                    problem = InvalidDefinition("options", f"the task cannot be sent: {type(error).__name__}: {error}")
                    reason = quarantine_reason(claimed.name, problem)
                    log_quarantined(reason, self.settings.tag)
                    reverts.append(Revert(claimed.name, plan.score, NEVER, claimed.last_run_at, reason, run_stamp))
                    continue
                withheld = True
            retry = -1.0 if claimed.score < 0 else claim.now + self.settings.publish_retry_seconds
            reverts.append(Revert(claimed.name, plan.score, retry, claimed.last_run_at, "", run_stamp))
        if reverts:
            store.revert(reverts)
        self.stats.published(late, reverts, broker_failed=withheld and not unsafe)
        if withheld:
            retried = sum(1 for r in reverts if not r.invalid_reason)
            logger.warning("beat: %d runs not published; they are due again in %.1fs", retried, self.settings.publish_retry_seconds)
        return Published(withheld, time.perf_counter() - started)

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
             tid: str | None = None) -> BaseException | None:
        """Send one task as Celery beat would (with task id ``tid``, if given); the error if it could not be published."""
        defn, runs = run
        options = dict(defn.options)
        if tid is not None:
            options["task_id"] = tid
        # The entry's name rides in a header (as django-celery-beat's), so a worker, a result backend or Flower can
        # tell which entry sent a task: ``self.request.periodic_task_name`` in the task.
        options["headers"] = {**options["headers"], HEADER: name} if "headers" in options else {HEADER: name}
        entry = ScheduleEntry(
            name=name, task=defn.task, last_run_at=now, total_run_count=runs, schedule=defn.schedule,
            args=defn.args, kwargs=defn.kwargs, options=options, app=self.scheduler.app,
        )
        if logger.isEnabledFor(logging.INFO):
            logger.info("Scheduler: Sending due task %s (%s)", name, defn.task)
        try:
            self.scheduler.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:  # noqa: BLE001 - SchedulingError, or the broker connection failing
            logger.error("beat: could not publish %r (%s): %s", name, defn.task, exc)
            cause = exc.__context__ if isinstance(exc, SchedulingError) else None
            return cause or exc
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
