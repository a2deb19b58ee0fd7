"""Benchmark celerybeat-redis side by side with RedBeat and Celery's PersistentScheduler.

    python benchmarks/run.py                      # N = 10k, 100k, 1M
    python benchmarks/run.py --entries 100000     # one size
    python benchmarks/run.py --quick              # N = 1,000, short windows (smoke run)

Starts its own redis-server on a free port. Scheduler-only figures replace
``app.send_task`` with a counter (the same for every scheduler); end-to-end
figures run real ``celery beat`` processes against a Redis broker on the same
server. Writes ``results.json``, ``results.md`` and PNG plots into ``--out``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redis.connection  # noqa: E402

from benchmarks import procs, report  # noqa: E402
from benchmarks.subjects import SUBJECTS, Subject  # noqa: E402
from benchmarks.workload import TASK, Burst, Spread, Timed, Workload  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
IDLE_TICKS = 200
#: Entries the lateness figure spreads over its window.
SPREAD = 10_000

Results = dict[str, dict[int, dict[str, Any]]]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, action="append", help="schedule size N (repeatable; default 10k, 100k, 1M)")
    parser.add_argument("--quick", action="store_true", help="N = 1,000 with short windows (smoke run)")
    parser.add_argument("--schedulers", default="ours,redbeat,celery",
                        help="comma-separated: ours, ours-atleast, ours-exactly, redbeat, celery")
    parser.add_argument("--redbeat-max", type=int, default=100_000, help="largest N given to RedBeat")
    parser.add_argument("--celery-max", type=int, default=10_000, help="largest N given to Celery's PersistentScheduler")
    parser.add_argument("--window", type=float, default=60.0, help="seconds the lateness entries are spread over")
    parser.add_argument("--timeout", type=float, default=300.0, help="most seconds one dispatch run may take")
    parser.add_argument("--skip", default="", help="comma-separated figures to skip: dispatch, crontab, lateness, e2e")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results", help="directory for results")
    args = parser.parse_args(argv)
    if args.quick:
        args.entries = args.entries or [1_000]
        args.window = min(args.window, 3.0)
        args.timeout = min(args.timeout, 60.0)
    args.sizes = sorted(set(args.entries or DEFAULT_SIZES))
    args.skip = {s for s in args.skip.split(",") if s}
    return args


@contextlib.contextmanager
def count_round_trips() -> Iterator[list[int]]:
    """Count requests sent by redis-py (a pipeline is one) while the block runs."""
    counter = [0]
    cls = redis.connection.AbstractConnection
    original = cls.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> None:
        counter[0] += 1
        original(self, command, check_health)

    cls.send_packed_command = counting  # type: ignore[method-assign]
    try:
        yield counter
    finally:
        cls.send_packed_command = original  # type: ignore[method-assign]


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


class Bench:
    """Runs the figures for each size and collects them into :attr:`results`."""

    def __init__(self, args: argparse.Namespace, server: RedisServer, workdir: Path) -> None:
        self.args = args
        self.server = server
        self.workdir = workdir
        self.client = redis.Redis.from_url(f"{server.url}/0")
        self.broker = redis.Redis.from_url(f"{server.url}/1")
        self.subjects = {k: SUBJECTS[k](server.url, workdir) for k in args.schedulers.split(",")}
        loops = ["plain", "plain-events"] if "ours-events" in self.subjects else ["plain"]
        self.results: Results = {k: {} for k in [*self.subjects, *loops]}
        self.insert_rates: dict[str, float] = {}

    # --- helpers -----------------------------------------------------------------

    def log(self, message: str) -> None:
        """Progress on stderr."""
        print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)

    def runs(self, key: str, n: int) -> bool:
        """Whether subject ``key`` runs at size ``n``."""
        limit = {"redbeat": self.args.redbeat_max, "celery": self.args.celery_max}.get(key)
        return limit is None or n <= limit

    def record(self, key: str, n: int, **values: Any) -> None:
        """Store figures of ``key`` at ``n``."""
        self.results[key].setdefault(n, {}).update(values)

    def flush(self) -> None:
        """Empty both databases and every subject's store."""
        self.client.flushall()
        for subject in self.subjects.values():
            subject.reset()

    def redis_cpu(self) -> float:
        """CPU seconds the redis-server's main thread has used (``/proc/<pid>/schedstat``)."""
        assert self.server.process is not None
        return int(Path(f"/proc/{self.server.process.pid}/schedstat").read_text().split()[0]) / 1e9

    def used_memory(self) -> int:
        """Redis ``used_memory`` in bytes."""
        return int(self.client.info("memory")["used_memory"])

    def commands(self) -> int:
        """Commands Redis has run so far (including those run by scripts), not counting INFO."""
        stats = self.client.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k != "cmdstat_info")

    def write(self, subject: Subject, workload: Workload, indices: range) -> float:
        """Insert and prepare ``indices``; returns the seconds the insert took."""
        started = time.perf_counter()
        subject.insert(workload, indices)
        took = time.perf_counter() - started
        subject.prepare(workload)
        return took

    def lead(self, subject: Subject, count: int) -> float:
        """Seconds to allow for writing ``count`` more entries and starting up."""
        rate = self.insert_rates.get(subject.key, 2000.0)
        return 2.0 + 2.0 * count / rate

    # --- scheduler-only figures ---------------------------------------------------

    def burst(self, subject: Subject, n: int, kind: str) -> None:
        """Dispatch throughput with 20% due at once; for interval also insert, memory and idle tick."""
        self.flush()
        mem0 = self.used_memory()
        workload = Burst(n, kind)
        started = time.perf_counter()
        subject.insert(workload, range(n))
        insert_s = time.perf_counter() - started
        started = time.perf_counter()
        subject.prepare(workload)
        prepare_s = time.perf_counter() - started
        mem1 = self.used_memory()

        app, recorder = subject.stub_app()
        sched = subject.scheduler(app)
        due = workload.due_count()
        cpu, redis_cpu = time.process_time(), self.redis_cpu()
        started = time.perf_counter()
        deadline = started + self.args.timeout
        while recorder.count < due and time.perf_counter() < deadline:
            sched.tick()
        took = time.perf_counter() - started
        # CPU time per dispatch is what a busy machine disturbs least.
        cpu, redis_cpu = time.process_time() - cpu, self.redis_cpu() - redis_cpu
        sched.tick()  # one more: nothing else may be sent
        subject.close(sched)
        rate = recorder.count / took
        per = 1e6 / max(recorder.count, 1)
        self.log(f"{subject.label} N={n} {kind}: {rate:,.0f} dispatches/s ({recorder.count} of {due} in {took:.2f}s; "
                 f"CPU per dispatch: scheduler {cpu * per:.1f} us, Redis {redis_cpu * per:.1f} us)")
        figure = "dispatch" if kind == "interval" else "dispatch_crontab"
        self.record(subject.key, n, **{figure: rate, f"{figure}_sent": recorder.count, f"{figure}_due": due,
                                       f"{figure}_complete": recorder.count >= due, f"{figure}_cpu_us": cpu * per,
                                       f"{figure}_redis_us": redis_cpu * per})
        if kind != "interval":
            return
        self.insert_rates[subject.key] = n / insert_s
        self.record(subject.key, n, insert=n / insert_s, prepare_s=prepare_s)
        if subject.in_redis:
            mem2 = self.used_memory()
            per_entry = (mem1 - mem0) / n
            # Entries that ran also hold run state: add what one run added per entry.
            ran = (mem2 - mem1) / max(recorder.count, 1)
            self.record(subject.key, n, memory=per_entry + ran, memory_before_run=per_entry)
        self.idle(subject, n)

    def idle(self, subject: Subject, n: int, extra: dict[str, Any] | None = None, suffix: str = "") -> None:
        """Round trips, server commands and microseconds per tick with nothing due."""
        app, recorder = subject.stub_app(**(extra or {}))
        sched = subject.scheduler(app)
        for _ in range(5):
            sched.tick()
        started = time.perf_counter()
        for _ in range(IDLE_TICKS):
            sched.tick()
        micros = (time.perf_counter() - started) / IDLE_TICKS * 1e6
        before = self.commands()
        with count_round_trips() as trips:
            for _ in range(IDLE_TICKS):
                sched.tick()
        server = (self.commands() - before) / IDLE_TICKS
        subject.close(sched)
        if recorder.count:
            raise RuntimeError(f"{subject.label}: {recorder.count} sent while idle")
        self.log(f"{subject.label} N={n} idle{suffix}: {trips[0] / IDLE_TICKS:.2f} round trips, "
                 f"{server:.1f} commands, {micros:,.0f} us per tick")
        self.record(subject.key, n, **{f"idle_us{suffix}": micros, f"idle_trips{suffix}": trips[0] / IDLE_TICKS,
                                       f"idle_commands{suffix}": server})
        if subject.key == "ours" and not suffix:
            # In production an idle beat ticks once a second, and the reconciler runs
            # once a second too: measure a tick that includes a reconciler step.
            self.idle(subject, n, {"redis_scheduler_reconcile_interval": 1e-9}, "_reconcile")

    def lateness(self, subject: Subject, n: int) -> None:
        """Publish time minus due time for entries spread over the window."""
        self.flush()
        spread = min(SPREAD, n)
        workload = Spread(n, spread, self.args.window)
        self.write(subject, workload, range(spread, n))
        workload.start = time.time() + self.lead(subject, spread)
        self.write(subject, workload, range(spread))
        app, recorder = subject.stub_app()
        sched = subject.scheduler(app)
        ready_late = time.time() > workload.start
        deadline = workload.start + self.args.window + 10.0
        while time.time() < deadline:
            interval = sched.tick()  # the loop of celery beat: tick, then sleep as told
            if recorder.count >= spread:
                break
            if interval and interval > 0:
                time.sleep(min(interval, max(deadline - time.time(), 0.0)))
        subject.close(sched)
        late = [(recorder.times[i] - workload.due_at(i)) * 1000.0 for i in range(spread) if i in recorder.times]
        if not late:
            self.log(f"{subject.label} N={n} lateness: nothing sent")
            return
        p50, p99, worst = percentile(late, 0.5), percentile(late, 0.99), max(late)
        self.log(f"{subject.label} N={n} lateness over {self.args.window:.0f}s: p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
                 f"max {worst:.1f} ms ({len(late)} of {spread})")
        self.record(subject.key, n, late_p50=p50, late_p99=p99, late_max=worst, late_sent=len(late),
                    late_due=spread, late_ready_late=ready_late)

    # --- end to end ------------------------------------------------------------------

    def e2e(self, n: int) -> None:
        """Real beat processes and a Redis broker, against a plain ``send_task`` loop."""
        plain = self.plain(n, {})
        if plain is None:
            return
        self.record("plain", n, e2e=plain)
        plain_events: float | None = None
        if "ours-events" in self.subjects:  # beat with sent events is also set against the loop sending them
            plain_events = self.plain(n, {"task_send_sent_event": True})
            if plain_events is not None:
                self.record("plain-events", n, e2e=plain_events)
        for key, subject in self.subjects.items():
            if not self.runs(key, n):
                continue
            one = self.beats(subject, n, 1, plain)
            if key == "ours-events" and one and plain_events:
                self.log(f"{subject.label}: {one / plain_events:.2f}x the plain loop with sent events")
                self.record(key, n, e2e_events_ratio=one / plain_events)
            if key == "ours" and one:
                two = self.beats(subject, n, 2, plain)
                if two:
                    self.record(key, n, e2e_two=two, e2e_two_ratio=two / one)

    def plain(self, n: int, conf: dict[str, Any]) -> float | None:
        """The plain ``send_task`` loop's messages per second, with the app settings ``conf``."""
        self.flush()
        due = Timed(n).due_n
        config = procs.write_app(self.workdir, f"{self.server.url}/1", conf, TASK)
        start = time.time() + 3.0
        loop = procs.Plain(self.workdir, config, due, start)
        try:
            arrivals = procs.watch_queue(self.broker, due + 1, due / 100.0 + 30.0, [loop])
        finally:
            loop.stop()
        label = f"plain send_task loop{' ' + json.dumps(conf) if conf else ''}"
        if arrivals.last is None:
            self.log(f"{label}: only {arrivals.count} of {due + 1} messages")
            return None
        rate = due / (arrivals.last - start)
        self.log(f"{label}: {rate:,.0f}/s ({due} messages)")
        return rate

    def beats(self, subject: Subject, n: int, count: int, plain: float) -> float | None:
        """Run ``count`` beat processes on a fresh schedule; their dispatches per second."""
        self.flush()
        workload = Timed(n)
        due = workload.due_n
        self.write(subject, workload, range(due + 1, n))
        workload.start = time.time() + self.lead(subject, due) + 2.0
        self.write(subject, workload, range(due + 1))
        config = procs.write_app(self.workdir, f"{self.server.url}/1", subject.conf(), TASK, subject.beat_schedule_config())
        spawned = time.time()
        beats = [procs.Beat(self.workdir, config, subject.scheduler_path, subject.beat_args(), f"{subject.key}-{count}-{i}")
                 for i in range(count)]
        try:
            timeout = workload.start - time.time() + due / 200.0 + 30.0
            arrivals = procs.watch_queue(self.broker, due + 1, min(timeout, self.args.timeout + 30.0), beats)
            rss = max(b.peak_rss() for b in beats if b.alive()) if any(b.alive() for b in beats) else 0
            time.sleep(0.3)
            published = int(self.broker.llen(procs.QUEUE))
        finally:
            for b in beats:
                b.stop()
        label = f"{subject.label} N={n} {count} beat{'s' if count > 1 else ''}"
        if arrivals.last is None or arrivals.first is None:
            self.log(f"{label}: only {arrivals.count} of {due + 1} messages; last output:\n{beats[0].log_tail()}")
            return None
        began = max(workload.start, arrivals.first)
        rate = due / (arrivals.last - began)
        self.log(f"{label}: {rate:,.0f}/s = {rate / plain:.2f}x plain ({published} messages for {due + 1} due)")
        if count == 1:
            self.record(subject.key, n, e2e=rate, e2e_ratio=rate / plain, e2e_published=published, e2e_due=due + 1,
                        startup=arrivals.first - spawned, rss=rss, e2e_ready_late=arrivals.first > workload.start)
        else:
            self.record(subject.key, n, e2e_two_published=published)
        return rate

    # --- all of it -----------------------------------------------------------------------

    def run(self) -> None:
        """Every figure for every size."""
        for n in self.args.sizes:
            for key, subject in self.subjects.items():
                if not self.runs(key, n):
                    continue
                if "dispatch" not in self.args.skip:
                    self.burst(subject, n, "interval")
                if "crontab" not in self.args.skip:
                    self.burst(subject, n, "crontab")
                if "lateness" not in self.args.skip:
                    self.lateness(subject, n)
            if "e2e" not in self.args.skip:
                self.e2e(n)
            self.flush()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and write the results."""
    args = parse_args(argv)
    server = RedisServer().start()
    workdir = Path(tempfile.mkdtemp(prefix="cbr-bench-"))
    try:
        bench = Bench(args, server, workdir)
        started = time.time()
        bench.run()
        meta = report.environment(server, args, time.time() - started)
    finally:
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    args.out.mkdir(parents=True, exist_ok=True)
    paths = report.write(bench.results, meta, args.out)
    print(report.table(bench.results, meta))
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
