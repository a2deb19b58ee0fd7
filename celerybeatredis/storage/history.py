"""Run history of an entry: its last runs, in one ``{T}:history`` hash field, written by commit.lua.

A field reads ``"<sent>,<skipped>,<missed>;"`` (the entry's counters) then
fixed-width records, newest first, :data:`RECORD` characters each, so Lua
keeps the last N by cutting the string at ``N * RECORD``:

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
  at most ``zzzzz`` (about 16.8 hours).

The task id of a sent run is not stored: beat derives it from the schedule's
tag, the entry's name and the stamp (:func:`task_id`) and sends the task with
that id, so the id is read back from the history as the worker saw it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

#: Characters per record; also in lua/includes/history.lua.
RECORD = 14
STAMP = 8
LATE = 5
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
    """One record: outcome letter, the batch's stamp, lateness in ms (capped)."""
    return code + batch_stamp + lateness(int(late_seconds * 1000))


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
    """One run as history holds it."""

    outcome: str
    sent_at: datetime
    due_at: datetime
    lateness: float
    task_id: str | None

    def to_json(self) -> dict[str, Any]:
        """JSON-ready: times as ISO-8601, lateness in seconds."""
        return {"outcome": self.outcome, "sent_at": self.sent_at.isoformat(), "due_at": self.due_at.isoformat(),
                "lateness": self.lateness, "task_id": self.task_id}


@dataclass(frozen=True)
class History:
    """An entry's counters and last runs, newest first; ``readable`` is False when the stored field did not read."""

    name: str
    sent: int
    skipped: int
    missed: int
    runs: list[Run]
    readable: bool = True

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (the CLI's ``--json``)."""
        return {"name": self.name, "sent": self.sent, "skipped": self.skipped, "missed": self.missed,
                "runs": [r.to_json() for r in self.runs]}


def with_pause_reason(history: History, pause: Any) -> History:
    """``history`` with the reason of the pause in force (a :class:`~celerybeatredis.definitions.pausing.Pause`) on the runs it skipped.

    Records keep no text, so the reason is the current pause's, shown on the skips since it began.
    """
    since = pause.at
    runs = [replace(run, outcome=f"{PAUSED}: {pause.reason}")
            if run.outcome == PAUSED and (since is None or run.sent_at >= since) else run for run in history.runs]
    return replace(history, runs=runs)


def parse(tag: str, name: str, raw: bytes | None, n: int | None = None) -> History:
    """The history stored as ``raw`` (None: none yet), its ``n`` newest runs; what does not read is left out, not raised."""
    if raw is None:
        return History(name=name, sent=0, skipped=0, missed=0, runs=[])
    text = raw.decode("ascii", "replace")
    head, sep, body = text.partition(";")
    counts = head.split(",")
    if not sep or len(counts) != 3 or not all(c.isdigit() for c in counts):
        return History(name=name, sent=0, skipped=0, missed=0, runs=[], readable=False)
    sent, skipped, missed = (int(c) for c in counts)
    runs: list[Run] = []
    for i in range(0, len(body) - RECORD + 1, RECORD):
        if n is not None and len(runs) >= n:
            break
        run = _run(tag, name, body[i : i + RECORD])
        if run is None:
            return History(name=name, sent=sent, skipped=skipped, missed=missed, runs=runs, readable=False)
        runs.append(run)
    return History(name=name, sent=sent, skipped=skipped, missed=missed, runs=runs)


def _run(tag: str, name: str, rec: str) -> Run | None:
    code, run_stamp, late = rec[0], rec[1 : 1 + STAMP], rec[1 + STAMP :]
    if code not in OUTCOMES:
        return None
    try:
        millis, late_ms = int(run_stamp, 36), int(late, 36)
    except ValueError:
        return None
    sent = EPOCH + timedelta(milliseconds=millis)
    lateness = late_ms / 1000
    return Run(outcome=OUTCOMES[code], sent_at=sent, due_at=sent - timedelta(seconds=lateness), lateness=lateness,
               task_id=task_id(tag, name, run_stamp) if code in WITH_TASK else None)
