"""A Celery beat scheduler that keeps the whole schedule in Redis."""

from __future__ import annotations

from .exceptions import CeleryBeatRedisError, EntryChanged, EntryExists, EntryNotFound, InvalidDefinition

__version__ = "1.0.0.dev0"

__all__ = ["CeleryBeatRedisError", "EntryChanged", "EntryExists", "EntryNotFound", "InvalidDefinition", "__version__"]
