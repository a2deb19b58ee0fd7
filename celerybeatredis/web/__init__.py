"""The web dashboard (``celerybeatredis web``): overview, entries, quarantine and edits, in a browser.

It needs the ``web`` extra (Starlette, Jinja2, uvicorn, python-multipart);
the scheduler itself imports nothing of it. Every write goes through
:class:`~celerybeatredis.store.ScheduleStore`, as the command line's do.
"""

from __future__ import annotations

from .app import create_app
from .auth import WebAuth, is_local
from .dashboard import WebConfig

__all__ = ["WebAuth", "WebConfig", "create_app", "is_local"]
