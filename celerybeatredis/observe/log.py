"""Beat's logger: every part of beat speaks under the name users configure it by, the scheduler's module."""

from __future__ import annotations

import logging

#: ``celery beat``'s users set the level of ``celerybeatredis.schedulers``; the modules behind it log there too.
logger = logging.getLogger("celerybeatredis.schedulers")
