"""Clocks: crontab entries in their own time zones across DST changes, the starting deadline, a host clock that jumps.

DST and the deadline drive the scheduler's tick at chosen instants (the
honest tool: a real beat would need days of wall time). The clock jump runs
a real ``celery beat`` under libfaketime, whose wall clock the test moves
back and forward while it runs.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections import Counter
from datetime import date, datetime, timedelta, timezone
from functools import partial
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis
from celery import Celery
from celery.schedules import crontab

from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.storage.redis_store import RedisStore

from ..support.ledger import STAMP_PUBLISHER, STAMP_RUN_AT, Ledger, load_entries, run_counts
from ..support.processes import CeleryProcess, drain_queue, wait_until, write_app

CRONS = {
    "every-hour-at-30": {"minute": "30"},
    "daily-0130": {"minute": "30", "hour": "1"},
    "daily-0145": {"minute": "45", "hour": "1"},
    "daily-0215": {"minute": "15", "hour": "2"},
    "daily-0230": {"minute": "30", "hour": "2"},
    "quarter-hours-0-3": {"minute": "*/15", "hour": "0-3"},
}
DAILY = [name for name in CRONS if name.startswith("daily")]

#: (zone, day of the change, what the clocks do, runs that show the rule on that day)
TRANSITIONS = [
    ("Europe/Berlin", "2026-03-29", "forward 02:00 -> 03:00", {"daily-0230": ["03:30+0200"], "daily-0215": ["03:15+0200"]}),
    ("Europe/Berlin", "2026-10-25", "back 03:00 -> 02:00", {"daily-0230": ["02:30+0200"], "daily-0215": ["02:15+0200"]}),
    ("America/New_York", "2026-03-08", "forward 02:00 -> 03:00", {"daily-0230": ["03:30-0400"]}),
    ("America/New_York", "2026-11-01", "back 02:00 -> 01:00", {"daily-0130": ["01:30-0400"], "daily-0145": ["01:45-0400"]}),
    ("Australia/Lord_Howe", "2026-04-05", "back 02:00 -> 01:30", {"daily-0145": ["01:45+1100"]}),
    ("Australia/Lord_Howe", "2026-10-04", "forward 02:00 -> 02:30", {"daily-0215": ["02:45+1100"], "daily-0230": ["02:30+1100"]}),
]


def run_through(app: Celery, store: RedisStore, broker: redis.Redis, start: float, end: float,
                every: float = 600.0) -> list[tuple[str, float]]:
    """Tick at every due time and at least every ``every`` seconds from ``start`` to ``end``; returns (task, time) sent."""
    sched = RedisScheduler(app)
    sent: list[tuple[str, float]] = []
    t = start
    try:
        while t < end:
            sched.tick(now=t)
            sent += [(m.task, t) for m in drain_queue(broker, app.conf.task_default_queue)]
            head = store.client.zrange(store.keys.due, 0, 0, withscores=True)
            t = min(max(head[0][1] if head else end, t + 0.001), t + every)
    finally:
        sched.close()
    return sent


def celery_alone(spec: dict[str, str], zone: str, start: float, end: float) -> list[float]:
    """When Celery's own crontab, with the app's time zone set to ``zone``, says the entry runs (a perfect ticker)."""
    app = Celery("oracle", set_as_current=False)
    app.conf.timezone = zone
    now = [start]
    cron = crontab(**spec, app=app, nowfun=lambda: datetime.fromtimestamp(now[0], timezone.utc))
    runs, last = [], datetime.fromtimestamp(start, timezone.utc)
    while now[0] < end:
        due, next_in = cron.is_due(last)
        if due:
            runs.append(now[0])
            last = datetime.fromtimestamp(now[0], timezone.utc)
        now[0] += max(float(next_in), 0.001)
    return runs


@pytest.mark.parametrize(("zone", "day", "change", "rule"), TRANSITIONS, ids=[f"{z}-{d}" for z, d, _, _ in TRANSITIONS])
def test_crontab_in_its_own_zone_runs_once_per_local_time_across_a_dst_change(
        app: Celery, store: RedisStore, broker: redis.Redis, zone: str, day: str, change: str,
        rule: dict[str, list[str]]) -> None:
    tz = ZoneInfo(zone)
    first = date.fromisoformat(day) - timedelta(days=1)
    start = datetime(first.year, first.month, first.day, 12, tzinfo=tz).timestamp()
    end = start + 2 * 86400
    store.put_raw({name: json.dumps({"task": name, "crontab": dict(spec, timezone=zone)}) for name, spec in CRONS.items()})
    sent = run_through(app, store, broker, start, end)
    for name, spec in CRONS.items():
        times = [t for task, t in sent if task == name]
        wall = Counter(datetime.fromtimestamp(t, tz).replace(tzinfo=None) for t in times)
        assert max(wall.values()) == 1, (name, change, wall.most_common(2))  # no local time twice
        assert times == pytest.approx(celery_alone(spec, zone, start, end)), (name, change)  # Celery's own rule
        if name in DAILY:
            days = Counter(datetime.fromtimestamp(t, tz).date() for t in times)
            assert sorted(days.values()) == [1, 1], (name, change, days)  # once on the day of the change, once the next
    for name, expected in rule.items():
        on_the_day = [datetime.fromtimestamp(t, tz).strftime("%H:%M%z") for task, t in sent
                      if task == name and datetime.fromtimestamp(t, tz).date().isoformat() == day]
        assert on_the_day == expected, (name, change)


def test_beat_cron_starting_deadline_is_honoured(app: Celery, store: RedisStore, broker: redis.Redis) -> None:
    """Beat away from 10:00 to 12:30: without a deadline the missed run happens once at 12:30; within 20 min, not at all."""
    ten = datetime(2026, 6, 1, 10, 0, tzinfo=timezone.utc).timestamp()
    hourly = json.dumps({"task": "tasks.hourly", "crontab": {"minute": "0"}})

    def runs_after_an_absence(deadline: int | None) -> list[str]:
        app.conf.beat_cron_starting_deadline = deadline
        store.client.delete(*[getattr(store.keys, k) for k in ("schedule", "due", "total_run_count", "last_run_at", "digest")])
        store.put_raw({"hourly": hourly})
        sched = RedisScheduler(app)
        for t in (ten - 60, ten, ten + 9000, ten + 10800):  # 09:59 (first seen), 10:00, 12:30, 13:00
            sched.tick(now=t)
        sched.close()
        return [m.task for m in drain_queue(broker, app.conf.task_default_queue)]

    assert runs_after_an_absence(None) == ["tasks.hourly"] * 3  # 10:00, 12:30 (11:00 and 12:00 collapsed), 13:00
    assert runs_after_an_absence(1200) == ["tasks.hourly"] * 2  # 10:00, 13:00: 12:00 is past the deadline at 12:30


def libfaketime_path() -> str:
    """The libfaketime library the test extra installs; fails the test, naming what is missing, without it."""
    try:
        import libfaketime
    except ImportError:
        pytest.fail("the libfaketime package is not installed; pip install -e '.[test]' brings it")
    path = Path(libfaketime.__file__).parent / "vendor" / "libfaketime" / "src" / "libfaketime.so.1"
    if not path.exists():
        pytest.fail(f"libfaketime's library is not at {path}")
    return str(path)


#: celery beat's log line prefix, in the beat's own (fake) wall clock: ``[2026-03-02 12:00:00,123: INFO/MainProcess]``.
LOGGED_AT = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/\w+\] Scheduler: Sending due task")


def sending_times(output: str) -> list[float]:
    """When beat logged each "Sending due task" line, by beat's own wall clock."""
    return [datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            for m in map(LOGGED_AT.match, output.splitlines()) if m]


