"""The Lua scripts: which keys each takes, their text with shared includes, and sending them pipelined.

A script in ``lua/<name>.lua`` may pull in a helper of ``lua/includes/`` with a
line ``--@include <helper>``; the helper's text takes that line's place when
the script is loaded (once per script, helpers may include helpers), so a
helper is written once and every script that uses it stays one
self-contained script for Redis.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import redis

from .connection import is_cluster
from .keys import Keys

if TYPE_CHECKING:
    from .redis_store import RedisStore

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis comes with redis[hiredis], a dependency
    _hiredis_pack = None

#: Each script's KEYS, as :class:`Keys` attribute names in the order its header declares them.
SCRIPT_KEYS: dict[str, tuple[str, ...]] = {
    "claim": ("due", "schedule", "total_run_count", "last_run_at", "digest", "invalid", "history", "running"),
    "commit": ("due", "total_run_count", "last_run_at", "digest", "invalid", "history", "running", "pending", "pending_ids"),
    "revert": ("due", "total_run_count", "last_run_at", "invalid", "history", "running"),
    "reconcile": ("schedule", "due", "digest", "meta", "total_run_count", "last_run_at", "invalid", "history",
                  "synced"),
    "upsert": ("schedule", "due", "statics", "static_digest"),
    "remove": ("schedule", "due", "total_run_count", "last_run_at", "digest", "invalid", "statics", "static_digest",
               "history", "running", "failures"),
    "run_now": ("schedule", "due"),
    "replace": ("schedule", "due"),
    "restore_state": ("total_run_count", "last_run_at"),
    "export": ("schedule", "due", "total_run_count", "last_run_at", "digest", "statics"),
    "adopt": ("schedule", "due", "total_run_count", "last_run_at", "digest", "statics"),
    "heartbeat": ("beats",),
    "renew": ("due",),
    "run_started": ("running",),
    "run_ended": ("running", "due", "failures"),
    "pending_claim": ("pending", "pending_ids", "schedule", "total_run_count"),
    "pending_clear": ("pending", "pending_ids"),
}
SCRIPT_NAMES = tuple(SCRIPT_KEYS)
INCLUDE = re.compile(r"^--@include (\w+)[ \t]*$", re.MULTILINE)


def script_keys(keys: Keys, script: str) -> list[str]:
    """KEYS for ``script`` on the schedule ``keys`` names."""
    return [getattr(keys, attribute) for attribute in SCRIPT_KEYS[script]]


def load_script_text(name: str) -> str:
    """Text of ``lua/<name>.lua`` (``includes/<helper>`` for a helper) as written, from the package or a checkout."""
    parts = f"{name}.lua".split("/")
    packaged = resources.files("celerybeatredis").joinpath("lua", *parts)
    if packaged.is_file():
        return packaged.read_text(encoding="utf-8")
    return Path(__file__).resolve().parent.parent.joinpath("lua", *parts).read_text(encoding="utf-8")


def script_source(name: str) -> str:
    """The script as sent to Redis: each ``--@include <helper>`` line replaced by ``lua/includes/<helper>.lua``."""
    return _expand(load_script_text(name), set())


def _expand(text: str, pulled: set[str]) -> str:
    """``text`` with its includes, and theirs, in place; a helper already ``pulled`` in is not repeated."""
    def pull(found: re.Match[str]) -> str:
        helper = found.group(1)
        if helper in pulled:
            return f"-- {helper}: pulled in above"
        pulled.add(helper)
        return _expand(load_script_text(f"includes/{helper}").rstrip("\n"), pulled)

    return INCLUDE.sub(pull, text)


class ScriptStream:
    """Scripts sent on one connection without waiting for each reply; replies are read in the order sent.

    The scheduler sends the next claim and a batch's commit, then decides the
    next batch while Redis runs them, so Redis and Python work at the same
    time. Only for a single server (or Sentinel's primary): a cluster client
    routes and redirects each command itself. A script Redis did not know
    (``NOSCRIPT``, after ``SCRIPT FLUSH`` or a restart) did not run, and a
    reply lost with the connection may or may not have run: the caller deals
    with both (commit.lua may be sent again; a claim's entries wait out the lease).
    """

    def __init__(self, store: RedisStore) -> None:
        client = store.client
        if is_cluster(client):
            raise TypeError("a ScriptStream needs a single server: a cluster client routes each command itself")
        self.store = store
        self.pool = client.connection_pool
        self.connection: Any = self.pool.get_connection()
        encoder = getattr(self.connection, "encoder", None)
        # hiredis encodes text as UTF-8, as redis-py does unless the client was given another encoding.
        utf8 = encoder is not None and encoder.encoding.lower().replace("-", "") == "utf8" and encoder.encoding_errors == "strict"
        self.pack = _hiredis_pack if utf8 else None
        self.unread = 0
        self.broken = False

    def send(self, script: str, args: Sequence[Any]) -> None:
        """Send ``script`` with ``args`` and return at once (on a broken connection: nothing)."""
        self.unread += 1
        if self.broken:
            return
        keys = self.store.script_keys[script]
        command = ("EVALSHA", self.store.scripts[script].sha, len(keys), *keys, *args)
        try:
            # hiredis packs a batch's thousands of arguments as they are; redis-py's packer first copies them.
            packed = [self.pack(command)] if self.pack is not None else self.connection.pack_command(*command)
            self.connection.send_packed_command(packed)
        except (redis.ConnectionError, redis.TimeoutError):
            self.broken = True

    def read(self) -> Any:
        """The reply to the oldest script not read yet; raised if it is an error.

        Raises:
            redis.ConnectionError: the connection broke, now or before; replies still due are lost.
        """
        self.unread -= 1
        if self.broken:
            raise redis.ConnectionError("the connection broke before this reply came")
        try:
            return self.connection.read_response()
        except (redis.ConnectionError, redis.TimeoutError):
            self.broken = True
            raise

    def close(self) -> None:
        """Give the connection back; one that broke or has replies left unread is dropped first."""
        if self.connection is None:
            return
        if self.broken or self.unread:
            self.connection.disconnect()
        self.pool.release(self.connection)
        self.connection = None
