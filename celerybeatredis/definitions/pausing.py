"""A paused entry: kept apart from ``enabled``, with the reason, who paused it and when.

The pause is the definition's ``paused`` member,
``{"reason": "...", "by": "...", "at": "ISO-8601"}``, so redis-cli can set
and clear it like any other field. While it is there beat sends none of the
entry's runs: each run that comes due is recorded as skipped in the entry's
history and the entry is due again at its next time, so resuming needs no
recomputation.
"""

from __future__ import annotations

import getpass
import socket
from datetime import datetime
from typing import Any, NamedTuple

from ..exceptions import InvalidDefinition
from .checks import json_type, parse_date

#: The members a pause may have.
MEMBERS = ("reason", "by", "at")


class Pause(NamedTuple):
    """Why an entry is paused, who paused it (None: not said) and when (None: not said)."""

    reason: str
    by: str | None = None
    at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        """The member as stored (the time as ISO-8601)."""
        return {"reason": self.reason, "by": self.by, "at": self.at.isoformat() if self.at is not None else None}

    def describe(self) -> str:
        """``"reason" (by ops@host, since 2026-11-30T18:00:00+00:00)``, for ``show``."""
        said = [f"by {self.by}"] if self.by else []
        if self.at is not None:
            said.append(f"since {self.at.isoformat(timespec='seconds')}")
        reason = repr(self.reason) if self.reason else "(no reason given)"
        return f"{reason} ({', '.join(said)})" if said else reason


def parse_pause(value: Any) -> Pause:
    """The ``paused`` member: an object with a string ``reason`` and optional ``by`` and ``at``.

    Raises:
        InvalidDefinition: naming ``paused`` or the member at fault.
    """
    if not isinstance(value, dict):
        raise InvalidDefinition("paused", f'must be an object like {{"reason": "..."}}, not {json_type(value)}')
    unknown = sorted(set(value) - set(MEMBERS))
    if unknown:
        raise InvalidDefinition("paused", f"unknown member {unknown[0]!r} (known: {', '.join(MEMBERS)})")
    reason = value.get("reason")
    if not isinstance(reason, str):
        raise InvalidDefinition("paused.reason", f"must be a string, not {json_type(reason)}")
    by = value.get("by")
    if by is not None and not isinstance(by, str):
        raise InvalidDefinition("paused.by", f"must be a string or null, not {json_type(by)}")
    at = value.get("at")
    return Pause(reason=reason, by=by, at=parse_date(at, "paused.at") if at is not None else None)


def read_pause(doc: Any) -> Pause | None:
    """The pause of a decoded definition, None when it has none or it does not read (the listing shows the problem)."""
    value = doc.get("paused") if isinstance(doc, dict) else None
    if value is None:
        return None
    try:
        return parse_pause(value)
    except InvalidDefinition:
        return None


def pause_document(reason: str, by: str | None, at: datetime) -> dict[str, Any]:
    """The ``paused`` member :meth:`~celerybeatredis.store.ScheduleStore.pause` writes; ``by`` None is ``user@host``.

    Raises:
        InvalidDefinition: for a reason or a ``by`` that is not a string.
    """
    if not isinstance(reason, str):
        raise InvalidDefinition("paused.reason", f"must be a string, not {json_type(reason)}")
    if by is not None and not isinstance(by, str):
        raise InvalidDefinition("paused.by", f"must be a string or null, not {json_type(by)}")
    return Pause(reason=reason, by=by if by is not None else who_am_i(), at=at).to_json()


def who_am_i() -> str:
    """``user@host`` of this process, what a pause records when no one is named."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()}"
