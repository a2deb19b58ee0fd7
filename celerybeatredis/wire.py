"""What goes to each Lua script and what comes back: records, ARGV encoders and one decoder per reply.

Each script's header in ``lua/`` is the contract; the functions here are its
Python side, so a change to a script's ARGV or reply is made in one place.
The tick's encoders and decoders (claim, commit) run once per entry of every
batch: they are written for speed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from .keys import NEVER, name_bytes, name_text, score_arg

#: claim.lua's reply: four header values, then seven per claimed entry.
CLAIM_HEAD, CLAIM_ENTRY = 4, 7
#: export.lua's reply: seven values per exported entry.
EXPORT_ENTRY = 7


class Upserted(NamedTuple):
    """What upsert.lua did with a batch of definitions."""

    written: int
    unchanged: int
    #: Not written: a dynamic entry of that name (static mode), or an existing name ("new" mode).
    skipped: list[str]
    #: Static entries whose definition had been changed in Redis since beat_schedule wrote it, now overwritten.
    overwritten: list[str]


class Claimed(NamedTuple):
    """An entry claimed for this tick, with its stored state (a tuple: one is made per dispatch).

    ``bad_run_count`` holds the stored ``total_run_count`` when it is not an integer; ``running`` is the
    entry's run marker (overlap.py), None for none.
    """

    name: str
    score: float
    definition: bytes
    total_run_count: int | None
    last_run_at: str | None
    digest: str | None
    bad_run_count: str | None = None
    running: bytes | None = None


@dataclass(frozen=True)
class Claim:
    """What one claim call returned."""

    now: float
    lease: str
    next_score: float | None
    removed: int
    entries: list[Claimed]


class Plan(NamedTuple):
    """What the scheduler decided for one claimed entry, for commit.lua (a tuple: one is made per entry)."""

    name: str
    lease: str
    score: float
    ran: bool = False
    run_at: str = ""
    digest: str = ""
    invalid_reason: str = ""
    seed_total_run_count: int | None = None
    seed_last_run_at: str | None = None
    #: The run's history record (history.py), or several, newest first; "" for none.
    history: str = ""
    #: The run marker to write (overlap.py), " h" to hold a run behind the one in progress, "" for none.
    running: str = ""


class Pending(NamedTuple):
    """A committed run to send again (``at-least-once``): its task id, the entry's definition and run count now."""

    name: str
    task_id: str | None
    definition: str | None
    total_run_count: int


@dataclass(frozen=True)
class Revert:
    """A committed run to undo because its publish failed."""

    name: str
    committed_score: float
    retry_score: float
    previous_last_run_at: str | None
    invalid_reason: str = ""
    #: The stamp of the run's history record to mark as a publish error, "" for none.
    history_stamp: str = ""


@dataclass(frozen=True)
class Exported:
    """An entry taken out of service in one shard (export.lua), to be adopted by another."""

    name: str
    definition: bytes
    total_run_count: bytes | None
    last_run_at: bytes | None
    digest: bytes | None
    static: bool
    run_now: bool


class Adopted(NamedTuple):
    """What adopt.lua did: entries new in the shard, and entries merged with one already there."""

    adopted: int
    merged: int


@dataclass(frozen=True)
class ReconcileStep:
    """Counts from one reconciler step."""

    seen: int
    poked: int
    due_seen: int
    dropped: int
    wrapped: bool
    #: Whether ``{T}:synced`` exists; False once the schedule's Redis lost its data.
    synced: bool = True


@dataclass(frozen=True)
class StoredEntry:
    """An entry's definition and state as Redis holds them."""

    name: str
    raw: bytes
    score: float | None
    total_run_count: int
    last_run_at: str | None
    invalid_reason: str | None
    static: bool


# --- ARGV ------------------------------------------------------------------------------


def claim_args(batch: int, lease_seconds: float, now: float | None) -> list[Any]:
    """ARGV of claim.lua; ``now`` None lets the script read the server's clock."""
    return [batch, lease_seconds, "" if now is None else repr(now)]


def commit_args(plans: Sequence[Plan], history: int = 0, messages: str | None = None) -> list[Any]:
    """ARGV of commit.lua: the history depth (0 = off), eleven values per plan, then the runs' task messages if any."""
    args: list[Any] = [history]
    extend = args.extend
    for name, lease, score, ran, run_at, dig, reason, seed_count, seed_last, record, mark in plans:
        extend((
            name.encode("utf-8", "surrogateescape"), lease, "inf" if score == NEVER else repr(float(score)),
            "1" if ran else "0", run_at, dig, reason, "" if seed_count is None else seed_count, seed_last or "", record,
            mark,
        ))
    if messages is not None:
        args.append(messages)
    return args


