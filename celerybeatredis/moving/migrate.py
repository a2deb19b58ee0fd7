"""Move schedules over from the old celerybeat-redis and from RedBeat.

The readers here are the only code that touches those tools' keys (the
schedule's own keys stay with :mod:`celerybeatredis.storage`). A migration runs
in two passes: the first reads every old entry, converts and validates it, and
picks one key per name; the second re-reads the picked keys a batch at a time
and writes them through the store. Old keys are left alone unless asked to
delete them. Run state is carried over where the schedule has none yet, so a
migration can be repeated.

Old celerybeat-redis
    A string key ``<prefix><name>:<sha1>`` (or ``<prefix><name>``) per entry,
    holding the JSON document of its README (``interval`` / ``crontab``,
    ``total_run_count``, ``last_run_at`` as ``{"__type__": "datetime", ...}``);
    later releases put the interval or crontab under ``schedule``. An edit
    could leave older ``:<sha1>`` copies behind: the copy that ran last wins.

RedBeat
    A hash ``<prefix><name>`` per entry with a ``definition`` field (``task``,
    ``args``, ``kwargs``, ``options``, ``enabled``, and ``schedule`` as
    ``{"__type__": "interval", "every": seconds, "relative": ...}`` or
    ``{"__type__": "crontab", ...}``) and a ``meta`` field (``last_run_at``,
    ``total_run_count``); ``<prefix>:schedule`` is its due index and
    ``<prefix>:statics`` the names that came from ``beat_schedule``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from operator import attrgetter
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from ..definitions import rrules
from ..definitions.checks import parse_date
from ..definitions.codec import load_document
from ..definitions.fields import check_run_count
from ..definitions.kinds import CRON_FIELDS, KINDS, interval_to_json
from ..exceptions import InvalidDefinition
from ..managing.bulk import ValidatedEntry
from ..managing.records import BulkResult
from ..storage.connection import RedisClient, is_cluster
from ..store import ScheduleStore

SOURCES = ("celerybeat-redis", "redbeat")
DEFAULT_PREFIXES = {"celerybeat-redis": "tasks:meta:", "redbeat": "redbeat:"}

_SHA1_SUFFIX = re.compile(r"^(.*):[0-9a-f]{40}$")
#: Members the old scheduler kept in its documents that are not part of a definition.
_OLD_INTERNALS = ("_id", "key", "delete_key", "running", "last_task_id", "total_run_count", "last_run_at")


@dataclass(frozen=True)
class OldEntry:
    """One entry read from an old layout, converted (or the reason it cannot be)."""

    key: str
    name: str
    definition: dict[str, Any] | None
    total_run_count: int | None = None
    last_run_at: datetime | None = None
    static: bool = False
    error: str | None = None


class Source(Protocol):
    """An old schedule layout a migration reads from."""

    def scan(self) -> Iterator[list[OldEntry]]:
        """Every old entry, a batch at a time."""

    def fetch(self, keys: list[str]) -> list[OldEntry]:
        """Read these keys again (entries deleted meanwhile are left out)."""

    def delete(self, entries: list[OldEntry], keys: list[str]) -> int:
        """Remove migrated entries (and their stale ``keys``) from the old layout; returns keys deleted."""


@dataclass
class Plan:
    """What the first pass found."""

    keys_seen: int = 0
    picked: dict[str, tuple[str, float, int]] = field(default_factory=dict)
    stale_keys: dict[str, list[str]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    @property
    def entries(self) -> int:
        """Entries that can be migrated."""
        return len(self.picked)


@dataclass
class Result:
    """What the second pass did: what it wrote, and what it met besides."""

    #: The entries written, unchanged, skipped (a dynamic entry holds the name) and run states restored.
    counts: BulkResult = field(default_factory=BulkResult)
    #: Picked keys gone or changed since the first pass.
    vanished: int = 0
    deleted_keys: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def migrated(self) -> int:
        """Entries now in the schedule as the old layout had them."""
        return self.counts.written + self.counts.unchanged


class CeleryBeatRedisSource:
    """Reads the old celerybeat-redis string keys under ``prefix``.

    Args:
        client: Client on the old schedule's Redis (bytes replies).
        prefix: The old ``CELERY_REDIS_SCHEDULER_KEY_PREFIX``.
        static_names: Names to migrate as static (the app's ``beat_schedule``).
    """

    def __init__(self, client: RedisClient, prefix: str, static_names: frozenset[str] = frozenset(), page: int = 1000) -> None:
        self.client = client
        self.prefix = prefix
        self.static_names = static_names
        self.page = page

    def scan(self) -> Iterator[list[OldEntry]]:
        """Every string key under the prefix, converted."""
        return scan_batches(self.client, self.prefix, "string", self.page, self.fetch)

    def fetch(self, keys: list[str]) -> list[OldEntry]:
        """Convert the documents at ``keys`` (on a cluster, one MGET per slot: old keys have no hash tag)."""
        read = self.client.mget_nonatomic if is_cluster(self.client) else self.client.mget
        values: Any = read(keys) if keys else []
        return [self.convert(key, raw) for key, raw in zip(keys, values) if raw is not None]

    def convert(self, key: str, raw: bytes) -> OldEntry:
        """One old key and its document -> :class:`OldEntry`."""
        rest = key[len(self.prefix):]
        match = _SHA1_SUFFIX.match(rest)
        name = match.group(1) if match else rest
        if not name:
            return OldEntry(key=key, name=rest, definition=None, error=f"old key {key!r}: no entry name after the prefix")
        try:
            doc = load_document(raw)
            if not isinstance(doc, dict):
                raise InvalidDefinition("", "the document is not a JSON object")
            count = check_run_count(doc.get("total_run_count"))
            last = doc.get("last_run_at")
            last_at = parse_date(last, "last_run_at") if last is not None else None
            definition = {k: dates_to_iso(v) for k, v in doc.items() if k not in _OLD_INTERNALS}
            if not any(definition.get(kind) is not None for kind in KINDS) and isinstance(definition.get("schedule"), dict):
                definition.update(_old_schedule(definition.pop("schedule")))
        except InvalidDefinition as exc:
            return OldEntry(key=key, name=name, definition=None, error=f"old key {key!r}: {exc.for_entry(name).reason}")
        return OldEntry(key=key, name=name, definition=definition, total_run_count=count, last_run_at=last_at,
                        static=name in self.static_names)

    def delete(self, entries: list[OldEntry], keys: list[str]) -> int:
        """Delete the old keys."""
        all_keys = [e.key for e in entries] + keys
        return int(self.client.delete(*all_keys)) if all_keys else 0


class RedBeatSource:
    """Reads RedBeat's entry hashes under ``prefix`` (RedBeat's ``redbeat_key_prefix``).

    Args:
        client: Client on RedBeat's Redis (bytes replies).
        prefix: RedBeat's key prefix, ``redbeat:`` by default.
    """

    def __init__(self, client: RedisClient, prefix: str, page: int = 1000) -> None:
        self.client = client
        self.prefix = prefix
        self.schedule_key = prefix + ":schedule"
        self.statics_key = prefix + ":statics"
        self.page = page
        self._statics: frozenset[str] | None = None

    @property
    def statics(self) -> frozenset[str]:
        """Names RedBeat synced from ``beat_schedule``."""
        if self._statics is None:
            members: Any = self.client.smembers(self.statics_key) if self.client.type(self.statics_key) == b"set" else set()
            self._statics = frozenset(m.decode("utf-8", "replace") for m in members)
        return self._statics

    def scan(self) -> Iterator[list[OldEntry]]:
        """Every entry hash under the prefix, converted."""
        return scan_batches(self.client, self.prefix, "hash", self.page, self.fetch)

    def fetch(self, keys: list[str]) -> list[OldEntry]:
        """Convert the hashes at ``keys`` (hashes without a ``definition`` are not RedBeat entries)."""
        pipe = self.client.pipeline(transaction=False)
        for key in keys:
            pipe.hmget(key, ["definition", "meta"])
        replies = pipe.execute() if keys else []
        return [self.convert(key, d, m) for key, (d, m) in zip(keys, replies) if d is not None]

    def convert(self, key: str, definition: bytes, meta: bytes | None) -> OldEntry:
        """One RedBeat hash -> :class:`OldEntry`."""
        name = key[len(self.prefix):]
        try:
            doc = _json_object(definition, "definition")
            if isinstance(doc.get("name"), str) and doc["name"]:
                name = doc["name"]
            out: dict[str, Any] = {"task": doc.get("task"), "enabled": doc.get("enabled", True)}
            out.update(_redbeat_schedule(doc.get("schedule")))
            for member in ("args", "kwargs", "options"):
                if doc.get(member):
                    out[member] = dates_to_iso(doc[member])
            state = _json_object(meta, "meta") if meta else {}
            count = check_run_count(state.get("total_run_count"), "meta.total_run_count")
            last = state.get("last_run_at")
            last_at = datetime.fromisoformat(dates_to_iso(last)) if isinstance(last, dict) else None
        except InvalidDefinition as exc:
            return OldEntry(key=key, name=name, definition=None, error=f"RedBeat key {key!r}: {exc.for_entry(name).reason}")
        except (ValueError, TypeError) as exc:
            return OldEntry(key=key, name=name, definition=None, error=f"RedBeat key {key!r}: entry {name!r}: {exc}")
        return OldEntry(key=key, name=name, definition=out, total_run_count=count, last_run_at=last_at,
                        static=name in self.statics)

    def delete(self, entries: list[OldEntry], keys: list[str]) -> int:
        """Delete the entry hashes and drop them from RedBeat's due index and statics."""
        if not entries:
            return 0
        pipe = self.client.pipeline(transaction=False)
        for entry in entries:  # one DEL per key: a cluster pipeline takes no multi-slot DEL
            pipe.delete(entry.key)
        pipe.zrem(self.schedule_key, *[e.key for e in entries])
        pipe.srem(self.statics_key, *[e.name for e in entries])
        return sum(int(deleted) for deleted in pipe.execute()[:len(entries)])


