"""Run history of an entry: its last runs, in one ``{T}:history`` hash field, written by commit.lua.

A field reads ``"<sent>,<skipped>,<missed>:"`` (the entry's counters) then
fixed-width records, newest first, :data:`RECORD` characters each, so Lua
keeps the last N by cutting the string at ``N * RECORD``, then, once a run
failed, ``"|<stamp> <exception type>: <first line>"`` (the last failure, kept
however old). A record:

* 1 character, the outcome: ``s`` sent, ``m`` sent after missing runs (late by
  at least the time to its next run), ``e`` publish error, and the skipped
  runs: ``d`` not run as disabled or finished, ``h`` held (start_time ahead),
  ``q`` quarantined, ``p`` paused (the read shows the pause's reason on the
  records of the pause in force), ``x`` on a day a calendar excludes, ``o``
  due while the entry's last run had not finished (overlap ``skip``), ``w``
  missed and older than the entry's ``catchup_window``, ``c`` missed and not
  caught up (``catchup``). A decision's records may end in ``+N``: N more
  skipped runs, counted, not kept;
* 8 characters, the batch time it was decided at (sent time), Unix
  milliseconds in base 36 (the *stamp*; up to the year 2059);
* 5 characters, its lateness (sent time - due time) in milliseconds, base 36,
  at most ``zzzzz`` (about 16.8 hours);
* 1 character, what became of a sent run as the worker integration
  (:mod:`celerybeatredis.worker`) reported it: ``-`` nothing reported, ``k``
  succeeded, ``f`` failed, ``r`` retried (not ended yet), ``v`` revoked
  (:data:`RESULTS`); a run not reported within :data:`LOST_AFTER` reads as
  lost when the entry's worker reports runs (another of its records has an
  outcome);
* 2 characters, its runtime as the worker measured it (:func:`runtime_code`:
  base 36 on a log scale, within 1%, up to 27 days).

A field written before runs had outcomes (``";"`` after the counters,
14-character records) reads as records without them.

The task id of a sent run is not stored: beat derives it from the schedule's
tag, the entry's name and the stamp (:func:`task_id`) and sends the task with
that id, so the id is read back from the history as the worker saw it.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

#: Characters per record; also in lua/includes/history.lua.
RECORD = 17
#: Characters per record of a field written before outcomes were kept (``;`` after its counters).
OLD_RECORD = 14
STAMP = 8
LATE = 5
#: What the worker reported of a run, by its letter; ``-``: nothing.
RESULTS = {"k": "succeeded", "f": "failed", "r": "retried", "v": "revoked"}
#: Outcome letter and runtime of a record nothing was reported of.
NO_OUTCOME = "-00"
#: Seconds after which a sent run the worker integration never reported reads as lost (on entries whose worker
#: reports runs): longer than most tasks wait in a queue and run; a longer one reads as lost until it reports.
LOST_AFTER = 3600.0
#: Runtime codes per unit of ``ln(1 + milliseconds)``: 2 base-36 characters reach 27 days, each step 1.7%.
RUNTIME_SCALE = 60.0
DIGITS = "0123456789abcdefghijklmnopqrstuvwxyz"
LATE_MAX = 36**LATE - 1
#: What each outcome letter means (``history`` shows these words).
OUTCOMES = {"s": "sent", "m": "missed", "e": "publish-error", "d": "skipped: disabled or finished",
            "h": "skipped: start_time ahead", "q": "skipped: quarantined", "p": "skipped: paused",
            "o": "skipped: overlap: the last run had not finished",
            "w": "skipped: missed, older than catchup_window", "c": "skipped: missed, not caught up",
            "x": "skipped: excluded by a calendar"}
#: A run skipped while its entry was paused.
PAUSED = OUTCOMES["p"]
#: Outcomes that were sent (or tried to be): they have a task id.
WITH_TASK = ("s", "m", "e")
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def base36(value: int, width: int) -> str:
    """``value`` (>= 0) in base 36, zero-padded to ``width``."""
    out = []
    for _ in range(width):
        value, digit = divmod(value, 36)
        out.append(DIGITS[digit])
    return "".join(reversed(out))


def stamp(at: float) -> str:
    """The stamp of a batch decided at Unix time ``at``: its milliseconds in base 36 (8 characters, up to 2059).

    It names the run in its task id: two runs of one entry are a claim and a commit apart, more than a millisecond.
    """
    return base36(int(at * 1000), STAMP)


def newest_stamp(records: str) -> str:
    """The stamp of the newest of ``records`` (a decision's, newest first, as :func:`record` makes them), "" for none."""
    return records[1 : 1 + STAMP]


def record(code: str, batch_stamp: str, late_seconds: float) -> str:
    """One record: outcome letter, the batch's stamp, lateness in ms (capped), nothing reported yet."""
    return code + batch_stamp + lateness(int(late_seconds * 1000)) + NO_OUTCOME


def runtime_code(seconds: float) -> str:
    """A runtime as a record holds it: ``ln(1 + ms)`` times :data:`RUNTIME_SCALE`, 2 base-36 characters (capped)."""
    return base36(min(round(math.log1p(max(seconds, 0.0) * 1000) * RUNTIME_SCALE), 36**2 - 1), 2)


def runtime_seconds(code: str) -> float:
    """The runtime a :func:`runtime_code` stands for, in seconds (within 1%)."""
    return math.expm1(int(code, 36) / RUNTIME_SCALE) / 1000


@lru_cache(maxsize=4096)
def lateness(ms: int) -> str:
    """A lateness in ms as a record holds it (cached: the runs of a batch are mostly equally late)."""
    return base36(min(max(ms, 0), LATE_MAX), LATE)


def task_id(tag: str, name: str, run_stamp: str) -> str:
    """The task id of the run of entry ``name`` (schedule ``tag``) decided at ``run_stamp``: a UUID-shaped digest."""
    digest = _tag_hash(tag).copy()  # once per run of every sent task: the tag's part is hashed once
    digest.update(f"{name}\0{run_stamp}".encode("utf-8", "surrogateescape"))
    h = digest.hexdigest()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:32]}"


