"""The schedule store: the only code that talks to Redis keys.

Keys of one schedule share the hash tag ``{T}`` (see README.rst), so the
whole schedule lives in one Redis Cluster slot. Every write that changes the
due index, run state or digests goes through a Lua script in ``lua/``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any

import redis
from celery import Celery
from redis.commands.core import Script

from .settings import Settings, key_tag

SCRIPT_NAMES = ("claim", "commit", "revert", "reconcile", "upsert", "remove", "run_now")
NEVER = math.inf
#: Score meaning "look at this entry now" (new, edited, poked).
LOOK_NOW = 0.0
#: Score meaning "dispatch now, as a run" (run_now).
RUN_NOW = -1.0


@dataclass(frozen=True)
class Keys:
    """The Redis keys of one schedule."""

    tag: str

    def _key(self, name: str) -> str:
        return f"{{{self.tag}}}:{name}"

    @property
    def schedule(self) -> str:
        """Hash: entry name -> definition JSON."""
        return self._key("schedule")

    @property
    def due(self) -> str:
        """Sorted set: entry name -> next due time (Unix seconds)."""
        return self._key("due")

    @property
    def total_run_count(self) -> str:
        """Hash: entry name -> number of runs."""
        return self._key("total_run_count")

    @property
    def last_run_at(self) -> str:
        """Hash: entry name -> ISO-8601 time of the last run."""
        return self._key("last_run_at")

    @property
    def statics(self) -> str:
        """Set: names that came from ``beat_schedule``."""
        return self._key("statics")

    @property
    def invalid(self) -> str:
        """Hash: entry name -> why its definition was rejected."""
        return self._key("invalid")

    @property
    def digest(self) -> str:
        """Hash: entry name -> ``"<sha1 of definition> <anchor>"`` as last planned."""
        return self._key("digest")

    @property
    def meta(self) -> str:
        """Hash: reconciler cursors and the schema version."""
        return self._key("meta")

    def for_script(self, script: str) -> list[str]:
        """KEYS for ``script``, in the order its header declares."""
        layout = {
            "claim": [self.due, self.schedule, self.total_run_count, self.last_run_at, self.digest, self.invalid],
            "commit": [self.due, self.total_run_count, self.last_run_at, self.digest, self.invalid],
            "revert": [self.due, self.total_run_count, self.last_run_at],
            "reconcile": [
                self.schedule, self.due, self.digest, self.meta, self.total_run_count, self.last_run_at, self.invalid,
            ],
            "upsert": [self.schedule, self.due, self.statics],
            "remove": [
                self.schedule, self.due, self.total_run_count, self.last_run_at, self.digest, self.invalid,
                self.statics,
            ],
            "run_now": [self.schedule, self.due],
        }
        return layout[script]


@dataclass(frozen=True)
class Claimed:
    """An entry claimed for this tick, with its stored state."""

    name: str
    score: float
    definition: bytes
    total_run_count: int | None
    last_run_at: str | None
    digest: str | None


@dataclass(frozen=True)
class Claim:
    """What one claim call returned."""

    now: float
    lease: str
    next_score: float | None
    removed: int
    entries: list[Claimed]


@dataclass(frozen=True)
class Plan:
    """What the scheduler decided for one claimed entry, for commit.lua."""

    name: str
    lease: str
    score: float
    ran: bool = False
    run_at: str = ""
    digest: str = ""
    invalid_reason: str = ""
    seed_total_run_count: int | None = None
    seed_last_run_at: str | None = None


@dataclass(frozen=True)
class Revert:
    """A committed run to undo because its publish failed."""

    name: str
    committed_score: float
    retry_score: float
    previous_last_run_at: str | None


@dataclass(frozen=True)
class ReconcileStep:
    """Counts from one reconciler step."""

    seen: int
    poked: int
    due_seen: int
    dropped: int
    wrapped: bool


def score_arg(score: float) -> str:
    """A score as text Redis and Lua read back to the same double."""
    if score == math.inf:
        return "inf"
    return repr(float(score))


def load_script_text(name: str) -> str:
    """Text of ``lua/<name>.lua``, from the installed package or a source checkout."""
    packaged = resources.files("celerybeatredis").joinpath("lua", f"{name}.lua")
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    source = Path(__file__).resolve().parent.parent / "lua" / f"{name}.lua"
    return source.read_text(encoding="utf-8")


class RedisStore:
    """A schedule in Redis: keys under one hash tag, changed through Lua scripts.

    Args:
        client: A ``redis.Redis`` (or ``RedisCluster``) client; replies must be bytes
            (no ``decode_responses``).
        key_prefix: The schedule's key prefix, e.g. ``tasks:meta:``.
    """

    def __init__(self, client: Any, key_prefix: str) -> None:
        self.client = client
        self.keys = Keys(key_tag(key_prefix))

    @classmethod
    def from_url(cls, url: str, key_prefix: str, **options: Any) -> RedisStore:
        """A store on a new client for ``url``."""
        return cls(redis.Redis.from_url(url, **options), key_prefix)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        """A store on a new client made from scheduler settings."""
        options = dict(settings.redis_options or {})
        options.setdefault("health_check_interval", 30)
        options.setdefault("socket_keepalive", True)
        return cls.from_url(settings.url, settings.key_prefix, **options)

    @classmethod
    def from_app(cls, app: Celery) -> RedisStore:
        """A store for the schedule ``app``'s configuration names."""
        return cls.from_settings(Settings.from_app(app))

    @cached_property
    def scripts(self) -> dict[str, Script]:
        """Registered scripts by name (registered once per store)."""
        return {name: self.client.register_script(load_script_text(name)) for name in SCRIPT_NAMES}

    def _run(self, script: str, args: Sequence[Any]) -> Any:
        return self.scripts[script](keys=self.keys.for_script(script), args=list(args))

    # --- the tick ------------------------------------------------------------

    def claim(self, batch: int, lease_seconds: float, now: float | None = None) -> Claim:
        """Claim up to ``batch`` entries due at ``now`` (default: Redis server time)."""
        reply = self._run("claim", [batch, lease_seconds, "" if now is None else repr(now)])
        entries = []
        for i in range(4, len(reply), 6):
            count = reply[i + 3]
            last = reply[i + 4]
            dig = reply[i + 5]
            entries.append(
                Claimed(
                    name=reply[i].decode(),
                    score=float(reply[i + 1]),
                    definition=reply[i + 2],
                    total_run_count=int(count) if count is not None else None,
                    last_run_at=last.decode() if last is not None else None,
                    digest=dig.decode() if dig is not None else None,
                )
            )
        next_score = float(reply[2]) if reply[2] else None
        return Claim(float(reply[0]), reply[1].decode(), next_score, int(reply[3]), entries)

    def commit(self, plans: Sequence[Plan]) -> list[bool]:
        """Write the plans whose lease still holds; one flag per plan."""
        args: list[Any] = []
        for p in plans:
            args += [
                p.name, p.lease, score_arg(p.score), "1" if p.ran else "0", p.run_at, p.digest,
                p.invalid_reason, "" if p.seed_total_run_count is None else p.seed_total_run_count,
                p.seed_last_run_at or "",
            ]
        return [bool(flag) for flag in self._run("commit", args)] if plans else []

    def revert(self, reverts: Sequence[Revert]) -> list[bool]:
        """Undo committed runs that were never published; one flag per entry."""
        args: list[Any] = []
        for r in reverts:
            args += [r.name, score_arg(r.committed_score), score_arg(r.retry_score), r.previous_last_run_at or ""]
        return [bool(flag) for flag in self._run("revert", args)] if reverts else []

    def reconcile_step(self, count: int) -> ReconcileStep:
        """One bounded reconciler step (see ``lua/reconcile.lua``)."""
        seen, poked, due_seen, dropped, wrapped = self._run("reconcile", [count])
        return ReconcileStep(int(seen), int(poked), int(due_seen), int(dropped), bool(wrapped))

    def server_time(self) -> float:
        """Redis server time in Unix seconds (the clock every beat shares)."""
        seconds, micros = self.client.time()
        return seconds + micros / 1_000_000

    # --- writing definitions ---------------------------------------------------

    def put_raw(self, definitions: Mapping[str, str], static: bool = False) -> tuple[int, int, list[str]]:
        """Store definition JSON texts as they are (callers validate first).

        Returns:
            ``(written, unchanged, skipped)``; ``skipped`` lists names not written in
            static mode because a dynamic entry of that name exists.
        """
        args: list[str] = ["static" if static else "dynamic"]
        for name, text in definitions.items():
            args += [name, text]
        if len(args) == 1:
            return 0, 0, []
        reply = self._run("upsert", args)
        return int(reply[0]), int(reply[1]), [n.decode() for n in reply[2:]]

    def remove_names(self, names: Iterable[str]) -> int:
        """Remove entries and all their state; returns how many existed."""
        names = list(names)
        return int(self._run("remove", names)) if names else 0

    def run_now_names(self, names: Iterable[str]) -> list[bool]:
        """Make entries due at once, as a run; one flag per name (False = no such entry)."""
        names = list(names)
        return [bool(flag) for flag in self._run("run_now", names)] if names else []

    # --- reading ----------------------------------------------------------------

    def get_raw(self, name: str) -> bytes | None:
        """The stored definition text of ``name``, or None."""
        value: bytes | None = self.client.hget(self.keys.schedule, name)
        return value

    def run_state(self, name: str) -> tuple[int, datetime | None]:
        """``(total_run_count, last_run_at)`` of ``name``."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hget(self.keys.total_run_count, name)
        pipe.hget(self.keys.last_run_at, name)
        count, last = pipe.execute()
        return int(count or 0), datetime.fromisoformat(last.decode()) if last else None

    def due_score(self, name: str) -> float | None:
        """The entry's score in the due index, or None."""
        score: float | None = self.client.zscore(self.keys.due, name)
        return score

    def invalid_reason(self, name: str) -> str | None:
        """Why ``name`` is quarantined, or None."""
        value = self.client.hget(self.keys.invalid, name)
        return value.decode() if value is not None else None

    def count(self) -> int:
        """Number of entries (O(1))."""
        return int(self.client.hlen(self.keys.schedule))

    def iter_static_names(self) -> Iterator[str]:
        """Names in ``{T}:statics``, scanned incrementally."""
        for name in self.client.sscan_iter(self.keys.statics, count=500):
            yield name.decode()
