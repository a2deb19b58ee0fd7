"""Entries in words for people: schedules, next and last runs, sizes."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from ..definitions.checks import parse_date
from ..definitions.kinds import KINDS
from ..definitions.names import shown_name
from ..storage.history import History, Run
from .records import Entry

_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))


def describe_schedule(doc: Mapping[str, Any] | None) -> str:
    """``every 30 seconds``, ``daily at 07:30``, ``cron 0 7 * * 1``, ``once at ...``, ``at sunset (52.5, 13.4)``."""
    if not doc:
        return "?"
    kind = next((k for name, k in KINDS.items() if doc.get(name) is not None), None)
    if kind is None:
        return "?"
    text = kind.describe(doc[kind.name])
    if text == "?":
        return text
    if doc.get("one_off"):
        text += ", once"
    if doc.get("max_run_count"):
        text += f", at most {doc['max_run_count']} runs"
    jitter = doc.get("jitter")
    if isinstance(jitter, (int, float)) and not isinstance(jitter, bool) and jitter > 0:
        text += f", jitter {duration(jitter)}"
    if isinstance(doc.get("exclude"), list) and doc["exclude"]:
        text += f", except {', '.join(str(c) for c in doc['exclude'])}"
    text += _POLICIES.get(("overlap", doc.get("overlap")), "")
    text += _POLICIES.get(("catchup", doc.get("catchup")), "")
    return text


#: How ``list`` and ``show`` word a policy that is not the default, after the schedule.
_POLICIES: dict[tuple[str, Any], str] = {("overlap", "skip"): ", skip if running", ("overlap", "buffer_one"): ", hold one if running",
                                          ("catchup", "all"): ", catch up all", ("catchup", "none"): ", no catch-up"}


def duration(seconds: float) -> str:
    """``3m5s``, ``1h5m``, ``8h1m``, ``2d3h``: the largest unit and the one right after it, rounded to that one, so a
    figure is short and never skips a unit (``8h48s`` would read as eight hours and change)."""
    left = round(abs(seconds))
    at = next((i for i, (_, size) in enumerate(_UNITS) if left >= size), None)
    if at is None:
        return "0s"
    unit, size = _UNITS[at]
    if unit == "s":
        return f"{left}s"
    small_unit, small_size = _UNITS[at + 1]
    total = round(left / small_size)
    if at > 0 and total * small_size >= _UNITS[at - 1][1]:  # rounded up into the next larger unit
        return duration(total * small_size)
    big, small = divmod(total, size // small_size)
    return f"{big}{unit}" + (f"{small}{small_unit}" if small else "")


def relative(when: datetime, now: datetime) -> str:
    """``in 3m``, ``12s ago`` or ``now``."""
    delta = (when - now).total_seconds()
    if abs(delta) < 1:
        return "now"
    return f"in {duration(delta)}" if delta > 0 else f"{duration(delta)} ago"


def clock(when: datetime, now: datetime) -> str:
    """Local time: ``14:03:05`` today, else ``2024-05-01 14:03``."""
    local, today = when.astimezone(), now.astimezone()
    return local.strftime("%H:%M:%S") if local.date() == today.date() else local.strftime("%Y-%m-%d %H:%M")


def next_run(entry: Entry, now: datetime) -> str:
    """The next run in words, e.g. ``in 3m (14:03:05)``."""
    if entry.status == "pending":
        return "now (pending)"
    if entry.status == "run-now":
        return "now (run requested)"
    if entry.next_run_at is None:
        return "never"
    late = " overdue" if (now - entry.next_run_at).total_seconds() > 60 else ""
    return f"{relative(entry.next_run_at, now)} ({clock(entry.next_run_at, now)}){late}"


def last_run(entry: Entry, now: datetime) -> str:
    """The last run in words, e.g. ``12s ago (14:02:53)``, or ``never``."""
    if entry.last_run_at is None:
        return "never"
    return f"{relative(entry.last_run_at, now)} ({clock(entry.last_run_at, now)})"


def paused(entry: Entry) -> str | None:
    """The pause in words for ``show``: ``'reason' (by who, since when)``; None when the entry is not paused."""
    pause = entry.paused
    return pause.describe() if pause is not None else None


def why_never(entry: Entry, now: datetime) -> str | None:
    """Why an entry will never run again (for ``show``), None when it will (or beat has not looked at it yet)."""
    if entry.status == "invalid":
        return f"quarantined: {entry.invalid_reason}"
    if entry.status == "disabled":
        return "disabled (enabled is false)"
    if entry.status != "finished":
        return None
    doc = entry.definition or {}
    count = entry.total_run_count
    if doc.get("one_off") and count >= 1:
        return "one_off: it ran once"
    kind = next((k for name, k in KINDS.items() if doc.get(name) is not None), None)
    if kind is not None and kind.runs_once and count >= 1:
        return f"{kind.name}: its one run is done"
    limit = doc.get("max_run_count")
    if isinstance(limit, int) and count >= limit:
        return f"max_run_count: {count} of {limit} runs done"
    if isinstance(doc.get("expires"), str):
        return f"expires: {doc['expires']} has passed" if _passed(doc["expires"], now) else None
    return "finished"


def _passed(text: str, now: datetime) -> bool:
    try:
        return parse_date(text, "expires") <= now
    except ValueError:
        return False


def size(num_bytes: int) -> str:
    """``1.5 MiB``."""
    value = float(num_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{num_bytes} B"


def table(headers: list[str], rows: list[list[str]]) -> str:
    """Rows in aligned columns under a header line; a cell's line breaks and control characters are escaped, so a
    row is one line."""
    rows = [[shown_name(c) for c in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(headers, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows]
    return "\n".join(lines)


LIST_HEADERS = ["NAME", "TASK", "SCHEDULE", "ENABLED", "NEXT RUN", "LAST RUN", "RUNS"]


def list_row(entry: Entry, now: datetime) -> list[str]:
    """One row of the ``list`` view, under :data:`LIST_HEADERS`."""
    enabled = "yes" if entry.enabled else "no"
    pause = entry.paused
    if pause is not None:
        enabled += f" (paused{': ' + pause.reason if pause.reason else ''})"
    if entry.status == "invalid":
        enabled += " (invalid)"
    return [entry.name, entry.task or "?", describe_schedule(entry.definition), enabled, next_run(entry, now),
            last_run(entry, now), str(entry.total_run_count)]


def result_text(run: Run) -> str:
    """What the worker reported of a run in words: ``succeeded in 1.2s``, ``failed in 0.3s: KeyError: 'x'``, ``-``."""
    if run.result is None:
        return "-"
    took = f" in {run.runtime:.3g}s" if run.runtime is not None and run.result != "lost" else ""
    return f"{run.result}{took}{': ' + run.error if run.error else ''}"


def outcome_fields(history: History) -> list[tuple[str, str]]:
    """``show``'s lines of what the worker integration reported: the last success and the last failure (with its
    error); none when it reported nothing."""
    success, failure = history.last_success, history.last_failure
    if success is None and failure is None:
        return []
    return [("last ok", success.isoformat(timespec="seconds") if success else f"none in the last {len(history.runs)} runs"),
            ("last fail", f"{failure[0].isoformat(timespec='seconds')}: {failure[1]}" if failure else "none")]
