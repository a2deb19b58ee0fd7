"""Celery beat glue: ``celery beat -S celerybeatredis.schedulers.RedisScheduler``.

One tick claims a bounded batch of due entries (one Lua call), decides for
each whether it runs and when it is due next, commits that (one Lua call),
then publishes the runs that were committed; while batches come back full it
sends the next claim and each commit ahead, so Redis works while beat decides.
Commit comes before publish, as in Celery's own scheduler: a beat killed
between the two loses those runs rather than sending them twice (see
"Guarantees" in README.rst).
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime, timezone
from typing import Any, NamedTuple

import click
import redis
from celery import Celery
from celery.beat import ScheduleEntry, Scheduler, SchedulingError
from celery.schedules import BaseSchedule, crontab
from celery.schedules import schedule as interval_schedule
from kombu.exceptions import OperationalError
from redis.exceptions import NoScriptError

from .codec import SHORT_DIGEST, Codec, Definition, digest, dump_document, entry_to_document, interval_is_due
from .connection import eviction_warnings, follow_sentinel
from .exceptions import InvalidDefinition
from .keys import NEVER
from .redis_store import RedisStore
from .scripts import ScriptStream
from .settings import Settings
from .sharded_store import ShardedStore
from .wire import Claim, Claimed, Plan, Revert

logger = logging.getLogger(__name__)

STATIC_CHUNK = 500
MAX_BACKOFF = 5.0
#: ``celery beat`` stops on these by raising SystemExit from its handler, wherever the main thread is.
STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
#: With ``redis_scheduler_claim_ahead`` on auto, beat stops claiming ahead once publishing a
#: full batch takes this many times as long as deciding it (see :meth:`RedisScheduler._measured`).
PUBLISH_BOUND = 2.0


@contextlib.contextmanager
def stop_signals_held() -> Iterator[list[int]]:
    """Hold SIGTERM and SIGINT until the block ends, so a stop lands before a commit or after its publish.

    A committed batch is published whole (or its runs reverted) before beat
    exits; without this, a stop between commit and publish would lose the
    batch's runs. The signals' handlers are swapped for ones that only note
    the signal (masking would not do: the kernel hands a process's signal to
    any thread that does not mask it), then put back, and a noted signal is
    raised again for them. Python runs signal handlers in the main thread
    only, so elsewhere nothing is held. SIGKILL cannot be held: that is the
    documented window. The block gets the list of signals held so far, to
    wind down early when one came.
    """
    caught: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield caught
        return
    previous: dict[signal.Signals, Any] = {}
    for signum in STOP_SIGNALS:
        handler = signal.getsignal(signum)
        if handler is not None:  # None: a handler installed from C, which Python cannot put back
            previous[signum] = handler
            signal.signal(signum, lambda number, _frame: caught.append(number))
    try:
        yield caught
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)


class TickClock:
    """The time of the current tick, taken from Redis so every beat agrees on it."""

    def __init__(self) -> None:
        self.current = datetime.now(timezone.utc)
        self.iso = self.current.isoformat()

    def now(self) -> datetime:
        """The tick's time (aware, UTC)."""
        return self.current

    def set(self, timestamp: float) -> datetime:
        """Move the clock to ``timestamp`` (Unix seconds)."""
        self.current = datetime.fromtimestamp(timestamp, timezone.utc)
        self.iso = self.current.isoformat()  # the run time of every entry the tick runs
        return self.current


class BadSettings(click.ClickException, ValueError):
    """A setting beat cannot start with: ``celery beat`` prints it as one line and exits with code 1."""


