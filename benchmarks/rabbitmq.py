"""End to end on RabbitMQ: one ``celery beat`` per delivery mode against a plain ``send_task`` loop, side by side.

    python benchmarks/rabbitmq.py --entries 20000 --entries 100000 --rounds 2

Starts a private redis-server (the schedule) and a private RabbitMQ node (the
broker, tests/support/rabbitmq_server.py). Each round runs, in turn on the same node:
the plain loop (``app.send_task`` on one producer, a process of its own,
benchmarks/procs.py), then a real ``celery beat`` in ``at-most-once`` and in
``at-least-once`` with N entries of which 20% fall due at once. A run's rate
is the due messages over the seconds from their due time (or the first
arrival) to the last one's arrival in the queue, read from the broker.
Printed per run and as medians, with each mode's ratio to the plain loop of
its round.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
from celery import Celery  # noqa: E402

from benchmarks import procs  # noqa: E402
from benchmarks.subjects import Ours, OursAtLeastOnce, Subject  # noqa: E402
from benchmarks.workload import TASK, Timed  # noqa: E402
from tests.support.rabbitmq_server import RabbitMQServer  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402

MODES = {"at-most-once": Ours, "at-least-once": OursAtLeastOnce}


class Queue:
    """The broker's task queue, declared as Celery declares it; read for its length."""

    def __init__(self, url: str) -> None:
        self.app = Celery("bench-amqp", broker=url, set_as_current=False)
        self.connection = self.app.connection_for_write()
        self.queue = self.app.amqp.queues[self.app.conf.task_default_queue](self.connection.default_channel)
        self.queue.declare()

    def length(self) -> int:
        """Messages waiting in the queue."""
        return int(self.queue.queue_declare(passive=True).message_count)

    def purge(self) -> None:
        """Empty the queue."""
        self.queue.purge()

    def watch(self, expected: int, timeout: float, processes: list[procs.Beat] | list[procs.Plain],
              poll: float = 0.01) -> procs.Arrivals:
        """Poll the length until ``expected`` messages are there, the time is up or a process ended."""
        return procs.watch_length(self.length, expected, timeout, processes, poll)


def plain(queue: Queue, workdir: Path, url: str, due: int) -> float | None:
    """The plain loop's messages per second."""
    queue.purge()
    config = procs.write_app(workdir, url, {}, TASK)
    start = time.time() + 3.0
    loop = procs.Plain(workdir, config, due, start)
    try:
        arrivals = queue.watch(due + 1, due / 100.0 + 60.0, [loop])
    finally:
        loop.stop()
    if arrivals.last is None:
        print(f"plain loop: only {arrivals.count} of {due + 1} messages", file=sys.stderr)
        return None
    return due / (arrivals.last - start)


def beat(queue: Queue, subject: Subject, schedule: redis.Redis, workdir: Path, url: str, n: int) -> float | None:
    """One beat's dispatches per second on a fresh schedule of ``n`` entries."""
    queue.purge()
    schedule.flushall()
    subject.reset()
    workload = Timed(n)
    due = workload.due_n
    subject.insert(workload, range(due + 1, n))
    subject.prepare(workload)
    workload.start = time.time() + 4.0 + 2.0 * due / 20_000
    subject.insert(workload, range(due + 1))
    subject.prepare(workload)
    config = procs.write_app(workdir, url, subject.conf(), TASK, subject.beat_schedule_config())
    process = procs.Beat(workdir, config, subject.scheduler_path, subject.beat_args(), subject.key)
    try:
        arrivals = queue.watch(due + 1, workload.start - time.time() + due / 100.0 + 60.0, [process])
    finally:
        process.stop()
    if arrivals.last is None or arrivals.first is None:
        print(f"{subject.label}: only {arrivals.count} of {due + 1} messages; last output:\n{process.log_tail()}",
              file=sys.stderr)
        return None
    return due / (arrivals.last - max(workload.start, arrivals.first))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, action="append", help="N (repeatable; default 20,000 and 100,000)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of the loop and of each mode (default 2)")
    args = parser.parse_args(argv)
    sizes = sorted(set(args.entries or [20_000, 100_000]))
    server = RedisServer().start()
    node = RabbitMQServer().start()
    workdir = Path(tempfile.mkdtemp(prefix="cbr-bench-amqp-"))
    rates: dict[int, dict[str, list[float]]] = {}
    try:
        queue = Queue(node.url)
        schedule = redis.Redis.from_url(f"{server.url}/0")
        subjects = {mode: cls(server.url, workdir) for mode, cls in MODES.items()}
        for n in sizes:
            due = Timed(n).due_n
            got = rates.setdefault(n, {"plain": [], **{mode: [] for mode in MODES}})
            for round_no in range(1, args.rounds + 1):
                loop = plain(queue, workdir, node.url, due)
                if loop is None:
                    continue
                got["plain"].append(loop)
                line = f"N={n:,} round {round_no}: plain loop {loop:,.0f}/s"
                for mode, subject in subjects.items():
                    rate = beat(queue, subject, schedule, workdir, node.url, n)
                    if rate is not None:
                        got[mode].append(rate / loop)
                        line += f", {mode} {rate:,.0f}/s = {rate / loop:.2f}x"
                print(line, flush=True)
    finally:
        node.stop()
        server.cleanup()
        shutil.rmtree(workdir, ignore_errors=True)
    print("\nmedians (ratio to the plain loop of the same round):")
    for n, got in rates.items():
        figures = ", ".join(f"{mode} {statistics.median(got[mode]):.2f}x" for mode in MODES if got[mode])
        plain_rate = f"{statistics.median(got['plain']):,.0f}/s" if got["plain"] else "-"
        print(f"  N={n:,} ({Timed(n).due_n:,} due at once): plain loop {plain_rate}; {figures}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
