"""Holding beat's stop signals while a batch is claimed, committed and published, so a stop falls between batches."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Union

#: ``celery beat`` stops on these by raising SystemExit from its handler, wherever the main thread is.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})

#: What ``signal.getsignal`` returns for a handler Python can put back.
_Handler = Union[Callable[[int, Union[FrameType, None]], object], int, signal.Handlers]


@contextlib.contextmanager
def stop_signals_held() -> Iterator[list[int]]:
    """Hold SIGTERM and SIGINT until the block ends, so a stop lands before a claim or after its batch's publish.

    A committed batch is published whole (or its runs reverted) before beat
    exits; without this, a stop between commit and publish would lose the
    batch's runs, and one between claim and commit would leave the batch
    reserved for the lease. Blocks may nest: an inner one hands a signal it
    noted to the outer one. The signals' handlers are swapped for ones that only note
    the signal (masking would not do: the kernel hands a process's signal to
    any thread that does not mask it), then put back, and a noted signal is
    raised again for them. Python runs signal handlers in the main thread
    only, so elsewhere nothing is held. SIGKILL cannot be held: that is the
    documented window. The block gets the list of signals held so far, to
    wind down early when one came.
    """
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous: dict[signal.Signals, _Handler] = {}
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if handler is not None:  # None: a handler installed from C, which Python cannot put back
            previous[signum] = handler
            signal.signal(signum, lambda number, _frame: caught.append(number))
    try:
        yield caught
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)