@lru_cache(maxsize=64)
def _tag_hash(tag: str) -> Any:
    return hashlib.md5(f"{tag}\0".encode("utf-8", "surrogateescape"), usedforsecurity=False)


@dataclass(frozen=True)
class Run:
    """One run as history holds it; ``result`` is what the worker integration reported of it (a word of
    :data:`RESULTS`, or ``lost``; None: nothing, or not sent), with its runtime in seconds and, for the entry's
    last failure, the exception's type and first line."""

    outcome: str
    sent_at: datetime
    due_at: datetime
    lateness: float
    task_id: str | None
    result: str | None = None
    runtime: float | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: times as ISO-8601, lateness and runtime in seconds."""
        return {"outcome": self.outcome, "sent_at": self.sent_at.isoformat(), "due_at": self.due_at.isoformat(),
                "lateness": self.lateness, "task_id": self.task_id, "result": self.result, "runtime": self.runtime,
                "error": self.error}


@dataclass(frozen=True)
class History:
    """An entry's counters and last runs, newest first; ``readable`` is False when the stored field did not read.

    ``last_failure`` is the time and error of the last run that failed (kept however old), ``last_success`` the
    time of the last run that succeeded among the runs kept.
    """

    name: str
    sent: int
    skipped: int
    missed: int
    runs: list[Run]
    readable: bool = True
    last_failure: tuple[datetime, str] | None = None

    @property
    def last_success(self) -> datetime | None:
        """When the newest kept run that succeeded was sent, None for none."""
        return next((run.sent_at for run in self.runs if run.result == "succeeded"), None)

    @property
    def failing(self) -> bool:
        """Whether the newest run with a reported outcome failed (or was lost)."""
        return next((run.result in ("failed", "lost") for run in self.runs if run.result is not None
                     and run.result != "retried"), False)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (the CLI's ``--json``)."""
        failure = self.last_failure
        success = self.last_success
        return {"name": self.name, "sent": self.sent, "skipped": self.skipped, "missed": self.missed,
                "last_success": success.isoformat() if success else None,
                "last_failure": {"at": failure[0].isoformat(), "error": failure[1]} if failure else None,
                "runs": [r.to_json() for r in self.runs]}


