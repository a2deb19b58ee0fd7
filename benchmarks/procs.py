"""Real ``celery beat`` processes and a plain ``send_task`` loop, for the end-to-end figures.

The processes import a generated module ``benchapp`` whose app publishes to
the benchmark's Redis broker; the harness watches the broker queue to see
when messages arrive. Run as a script, this module is the plain loop::

    python benchmarks/procs.py plain <config.json> <count>
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
QUEUE = "celery"

APP_SOURCE = '''\
"""Celery app of a benchmark run (generated)."""
import json
import os
from datetime import timedelta

from celery import Celery

with open(os.environ["BENCH_APP_CONFIG"], encoding="utf-8") as f:
    config = json.load(f)

app = Celery("benchapp", broker=config["broker"])
app.conf.update(config["conf"])
app.conf.beat_schedule = {
    name: {"task": config["task"], "schedule": timedelta(seconds=every), "args": [index]}
    for name, every, index in config["beat_schedule"]
}
'''


def write_app(directory: Path, broker: str, conf: dict[str, Any], task: str,
              beat_schedule: list[list[Any]] | None = None) -> Path:
    """Write ``benchapp.py`` and its config into ``directory``; returns the config path."""
    (directory / "benchapp.py").write_text(APP_SOURCE, encoding="utf-8")
    config = directory / "benchapp.json"
    body = {"broker": broker, "conf": dict(conf, result_expires=None), "task": task, "beat_schedule": beat_schedule or []}
    config.write_text(json.dumps(body), encoding="utf-8")
    return config


def env_for(directory: Path, config: Path) -> dict[str, str]:
    """Environment of a child: imports ``benchapp`` and this source tree."""
    path = os.pathsep.join([str(directory), str(ROOT), os.environ.get("PYTHONPATH", "")])
    return dict(os.environ, PYTHONPATH=path, BENCH_APP_CONFIG=str(config))


class Beat:
    """A ``celery -A benchapp beat`` process, its output in a log file."""

    def __init__(self, directory: Path, config: Path, scheduler: str, extra: list[str], name: str) -> None:
        self.log_path = directory / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.started = time.time()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "benchapp", "beat", "-S", scheduler, "-l", "WARNING",
             "--pidfile=", *extra],
            cwd=directory, env=env_for(directory, config), stdout=self._log, stderr=subprocess.STDOUT,
        )

    def peak_rss(self) -> int:
        """Peak resident memory so far (VmHWM), bytes."""
        status = Path(f"/proc/{self.process.pid}/status").read_text()
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
        raise RuntimeError("no VmHWM in /proc status")

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log_tail(self, lines: int = 20) -> str:
        """The end of the process's output."""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@dataclass
class Arrivals:
    """When messages reached the broker queue (harness clock, Unix seconds)."""

    first: float | None
    last: float | None
    count: int


def watch_queue(broker: redis.Redis, expected: int, timeout: float, beats: list[Any], poll: float = 0.002) -> Arrivals:
    """Poll the queue length until ``expected`` messages are there, the time is up or a process ended."""
    return watch_length(lambda: int(broker.llen(QUEUE)), expected, timeout, beats, poll)


def watch_length(length: Callable[[], int], expected: int, timeout: float, processes: Sequence[Any],
                 poll: float = 0.002) -> Arrivals:
    """Poll ``length()`` (a queue's, on any broker) until it reaches ``expected``, the time is up or a process ended."""
    first = last = None
    count = 0
    deadline = time.time() + timeout
    while time.time() < deadline:
        count = length()
        now = time.time()
        if count and first is None:
            first = now
        if count >= expected:
            last = now
            break
        if not all(p.alive() for p in processes):
            break
        time.sleep(poll)
    return Arrivals(first, last, count)


class Plain:
    """The plain loop in a child process: one message at once, then ``count`` from ``start`` on."""

    def __init__(self, directory: Path, config: Path, count: int, start: float) -> None:
        self.log_path = directory / "plain.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "plain", str(config), str(count), repr(start)],
            cwd=directory, env=env_for(directory, config), stdout=self._log, stderr=subprocess.STDOUT,
        )

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def stop(self) -> None:
        """Wait for it to finish (it ends by itself), killing it after 10 s."""
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def plain_loop(count: int, start: float) -> None:
    """Publish as beat does: ``app.send_task`` on one producer, one message at once
    (as a beat sends its probe), then ``count`` messages from ``start`` on.
    """
    from benchapp import app  # type: ignore[import-not-found]

    task = json.loads(Path(os.environ["BENCH_APP_CONFIG"]).read_text())["task"]
    with app.connection_for_write() as conn:
        producer = app.amqp.Producer(conn, auto_declare=False)
        app.send_task(task, [-1], {}, producer=producer, headers={"celery_beat_task": True})
        time.sleep(max(0.0, start - time.time()))
        for i in range(count):
            app.send_task(task, [i], {}, producer=producer, headers={"celery_beat_task": True})


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "plain":
        sys.exit("usage: procs.py plain <config.json> <count> <start unix time>")
    plain_loop(int(sys.argv[3]), float(sys.argv[4]))
