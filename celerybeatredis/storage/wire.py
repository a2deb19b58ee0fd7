"""What goes to each Lua script and what comes back: records, ARGV encoders and one decoder per reply.

Each script's header in ``lua/`` is the contract; the functions here are its
Python side, so a change to a script's ARGV or reply is made in one place.
The tick's encoders and decoders (claim, commit) run once per entry of every
batch: they are written for speed, and the tick's records (:class:`Claimed`,
:class:`Plan`) are slotted classes filled by name. A stored ``last_run_at``
is read one way for every reader (:func:`parse_last_run_at`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
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


class Record:
    """A record of the tick, one made per claimed entry: its fields are ``__slots__``, read and set by name.

    Plain attributes rather than a named tuple: the tick fills them one by
    one, by name, which costs less than a call with a keyword per field
    (see :func:`decode_claim`, :func:`~celerybeatredis.decisions.decide.decide`).
    """

    __slots__: tuple[str, ...] = ()

    def fields(self) -> dict[str, Any]:
        """Every field by name."""
        return {name: getattr(self, name) for cls in reversed(type(self).__mro__) for name in getattr(cls, "__slots__", ())}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Record) and type(other) is type(self) and self.fields() == other.fields()

    __hash__ = None  # type: ignore[assignment]  # mutable: its fields are set one by one

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.fields().items())})"


class Claimed(Record):
    """An entry claimed for this tick, with its stored state.

    ``bad_run_count`` holds the stored ``total_run_count`` when it is not an integer; ``running`` is the
    entry's run marker (:mod:`~celerybeatredis.policies.overlap`), None for none.
    """

    __slots__ = ("bad_run_count", "definition", "digest", "last_run_at", "name", "running", "score", "total_run_count")
    name: str
    score: float
    definition: bytes
    total_run_count: int | None
    last_run_at: str | None
    digest: str | None
    bad_run_count: str | None
    running: bytes | None

    def __init__(self, name: str, score: float, definition: bytes, total_run_count: int | None = None,
                 last_run_at: str | None = None, digest: str | None = None, bad_run_count: str | None = None,
                 running: bytes | None = None) -> None:
        self.name = name
        self.score = score
        self.definition = definition
        self.total_run_count = total_run_count
        self.last_run_at = last_run_at
        self.digest = digest
        self.bad_run_count = bad_run_count
        self.running = running


@dataclass(frozen=True)
class Claim:
    """What one claim call returned."""

    now: float
    lease: str
    next_score: float | None
    removed: int
    entries: list[Claimed]


#: The fields commit.lua reads of each plan, in its ARGV's order.
PLAN_FIELDS = ("name", "lease", "score", "ran", "run_at", "digest", "invalid_reason", "seed_total_run_count",
               "seed_last_run_at", "history", "running")


class Plan(Record):
    """What commit.lua writes for one claimed entry: its next due score, the run it made, its history and marker.

    Beat's own plans are its decisions (:class:`~celerybeatredis.decisions.decide.Decision`, a plan with the run to
    send and why); a plan made by hand (tools, tests) names its entry, lease and score, the rest defaults to nothing.
    """

    __slots__ = PLAN_FIELDS
    name: str
    #: The claim's lease the entry must still hold for the commit to write it.
    lease: str
    score: float
    ran: bool
    run_at: str
    #: The ``{T}:digest`` value to write, "" to leave it.
    digest: str
    invalid_reason: str
    seed_total_run_count: int | None
    seed_last_run_at: str | None
    #: The run's history record (:mod:`.history`), or several, newest first; "" for none.
    history: str
    #: The run marker to write (:mod:`~celerybeatredis.policies.overlap`), " h" to hold a run behind the one in
    #: progress, "" for none.
    running: str

    def __init__(self, name: str, lease: str, score: float, ran: bool = False, run_at: str = "", digest: str = "",
                 invalid_reason: str = "", seed_total_run_count: int | None = None, seed_last_run_at: str | None = None,
                 history: str = "", running: str = "") -> None:
        self.name = name
        self.lease = lease
        self.score = score
        self.ran = ran
        self.run_at = run_at
        self.digest = digest
        self.invalid_reason = invalid_reason
        self.seed_total_run_count = seed_total_run_count
        self.seed_last_run_at = seed_last_run_at
        self.history = history
        self.running = running


class Pending(NamedTuple):
    """A committed run to send again (``at-least-once``): its task id, the entry's definition and run count now."""

    name: str
    task_id: str | None
    definition: str | None
    total_run_count: int
    #: The run's fire time and history stamp, "" when not kept (a record of an older beat).
    fire_time: str = ""
    stamp: str = ""


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
    for p in plans:  # attribute reads beat an attrgetter over the slots here (about 0.3 against 0.5 µs a plan)
        score, seed_count = p.score, p.seed_total_run_count
        extend((
            p.name.encode("utf-8", "surrogateescape"), p.lease, "inf" if score == NEVER else repr(float(score)),
            "1" if p.ran else "0", p.run_at, p.digest, p.invalid_reason, "" if seed_count is None else seed_count,
            p.seed_last_run_at or "", p.history, p.running,
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
    append, width, new = entries.append, CLAIM_ENTRY, object.__new__  # locals: this loop runs once per claimed entry
    for i in range(CLAIM_HEAD, len(reply), width):
        raw_name, score, definition, count, last, dig, mark = reply[i : i + width]
        entry = new(Claimed)
        entry.name = raw_name.decode("utf-8", "surrogateescape")
        entry.score = float(score)
        entry.definition = definition
        entry.total_run_count = entry.bad_run_count = None
        if count is not None:
            if redis_integer(count):
                entry.total_run_count = int(count)
            else:
                entry.bad_run_count = count.decode("utf-8", "replace")
        entry.last_run_at = last.decode("utf-8", "replace") if last is not None else None
        entry.digest = dig.decode("utf-8", "replace") if dig is not None else None
        entry.running = mark
        append(entry)
    return Claim(now=float(now), lease=lease.decode(), next_score=float(next_score) if next_score else None,
                 removed=int(removed), entries=entries)


def decode_flags(reply: list[Any]) -> list[bool]:
    """A reply of one 1 or 0 per entry (run_now)."""
    return [bool(flag) for flag in reply]


def decode_codes(reply: list[Any]) -> list[int]:
    """replace.lua's reply: one code per triple (1 replaced, 0 changed meanwhile, -1 no such entry)."""
    return [int(code) for code in reply]


def decode_upsert(reply: list[Any]) -> Upserted:
    """upsert.lua's reply: ``written, unchanged, {skipped}, {overwritten}``."""
    written, unchanged, skipped, overwritten = reply
    return Upserted(written=int(written), unchanged=int(unchanged), skipped=[name_text(n) for n in skipped],
                    overwritten=[name_text(n) for n in overwritten])


def decode_reconcile(reply: list[Any]) -> ReconcileStep:
    """reconcile.lua's reply: ``seen, poked, due seen, dropped, wrapped, synced``."""
    seen, poked, due_seen, dropped, wrapped, synced = reply
    return ReconcileStep(seen=int(seen), poked=int(poked), due_seen=int(due_seen), dropped=int(dropped), wrapped=bool(wrapped),
                         synced=bool(synced))


def decode_export(reply: list[Any]) -> list[Exported]:
    """export.lua's reply: seven values per exported entry."""
    out = []
    for i in range(0, len(reply), EXPORT_ENTRY):
        name, definition, count, last, dig, static, run_now = reply[i : i + EXPORT_ENTRY]
        out.append(Exported(name=name_text(name), definition=definition, total_run_count=count, last_run_at=last, digest=dig,
                            static=bool(static), run_now=bool(run_now)))
    return out


def decode_adopt(reply: list[Any]) -> Adopted:
    """adopt.lua's reply: ``adopted, merged``."""
    adopted, merged = reply
    return Adopted(adopted=int(adopted), merged=int(merged))


def redis_integer(raw: bytes) -> bool:
    """Whether Redis takes ``raw`` as a 64-bit integer (HINCRBY does), e.g. not ``00`` or ``1.5``."""
    try:
        value = int(raw)
    except ValueError:
        return False
    return str(value).encode() == raw and -(2**63) <= value < 2**63 - 1  # room for one more run


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


def aware(value: datetime) -> datetime:
    """``value`` with a zone: a naive time is UTC, as beat writes and the docs define."""
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
