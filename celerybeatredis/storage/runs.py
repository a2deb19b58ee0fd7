"""The tick's scripts on one schedule: claim, commit, revert, resend, renew, reconcile, heartbeat and run reports.

These move an entry's run state; each is one Lua call (:mod:`.scripts`),
so any number of beats and workers may run them at once. The records they
take and give are in :mod:`.wire`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Self

import redis

from . import wire
from .connection import is_cluster
from .keys import name_bytes, name_text
from .scripts import Scripts, ScriptStream
from .wire import Claim, Pending, Plan, ReconcileStep, Revert


class Committed(list[bool]):
    """commit.lua's answer: one flag per plan (committed, or not: its lease was lost), and the entries the commit
    quarantined instead (their stored run count was not an integer), by name."""

    def __init__(self, flags: Sequence[bool] = (), quarantined: Sequence[str] = ()) -> None:
        super().__init__(flags)
        self.quarantined = list(quarantined)

    @classmethod
    def from_codes(cls, names: Sequence[str], reply: Sequence[Any]) -> Self:
        """A reply of one code per name (1 done, 0 changed meanwhile, -1 quarantined here) read."""
        return cls([code == 1 for code in reply], [name for name, code in zip(names, reply) if code == -1])


class Reverted(Committed):
    """revert.lua's answer: one flag per run (undone, or not: its entry changed meanwhile, another beat or a user
    moved it), and the entries quarantined instead (their stored run count was not an integer), by name. Only the
    beat whose revert moved an entry into quarantine says so: the answer tells it which."""


class Runs:
    """The run-state scripts on the keys ``scripts`` is bound to (one hash tag)."""

    claim_args = staticmethod(wire.claim_args)
    claim_from_reply = staticmethod(wire.decode_claim)
    commit_args = staticmethod(wire.commit_args)

    def __init__(self, scripts: Scripts) -> None:
        self.scripts = scripts

    def claim(self, batch: int, lease_seconds: float, now: float | None = None) -> Claim:
        """Claim up to ``batch`` entries due at ``now`` (default: Redis server time)."""
        return self.claim_from_reply(self.scripts.run("claim", self.claim_args(batch, lease_seconds, now)))

    def claim_with_heartbeat(self, heartbeat: Sequence[Any], batch: int, lease_seconds: float,
                             now: float | None = None) -> tuple[Claim, BaseException | None]:
        """:meth:`claim`, with a heartbeat (heartbeat.lua's ARGV) sent in the same round trip; with the error that
        kept the heartbeat from being written, None once it was.

        A script Redis does not know (``NOSCRIPT``) did not run, and is run again
        the usual way, which loads it. On a cluster (no scripts in its
        pipelines) the heartbeat is a call of its own.
        """
        if is_cluster(self.scripts.client):
            self.heartbeat(heartbeat)
            return self.claim(batch, lease_seconds, now), None
        beat_reply, claim_reply = self.scripts.pipelined(
            [("heartbeat", heartbeat), ("claim", self.claim_args(batch, lease_seconds, now))])
        problem = None
        if isinstance(beat_reply, redis.exceptions.NoScriptError):
            self.heartbeat(heartbeat)
        elif isinstance(beat_reply, redis.RedisError):
            problem = beat_reply
        if isinstance(claim_reply, redis.exceptions.NoScriptError):
            return self.claim(batch, lease_seconds, now), problem
        if isinstance(claim_reply, Exception):
            raise claim_reply
        return self.claim_from_reply(claim_reply), problem

    def heartbeat(self, args: Sequence[Any]) -> None:
        """Write one beat's heartbeat (heartbeat.lua's ARGV: its id, its record, seconds it is kept)."""
        self.scripts.run("heartbeat", args)

    def stream(self) -> ScriptStream | None:
        """A :class:`~.scripts.ScriptStream` on this schedule's server, or None where there is none (Redis Cluster)."""
        return self.scripts.stream()

    def commit(self, plans: Sequence[Plan], history: int = 0, messages: str | None = None) -> Committed:
        """Write the plans whose lease still holds, keeping ``history`` records per entry (0 = off); one flag per plan.

        ``messages`` (:func:`~celerybeatredis.delivery.redis_messages.encode`) are written with the runs committed.
        """
        if not plans:
            return Committed()
        return self.committed(plans, self.scripts.run_resending("commit", self.commit_args(plans, history, messages)))

    @staticmethod
    def committed(plans: Sequence[Plan], reply: list[Any]) -> Committed:
        """commit.lua's reply (1 committed, 0 lease lost, -1 quarantined) as :class:`Committed`."""
        return Committed.from_codes([plan.name for plan in plans], reply)

    def commit_replicated(self, plans: Sequence[Plan], replicas: int, timeout: float, history: int = 0,
                          messages: str | None = None) -> tuple[Committed, int]:
        """``commit``, then ``WAIT`` on the same connection: ``(flags, replicas that acknowledged it)``.

        Sent once more if the connection drops, as ``commit`` is (commit.lua reports a
        resent run as committed; the ``WAIT`` then covers the first send too).
        """
        if not plans:
            return Committed(), replicas
        args = self.commit_args(plans, history, messages)
        try:
            return self._commit_and_wait(plans, args, replicas, timeout)
        except (redis.ConnectionError, redis.TimeoutError):
            return self._commit_and_wait(plans, args, replicas, timeout)

    def _commit_and_wait(self, plans: Sequence[Plan], args: list[Any], replicas: int,
                         timeout: float) -> tuple[Committed, int]:
        client = self.scripts.client
        wait = ("WAIT", replicas, max(1, int(timeout * 1000)))
        if is_cluster(client):
            # No scripts in cluster pipelines; the node's pool hands this single-threaded caller the same connection.
            reply = self.scripts.run("commit", args)
            acked = client.execute_command(*wait, target_nodes=client.get_node_from_key(self.scripts.keys.due))
        else:
            pipe = client.pipeline(transaction=False)
            self.scripts.run("commit", args, client=pipe)
            pipe.execute_command(*wait)
            reply, acked = pipe.execute()
        return self.committed(plans, reply), int(acked)

    def revert(self, reverts: Sequence[Revert]) -> Reverted:
        """Undo committed runs that were never published; one flag per entry, and those quarantined instead."""
        if not reverts:
            return Reverted()
        reply = self.scripts.run_resending("revert", wire.revert_args(reverts))
        return Reverted.from_codes([r.name for r in reverts], [int(code) for code in reply])

    def renew(self, lease: str, lease_seconds: float, names: Sequence[bytes]) -> tuple[str, int]:
        """Move the entries of ``names`` still held under ``lease`` to a new lease: ``(new lease, entries renewed)``."""
        new_lease, renewed = self.scripts.run("renew", [lease, lease_seconds, *names])
        return (new_lease.decode() if isinstance(new_lease, bytes) else str(new_lease)), int(renewed)

    def claim_pending(self, limit: int, lease_seconds: float, now: float | None = None) -> tuple[float, list[Pending]]:
        """Runs committed and not known to be taken by the broker whose resend time has come, leased for resending
        (``at-least-once``); with the server's time."""
        reply = self.scripts.run("pending_claim", [limit, lease_seconds, "" if now is None else repr(now)])
        runs = []
        for i in range(1, len(reply), 4):
            tid, fire_time, run_stamp = [*reply[i + 1].decode().split(" "), "", ""][:3] if reply[i + 1] else (None, "", "")
            runs.append(Pending(name=name_text(reply[i]), task_id=tid or None,
                                definition=reply[i + 2].decode("utf-8", "surrogateescape") if reply[i + 2] else None,
                                total_run_count=int(reply[i + 3]) if reply[i + 3] else 0,
                                fire_time="" if fire_time == "-" else fire_time, stamp="" if run_stamp == "-" else run_stamp))
        return float(reply[0]), runs

    def clear_pending(self, runs: Sequence[tuple[str, str]]) -> int:
        """Forget the pending runs ``(name, task id)`` the broker took (or that were put back unsent)."""
        if not runs:
            return 0
        return int(self.scripts.run_resending("pending_clear", [v for name, tid in runs for v in (name_bytes(name), tid)]))

    def reconcile_step(self, count: int) -> ReconcileStep:
        """One bounded reconciler step (see ``lua/reconcile.lua``)."""
        return wire.decode_reconcile(self.scripts.run("reconcile", [count]))

    def run_started(self, name: str, task_id: str) -> None:
        """A worker started the run ``task_id`` of entry ``name``: its marker lapses one ``overlap_timeout`` from now."""
        self.scripts.run("run_started", [name, task_id])

    def run_ended(self, name: str, task_id: str, has_marker: bool, outcome: str, pause_after: int) -> int:
        """A worker ended the run ``task_id`` of ``name`` (``outcome``: ok, failed or other): its marker is dropped
        and a failure counted; returns the entry's failures in a row (0 when not counted, or reset at ``pause_after``)."""
        _, failures = self.scripts.run("run_ended", [name, task_id, "1" if has_marker else "0", outcome, pause_after])
        return int(failures)

    def run_outcome(self, name: str, run_stamp: str, outcome: str, runtime: str, error: str = "") -> bool:
        """A worker reports how the run of ``name`` sent at ``run_stamp`` went (``outcome``: a letter of
        :data:`~.history.RESULTS`, ``runtime`` as :func:`~.history.runtime_code` gives it, ``error`` the failure's
        type and first line); False when its history record is no longer kept."""
        return bool(self.scripts.run("run_outcome", [name, run_stamp, outcome, runtime, error]))
