"""The schedule as users manage it: ``ScheduleStore``, the Python API the command line and the dashboard are built on.

It holds a :class:`~celerybeatredis.storage.sharded_store.ShardedStore` (the
keys and scripts) rather than being one, so what it offers is what a user
should call: every definition is checked before it is written, and writes are
refused while the schedule is laid out in another number of shards than this
store's. Editing one entry is here; reading, bulk writes and calendars are
parts it holds (:mod:`celerybeatredis.managing`), their methods offered as its own.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar

from celery import Celery

from .definitions.codec import Codec, digest
from .definitions.documents import ScheduleLike, apply_changes, build_definition, decode
from .definitions.pausing import pause_document
from .exceptions import CeleryBeatRedisError, EntryChanged, EntryNotFound, InvalidDefinition
from .managing.applying import Applier, ApplyResult
from .managing.bulk import BulkWrites, ValidatedEntry
from .managing.calendars import Calendars
from .managing.checking import DefinitionCheck
from .managing.reading import EntryReads
from .managing.records import BulkResult, Entry, InvalidEntry, Page, Stats
from .settings import Settings
from .storage.connection import RedisClient, make_client
from .storage.sharded_store import ShardedStore

if TYPE_CHECKING:
    from typing_extensions import Concatenate, ParamSpec

    P = ParamSpec("P")

#: The store, and the records its methods take and return.
__all__ = ["ApplyResult", "BulkResult", "Entry", "InvalidEntry", "Page", "ScheduleStore", "Stats", "ValidatedEntry"]

R = TypeVar("R")


def _offered(part: str, method: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Any, P], R]:
    """``method`` of the part held in attribute ``part``, offered as a method of the store (its name and docstring)."""

    @functools.wraps(method)
    def call(self: Any, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(getattr(self, part), *args, **kwargs)

    return call


class ScheduleStore:
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
        self._calendars = Calendars(self.sharded.first, self.sharded.across)
        self._check = DefinitionCheck(self.codec, self._calendars)
        self._reads = EntryReads(self.sharded, self._check, self._calendars)
        self._bulk = BulkWrites(self.sharded, self._check)
        self._apply = Applier(self.sharded, self._check)

    @classmethod
    def from_url(cls, url: str, key_prefix: str, app: Celery | None = None, *, shards: int = 1, cluster: bool = False,
                 **options: Any) -> ScheduleStore:
        """A store on a new client for ``url`` (single server, cluster or sentinel URL; see :mod:`~.storage.connection`)."""
        return cls(make_client(url, options, cluster), key_prefix, app, shards)

    @classmethod
    def from_app(cls, app: Celery) -> ScheduleStore:
        """The store of the schedule ``app``'s beat uses (same settings as the scheduler, shards included)."""
        settings = Settings.from_app(app)
        return cls(settings.client(), settings.key_prefix, app, settings.shards)

    # --- editing one entry -------------------------------------------------------------------------------------

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

    def replace(self, name: str, definition: Mapping[str, Any], *, expected: str | None = None) -> bool:
        """Replace an existing entry's definition as a whole; True if it changed.

        ``expected`` makes it an optimistic edit: the :attr:`~.managing.records.Entry.version`
        of the entry the new definition was made from (a page, an editor opened
        earlier). It is written only if the stored definition is still that
        version, checked and written in one Lua script, so a change made
        meanwhile (a pause by a user or by ``pause_after_failures``, another
        edit) is never silently dropped. Without it the definition is written
        over whatever is stored.

        Raises:
            EntryNotFound: no entry of that name.
            EntryChanged: the entry is no longer at version ``expected`` (the error holds the stored
                text and its version); nothing is written.
            InvalidDefinition: naming the field; nothing is written.
        """
        return self._edit(name, lambda doc: dict(definition), need_valid=False, expected=expected)

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
        if not self.sharded.writable().remove_names([name]):
            raise EntryNotFound(name)

    def run_now(self, name: str) -> None:
        """Have beat dispatch the entry at once (within a second); it counts as a run.

        Raises:
            EntryNotFound: no entry of that name.
        """
        if not self.run_now_names([name])[0]:
            raise EntryNotFound(name)

    def run_now_names(self, names: Iterable[str]) -> list[bool]:
        """:meth:`run_now` for many names in one call per shard; one flag per name (False = no such entry)."""
        return self.sharded.writable().run_now_names(names)

    # --- the parts it holds, offered as its own ----------------------------------------------------------------

    validate = _offered("_check", DefinitionCheck.validate)
    bulk_add = _offered("_bulk", BulkWrites.bulk_add)
    bulk_remove = _offered("_bulk", BulkWrites.bulk_remove)
    import_entries = _offered("_bulk", BulkWrites.import_entries)
    apply = _offered("_apply", Applier.apply)
    get = _offered("_reads", EntryReads.get)
    history = _offered("_reads", EntryReads.history)
    find = _offered("_reads", EntryReads.find)
    upcoming = _offered("_reads", EntryReads.upcoming)
    next_runs = _offered("_reads", EntryReads.next_runs)
    list = _offered("_reads", EntryReads.list)
    iter_entries = _offered("_reads", EntryReads.iter_entries)
    invalid = _offered("_reads", EntryReads.invalid)
    stats = _offered("_reads", EntryReads.stats)
    iter_raw = _offered("_reads", EntryReads.iter_raw)
    set_calendar = _offered("_calendars", Calendars.set_calendar)
    calendar = _offered("_calendars", Calendars.calendar)
    calendars = _offered("_calendars", Calendars.calendars)
    remove_calendar = _offered("_calendars", Calendars.remove_calendar)
    calendar_users = _offered("_calendars", Calendars.users)
    put_calendar_text = _offered("_calendars", Calendars.put_calendar_text)
    exists = _offered("sharded", ShardedStore.exists)
    server_time = _offered("sharded", ShardedStore.server_time)
    recorded_shards = _offered("sharded", ShardedStore.recorded_shards)
    drop = _offered("sharded", ShardedStore.drop)
    close = _offered("sharded", ShardedStore.close)

    def count(self) -> int:
        """Number of entries (one O(1) call per shard)."""
        return self.sharded.across.count()

    @property
    def tags(self) -> str:
        """The hash tags in use, for messages: ``{T}``, or ``{T:0} .. {T:K-1}``."""
        return self.sharded.tags

    # --- helpers -----------------------------------------------------------------------------------------------

    def _document(self, task: str | Mapping[str, Any], schedule: ScheduleLike | None, fields: Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(task, Mapping):
            if schedule is not None or fields:
                raise InvalidDefinition("schedule", "give either a whole definition or a task with a schedule, not both")
            return dict(task)
        if schedule is None:
            raise InvalidDefinition("schedule", "is required")
        return build_definition(task, schedule, **fields)

    def _edit(self, name: str, change: Callable[[dict[str, Any]], dict[str, Any]], need_valid: bool = True,
              expected: str | None = None) -> bool:
        """Read, change and compare-and-set one definition, retrying if it changes meanwhile; with ``expected``
        (a version) no retry: a definition that is not, or stops being, that version is an :class:`EntryChanged`."""
        sharded = self.sharded.writable()  # before the read, which would look in the wrong shard
        for _ in range(self.EDIT_ATTEMPTS):
            raw = sharded.get_raw(name)
            if raw is None:
                raise EntryNotFound(name)
            if expected is not None and digest(raw) != expected:
                raise EntryChanged(name, decode(raw)[0], digest(raw))
            _, doc = decode(raw)
            if doc is None and need_valid:
                raise InvalidDefinition("", "the stored definition is not a JSON object; replace it as a whole", name)
            try:
                new_doc = change(doc or {})
            except InvalidDefinition as exc:
                raise exc.for_entry(name) from None
            new_text = self.validate(name, new_doc, stored=True)
            if new_doc == doc:
                return False
            code = sharded.writable().replace_raw([(name, raw, new_text)])[0]
            if code == -1:
                raise EntryNotFound(name)
            if code == 1:
                return True
            if expected is not None:  # changed between the read and the script: the next read tells how
                expected = digest(raw)
        raise CeleryBeatRedisError(f"entry {name!r} kept changing while being edited; try again")
