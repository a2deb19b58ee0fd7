"""Run-state values (``last_run_at``, ``total_run_count``) read one way wherever they come from.

Beat, the store and the importers each read these values; one reader here
means a stored time with no zone, or a count of ``True``, means the same to all.
"""

from __future__ import annotations

from datetime import datetime

from .checks import aware, is_count
from .exceptions import InvalidDefinition


def parse_last_run_at(value: str | bytes | None) -> datetime | None:
    """A stored ``last_run_at`` as an aware datetime (a naive one is UTC, as beat writes UTC); None if absent or not a time.

    Never raises: a value edited by hand into something else must not stop beat
    or a listing, the entry is then treated as never run.
    """
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.decode() if isinstance(value, bytes) else value)
    except (ValueError, UnicodeDecodeError):
        return None
    return aware(parsed)


def check_run_count(value: object, field: str = "total_run_count", entry: str | None = None) -> int | None:
    """``value`` as a run count (None when absent), refusing what is not a non-negative integer (``True`` included).

    Raises:
        InvalidDefinition: naming ``field`` (and ``entry`` when given).
    """
    if value is None:
        return None
    if not is_count(value):
        raise InvalidDefinition(field, "must be a non-negative integer", entry)
    return value
