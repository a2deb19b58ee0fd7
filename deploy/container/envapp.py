"""The Celery app the image runs: yours, with the schedule's settings taken from the environment.

``celery -A envapp beat`` (the image's command) imports the app named by
``CELERYBEATREDIS_APP`` (``module`` or ``module:attribute``; the attribute
defaults to ``app``) and sets on it the settings whose variables are present:
the same variables ``celerybeatredis`` itself reads, so that beat, the image's
``HEALTHCHECK`` (``celerybeatredis status``) and the dashboard look at one
schedule. A variable that is absent leaves your app's own value. The broker is
Celery's own ``CELERY_BROKER_URL``.
"""

from __future__ import annotations

import importlib
import os

from celery import Celery

#: Environment variable -> the setting it gives, and how its text is read.
SETTINGS = {
    "CELERYBEATREDIS_URL": ("redis_scheduler_url", str),
    "CELERYBEATREDIS_PREFIX": ("redis_scheduler_key_prefix", str),
    "CELERYBEATREDIS_SHARDS": ("redis_scheduler_shards", int),
    "CELERYBEATREDIS_HTTP": ("redis_scheduler_http", str),
    "CELERYBEATREDIS_TASK_ALLOWLIST": ("redis_scheduler_task_allowlist", str),
}


def load() -> Celery:
    """Your app, with the settings of the environment on it; one line naming the variable when it cannot be."""
    name = os.environ.get("CELERYBEATREDIS_APP", "")
    if not name:
        raise SystemExit("envapp: set CELERYBEATREDIS_APP to your Celery app's module, e.g. proj or proj.celery:app")
    module, _, attribute = name.partition(":")
    try:
        imported = importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not (module == exc.name or module.startswith(exc.name + ".")):
            raise  # a module your app imports is missing: its traceback says where
        raise SystemExit(f"envapp: CELERYBEATREDIS_APP={name}: no module {exc.name!r} on the path "
                         f"({os.environ.get('PYTHONPATH', '')})") from None
    found = getattr(imported, attribute or "app", None)
    if not isinstance(found, Celery):
        raise SystemExit(f"envapp: CELERYBEATREDIS_APP={name}: no Celery app named {attribute or 'app'!r} in {module}")
    for variable, (setting, read) in SETTINGS.items():
        if os.environ.get(variable):
            try:
                found.conf[setting] = read(os.environ[variable])
            except ValueError:
                raise SystemExit(f"envapp: {variable}={os.environ[variable]!r} is not a valid {setting}") from None
    found.conf.beat_scheduler = "celerybeatredis.schedulers.RedisScheduler"
    return found


app = load()