def make_source(kind: str, client: RedisClient, prefix: str | None, static_names: frozenset[str] = frozenset()) -> Source:
    """The reader for ``kind`` (one of :data:`SOURCES`)."""
    prefix = prefix or DEFAULT_PREFIXES[kind]
    if kind == "redbeat":
        return RedBeatSource(client, prefix)
    return CeleryBeatRedisSource(client, prefix, static_names)


def plan(source: Source, store: ScheduleStore, progress: Callable[[int], None] | None = None) -> Plan:
    """First pass: read, convert and validate every old entry; pick one key per name."""
    found = Plan()
    for batch in source.scan():
        found.keys_seen += len(batch)
        for old in batch:
            problem = old.error
            if problem is None:
                assert old.definition is not None
                try:
                    store.validate(old.name, old.definition)
                except InvalidDefinition as exc:
                    problem = f"old key {old.key!r}: {exc.reason}"
            if problem is not None:
                found.problems.append(problem)
                continue
            rank = (old.last_run_at.timestamp() if old.last_run_at else 0.0, old.total_run_count or 0)
            current = found.picked.get(old.name)
            if current is None or rank > current[1:]:
                found.picked[old.name] = (old.key, *rank)
            if current is not None:
                stale = current[0] if found.picked[old.name][0] == old.key else old.key
                found.stale_keys.setdefault(old.name, []).append(stale)
        if progress:
            progress(len(batch))
    return found