def with_pause_reason(history: History, pause: Any) -> History:
    """``history`` with the reason of the pause in force (a :class:`~celerybeatredis.definitions.pausing.Pause`) on the runs it skipped.

    Records keep no text, so the reason is the current pause's, shown on the skips since it began.
    """
    since = pause.at
    runs = [replace(run, outcome=f"{PAUSED}: {pause.reason}")
            if run.outcome == PAUSED and (since is None or run.sent_at >= since) else run for run in history.runs]
    return replace(history, runs=runs)


def parse(tag: str, name: str, raw: bytes | None, n: int | None = None, now: float | None = None) -> History:
    """The history stored as ``raw`` (None: none yet), its ``n`` newest runs; what does not read is left out, not raised.

    A sent run without an outcome reads as lost once :data:`LOST_AFTER` has passed since ``now`` (default: the
    clock), when another run of the entry has one (its worker reports runs).
    """
    if raw is None:
        return History(name=name, sent=0, skipped=0, missed=0, runs=[])
    text = raw.decode("ascii", "replace")
    text, bar, failed = text.partition("|")
    head, sep, body = text.partition(":")
    width = RECORD
    if not sep:
        head, sep, body = text.partition(";")
        width = OLD_RECORD
    counts = head.split(",")
    if not sep or len(counts) != 3 or not all(c.isdigit() for c in counts):
        return History(name=name, sent=0, skipped=0, missed=0, runs=[], readable=False)
    sent, skipped, missed = (int(c) for c in counts)
    failure = _failure(failed) if bar else None
    runs: list[Run] = []
    readable = True
    for i in range(0, len(body) - width + 1, width):
        if n is not None and len(runs) >= n:
            break
        rec = body[i : i + width]
        run = _run(tag, name, rec if width == RECORD else rec + NO_OUTCOME, failure)
        if run is None:
            readable = False
            break
        runs.append(run)
    if any(run.result is not None for run in runs):
        lost_before = EPOCH + timedelta(seconds=(time.time() if now is None else now) - LOST_AFTER)
        runs = [replace(run, result="lost") if run.result is None and run.task_id is not None and run.outcome != "publish-error"
                and run.sent_at < lost_before else run for run in runs]
    return History(name=name, sent=sent, skipped=skipped, missed=missed, runs=runs, readable=readable,
                   last_failure=failure[1:] if failure else None)


def _failure(text: str) -> tuple[str, datetime, str] | None:
    """The last failure after ``|``: (its stamp, when it was sent, its error)."""
    run_stamp, _, error = text.partition(" ")
    try:
        return run_stamp, EPOCH + timedelta(milliseconds=int(run_stamp, 36)), error
    except ValueError:
        return None


def _run(tag: str, name: str, rec: str, failure: tuple[str, datetime, str] | None) -> Run | None:
    code, run_stamp, late = rec[0], rec[1 : 1 + STAMP], rec[1 + STAMP : 1 + STAMP + LATE]
    result, runtime = rec[1 + STAMP + LATE], rec[2 + STAMP + LATE :]
    if code not in OUTCOMES or (result != "-" and result not in RESULTS):
        return None
    try:
        millis, late_ms = int(run_stamp, 36), int(late, 36)
        took = runtime_seconds(runtime) if result != "-" else None
    except ValueError:
        return None
    sent = EPOCH + timedelta(milliseconds=millis)
    lateness = late_ms / 1000
    reported = RESULTS.get(result)
    error = failure[2] if failure is not None and reported == "failed" and failure[0] == run_stamp else None
    return Run(outcome=OUTCOMES[code], sent_at=sent, due_at=sent - timedelta(seconds=lateness), lateness=lateness,
               task_id=task_id(tag, name, run_stamp) if code in WITH_TASK else None, result=reported, runtime=took,
               error=error)