def revert_args(reverts: Sequence[Revert]) -> list[Any]:
    """ARGV of revert.lua: six values per entry."""
    args: list[Any] = []
    for r in reverts:
        args += [name_bytes(r.name), score_arg(r.committed_score), score_arg(r.retry_score),
                 r.previous_last_run_at or "", r.invalid_reason, r.history_stamp]
    return args


def upsert_args(definitions: Mapping[str, str], static: bool, only_new: bool) -> list[str]:
    """ARGV of upsert.lua: the mode, then name and definition text per entry."""
    args = ["new" if only_new else "static" if static else "dynamic"]
    for name, text in definitions.items():
        args += [name, text]
    return args


def triples(rows: Iterable[tuple[Any, Any, Any]]) -> list[Any]:
    """ARGV of replace.lua, flattened from ``(name, expected, new)`` rows."""
    return [value for row in rows for value in row]


def restore_state_args(states: Sequence[tuple[str, int | None, str | None]]) -> list[Any]:
    """ARGV of restore_state.lua: name, run count or "", last run or "" per entry."""
    args: list[Any] = []
    for name, count, last in states:
        args += [name, "" if count is None else int(count), last or ""]
    return args


def adopt_args(entries: Sequence[Exported]) -> list[Any]:
    """ARGV of adopt.lua: the seven values export.lua gave per entry."""
    args: list[Any] = []
    for e in entries:
        args += [name_bytes(e.name), e.definition, e.total_run_count or "", e.last_run_at or "", e.digest or "",
                 "1" if e.static else "0", "1" if e.run_now else "0"]
    return args


# --- replies ----------------------------------------------------------------------------


def decode_claim(reply: list[Any]) -> Claim:
    """claim.lua's reply: ``now, lease, next score or "", removed``, then seven values per entry."""
    now, lease, next_score, removed = reply[:CLAIM_HEAD]
    entries: list[Claimed] = []
    append, width = entries.append, CLAIM_ENTRY  # locals: this loop runs once per claimed entry
    for i in range(CLAIM_HEAD, len(reply), width):
        raw_name, score, definition, count, last, dig, mark = reply[i : i + width]
        bad_count = None
        if count is not None:
            if redis_integer(count):
                count = int(count)
            else:
                bad_count = count.decode("utf-8", "replace")
                count = None
        append(Claimed(
            raw_name.decode("utf-8", "surrogateescape"),
            float(score),
            definition,
            count,
            last.decode("utf-8", "replace") if last is not None else None,
            dig.decode("utf-8", "replace") if dig is not None else None,
            bad_count,
            mark,
        ))
    return Claim(float(now), lease.decode(), float(next_score) if next_score else None, int(removed), entries)


def decode_flags(reply: list[Any]) -> list[bool]:
    """A reply of one 1 or 0 per entry (commit, revert, run_now)."""
    return [bool(flag) for flag in reply]


def decode_codes(reply: list[Any]) -> list[int]:
    """replace.lua's reply: one code per triple (1 replaced, 0 changed meanwhile, -1 no such entry)."""
    return [int(code) for code in reply]


def decode_upsert(reply: list[Any]) -> Upserted:
    """upsert.lua's reply: ``written, unchanged, {skipped}, {overwritten}``."""
    written, unchanged, skipped, overwritten = reply
    return Upserted(int(written), int(unchanged), [name_text(n) for n in skipped], [name_text(n) for n in overwritten])


def decode_reconcile(reply: list[Any]) -> ReconcileStep:
    """reconcile.lua's reply: ``seen, poked, due seen, dropped, wrapped, synced``."""
    seen, poked, due_seen, dropped, wrapped, synced = reply
    return ReconcileStep(int(seen), int(poked), int(due_seen), int(dropped), bool(wrapped), bool(synced))


def decode_export(reply: list[Any]) -> list[Exported]:
    """export.lua's reply: seven values per exported entry."""
    out = []
    for i in range(0, len(reply), EXPORT_ENTRY):
        name, definition, count, last, dig, static, run_now = reply[i : i + EXPORT_ENTRY]
        out.append(Exported(name_text(name), definition, count, last, dig, bool(static), bool(run_now)))
    return out


def decode_adopt(reply: list[Any]) -> Adopted:
    """adopt.lua's reply: ``adopted, merged``."""
    adopted, merged = reply
    return Adopted(int(adopted), int(merged))


def redis_integer(raw: bytes) -> bool:
    """Whether Redis takes ``raw`` as a 64-bit integer (HINCRBY does), e.g. not ``00`` or ``1.5``."""
    try:
        value = int(raw)
    except ValueError:
        return False
    return str(value).encode() == raw and -(2**63) <= value < 2**63 - 1  # room for one more run