def migrate(source: Source, store: ScheduleStore, found: Plan, delete_old: bool = False, batch_size: int = 1000,
            progress: Callable[[int], None] | None = None) -> Result:
    """Second pass: write the picked entries with their run state; delete old keys if asked."""
    result = Result()
    keys = [key for key, _, _ in found.picked.values()]
    for i in range(0, len(keys), batch_size):
        chunk = keys[i : i + batch_size]
        fresh = [old for old in source.fetch(chunk) if old.definition is not None and found.picked.get(old.name, ("",))[0] == old.key]
        result.vanished += len(chunk) - len(fresh)
        valid = _revalidate(store, fresh, result.problems)
        counts = store.import_entries([entry for _, entry in valid])
        result.counts += counts
        done = [old for old, _ in valid if old.name not in counts.skipped]
        if delete_old:
            stale = [k for o in done for k in found.stale_keys.get(o.name, [])]
            result.deleted_keys += source.delete(done, stale)
        if progress:
            progress(len(chunk))
    return result


def _revalidate(store: ScheduleStore, fresh: list[OldEntry], problems: list[str]) -> list[tuple[OldEntry, ValidatedEntry]]:
    """The re-read entries that are still valid (dynamic ones first), ready to import; the others go to ``problems``."""
    valid = []
    for old in sorted(fresh, key=attrgetter("static")):
        try:
            text = store.validate(old.name, old.definition or {})
        except InvalidDefinition as exc:
            problems.append(f"old key {old.key!r}: {exc.reason} (changed since the first pass)")
            continue
        last = old.last_run_at.isoformat() if old.last_run_at else None
        valid.append((old, ValidatedEntry(name=old.name, text=text, total_run_count=old.total_run_count, last_run_at=last,
                                          static=old.static)))
    return valid


