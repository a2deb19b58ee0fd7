"""Jitter: each run of an entry delayed by a fixed offset in ``[0, jitter)`` seconds, the same on every beat.

The offset is a hash of the entry's name and the run's *slot* (the time the
schedule gives, before jitter), so every beat, ``next`` and ``list`` work out
the same time without sharing anything, and a fleet of entries due at one
moment spreads over the jitter window.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

from .checks import is_number, json_type
from .exceptions import InvalidDefinition

_SCALE = float(2**32)


def parse_jitter(value: Any) -> float:
    """The ``jitter`` member: seconds, a finite number of at least 0 (0: none).

    Raises:
        InvalidDefinition: naming ``jitter``.
    """
    if not is_number(value):
        raise InvalidDefinition("jitter", f"must be a number of seconds, not {json_type(value)}")
    if not math.isfinite(value) or value < 0:
        raise InvalidDefinition("jitter", f"must be a finite number of seconds of at least 0, not {value!r}")
    return float(value)


def offset(name: str, slot: float, jitter: float) -> float:
    """The delay of the run of entry ``name`` whose unjittered time is ``slot`` (Unix seconds): in ``[0, jitter)``.

    The slot is taken to the whole second, so the two ways beat works it out
    (from the time left, or from the last run) agree despite float rounding.
    """
    if jitter <= 0:
        return 0.0
    # CRC-32 rather than a cryptographic hash: it runs for every jittered run, and it is mixed well enough for
    # a spread (nothing depends on it being hard to predict). Below 1, times jitter it stays below jitter.
    return zlib.crc32(f"{name}\0{round(slot)}".encode("utf-8", "surrogateescape")) / _SCALE * jitter


def jittered(name: str, slot: float, jitter: float) -> float:
    """The time the run of slot ``slot`` is due: ``slot`` plus its offset, to the microsecond.

    To the microsecond, as Redis' claim reads the time: a score finer than
    that could be claimed by a beat whose time rounds to it, and found not due.
    """
    return to_microsecond(slot + offset(name, slot, jitter))


#: Scaled values below this are products within a quarter of the exact one (half an ulp, which is at most 0.5 there).
_FAST_BELOW = 2.0**52


def to_microsecond(value: float) -> float:
    """``round(value, 6)``, bit for bit, without its trip through decimal digits for most values (it runs per run).

    ``value * 1e6`` is then off the exact product by at most a quarter, so
    when it lies within a quarter of a whole number the exact product rounds
    to that number too; divided back (exactly representable, one correctly
    rounded division) it is the double nearest to that many microseconds,
    which is what ``round`` gives. Values near a half, zero, huge or not
    finite take ``round`` itself.
    """
    scaled = value * 1e6
    if -_FAST_BELOW < scaled < _FAST_BELOW:
        whole = round(scaled)
        if whole and -0.25 < scaled - whole < 0.25:
            return whole / 1e6
    return round(value, 6)