class RedisScheduler(Scheduler):
    """A Celery beat scheduler whose schedule lives in Redis.

    Settings come from the app's configuration (``redis_scheduler_*``, see
    README.rst). A lazy instance (the one ``celery beat`` makes for its banner)
    does no I/O.
    """

    #: Longest sleep between ticks; entries added meanwhile are seen within it.
    max_interval = 1.0

    def __init__(self, app: Celery, *args: Any, **kwargs: Any) -> None:
        try:
            self.settings = Settings.from_app(app)
        except ValueError as exc:
            raise BadSettings(f"celerybeat-redis: {exc}") from None
        self.clock = TickClock()
        self.codec = Codec(app, nowfun=self.clock.now)
        self.store: ShardedStore | None = None
        self._turn = 0
        self._checked = False
        self._statics_synced = False
        self._next_reconcile = 0.0
        self._failures = 0
        #: ``is_due`` answers of this batch by (schedule, last run): entries that share a schedule and ran
        #: together (one batch writes one run time) share the answer. The schedule is kept, so its id stays its own.
        self._due_memo: dict[tuple[int, datetime, Any], tuple[BaseSchedule, tuple[bool, float]]] = {}
        self._last_run_memo: dict[str, datetime | None] = {}
        self._anchor_memo: dict[float, datetime] = {}
        #: Whether the last full batch was bound by publishing; a new beat assumes so until it has measured one.
        self._publish_bound = True
        super().__init__(app, *args, **kwargs)

    # --- Celery's Scheduler interface ------------------------------------------

    def setup_schedule(self) -> None:
        """Connect and sync ``beat_schedule`` into Redis (retried by tick if Redis is down)."""
        self.store = ShardedStore.from_settings(self.settings)
        logger.info("beat: schedule in Redis at %s, keys {%s}:*", self.settings.safe_url, self.settings.tag)
        try:
            self.check_redis()
            self.sync_statics()
        except redis.RedisError as exc:
            logger.error("beat: cannot reach Redis at %s to sync beat_schedule (%s); will retry", self.settings.safe_url, exc)

    def tick(self, *args: Any, now: float | None = None, **kwargs: Any) -> float:
        """Process the due entries (batch after full batch, for up to ``max_interval``); returns seconds to sleep.

        Args:
            now: Unix time to tick at instead of the Redis server's clock (for tests and tools).
        """
        try:
            delay = self._tick(now)
        except redis.ResponseError as exc:
            delay = self._backoff()
            logger.error("beat: Redis refused a schedule command (%s)%s; retrying in %.1fs", exc, self._wrong_types(), delay)
            return delay
        except redis.RedisError as exc:
            delay = self._backoff()
            logger.error("beat: Redis unavailable at %s (%s); retrying in %.1fs", self.settings.safe_url, exc, delay)
            return delay
        except Exception:  # beat must outlive any one tick; the traceback is logged
            delay = self._backoff()
            logger.exception("beat: tick failed; retrying in %.1fs", delay)
            return delay
        if self._failures:
            logger.info("beat: Redis is back at %s", self.settings.safe_url)
            self._failures = 0
        return delay

    def sync(self) -> None:
        """Nothing to do: every change is written to Redis when it happens."""

    def close(self) -> None:
        """Release the Redis connections."""
        if self.store is not None:
            self.store.close()

    def get_schedule(self) -> dict[str, Any]:
        """Always empty: the schedule lives in Redis and is never loaded whole."""
        return {}

    def set_schedule(self, schedule: Mapping[str, Any]) -> None:
        """Ignored; use ``beat_schedule`` or the store to change the schedule."""

    schedule = property(get_schedule, set_schedule)

    @property
    def info(self) -> str:
        """Lines for the ``celery beat`` banner (password masked)."""
        shards = self.settings.shards
        tags = f"{{{self.settings.tag}:0}} .. {{{self.settings.tag}:{shards - 1}}}" if shards > 1 else f"{{{self.settings.tag}}}"
        return f"    . redis -> {self.settings.safe_url}\n    . key tag -> {tags}"

    def check_redis(self) -> None:
        """Log what could make the schedule's Redis lose or hide entries: an evicting memory policy, another layout."""
        assert self.store is not None
        for warning in eviction_warnings(self.store.client):
            logger.warning("beat: %s", warning)
        problem = self.store.check_layout()
        if problem:
            logger.error("beat: %s", problem)
        self._checked = True

    # --- statics --------------------------------------------------------------------

    def static_documents(self) -> tuple[dict[str, str], set[str]]:
        """``beat_schedule`` (plus Celery's default entries) as definition JSON.

        Returns:
            ``(documents, rejected)``: valid entries by name, and names whose
            config entry is invalid (logged, and left as they are in Redis).
        """
        entries = dict(self.app.conf.beat_schedule or {})
        if self.app.conf.result_expires and not self.app.backend.supports_autoexpire:
            entries.setdefault(
                "celery.backend_cleanup",
                {"task": "celery.backend_cleanup", "schedule": crontab("0", "4", "*"), "options": {"expires": 12 * 3600}},
            )
        documents: dict[str, str] = {}
        rejected: set[str] = set()
        for name, entry in entries.items():
            try:
                doc = entry_to_document(entry)
                self.codec.from_document(doc)
                documents[name] = dump_document(doc)
            except InvalidDefinition as exc:
                logger.error("beat: beat_schedule %s; entry not synced", exc.for_entry(name).reason)
                rejected.add(name)
        return documents, rejected

    def sync_statics(self) -> None:
        """Upsert ``beat_schedule`` entries and remove statics that left it."""
        assert self.store is not None
        documents, rejected = self.static_documents()
        names = list(documents)
        written = 0
        for i in range(0, len(names), STATIC_CHUNK):
            chunk = {n: documents[n] for n in names[i : i + STATIC_CHUNK]}
            done = self.store.put_raw(chunk, static=True)
            written += done.written
            for name in done.skipped:
                logger.warning(
                    "beat: beat_schedule entry %r not synced: a dynamic entry of that name exists in Redis", name
                )
            for name in done.overwritten:
                logger.warning(
                    "beat: beat_schedule entry %r overwrote its definition in Redis, which had been changed there; "
                    "edit beat_schedule, or use another name for an entry managed in Redis", name
                )
        stale = [n for n in self.store.iter_static_names() if n not in documents and n not in rejected]
        for i in range(0, len(stale), STATIC_CHUNK):
            self.store.remove_names(stale[i : i + STATIC_CHUNK])
        self._statics_synced = True
        logger.info("beat: beat_schedule synced: %d entries, %d changed, %d removed", len(documents), written, len(stale))

    # --- the tick -----------------------------------------------------------------

    def _tick(self, now: float | None) -> float:
        if self.store is None:
            self.store = ShardedStore.from_settings(self.settings)
        if not self._checked:
            self.check_redis()
        if not self._statics_synced:
            self.sync_statics()
        if time.monotonic() >= self._next_reconcile:
            follow_sentinel(self.store.client)
            self.store.reconcile_step(self.settings.reconcile_batch)
            self._next_reconcile = time.monotonic() + self.settings.reconcile_interval
        # Every shard in turn, starting one shard later each tick so none is always last.
        self._turn += 1
        delay = self.max_interval
        for store in self.store.in_turn(self._turn):
            publish_failed, claim = self._batches(store, now)
            if publish_failed:
                return self.settings.publish_retry_seconds
            if len(claim.entries) >= self.settings.batch_size:
                delay = 0.0
            elif claim.next_score is not None:
                delay = min(delay, max(0.0, claim.next_score - claim.now))
        return delay

    def _batches(self, store: RedisStore, now: float | None) -> tuple[bool, Claim]:
        """Batches from ``store`` while they come back full; returns whether a publish failed, and the last claim.

        Stops at a batch that is not full, after ``max_interval`` seconds (so the
        other shards and the reconciler get their turn) or at a publish failure.
        Full batches are streamed (:meth:`_stream`) while :meth:`_claims_ahead`
        says so, except with ``wait_replicas`` (each commit waits for its
        replicas) or on Redis Cluster, where each batch is processed on its own.
        """
        batch, lease = self.settings.batch_size, self.settings.lease_seconds
        ends = time.monotonic() + self.max_interval
        while True:
            claim = store.claim(batch, lease, now)
            full = len(claim.entries) >= batch
            if full and self._claims_ahead():
                stream = None if self.settings.wait_replicas else store.stream()
                if stream is not None:
                    return self._stream(store, stream, claim, now, ends)
            failed = self._process(store, claim) if claim.entries else False
            if failed or not full or time.monotonic() >= ends:
                return failed, claim

    def _claims_ahead(self) -> bool:
        """Whether a full batch is followed by a claim sent before it is published (``redis_scheduler_claim_ahead``)."""
        forced = self.settings.claim_ahead
        return not self._publish_bound if forced is None else forced

    def _measured(self, claim: Claim, plan_seconds: float, publish_seconds: float) -> None:
        """Learn from a full batch whether beat is bound by publishing.

        A claim sent ahead lets Redis work while beat decides and publishes, but
        holds a batch that other beats could be sending. When publishing dominates
        (a real broker: about 250 us a run, against 7 us to decide one), what
        Redis saves is a few percent, and the held batch waits a whole publish.
        """
        if len(claim.entries) >= self.settings.batch_size:
            self._publish_bound = publish_seconds > PUBLISH_BOUND * plan_seconds

    def _process(self, store: RedisStore, claim: Claim) -> bool:
        """Plan, commit and publish one batch claimed from ``store``; True if a publish failed."""
        now_dt, decisions, plans, planned = self._plan(claim)
        with stop_signals_held():
            replicas = self.settings.wait_replicas
            if replicas:
                committed, acked = store.commit_replicated(plans, replicas, self.settings.wait_timeout)
                # A commit the replicas did not get may be lost in a failover: undo its runs rather than publish them.
                withheld = acked < replicas
                if withheld:
                    logger.warning("beat: commit acknowledged by %d of %d replicas; its runs are not published",
                                   acked, replicas)
            else:
                committed, withheld = store.commit(plans), False
            return self._publish_committed(store, claim, decisions, committed, withheld, now_dt, planned)

    def _plan(self, claim: Claim) -> tuple[datetime, list[tuple[Plan, tuple[Definition, int] | None]], list[Plan], float]:
        """The clock of ``claim``'s batch, what happens to each of its entries, and the seconds deciding took."""
        started = time.perf_counter()
        now_dt = self.clock.set(claim.now)
        self._due_memo.clear()  # its answers hold for one clock reading
        self._last_run_memo.clear()  # entries of a batch mostly share their last run (they ran together)
        self._anchor_memo.clear()
        decisions = [self._decide_or_quarantine(entry, claim, now_dt) for entry in claim.entries]
        return now_dt, decisions, [plan for plan, _ in decisions], time.perf_counter() - started

    def _stream(self, store: RedisStore, stream: ScriptStream, first: Claim, now: float | None,
                ends: float) -> tuple[bool, Claim]:
        """Batch after full batch from ``store``, each claimed ahead so Redis runs it while beat decides another.

        A batch's commit and the next claim go out on ``stream``; while Redis
        runs them, beat decides the next batch, then publishes the committed
        one before it sends that batch's commit (so, as without the stream,
        only one batch is ever committed and not yet published). Stops at a
        batch that is not full, at ``ends`` (``time.monotonic``), once
        publishing is found to dominate (:meth:`_measured`), at a publish
        failure, or at a stop signal, which lands once every committed batch is
        published. Returns whether a publish failed, and the last claim.
        """
        batch, lease = self.settings.batch_size, self.settings.lease_seconds
        failed = False
        last = current = first
        committing: _Committing | None = None
        with stop_signals_held() as stop, contextlib.closing(stream):
            claim_sent = time.monotonic() < ends
            if claim_sent:
                stream.send("claim", store.claim_args(batch, lease, now))
            while True:
                now_dt, decisions, plans, planned = self._plan(current)
                if committing is not None:  # published before this batch is committed: one batch at risk, as ever
                    failed = self._publish_streamed(store, stream, committing, failed)
                stream.send("commit", store.commit_args(plans))
                committing = _Committing(current, decisions, plans, now_dt, planned)
                if not claim_sent:
                    break
                last = self._read_claim(store, stream, batch, lease, now)
                claim_sent = False
                if not last.entries:
                    break
                if (len(last.entries) >= batch and not (stop or failed) and time.monotonic() < ends
                        and self._claims_ahead()):
                    stream.send("claim", store.claim_args(batch, lease, now))
                    claim_sent = True
                current = last
            failed = self._publish_streamed(store, stream, committing, failed)
        return failed, last

    @staticmethod
    def _read_claim(store: RedisStore, stream: ScriptStream, batch: int, lease: float, now: float | None) -> Claim:
        """The claim sent ahead on ``stream``, claimed the usual way if Redis did not know the script."""
        try:
            return store.claim_from_reply(stream.read())
        except NoScriptError:
            return store.claim(batch, lease, now)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            # Whatever it claimed runs after the lease; the tick ends here.
            logger.warning("beat: connection to Redis lost while claiming (%s)", exc)
            return Claim(0.0, "", None, 0, [])

    def _publish_streamed(self, store: RedisStore, stream: ScriptStream, committing: _Committing, failed: bool) -> bool:
        """Read a batch's commit reply from ``stream`` and publish its runs; True if a publish failed.

        After a failed publish the later batches' runs are reverted unsent.
        """
        try:
            committed = [bool(flag) for flag in stream.read()]
        except (NoScriptError, redis.ConnectionError, redis.TimeoutError):
            # Not run, or perhaps run with the reply lost: commit.lua takes the same plans again.
            committed = store.commit(committing.plans)
        return self._publish_committed(store, committing.claim, committing.decisions, committed, failed,
                                       committing.now, committing.plan_seconds) or failed

    def _publish_committed(self, store: RedisStore, claim: Claim, decisions: list[tuple[Plan, tuple[Definition, int] | None]],
                           committed: list[bool], withheld: bool, now_dt: datetime, plan_seconds: float) -> bool:
        """Publish one batch's committed runs (reverting those that cannot be sent, or all if ``withheld``).

        A batch published in full is timed against ``plan_seconds`` (:meth:`_measured`).
        Returns whether runs were withheld: a publish failed for the broker, or ``withheld`` was given.
        """
        started = time.perf_counter()
        reverts: list[Revert] = []
        producer = None
        for (plan, run), ok, claimed in zip(decisions, committed, claim.entries):
            if not ok or run is None:
                continue
            if not withheld:
                if producer is None:
                    producer = self.producer  # a lazy property that costs a lock per read: read once per batch
                error = self._publish(claimed.name, run, now_dt, producer)
                if error is None:
                    continue
                if not self._broker_fault(error):
                    # Only this entry's task cannot be sent (its options, say): quarantine it, send the others.
                    reason = f"entry {claimed.name!r}: field 'options': the task cannot be sent: {type(error).__name__}: {error}"
                    logger.error("beat: %s; entry quarantined in {%s}:invalid", reason[:1000], self.settings.tag)
                    reverts.append(Revert(claimed.name, plan.score, NEVER, claimed.last_run_at, reason[:1000]))
                    continue
                withheld = True
            retry = -1.0 if claimed.score < 0 else claim.now + self.settings.publish_retry_seconds
            reverts.append(Revert(claimed.name, plan.score, retry, claimed.last_run_at))
        if reverts:
            store.revert(reverts)
        if withheld:
            retried = sum(1 for r in reverts if not r.invalid_reason)
            logger.warning("beat: %d runs not published; they are due again in %.1fs", retried, self.settings.publish_retry_seconds)
        else:
            self._measured(claim, plan_seconds, time.perf_counter() - started)
        return withheld

    def _broker_fault(self, error: BaseException) -> bool:
        """Whether a publish failed because of the broker (retry later) rather than the entry."""
        conn = self.connection
        # Transports list their own error classes; a builtin one there (kombu's Redis transport lists KeyError)
        # says nothing about the broker.
        listed = [e for e in (*conn.connection_errors, *conn.channel_errors) if e.__module__ != "builtins"]
        while isinstance(error, OperationalError):  # kombu wraps what its transport raised
            inner = error.__cause__ or error.__context__
            if inner is None:
                break
            error = inner
        return isinstance(error, (*listed, OperationalError, OSError))

    def _decide_or_quarantine(self, claimed: Claimed, claim: Claim, now: datetime) -> tuple[Plan, tuple[Definition, int] | None]:
        """:meth:`_decide`, quarantining the one entry (not the batch) if anything unforeseen goes wrong."""
        try:
            return self._decide(claimed, claim, now)
        except Exception as exc:  # one entry must not stop the others
            reason = f"entry {claimed.name!r}: cannot be scheduled: {type(exc).__name__}: {exc}"[:1000]
            logger.exception("beat: %s; entry quarantined in {%s}:invalid", reason, self.settings.tag)
            return Plan(claimed.name, claim.lease, NEVER, digest=f"{digest(claimed.definition)[:SHORT_DIGEST]} {claim.now:.6f}",
                        invalid_reason=reason), None

    def _decide(self, claimed: Claimed, claim: Claim, now: datetime) -> tuple[Plan, tuple[Definition, int] | None]:
        """What happens to one claimed entry: its plan, and the run to publish if any."""
        sha = digest(claimed.definition)
        stored = claimed.digest or ""
        stored_sha, _, stored_anchor = stored.partition(" ")
        fresh = len(stored_sha) >= SHORT_DIGEST and sha.startswith(stored_sha)  # a full SHA-1 (older data) too
        anchor = _parse_float(stored_anchor) if fresh and stored_anchor else None
        previous_run = self._last_run(claimed.last_run_at) if claimed.last_run_at else None
        if previous_run is not None:
            # Runs are timed from last_run_at now; a revert puts that back, never removes it, so the
            # anchor is no longer needed.
            digest_value = sha[:SHORT_DIGEST]
        elif anchor is not None and len(stored_sha) == SHORT_DIGEST:
            digest_value = stored  # the stored anchor stays as written
        else:
            if anchor is None:
                anchor = claim.now
            digest_value = f"{sha[:SHORT_DIGEST]} {anchor:.6f}"
        if digest_value == stored:
            digest_value = ""  # commit.lua leaves an unchanged digest as it is
        try:
            defn = self.codec.parse(claimed.definition, sha)
            if not self.settings.task_allowed(defn.task):
                raise InvalidDefinition("task", f"{defn.task!r} is not in redis_scheduler_task_allowlist")
            if claimed.bad_run_count is not None:
                raise InvalidDefinition(
                    "total_run_count",
                    f"{{{self.settings.tag}}}:total_run_count holds {claimed.bad_run_count[:40]!r}, not an integer; "
                    "set it right (or HDEL it), then make the entry due (ZADD ... 0)",
                )
        except InvalidDefinition as exc:
            reason = exc.for_entry(claimed.name).reason
            logger.error("beat: %s; entry quarantined in {%s}:invalid", reason, self.settings.tag)
            return Plan(claimed.name, claim.lease, NEVER, digest=digest_value, invalid_reason=reason), None

        count = claimed.total_run_count
        seed_count = None
        if count is None and defn.seed_total_run_count is not None:
            count = seed_count = defn.seed_total_run_count
        count = count or 0
        last_run_at = previous_run
        seed_last = None
        if last_run_at is None and defn.seed_last_run_at is not None:
            last_run_at = defn.seed_last_run_at
            seed_last = last_run_at.isoformat()

        def plan(score: float, ran: bool = False) -> Plan:
            run_at = "" if not ran else self.clock.iso if now is self.clock.current else now.isoformat()
            return Plan(claimed.name, claim.lease, score, ran, run_at, digest_value, "", seed_count, seed_last)

        run_now = claimed.score < 0  # an explicit request: runs even if disabled or finished
        limited = defn.one_off or defn.max_run_count is not None or defn.expires is not None or defn.kind == "clocked"
        retired = not defn.enabled or (limited and self._finished(defn, count, now))
        if retired and not run_now:
            return plan(NEVER), None
        if not run_now and defn.start_time is not None and now < defn.start_time:
            return plan(defn.start_time.timestamp()), None
        try:
            sched = defn.schedule
            if run_now:
                is_due, next_in = True, sched.is_due(now)[1]
            else:
                base = last_run_at or self._anchor(claim.now if anchor is None else anchor)
                is_due, next_in = self._is_due(sched, base, now)
        except Exception as exc:  # noqa: BLE001 - one entry's schedule must not stop beat
            reason = f"entry {claimed.name!r}: field {defn.kind!r}: cannot compute the next run: {exc}"
            logger.error("beat: %s; entry quarantined", reason)
            return Plan(claimed.name, claim.lease, NEVER, digest=digest_value, invalid_reason=reason), None
        if not is_due:
            return plan(claim.now + max(float(next_in), 0.0)), None
        runs = count + 1
        next_score = NEVER if retired or (limited and self._finished(defn, runs, now)) else claim.now + float(next_in)
        return plan(next_score, ran=True), (defn, runs)

    def _is_due(self, sched: BaseSchedule, base: datetime, now: datetime) -> tuple[bool, float]:
        """``sched.is_due(base)`` at this batch's time ``now``, computed once per (schedule, last run) in a batch."""
        key = (id(sched), base, base.tzinfo)  # crontab reads the last run's local fields: equal instants may differ
        hit = self._due_memo.get(key)
        if hit is None:
            answer = interval_is_due(sched, base, now) if type(sched) is interval_schedule else sched.is_due(base)
            hit = self._due_memo[key] = (sched, answer)
        return hit[1]

    def _last_run(self, value: str) -> datetime | None:
        """A stored ``last_run_at`` as a datetime, None if it is not a time (parsed once per batch)."""
        memo = self._last_run_memo
        if value in memo:
            return memo[value]
        parsed = memo[value] = _parse_time(value)
        return parsed

    def _anchor(self, value: float) -> datetime:
        """An anchor's Unix time as a UTC datetime (made once per batch)."""
        moment = self._anchor_memo.get(value)
        if moment is None:
            moment = self._anchor_memo[value] = datetime.fromtimestamp(value, timezone.utc)
        return moment

    @staticmethod
    def _finished(defn: Definition, runs: int, now: datetime) -> bool:
        if defn.runs_once and runs >= 1:
            return True
        if defn.max_run_count is not None and runs >= defn.max_run_count:
            return True
        return defn.expires is not None and now >= defn.expires

    def _publish(self, name: str, run: tuple[Definition, int], now: datetime, producer: Any) -> BaseException | None:
        """Send one task as Celery beat would; the error if it could not be published."""
        defn, runs = run
        options = dict(defn.options)
        if "headers" in options:
            options["headers"] = dict(options["headers"])
        entry = ScheduleEntry(
            name=name, task=defn.task, last_run_at=now, total_run_count=runs, schedule=defn.schedule,
            args=defn.args, kwargs=defn.kwargs, options=options, app=self.app,
        )
        if logger.isEnabledFor(logging.INFO):
            logger.info("Scheduler: Sending due task %s (%s)", name, defn.task)
        try:
            self.apply_async(entry, producer=producer, advance=False)
        except Exception as exc:  # noqa: BLE001 - SchedulingError, or the broker connection failing
            logger.error("beat: could not publish %r (%s): %s", name, defn.task, exc)
            cause = exc.__context__ if isinstance(exc, SchedulingError) else None
            return cause or exc
        return None

    def _wrong_types(self) -> str:
        """``": <key> is a string, not a zset ..."`` when a key of the schedule has the wrong type, else ``""``."""
        try:
            found = self.store.wrong_types() if self.store is not None else []
        except redis.RedisError:
            return ""
        return f": {'; '.join(found)}; fix or delete the key" if found else ""

    def _backoff(self) -> float:
        self._failures += 1
        return min(0.5 * 2 ** (self._failures - 1), MAX_BACKOFF)


class _Committing(NamedTuple):
    """A batch whose commit is on its way to Redis, with what is needed to publish it."""

    claim: Claim
    decisions: list[tuple[Plan, tuple[Definition, int] | None]]
    plans: list[Plan]
    now: datetime
    plan_seconds: float


def _parse_float(value: str) -> float | None:
    try:
        number = float(value)
    except ValueError:
        return None
    return number if math.isfinite(number) else None


def _parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)
