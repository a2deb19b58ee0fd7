"""A schedule kept as a file says: ``apply`` makes an owner's entries exactly those the file lists.

Every entry given is labelled with the owner (:data:`~celerybeatredis.definitions.labels.OWNER`) and checked
before anything is written; an entry of another owner, or from ``beat_schedule``, stops the whole call. Then
the entries are upserted and the owner's entries the file no longer lists are removed. Other entries are never
read beyond their labels, nor written. :class:`~celerybeatredis.store.ScheduleStore` offers
:meth:`Applier.apply` as its own.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..definitions.documents import decode
from ..definitions.labels import MAX_VALUE, OWNER, labels_of
from ..exceptions import InvalidDefinition
from ..storage.sharded_store import ShardedStore
from .checking import DefinitionCheck

#: Entries read or written per round trip.
BATCH = 1000


@dataclass(frozen=True)
class ApplyResult:
    """What an apply did (or, on a dry run, would do), by entry name, each list sorted.

    Attributes:
        added: Entries the schedule did not have.
        changed: Entries whose definition differs; ``members`` says which of their members.
        removed: The owner's entries the file no longer lists.
        unchanged: Entries stored exactly as given.
        members: For each changed entry, the members that differ (``task``, ``interval``, ``labels``, ...).
        dry_run: Whether nothing was written.
    """

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    members: dict[str, list[str]] = field(default_factory=dict)
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"added": self.added, "changed": self.changed, "removed": self.removed, "unchanged": self.unchanged,
                "members": self.members, "dry_run": self.dry_run}


def check_owner(owner: Any) -> str:
    """``owner`` if it can be an ``owner`` label's value (a non-empty string of at most 256 characters)."""
    if not isinstance(owner, str) or not owner.strip() or len(owner) > MAX_VALUE:
        raise InvalidDefinition(f"labels.{OWNER}", f"the owner must be a non-empty string of at most {MAX_VALUE} "
                                                   f"characters, not {owner!r}")
    return owner


class Applier:
    """The ``apply`` of :class:`~celerybeatredis.store.ScheduleStore` on ``sharded``, each definition ``check``-ed."""

    def __init__(self, sharded: ShardedStore, check: DefinitionCheck) -> None:
        self.sharded = sharded
        self.check = check

    def apply(self, entries: Iterable[tuple[str, Mapping[str, Any]]] | Mapping[str, Mapping[str, Any]], owner: str,
              dry_run: bool = False) -> ApplyResult:
        """Make ``owner``'s entries exactly ``entries`` (name -> definition in JSON form): add or replace each,
        labelled ``owner: <owner>``, and remove the owner's entries not among them. ``dry_run`` writes nothing.

        Everything is checked before the first write, so a bad definition, a name given twice, a name held by
        another owner's entry or by a ``beat_schedule`` entry writes nothing. An entry of the same name without
        an owner is taken over (it reads as changed). Run state is kept, as an edit keeps it. The writes go a
        batch at a time, so a reader may see a part of them before the call returns.

        Raises:
            InvalidDefinition: naming the entry and field at fault (nothing written).
        """
        check_owner(owner)
        wanted = self._checked(entries, owner)
        result = ApplyResult(dry_run=dry_run)
        for names in _batches(list(wanted)):
            for name, stored in zip(names, self.sharded.entry_states(names)):
                text = wanted[name]
                if stored is None:
                    result.added.append(name)
                    continue
                if stored.static:
                    raise InvalidDefinition("", "is a beat_schedule entry; apply leaves those alone", name)
                _, doc = decode(stored.raw)
                holder = labels_of(doc).get(OWNER)
                if holder is not None and holder != owner:
                    raise InvalidDefinition(f"labels.{OWNER}", f"the entry belongs to owner {holder!r}", name)
                if stored.raw.decode("utf-8", "replace") == text:
                    result.unchanged.append(name)
                else:
                    result.changed.append(name)
                    result.members[name] = _differing(doc, decode(text)[1])
        result.removed.extend(self._gone(owner, wanted))
        for names in (result.added, result.changed, result.removed, result.unchanged):
            names.sort()
        if not dry_run:
            store = self.sharded.writable()
            for names in _batches(result.added + result.changed):
                store.put_raw({name: wanted[name] for name in names})
            for names in _batches(result.removed):
                store.remove_names(names)
        return result

    def _checked(self, entries: Iterable[tuple[str, Mapping[str, Any]]] | Mapping[str, Mapping[str, Any]],
                 owner: str) -> dict[str, str]:
        """Each entry's text to store, labelled with ``owner``."""
        wanted: dict[str, str] = {}
        for name, definition in entries.items() if isinstance(entries, Mapping) else entries:
            if name in wanted:
                raise InvalidDefinition("", "is given twice", name)
            if not isinstance(definition, Mapping):
                raise InvalidDefinition("definition", "must be a JSON object", name)
            labels = labels_of(definition)
            if labels.get(OWNER, owner) != owner:
                raise InvalidDefinition(f"labels.{OWNER}", f"is {labels[OWNER]!r}, not the owner applying it, "
                                                           f"{owner!r}", name)
            wanted[name] = self.check.validate(name, {**definition, "labels": {**labels, OWNER: owner}})
        return wanted

    def _gone(self, owner: str, wanted: Mapping[str, str]) -> Iterator[str]:
        """The owner's entries not in ``wanted`` (static ones left out), read a page of definitions at a time."""
        cursor = 0
        while True:
            cursor, page = self.sharded.across.scan_definitions(cursor, BATCH, None)
            names = [name for name, raw in page if name not in wanted and labels_of(decode(raw)[1]).get(OWNER) == owner]
            if names:
                yield from (s.name for s in self.sharded.entry_states(names) if s is not None and not s.static)
            if cursor == 0:
                return


def _differing(old: Mapping[str, Any] | None, new: Mapping[str, Any] | None) -> list[str]:
    """The members whose values differ between two definitions."""
    old, new = old or {}, new or {}
    return sorted(name for name in {*old, *new} if old.get(name) != new.get(name))


def _batches(names: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(names), BATCH):
        yield names[start:start + BATCH]
