"""The Lua scripts: which keys each takes, their text with shared includes, and the one place they are called.

A script in ``lua/<name>.lua`` (beside this module) may pull in a helper of
``lua/includes/`` with a line ``--@include <helper>``; the helper's text takes
that line's place when the script is loaded (once per script, helpers may
include helpers), so a helper is written once and every script that uses it
stays one self-contained script for Redis. :class:`Scripts` calls them on one
schedule's keys: one at a time, several in one round trip, or streamed
(:class:`ScriptStream`); nothing outside this package sends ``EVALSHA`` itself.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from functools import cache
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from .connection import RedisClient, is_cluster
from .keys import Keys

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
    "run_outcome": ("history", "outcomes"),
    "pending_claim": ("pending", "pending_ids", "schedule", "total_run_count"),
    "pending_clear": ("pending", "pending_ids"),
}
SCRIPT_NAMES = tuple(SCRIPT_KEYS)
INCLUDE = re.compile(r"^--@include (\w+)[ \t]*$", re.MULTILINE)


def script_keys(keys: Keys, script: str) -> list[str]:
    """KEYS for ``script`` on the schedule ``keys`` names."""
    return [getattr(keys, attribute) for attribute in SCRIPT_KEYS[script]]


def load_script_text(name: str) -> str:
    """Text of ``lua/<name>.lua`` (``includes/<helper>`` for a helper) as written."""
    return resources.files("celerybeatredis.storage").joinpath("lua", *f"{name}.lua".split("/")).read_text(encoding="utf-8")


@cache
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


class Scripts:
    """The Lua scripts on the keys of one schedule (one hash tag), each registered with its client once.

    Every call of a script goes through here, by name with its ARGV: the
    KEYS are the script's own (:data:`SCRIPT_KEYS`). A call made on its own is
    reported to ``timer`` (script name, seconds, round trip included) when one
    is set; a pipelined or streamed one is not.
    """

    def __init__(self, client: RedisClient, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        #: KEYS of each script, worked out once: the tick sends them with every call.
        self.script_keys = {name: script_keys(keys, name) for name in SCRIPT_NAMES}
        self.timer: Callable[[str, float], None] | None = None
        self._registered: dict[str, Script] = {}

    def script(self, name: str) -> Script:
        """The registered script ``name`` (its SHA worked out here, loaded into Redis by its first call)."""
        found = self._registered.get(name)
        if found is None:
            found = self._registered[name] = self.client.register_script(script_source(name))
        return found

    def run(self, name: str, args: Sequence[Any], client: Any = None) -> Any:
        """Run script ``name`` with ``args`` (on ``client``, a pipeline, when given: then its reply comes with the pipeline's)."""
        script = self.script(name)
        if client is not None or self.timer is None:
            return script(keys=self.script_keys[name], args=list(args), client=client)
        started = time.perf_counter()
        try:
            return script(keys=self.script_keys[name], args=list(args))
        finally:
            self.timer(name, time.perf_counter() - started)

    def run_resending(self, name: str, args: Sequence[Any]) -> Any:
        """Run an idempotent script, sending it once more if the connection drops (its reply may be lost)."""
        try:
            return self.run(name, args)
        except (redis.ConnectionError, redis.TimeoutError):
            return self.run(name, args)

    def pipelined(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        """Run several scripts in one round trip (a single server only); each reply, or the error it raised.

        They go as plain ``EVALSHA``: a script Redis does not know answers
        ``NOSCRIPT`` (:class:`redis.exceptions.NoScriptError`) and did not run.
        """
        started = time.perf_counter()
        pipe = self.client.pipeline(transaction=False)
        for name, args in calls:
            keys = self.script_keys[name]
            pipe.execute_command("EVALSHA", self.script(name).sha, len(keys), *keys, *args)
        replies: list[Any] = pipe.execute(raise_on_error=False)
        if self.timer is not None:
            self.timer(calls[-1][0], time.perf_counter() - started)
        return replies

    def stream(self) -> ScriptStream | None:
        """A :class:`ScriptStream` on these scripts' server, or None where there is none (Redis Cluster)."""
        return None if is_cluster(self.client) else ScriptStream(self)


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

    def __init__(self, scripts: Scripts) -> None:
        client = scripts.client
        if is_cluster(client):
            raise TypeError("a ScriptStream needs a single server: a cluster client routes each command itself")
        self.scripts = scripts
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
        keys = self.scripts.script_keys[script]
        command = ("EVALSHA", self.scripts.script(script).sha, len(keys), *keys, *args)
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
