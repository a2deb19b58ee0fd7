"""The worker's side of run outcomes, ``overlap`` and ``pause_after_failures``: runs reported to the schedule from
task signals.

Enabled by importing this module in the worker, with one line in its app::

    app.conf.imports = ["celerybeatredis.worker"]

Each run beat sends with history on carries the header ``periodic_task_run``
(its history stamp and shard); when it ends (succeeded, failed, retried,
revoked) its outcome and runtime, and a failure's exception type and first
line, are written into its record of the entry's history (run_outcome.lua):
one Redis call per run.

Beat asks for a report with the message header ``periodic_task_report``
(:mod:`~celerybeatredis.delivery.sending`) only on runs of entries with an overlap mode or
``pause_after_failures``; a task without it (sent by anyone else) costs two
attribute lookups and no Redis call. The schedule's Redis is found from the
worker app's own ``redis_scheduler_url`` (and the other ``redis_scheduler_*``
connection settings, :mod:`~celerybeatredis.settings`); the header names the hash tag of the
entry's shard, checked against ``redis_scheduler_key_prefix``. Every write is
one Lua script (run_started.lua, run_ended.lua) that touches only this run's
marker, so any number of workers may report at once. A report that cannot be
made is logged and never fails the task: the marker then lapses after the
entry's ``overlap_timeout``.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from celery import Celery
from celery.signals import task_postrun, task_prerun, task_revoked

from .delivery.headers import HEADER, REPORT, RUN
from .exceptions import CeleryBeatRedisError
from .settings import Settings
from .storage.connection import RedisClient
from .storage.history import runtime_code
from .storage.redis_store import RedisStore

logger = logging.getLogger(__name__)

#: Celery states of a run that failed, and of one that did not end (a retry is sent with the same task id).
FAILED, NOT_ENDED = "FAILURE", "RETRY"
SUCCEEDED = "SUCCESS"
#: The history letter of each Celery state a run ends in (storage/history.py, RESULTS).
RESULT_LETTERS = {SUCCEEDED: "k", FAILED: "f", NOT_ENDED: "r", "REVOKED": "v"}
#: Most characters of a failure's first line kept in history.
ERROR_CHARS = 200


class Reporter:
    """One app's connection to its schedule's Redis, made at the first run to report (after the worker forked)."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self.settings = Settings.from_app(app)
        self.client: RedisClient = self.settings.client()
        self._shards: dict[str, RedisStore] = {}

    def shard(self, tag: Any) -> RedisStore | None:
        """The shard ``tag`` names, None (logged) for a tag that is not of this app's schedule."""
        own = self.settings.tag
        if isinstance(tag, str) and (tag == own or (tag.startswith(own + ":") and tag[len(own) + 1:].isdigit())):
            found = self._shards.get(tag)
            if found is None:
                found = self._shards[tag] = RedisStore(self.client, tag)
            return found
        logger.warning("celerybeatredis.worker: a run reports to {%s}, not to this worker's schedule {%s} "
                       "(redis_scheduler_key_prefix); not reported", tag, own)
        return None

    def started(self, name: str, task_id: str, shard: RedisStore) -> None:
        """Renew the run's marker: it now lapses one ``overlap_timeout`` after the start."""
        shard.runs.run_started(name, task_id)

    def ended(self, name: str, task_id: str, shard: RedisStore, report: dict[str, Any], state: str | None,
              error: Any) -> None:
        """Drop the run's marker and count a failure; pause the entry at ``pause_after_failures`` in a row."""
        limit = int(report.get("failures") or 0)
        outcome = "ok" if state == SUCCEEDED else "failed" if state == FAILED else "other"
        count = shard.runs.run_ended(name, task_id, bool(report.get("overlap")), outcome, limit)
        if limit and count >= limit:
            self.pause(name, shard, limit, error)

    def outcome(self, name: str, run_stamp: str, shard: RedisStore, state: str, seconds: float, error: Any) -> None:
        """Write how the run went into its history record (``error``: the exception of a failure)."""
        text = ""
        if state == FAILED:
            lines = str(error).strip().splitlines()
            text = f"{type(error).__name__}: {lines[0] if lines else ''}".replace("|", "/")[:ERROR_CHARS]
        shard.runs.run_outcome(name, run_stamp, RESULT_LETTERS[state], runtime_code(seconds), text)

    def pause(self, name: str, shard: RedisStore, limit: int, error: Any) -> None:
        """Pause the entry with its last failure as the reason (the store's pause: a checked edit of the definition)."""
        from .store import ScheduleStore  # only on the rare pause: the store's imports stay out of every worker

        shards = self.settings.shards if shard.keys.tag != self.settings.tag else 1
        store = ScheduleStore(self.client, self.settings.key_prefix, self.app, shards)
        reason = f"{limit} failed runs in a row; last: {type(error).__name__}: {error}"[:500]
        try:
            store.pause(name, reason, by="celerybeatredis.worker")
        except CeleryBeatRedisError as exc:
            logger.error("celerybeatredis.worker: cannot pause %r after %d failed runs: %s", name, limit, exc)
            return
        logger.warning("celerybeatredis.worker: paused %r: %s", name, reason)


