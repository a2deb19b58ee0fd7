"""The ``{T}:digest`` value beat commits for an entry, and the anchor a never-run entry is timed from.

The value is the definition's short digest, followed, until the entry first
runs, by the time beat first saw this version of it (the *anchor*): an
entry with no last run has its first run timed from there.
"""

from __future__ import annotations

import math

from ..definitions.codec import SHORT_DIGEST


def digest_and_anchor(stored: str | None, sha: str, has_run: bool, now: float) -> tuple[str, float]:
    """The ``{T}:digest`` value to commit (``""``: leave it as stored) and the anchor to time a never-run entry from.

    The anchor (when beat first saw this version of the definition) is kept
    until the entry has a last run to time its runs from; a revert puts a
    last run back, never removes it, so it is not needed after that. A stored
    full SHA-1 (older data) is honoured, and shortened.
    """
    stored = stored or ""
    stored_sha, _, stored_anchor = stored.partition(" ")
    fresh = len(stored_sha) >= SHORT_DIGEST and sha.startswith(stored_sha)
    anchor = _finite(stored_anchor) if fresh and stored_anchor else None
    if has_run:
        value = sha[:SHORT_DIGEST]
    elif anchor is not None and len(stored_sha) == SHORT_DIGEST:
        value = stored  # the stored anchor stays as written
    else:
        if anchor is None:
            anchor = now
        value = f"{sha[:SHORT_DIGEST]} {anchor:.6f}"
    return "" if value == stored else value, now if anchor is None else anchor


def _finite(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None