def scan_batches(client: RedisClient, prefix: str, kind: str, page: int,
                 fetch: Callable[[list[str]], list[OldEntry]]) -> Iterator[list[OldEntry]]:
    """Keys of Redis type ``kind`` under ``prefix``, SCANned and read by ``fetch`` a page at a time."""
    batch: list[str] = []
    for key in client.scan_iter(match=glob_escape(prefix) + "*", count=page, _type=kind):
        batch.append(key.decode("utf-8", "replace"))
        if len(batch) >= page:
            yield fetch(batch)
            batch = []
    if batch:
        yield fetch(batch)


def glob_escape(text: str) -> str:
    """``text`` as a literal in a Redis MATCH pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def dates_to_iso(value: Any) -> Any:
    """Replace ``{"__type__": "datetime", ...}`` objects (either tool's form) with ISO-8601 strings."""
    if isinstance(value, dict):
        if value.get("__type__") == "datetime":
            return _legacy_datetime(value).isoformat()
        return {k: dates_to_iso(v) for k, v in value.items()}
    if isinstance(value, list):
        return [dates_to_iso(v) for v in value]
    return value


def _legacy_datetime(value: Mapping[str, Any]) -> datetime:
    """Old celerybeat-redis dates are naive UTC; RedBeat adds ``timezone`` (a zone name or an offset in seconds)."""
    zone = value.get("timezone", "UTC")
    parts = {k: int(value.get(k, 0)) for k in ("year", "month", "day", "hour", "minute", "second", "microsecond")}
    if isinstance(zone, (int, float)) and not isinstance(zone, bool):
        tz: Any = timezone(timedelta(seconds=zone))
    elif zone in (None, "UTC", "utc"):
        tz = timezone.utc
    else:
        try:
            tz = ZoneInfo(str(zone))
        except (ZoneInfoNotFoundError, ValueError):
            raise InvalidDefinition("last_run_at", f"unknown time zone {zone!r}") from None
    try:
        return datetime(tzinfo=tz, **parts)
    except ValueError as exc:
        raise InvalidDefinition("last_run_at", f"invalid date: {exc}") from None


def _json_object(raw: bytes, member: str) -> dict[str, Any]:
    try:
        doc = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidDefinition(member, f"not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise InvalidDefinition(member, "is not a JSON object")
    return doc


def _old_schedule(spec: dict[str, Any]) -> dict[str, Any]:
    """A later celerybeat-redis ``schedule`` member -> ``interval`` or ``crontab``."""
    if "every" in spec:
        return {"interval": {"every": spec["every"], "period": spec.get("period", "seconds")}}
    if any(name in spec for name in CRON_FIELDS):
        return {"crontab": {name: _cron_value(spec.get(name)) for name in CRON_FIELDS}}
    raise InvalidDefinition("schedule", "neither an interval (every, period) nor a crontab")


def _redbeat_schedule(spec: Any) -> dict[str, Any]:
    """RedBeat's encoded schedule -> the definition's schedule members."""
    kind = spec.get("__type__") if isinstance(spec, dict) else None
    if kind == "interval":
        every = spec.get("every")
        if not isinstance(every, (int, float)) or isinstance(every, bool) or every <= 0:
            raise InvalidDefinition("schedule.every", f"must be a number of seconds greater than 0, not {every!r}")
        out: dict[str, Any] = {"interval": interval_to_json(timedelta(seconds=every))}
        if spec.get("relative"):
            out["relative"] = True
        return out
    if kind == "crontab":
        return {"crontab": {name: _cron_value(spec.get(name)) for name in CRON_FIELDS}}
    if kind == "rrule":
        return {"rrule": rrules.rrule_from_redbeat(spec)}
    raise InvalidDefinition("schedule", f"unknown RedBeat schedule {kind or type(spec).__name__!r}")


def _cron_value(value: Any) -> Any:
    if isinstance(value, list):
        return ",".join(str(v) for v in value)
    return "*" if value is None else value
