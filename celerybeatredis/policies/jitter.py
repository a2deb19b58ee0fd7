"""Jitter: each run of an entry delayed by a fixed offset in ``[0, jitter)`` seconds, the same on every beat.

The offset is a hash of the entry's name and the run's *slot* (the time the
schedule gives, before jitter), so every beat, ``next`` and ``list`` work out
the same time without sharing anything, and a fleet of entries due at one
moment spreads over the jitter window.
"""

from __future__ import annotations

import zlib

_SCALE = float(2**32)


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


#: Scaled values below these are products within 1/8 (below 2**51, where an ulp is at most 1/4) or 1/4 (below 2**52)
#: of the exact one: half an ulp. 2**51 microseconds is in 2041.
_EIGHTH_BELOW = 2.0**51
_QUARTER_BELOW = 2.0**52


def to_microsecond(value: float) -> float:
    """``round(value, 6)``, bit for bit, without its trip through decimal digits for most values (it runs per run).

    ``value * 1e6`` is off the exact product by at most half an ulp (``e``),
    so when it lies closer than ``1/2 - e`` to a whole number the exact
    product rounds to that number too; divided back (exactly representable,
    one correctly rounded division) it is the double nearest to that many
    microseconds, which is what ``round`` gives. Values near a half, zero,
    huge or not finite take ``round`` itself.
    """
    scaled = value * 1e6
    if -_EIGHTH_BELOW < scaled < _EIGHTH_BELOW:
        whole = round(scaled)
        if whole and -0.375 < scaled - whole < 0.375:
            return whole / 1e6
    elif -_QUARTER_BELOW < scaled < _QUARTER_BELOW:
        whole = round(scaled)
        if -0.25 < scaled - whole < 0.25:
            return whole / 1e6
    return round(value, 6)
