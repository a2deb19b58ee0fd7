"""One schedule under one hash tag: a method per Lua script; the plain reads are :class:`.redis_reads.RedisReads`.

Every write that changes the due index, run state or digests goes through a
script in ``lua/``; the reads are plain commands, pipelined where they cover
many names. ``ShardedStore`` (sharded_store.py) holds one of these per shard.
Replies are bytes (no ``decode_responses``); redis-py annotates them as
decoded text, so a reply read here is typed ``Any`` and decoded by hand.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

import redis
from celery import Celery
from redis.commands.core import Script

from . import wire
from .connection import RedisClient, client_from_settings, is_cluster, make_client
from .keys import Keys, name_bytes, name_text
from .outcomes import log_quarantined
from .redis_reads import RedisReads
from .scripts import SCRIPT_NAMES, ScriptStream, script_keys, script_source
from .settings import Settings, key_tag
from .wire import Adopted, Claim, Exported, Pending, Plan, ReconcileStep, Revert, Upserted


class RedisStore(RedisReads):
    """A schedule in Redis: keys under one hash tag, changed through Lua scripts.

    Args:
        client: A ``redis.Redis`` (or ``RedisCluster``) client; replies must be bytes
            (no ``decode_responses``).
        key_prefix: The schedule's key prefix, e.g. ``tasks:meta:``.
    """

    def __init__(self, client: RedisClient, key_prefix: str) -> None:
        self.client = client
        self.keys = Keys(key_tag(key_prefix))
        #: KEYS of each script, worked out once: the tick sends them with every call.
        self.script_keys = {name: script_keys(self.keys, name) for name in SCRIPT_NAMES}

    @classmethod
    def from_url(cls, url: str, key_prefix: str, **options: Any) -> RedisStore:
        """A store on a new client for ``url`` (single server, cluster or sentinel URL; see connection.py)."""
        return cls(make_client(url, options), key_prefix)

    @classmethod
    def from_settings(cls, settings: Settings) -> RedisStore:
        """A store on a new client made from scheduler settings."""
        return cls(client_from_settings(settings), settings.key_prefix)

    @classmethod
    def from_app(cls, app: Celery) -> RedisStore:
        """A store for the schedule ``app``'s configuration names."""
        return cls.from_settings(Settings.from_app(app))

    @cached_property
    def scripts(self) -> dict[str, Script]:
        """Registered scripts by name (registered once per store)."""
        return {name: self.client.register_script(script_source(name)) for name in SCRIPT_NAMES}

    def _run(self, script: str, args: Sequence[Any]) -> Any:
        return self.scripts[script](keys=self.script_keys[script], args=list(args))

    def _run_resending(self, script: str, args: Sequence[Any]) -> Any:
        """Run an idempotent script, sending it once more if the connection drops (its reply may be lost)."""
        try:
            return self._run(script, args)
        except (redis.ConnectionError, redis.TimeoutError):
            return self._run(script, args)

    # --- the tick: claim.lua, commit.lua, revert.lua, reconcile.lua -------------------------

    claim_args = staticmethod(wire.claim_args)
    claim_from_reply = staticmethod(wire.decode_claim)
    commit_args = staticmethod(wire.commit_args)

    def claim(self, batch: int, lease_seconds: float, now: float | None = None) -> Claim:
        """Claim up to ``batch`` entries due at ``now`` (default: Redis server time)."""
        return self.claim_from_reply(self._run("claim", self.claim_args(batch, lease_seconds, now)))

    def stream(self) -> ScriptStream | None:
        """A :class:`ScriptStream` on this store's server, or None where there is none (Redis Cluster)."""
        return None if is_cluster(self.client) else ScriptStream(self)

    def commit(self, plans: Sequence[Plan], history: int = 0, messages: str | None = None) -> list[bool]:
        """Write the plans whose lease still holds, keeping ``history`` records per entry (0 = off); one flag per plan.

        ``messages`` (:func:`.messages.encode`) are written with the runs committed.
        """
        args = self.commit_args(plans, history, messages)
        return self.committed(plans, self._run_resending("commit", args)) if plans else []

    def committed(self, plans: Sequence[Plan], reply: list[Any]) -> list[bool]:
        """commit.lua's reply as one flag per plan; an entry it quarantined (run count not an integer) is logged by name."""
        flags = [code == 1 for code in reply]
        if not all(flags):
            for plan, code in zip(plans, reply):
                if code == -1:
                    log_quarantined(self.invalid_reason(plan.name) or f"entry {plan.name!r} quarantined", self.keys.tag)
        return flags

    def commit_replicated(self, plans: Sequence[Plan], replicas: int, timeout: float, history: int = 0,
                          messages: str | None = None) -> tuple[list[bool], int]:
        """``commit``, then ``WAIT`` on the same connection: ``(flags, replicas that acknowledged it)``.

        Sent once more if the connection drops, as ``commit`` is (commit.lua reports a
        resent run as committed; the ``WAIT`` then covers the first send too).
        """
        if not plans:
            return [], replicas
        args = self.commit_args(plans, history, messages)
        try:
            return self._commit_and_wait(plans, args, replicas, timeout)
        except (redis.ConnectionError, redis.TimeoutError):
            return self._commit_and_wait(plans, args, replicas, timeout)

    def _commit_and_wait(self, plans: Sequence[Plan], args: list[Any], replicas: int, timeout: float) -> tuple[list[bool], int]:
        keys = self.script_keys["commit"]
        wait = ("WAIT", replicas, max(1, int(timeout * 1000)))
        if is_cluster(self.client):
            # No scripts in cluster pipelines; the node's pool hands this single-threaded caller the same connection.
            reply = self.scripts["commit"](keys=keys, args=args)
            acked = self.client.execute_command(*wait, target_nodes=self.client.get_node_from_key(self.keys.due))
        else:
            pipe = self.client.pipeline(transaction=False)
            self.scripts["commit"](keys=keys, args=args, client=pipe)
            pipe.execute_command(*wait)
            reply, acked = pipe.execute()
        return self.committed(plans, reply), int(acked)

    def revert(self, reverts: Sequence[Revert]) -> list[bool]:
        """Undo committed runs that were never published; one flag per entry."""
        return wire.decode_flags(self._run_resending("revert", wire.revert_args(reverts))) if reverts else []

    def claim_pending(self, limit: int, lease_seconds: float, now: float | None = None) -> tuple[float, list[Pending]]:
        """Runs committed and not known to be taken by the broker whose resend time has come, leased for resending
        (``at-least-once``); with the server's time."""
        reply = self._run("pending_claim", [limit, lease_seconds, "" if now is None else repr(now)])
        runs = [Pending(name_text(reply[i]), reply[i + 1].decode() if reply[i + 1] else None,
                        reply[i + 2].decode("utf-8", "surrogateescape") if reply[i + 2] else None,
                        int(reply[i + 3]) if reply[i + 3] else 0)
                for i in range(1, len(reply), 4)]
        return float(reply[0]), runs

    def clear_pending(self, runs: Sequence[tuple[str, str]]) -> int:
        """Forget the pending runs ``(name, task id)`` the broker took (or that were put back unsent)."""
        if not runs:
            return 0
        return int(self._run_resending("pending_clear", [v for name, tid in runs for v in (name_bytes(name), tid)]))

    def reconcile_step(self, count: int) -> ReconcileStep:
        """One bounded reconciler step (see ``lua/reconcile.lua``)."""
        return wire.decode_reconcile(self._run("reconcile", [count]))

    def mark_synced(self) -> None:
        """Set ``{T}:synced`` (field ``at``: the server's time): ``beat_schedule`` is in this schedule; see reconcile.lua."""
        self.client.hset(self.keys.synced, "at", repr(self.server_time()))

    # --- writing definitions: upsert, remove, run_now, replace, restore_state -----------------

    def put_raw(self, definitions: Mapping[str, str], static: bool = False, only_new: bool = False) -> Upserted:
        """Store definition JSON texts as they are (callers validate first).

        Args:
            static: Write them as ``beat_schedule`` entries (see upsert.lua).
            only_new: Write nothing if any of the names exists (they come back as skipped).
        """
        if not definitions:
            return Upserted(0, 0, [], [])
        return wire.decode_upsert(self._run("upsert", wire.upsert_args(definitions, static, only_new)))

    def remove_names(self, names: Iterable[str]) -> int:
        """Remove entries and all their state; returns how many existed."""
        wire_names = [name_bytes(n) for n in names]
        return int(self._run("remove", wire_names)) if wire_names else 0

    def run_now_names(self, names: Iterable[str]) -> list[bool]:
        """Make entries due at once, as a run; one flag per name (False = no such entry)."""
        names = list(names)
        return wire.decode_flags(self._run("run_now", names)) if names else []

    def replace_raw(self, changes: Sequence[tuple[str, bytes | str, str]]) -> list[int]:
        """Compare-and-set definitions: ``(name, expected text, new text)`` each.

        Returns:
            One code per change: 1 replaced, 0 changed meanwhile, -1 no such entry.
        """
        return wire.decode_codes(self._run("replace", wire.triples(changes))) if changes else []

    def restore_state(self, states: Sequence[tuple[str, int | None, str | None]]) -> int:
        """Set ``(name, total_run_count, last_run_at)`` where an entry has no run state yet."""
        return int(self._run("restore_state", wire.restore_state_args(states))) if states else 0

    # --- moving entries between shards: export, adopt ---------------------------------------

    def export_names(self, names: Iterable[str]) -> list[Exported]:
        """Take entries out of service here (due score inf) and return all they carry; missing names are skipped."""
        wire_names = [name_bytes(n) for n in names]
        return wire.decode_export(self._run("export", wire_names)) if wire_names else []

    def adopt(self, entries: Sequence[Exported]) -> Adopted:
        """Bring exported entries into this store: how many are new here, how many merged with an existing one."""
        return wire.decode_adopt(self._run("adopt", wire.adopt_args(entries))) if entries else Adopted(0, 0)

    def drop(self) -> int:
        """Delete the whole schedule (every key of it); returns how many keys existed."""
        return int(self.client.delete(*self.keys.all()))