def set_offset(path: Path, shift: str) -> None:
    """Move beat's wall clock: libfaketime reads the file on every clock call, so it is replaced whole."""
    new = path.with_suffix(".new")
    new.write_text(shift + "\n")
    new.replace(path)


@pytest.mark.e2e
@pytest.mark.slow
def test_a_beat_host_clock_that_jumps_back_and_forward_changes_nothing(
        tmp_path: Path, redis_url: str, prefix: str, store: RedisStore, broker: redis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The beat's wall clock goes back an hour, then forward two: runs keep to Redis time, none twice, none skipped.

    Each phase lasts until beat has logged a send by its moved clock and every
    entry has run twice since (events, not a fixed wait: a loaded machine only
    makes a phase longer).
    """
    so = libfaketime_path()
    offset = tmp_path / "faketime"
    set_offset(offset, "+0")
    monkeypatch.setenv("LD_PRELOAD", so)
    monkeypatch.setenv("FAKETIME_TIMESTAMP_FILE", str(offset))
    monkeypatch.setenv("FAKETIME_NO_CACHE", "1")
    monkeypatch.setenv("DONT_FAKE_MONOTONIC", "1")  # a wall clock step, as NTP or a VM resume makes
    queue = f"q-{prefix}"
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix,
              extra=f"app.conf.task_default_queue = {queue!r}\n" + STAMP_PUBLISHER + STAMP_RUN_AT)
    names = [f"j{i:02d}" for i in range(20)]
    load_entries(store, {n: json.dumps({"task": "tasks.tick", "interval": {"every": 1, "period": "seconds"},
                                        "relative": True, "args": [n]}) for n in names})
    ledger = Ledger(broker, queue)
    beat = CeleryProcess.beat(tmp_path)
    monkeypatch.delenv("LD_PRELOAD")  # only beat runs under the fake clock
    phases: dict[str, tuple[float, float]] = {}

    def on_moved_clock(shift: int, logged_before: int) -> bool:
        return beat.alive() and any(abs(t - time.time() - shift) < 600 for t in sending_times(beat.output())[logged_before:])

    def ran_twice_since(begin: float) -> bool:
        ledger.poll()
        return beat.alive() and all(sum(1 for t in ledger.run_at[n] if t >= begin) >= 2 for n in names)

    try:
        wait_until(partial(ran_twice_since, 0.0), timeout=60, what="beat to run every entry")
        for label, shift in (("back 1 h", -3600), ("forward 2 h", 7200), ("back to true time", 0)):
            logged = len(sending_times(beat.output()))
            set_offset(offset, f"{shift:+d}")
            # Beat is on the moved clock once it logs a send stamped with it (its log clock is the faked one).
            wait_until(partial(on_moved_clock, shift, logged), timeout=60, what=f"beat to log by its clock moved {label}")
            begin = store.server_time()
            wait_until(partial(ran_twice_since, begin), timeout=60, what=f"every entry to run twice with the clock {label}")
            phases[label] = (begin, store.server_time())
    finally:
        code = beat.stop()
    ledger.poll()
    audit = ledger.audit(store, names)
    print(audit.row("host clock jumps -1 h, +2 h, back") + f" | phases {phases}")
    assert code == 0, beat.output()
    assert (audit.duplicates, audit.lost) == (0, 0)
    counts = run_counts(store)
    for name in names:
        runs = ledger.run_at[name]
        assert len(runs) == counts[name] == ledger.counts[name], name  # every run committed was sent, once
        # Due at each whole second of Redis time: one run per due second, in order, never two in one second.
        seconds = [math.floor(t) for t in runs]
        assert all(a < b for a, b in zip(seconds, seconds[1:])), (name, runs)
    steps = [b - a for a, b in zip(sending_times(beat.output()), sending_times(beat.output())[1:])]
    assert min(steps) < -3000 and max(steps) > 6000  # beat's own clock did jump back, then forward
