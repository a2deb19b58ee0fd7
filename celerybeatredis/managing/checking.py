"""The check every definition passes before the Python API writes it: its name, the codec's, and calendars that exist.

The command line, the dashboard and imports write through
:class:`~celerybeatredis.store.ScheduleStore`, so this is the check they share.
"""

from __future__ import annotations

from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any

from ..definitions.codec import Codec, dump_document
from ..definitions.names import check_name
from ..exceptions import InvalidDefinition
from .calendars import Calendars


class DefinitionCheck:
    """Checks definitions with ``codec`` (the app's time zone) against the calendars of ``calendars``."""

    def __init__(self, codec: Codec, calendars: Calendars) -> None:
        self.codec = codec
        self.calendars = calendars

    def validate(self, name: str, definition: Mapping[str, Any], calendars: AbstractSet[str] = frozenset(), *,
                 stored: bool = False) -> str:
        """Check a definition and return the JSON text to store; ``exclude`` may also name ``calendars``
        (those an import writes before it). The name is checked too, unless the entry is ``stored`` already (an
        entry written by redis-cli under a name the doors refuse can still be edited, and removed).

        Raises:
            InvalidDefinition: naming ``name`` and the field at fault.
        """
        if not stored:
            check_name(name)
        try:
            self.codec.from_document(definition)
            self.calendars.check_exclude(definition, calendars)
            return dump_document(definition)
        except InvalidDefinition as exc:
            raise exc.for_entry(name) from None
