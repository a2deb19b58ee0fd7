"""What a decision is: the plan for commit.lua, the run to publish if any, and why; and the decisions that run nothing.

:func:`~.decisions.decide` returns one :class:`Decision` per claimed entry;
the planner, the publisher and the store read these records. The named tuples
are made with :data:`make` on the hot path (one per claimed entry).
"""

from __future__ import annotations

import logging
from typing import Literal, NamedTuple

from .batches import Batch
from .codec import Definition
from .exceptions import InvalidDefinition
from .history import record
from .keys import NEVER
from .wire import Claimed, Plan

#: Beat logs under the name of the module users configure it by, whichever of its modules speaks.
logger = logging.getLogger("celerybeatredis.schedulers")

#: Longest reason kept in ``{T}:invalid`` and the log; a reason quotes what it rejects, which may be long.
REASON_LIMIT = 1000

#: run: to publish once committed; wait: not due yet; held: its start_time is ahead; retired: disabled or finished;
#: paused: due, not sent while the entry is paused (due again at its next time); excluded: due on a day a calendar
#: of its ``exclude`` excludes, not sent either;
#: overlapped: due while its last run has not finished, skipped (overlap "skip");
#: buffered: due while its last run has not finished, held until it ends (overlap "buffer_one");
#: missed: due, its missed runs let go as its catchup says, none sent;
#: quarantined: its definition (or its run state) cannot be used.
Outcome = Literal["run", "wait", "held", "retired", "paused", "excluded", "overlapped", "buffered", "missed",
                  "quarantined"]

#: Makes the named tuples of the hot path without their Python-level ``__new__`` (half the cost); every field is given.
make = tuple.__new__


class Run(NamedTuple):
    """A run to publish: the definition to send, the entry's run count with this run, and the time it was due when
    it is sent for that time (a missed run caught up: ``"all"``), else ``""``."""

    definition: Definition
    total_run_count: int
    scheduled_at: str = ""


class Decision(NamedTuple):
    """What happens to one claimed entry: its plan for commit.lua, the run to publish if any, and why."""

    plan: Plan
    run: Run | None
    outcome: Outcome


def not_run(entry: Claimed, batch: Batch, score: float, digest_field: str, seed_count: int | None,
            seed_last: str | None, outcome: Outcome, skipped: str = "") -> Decision:
    """The decision for an entry that does not run now: due again at ``score``.

    A ``skipped`` run (its outcome letter) is noted in the history when a due time had passed (score > 0, not a
    look-now after an edit).
    """
    noted = skip_record(entry, batch, skipped) if skipped else ""
    plan = make(Plan, (entry.name, batch.lease, score, False, "", digest_field, "", seed_count, seed_last, noted, ""))
    return make(Decision, (plan, None, outcome))


def skip_record(entry: Claimed, batch: Batch, code: str) -> str:
    """The history record of a due run not sent (``code``: its reason), "" with history off or nothing due."""
    if not batch.stamp or entry.score <= 0:
        return ""
    return record(code, batch.stamp, batch.at - entry.score)


def quarantine_reason(name: str, problem: InvalidDefinition) -> str:
    """The one text a quarantined entry gets in ``{T}:invalid`` and the log: ``entry 'n': field 'f': why``, cut short."""
    return problem.for_entry(name).reason[:REASON_LIMIT]


def quarantine(name: str, lease: str, problem: InvalidDefinition, digest_field: str) -> Decision:
    """The decision that takes an entry out of service (score inf) until its definition or run state is fixed."""
    return Decision(Plan(name, lease, NEVER, digest=digest_field, invalid_reason=quarantine_reason(name, problem)), None,
                    "quarantined")


def log_quarantined(reason: str, tag: str, error: BaseException | None = None) -> None:
    """Say once (the entry is not claimed again until fixed) why an entry was quarantined; ``error`` adds its traceback."""
    logger.error("beat: %s; entry quarantined in {%s}:invalid", reason, tag, exc_info=error)
