"""The schedule as users manage it: ``ScheduleStore``, the Python API the command line is built on.

It holds a :class:`~celerybeatredis.sharded_store.ShardedStore` (the keys and
scripts) rather than being one, so what it offers is what a user should call:
every definition is validated before it is written, and writes are refused
while the schedule is laid out in another number of shards than this store's.

Below it, one idea per module: keys.py (key names, scores, which shard),
wire.py (what each Lua script takes and returns), scripts.py (loading the
scripts of lua/, pipelining), redis_store.py (one hash tag), sharded_store.py
(routing over shards), shards.py (moving entries to another shard count).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from celery import Celery

from .codec import Codec
from .connection import RedisClient, client_from_settings, make_client
from .entries import ScheduleLike, apply_changes, build_definition, decode
from .exceptions import CeleryBeatRedisError, EntryNotFound, InvalidDefinition
from .pausing import pause_document
from .settings import Settings
from .sharded_store import ShardedStore
from .store_bulk import BulkWrites, ImportCounts, ValidatedEntry

__all__ = ["ImportCounts", "ScheduleStore", "ValidatedEntry"]


class ScheduleStore(BulkWrites):
    """The schedule as users manage it: add, change, inspect and remove entries.

    Every definition is validated before it is written, and every write goes
    through the Lua scripts, so the due index, digests and run state stay
    consistent and a running beat sees the change within a second.

    On a sharded schedule (``shards`` above 1, as ``redis_scheduler_shards``)
    each entry is read and written in its own shard, and listings, counts and
    bulk calls cover every shard. Writes are refused while the layout recorded
    in Redis differs from ``shards``, so nothing lands where beat does not look.

    Besides the user's calls, the command line and the import and migration
    tools use ``client``, ``tags``, :meth:`recorded_shards`,
    :meth:`run_now_names` and :meth:`import_entries`; ``sharded`` is the
    store underneath (beat's, with no validation and no layout check), for
    tests and tools that need the raw keys.

    Args:
        client: A ``redis.Redis`` or ``RedisCluster`` client (bytes replies).
        key_prefix: The schedule's key prefix, e.g. ``tasks:meta:``.
        app: Celery app whose time zone validation uses; a bare app when None.
        shards: Number of shards the schedule is spread over.
    """

    #: Attempts at an edit whose entry keeps changing underneath it.
    EDIT_ATTEMPTS = 5

    def __init__(self, client: RedisClient, key_prefix: str, app: Celery | None = None, shards: int = 1) -> None:
        self.sharded = ShardedStore(client, key_prefix, shards)
        self.client = client
        self.shards = shards
        self.codec = Codec(app or Celery("celerybeatredis", set_as_current=False))

    @classmethod
    def from_url(cls, url: str, key_prefix: str, app: Celery | None = None, *, shards: int = 1, cluster: bool = False,
                 **options: Any) -> ScheduleStore:
        """A store on a new client for ``url`` (single server, cluster or sentinel URL; see connection.py)."""
        return cls(make_client(url, options, cluster), key_prefix, app, shards)

    @classmethod
    def from_app(cls, app: Celery) -> ScheduleStore:
        """The store of the schedule ``app``'s beat uses (same settings as the scheduler, shards included)."""
        settings = Settings.from_app(app)
        return cls(client_from_settings(settings), settings.key_prefix, app, settings.shards)

    # --- writing ----------------------------------------------------------------------

    def add(self, name: str, task: str | Mapping[str, Any], schedule: ScheduleLike | None = None, *,
            replace: bool = False, **fields: Any) -> bool:
        """Add an entry; an entry of that name is an error unless ``replace`` is true.

        ``task`` is a task name with a ``schedule`` and optional fields (``args``,
        ``kwargs``, ``options``, ``enabled``, ...), or a whole definition in its
        JSON form. With ``replace=True`` an existing entry's definition is
        replaced and its run state kept, as the command line's ``add --replace``.

        Returns:
            True if the stored definition changed.

        Raises:
            EntryExists: the name exists and ``replace`` is false; nothing is written.
            InvalidDefinition: naming the entry and field, before anything is written.
        """
        try:
            doc = self._document(task, schedule, fields)
        except InvalidDefinition as exc:
            raise exc.for_entry(name) from None
        return self.bulk_add({name: doc}, replace=replace).written > 0

    def update(self, name: str, **changes: Any) -> bool:
        """Change some fields of an entry and keep the rest (``schedule=`` replaces the schedule).

        A value of None drops an optional field. Returns True if the definition changed.

        Raises:
            EntryNotFound: no entry of that name.
            InvalidDefinition: the result is not a valid definition; nothing is written.
        """
        return self._edit(name, lambda doc: apply_changes(doc, changes))

    def replace(self, name: str, definition: Mapping[str, Any]) -> bool:
        """Replace an existing entry's definition as a whole; True if it changed.

        Raises:
            EntryNotFound: no entry of that name.
            InvalidDefinition: naming the field; nothing is written.
        """
        return self._edit(name, lambda doc: dict(definition), need_valid=False)

    def enable(self, name: str) -> bool:
        """Set ``enabled`` to true (every other field is kept as it is); True if it changed."""
        return self._edit(name, lambda doc: {**doc, "enabled": True})

    def disable(self, name: str) -> bool:
        """Set ``enabled`` to false (every other field is kept as it is); True if it changed."""
        return self._edit(name, lambda doc: {**doc, "enabled": False})

    def pause(self, name: str, reason: str, by: str | None = None) -> bool:
        """Pause an entry: beat sends none of its runs (each due one is recorded as skipped) until :meth:`resume`.

        Kept apart from ``enabled``: the definition's ``paused`` member records
        ``reason``, ``by`` (default ``user@host`` of this process) and the Redis
        server's time. Pausing a paused entry replaces its pause. Returns True
        if the definition changed.

        Raises:
            EntryNotFound: no entry of that name.
            InvalidDefinition: ``reason`` or ``by`` is not a string; nothing is written.
        """
        try:
            paused = pause_document(reason, by, datetime.fromtimestamp(self.server_time(), timezone.utc))
        except InvalidDefinition as exc:
            raise exc.for_entry(name) from None
        return self._edit(name, lambda doc: {**doc, "paused": paused})

    def resume(self, name: str) -> bool:
        """Drop an entry's pause; True if it was paused. Beat looks at the entry at once, as after any edit.

        Raises:
            EntryNotFound: no entry of that name.
        """
        return self._edit(name, lambda doc: {k: v for k, v in doc.items() if k != "paused"})

    def remove(self, name: str) -> None:
        """Remove an entry with its run state.

        Raises:
            EntryNotFound: no entry of that name.
        """
        if not self._writable().remove_names([name]):
            raise EntryNotFound(name)

    def run_now(self, name: str) -> None:
        """Have beat dispatch the entry at once (within a second); it counts as a run.

        Raises:
            EntryNotFound: no entry of that name.
        """
        if not self.run_now_names([name])[0]:
            raise EntryNotFound(name)

    @property
    def tags(self) -> str:
        """The hash tags in use, for messages: ``{T}``, or ``{T:0} .. {T:K-1}``."""
        return self.sharded.tags

    def recorded_shards(self) -> int | None:
        """The shard count recorded in Redis, or None when nothing is recorded (resharding starts from it)."""
        return self.sharded.recorded_shards()

    def run_now_names(self, names: Iterable[str]) -> list[bool]:
        """:meth:`run_now` for many names in one call per shard; one flag per name (False = no such entry)."""
        return self._writable().run_now_names(names)

    def drop(self) -> int:
        """Delete the whole schedule, every shard and the recorded layout; returns how many keys existed."""
        return self.sharded.drop()

    def close(self) -> None:
        """Release the client's connections (and a Sentinel's)."""
        self.sharded.close()

    # --- helpers ------------------------------------------------------------------------

    def _document(self, task: str | Mapping[str, Any], schedule: ScheduleLike | None, fields: Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(task, Mapping):
            if schedule is not None or fields:
                raise InvalidDefinition("schedule", "give either a whole definition or a task with a schedule, not both")
            return dict(task)
        if schedule is None:
            raise InvalidDefinition("schedule", "is required")
        return build_definition(task, schedule, **fields)

    def _edit(self, name: str, change: Callable[[dict[str, Any]], dict[str, Any]], need_valid: bool = True) -> bool:
        """Read, change and compare-and-set one definition, retrying if it changes meanwhile."""
        self._writable()  # before the read, which would look in the wrong shard
        for _ in range(self.EDIT_ATTEMPTS):
            raw = self.sharded.get_raw(name)
            if raw is None:
                raise EntryNotFound(name)
            _, doc = decode(raw)
            if doc is None and need_valid:
                raise InvalidDefinition("", "the stored definition is not a JSON object; replace it as a whole", name)
            try:
                new_doc = change(doc or {})
            except InvalidDefinition as exc:
                raise exc.for_entry(name) from None
            new_text = self.validate(name, new_doc)
            if new_doc == doc:
                return False
            code = self._writable().replace_raw([(name, raw, new_text)])[0]
            if code == -1:
                raise EntryNotFound(name)
            if code == 1:
                return True
        raise CeleryBeatRedisError(f"entry {name!r} kept changing while being edited; try again")
