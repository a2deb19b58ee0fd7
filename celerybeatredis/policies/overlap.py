"""Overlap: what beat does with a run that falls due while the entry's previous run has not finished.

An entry with ``"overlap": "skip"`` or ``"buffer_one"`` gets a *run marker*
in ``{T}:running`` when beat commits a run of it: ``"<task id> <expires>
<timeout>"``, the expiry a Unix time, the timeout the entry's
``overlap_timeout``. The worker integration (:mod:`celerybeatredis.worker`)
moves the expiry on when the task starts and deletes the marker when it ends,
so a marker that outlives ``overlap_timeout`` belongs to a worker that died,
and no longer holds the entry back. ``buffer_one`` adds `` h`` to the marker
of the run in progress: the worker that ends it makes the entry due at once.
"""

from __future__ import annotations

from typing import NamedTuple

#: commit.lua's word for "hold one run behind the marker in place" (a marker never starts with a space).
HOLD = " h"


class Marker(NamedTuple):
    """A run marker as read: the run's task id, when it stops holding the entry back, whether a run is held."""

    task_id: str
    expires: float
    held: bool


def marker(task_id: str, now: float, timeout: float) -> str:
    """The marker beat commits with a run at ``now``: its task id, when it lapses, and the timeout a worker renews."""
    return task_id + marker_tail(now, timeout)


def marker_tail(now: float, timeout: float) -> str:
    """What follows the task id in a marker written at ``now``: the same for every run of a batch with that timeout."""
    return f" {now + timeout:.3f} {timeout:g}"


def read_marker(raw: str | bytes | None) -> Marker | None:
    """A stored marker, None for none or one that does not read (it then holds nothing back)."""
    if raw is None:
        return None
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    parts = text.split(" ")
    if len(parts) not in (3, 4) or not parts[0]:
        return None
    try:
        expires = float(parts[1])
    except ValueError:
        return None
    return Marker(task_id=parts[0], expires=expires, held=len(parts) == 4 and parts[3] == "h")


def busy(raw: str | bytes | None, now: float) -> Marker | None:
    """The marker of a run not finished at ``now`` (Unix seconds), None when the entry is free to run."""
    found = read_marker(raw)
    return found if found is not None and found.expires > now else None
