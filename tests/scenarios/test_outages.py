"""Outages under a real ``celery beat``: the schedule's Redis stopped and restarted, connections dropped, the broker down.

Each test starts its own redis-server on a fixed port (so it can be stopped
and started again at the same address), with an append-only file so that
what it held before the stop is there again after the restart.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from celery import Celery

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from ..support.helpers import T0
from ..support.ledger import STAMP_PUBLISHER, Ledger, load_entries, run_counts
from ..support.processes import CeleryProcess, wait_until, write_app
from ..support.redis_server import RedisServer, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PERSISTENT = ("--appendonly", "yes", "--appendfsync", "always")


@pytest.fixture
def restartable() -> Iterator[RedisServer]:
    server = RedisServer(*PERSISTENT).start()
    yield server
    server.cleanup()


def every(name: str, seconds: int) -> str:
    return json.dumps({"task": "tasks.tick", "interval": {"every": seconds, "period": "seconds"}, "relative": True,
                       "args": [name]})


def retry_delays(output: str, what: str) -> list[float]:
    return [float(d) for d in re.findall(rf"{what}.*?retrying in ([\d.]+)s", output)]


def test_schedule_redis_stopped_for_ten_seconds_and_connections_dropped(tmp_path: Path, redis_url: str,
                                                                       restartable: RedisServer, prefix: str) -> None:
    """Beat logs the outage, backs off, keeps running, resumes; missed runs collapse into one; nothing twice."""
    period, outage = 5, 10.0
    queue = f"q-{prefix}"
    write_app(tmp_path, f"{redis_url}/1", f"{restartable.url}/0", prefix,
              extra=f"app.conf.task_default_queue = {queue!r}\n" + STAMP_PUBLISHER)
    client = redis.Redis.from_url(f"{restartable.url}/0")
    store = RedisStore(client, prefix)
    names = [f"o{i:02d}" for i in range(40)]
    load_entries(store, {n: every(n, period) for n in names})
    broker = redis.Redis.from_url(f"{redis_url}/1")
    ledger = Ledger(broker, queue)
    beat = CeleryProcess.beat(tmp_path)
    try:
        wait_until(lambda: beat.alive() and ledger.poll() >= 0 and all(ledger.counts[n] >= 2 for n in names),
                   timeout=60, what="two runs of every entry")
        restartable.stop()
        stopped_at = time.time()
        wait_until(lambda: "Redis unavailable" in beat.output(), timeout=30, what="beat to log the outage")
        time.sleep(max(0.0, outage - (time.time() - stopped_at)))
        assert beat.alive()
        ledger.poll()
        before = dict(ledger.counts)
        restartable.start()
        restarted_at = time.time()
        wait_until(lambda: beat.alive() and ledger.poll() >= 0 and all(ledger.counts[n] > before[n] for n in names),
                   timeout=60, what="every entry to run again after the outage")
        # Missed runs collapse: each entry ran once on resuming, its next run is a whole period later.
        first_after = {n: min(t for t in ledger.arrivals[n] if t >= restarted_at) for n in names}
        time.sleep(2.0)
        ledger.poll()
        catch_up = {n: sum(1 for t in ledger.arrivals[n] if restarted_at <= t < first_after[n] + 2.0) for n in names}
        assert set(catch_up.values()) == {1}, catch_up
        assert "Redis is back" in beat.output()

        # Dropped connections (a proxy or a failover would do this): beat reconnects and carries on.
        for _ in range(3):
            client.client_kill_filter(_type="normal", skipme=True)
            time.sleep(1.0)
        dropped = dict(ledger.counts)
        wait_until(lambda: beat.alive() and ledger.poll() >= 0 and all(ledger.counts[n] > dropped[n] for n in names),
                   timeout=30, what="runs after the dropped connections")
        time.sleep(1.0)
    finally:
        code = beat.stop()
    ledger.poll()
    audit = ledger.audit(store, names)
    print(audit.row("schedule Redis down 10 s, connections dropped"))
    output = beat.output()
    assert code == 0, output
    assert (audit.duplicates, audit.lost) == (0, 0)
    assert all(ledger.counts[n] == run_counts(store)[n] for n in names)
    delays = retry_delays(output, "Redis unavailable")
    # Backs off: 0.5 s, then doubling up to 5 s; a later outage (a dropped connection) starts again at 0.5 s.
    assert delays and delays[0] == 0.5, delays
    assert all(b in (0.5, min(2 * a, 5.0)) for a, b in zip(delays, delays[1:])), delays
    assert max(delays) == 5.0, delays
    assert restartable.url.split("//")[1] in output  # says which server
    client.close()
    broker.close()


def test_broker_down_while_entries_are_due(tmp_path: Path, restartable: RedisServer, redis_url: str, prefix: str,
                                           store: RedisStore) -> None:
    """Publish fails: beat keeps running, the run is put back (run state not advanced) and retried; nothing twice."""
    period, retry = 2, 1.0
    queue = f"q-{prefix}"
    write_app(tmp_path, f"{restartable.url}/1", f"{redis_url}/0", prefix, extra=(
        f"app.conf.update(task_default_queue={queue!r}, redis_scheduler_publish_retry_seconds={retry!r})\n"
        + STAMP_PUBLISHER))
    names = [f"b{i:02d}" for i in range(20)]
    load_entries(store, {n: every(n, period) for n in names})
    broker = redis.Redis.from_url(f"{restartable.url}/1")
    ledger = Ledger(broker, queue)
    beat = CeleryProcess.beat(tmp_path)
    try:
        wait_until(lambda: beat.alive() and ledger.poll() >= 0 and all(ledger.counts[n] >= 2 for n in names),
                   timeout=60, what="two runs of every entry")
        # Stop between two bursts, so no message is half sent.
        wait_until(lambda: ledger.poll() % len(names) == 0 and run_counts(store) == dict(ledger.counts),
                   timeout=10, interval=0.02, what="a quiet moment")
        restartable.stop()
        broker.close()
        at_stop = run_counts(store)
        wait_until(lambda: beat.output().count("not published") >= 3, timeout=30, what="three failed publish attempts")
        assert beat.alive()
        # Between attempts the run state is back where it was: runs that were never sent do not count.
        wait_until(lambda: run_counts(store) == at_stop, timeout=10, interval=0.05, what="the run state to be put back")
        restartable.start()
        wait_until(lambda: beat.alive() and ledger.poll() >= 0 and all(ledger.counts[n] > at_stop[n] for n in names),
                   timeout=60, what="every entry to run once the broker is back")
        time.sleep(1.0)
    finally:
        code = beat.stop()
    ledger.poll()
    audit = ledger.audit(store, names)
    print(audit.row("broker down"))
    output = beat.output()
    assert code == 0, output
    assert (audit.duplicates, audit.lost) == (0, 0)
    assert "they are due again in 1.0s" in output
    broker.close()


def test_a_beat_that_never_reached_the_broker_puts_its_committed_runs_back(
        app: Celery, store: RedisStore, caplog: pytest.LogCaptureFixture) -> None:
    """The producer connects on first use: failing there is a broker outage like a failed publish, not a lost batch."""
    store.put_raw({"r": every("r", 10)})
    app.conf.update(broker_url=f"redis://127.0.0.1:{free_port()}/1", broker_connection_timeout=1,
                    broker_connection_max_retries=0, redis_scheduler_claim_ahead=False)
    sched = RedisScheduler(app)
    try:
        sched.tick(now=T0)  # first look: due one interval later
        with caplog.at_level(logging.WARNING, logger="celerybeatredis.schedulers"):
            assert sched.tick(now=T0 + 10) == 5
    finally:
        sched.close()
    assert store.run_state("r")[0] == 0  # put back uncounted
    assert store.due_score("r") == T0 + 10 + 5
    logged = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("beat: cannot reach the broker to publish") for m in logged), logged
    assert "beat: 1 runs not published; they are due again in 5.0s" in logged, logged