_reporters: dict[int, Reporter | None] = {}
_lock = threading.Lock()


def reporter(app: Celery) -> Reporter | None:
    """The app's :class:`Reporter`, None (logged once) if its settings cannot make one."""
    key = id(app)
    if key in _reporters:
        return _reporters[key]
    with _lock:
        if key not in _reporters:
            try:
                _reporters[key] = Reporter(app)
            except (ValueError, CeleryBeatRedisError) as exc:
                logger.error("celerybeatredis.worker: cannot report runs to the schedule: %s", exc)
                _reporters[key] = None
    return _reporters[key]


def _report(task: Any) -> tuple[str, dict[str, Any]] | None:
    """The entry name and report header of the task's current run, None for a run that asks for no report."""
    request = getattr(task, "request", None)
    report = getattr(request, REPORT, None)
    if report is None:
        headers = getattr(request, "headers", None)
        if not isinstance(headers, dict) or REPORT not in headers:
            return None
        report, name = headers[REPORT], headers.get(HEADER)
    else:
        name = getattr(request, HEADER, None)
    if not isinstance(report, dict) or not isinstance(name, str):
        return None
    return name, report


#: When each run being reported started, by task id (a worker runs a few at once; a retry starts again).
_started: dict[str, float] = {}


def _run_header(request: Any) -> tuple[str, str, str] | None:
    """The entry name, history stamp and shard tag a run's ``periodic_task_run`` header gives, None without one."""
    value, name = getattr(request, RUN, None), getattr(request, HEADER, None)
    if value is None:
        headers = getattr(request, "headers", None)
        if isinstance(headers, dict):
            value, name = headers.get(RUN), headers.get(HEADER)
    if not isinstance(value, str) or not isinstance(name, str):
        return None
    run_stamp, _, tag = value.partition(" ")
    return (name, run_stamp, tag) if run_stamp and tag else None


@task_prerun.connect
def run_started(sender: Any = None, task_id: str | None = None, task: Any = None, **_: Any) -> None:
    """Signal handler: a run beat sent started (its runtime is timed from here)."""
    if task_id is None:
        return
    if _run_header(getattr(task, "request", None)) is not None:
        _started[task_id] = time.monotonic()
    found = _report(task)
    if found is None or not found[1].get("overlap"):
        return
    name, report = found
    _safely(task, lambda rep, shard: rep.started(name, task_id, shard), report)


@task_postrun.connect
def run_ended(sender: Any = None, task_id: str | None = None, task: Any = None, retval: Any = None,
              state: str | None = None, **_: Any) -> None:
    """Signal handler: a run beat sent ended (a retry has not: it comes back with the same id)."""
    if task_id is None:
        return
    began = _started.pop(task_id, None)
    run = _run_header(getattr(task, "request", None))
    if run is not None and state in RESULT_LETTERS:
        name, run_stamp, tag = run
        seconds = time.monotonic() - began if began is not None else 0.0
        _safely(task, lambda rep, shard: rep.outcome(name, run_stamp, shard, str(state), seconds, retval), {"tag": tag})
    found = _report(task)
    if found is None or state == NOT_ENDED:
        return
    name, report = found
    _safely(task, lambda rep, shard: rep.ended(name, task_id, shard, report, state, retval), report)


@task_revoked.connect
def run_revoked(sender: Any = None, request: Any = None, **_: Any) -> None:
    """Signal handler: a run beat sent was revoked (before it started, or terminated)."""
    run = _run_header(request)
    if run is None or sender is None:
        return
    began = _started.pop(getattr(request, "id", None) or "", None)
    name, run_stamp, tag = run
    seconds = time.monotonic() - began if began is not None else 0.0
    _safely(sender, lambda rep, shard: rep.outcome(name, run_stamp, shard, "REVOKED", seconds, None), {"tag": tag})


def _safely(task: Any, call: Any, report: dict[str, Any]) -> None:
    """Make a report; a failure is logged, never raised into the task."""
    try:
        rep = reporter(task.app)
        shard = rep.shard(report.get("tag")) if rep is not None else None
        if rep is not None and shard is not None:
            call(rep, shard)
    except Exception:  # a report must never fail the task or the worker
        logger.exception("celerybeatredis.worker: could not report a run to the schedule")
