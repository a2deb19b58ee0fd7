"""Real ``celery beat`` / ``celery worker`` subprocesses and a reader of the broker queue."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import redis

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Published:
    """One task message as the broker holds it."""

    task: str
    id: str
    args: list[Any]
    kwargs: dict[str, Any]
    headers: dict[str, Any]
    properties: dict[str, Any]


def write_app(directory: Path, broker_url: str, schedule_url: str, prefix: str, extra: str = "") -> str:
    """Write ``proj.py`` (a Celery app using the scheduler) into ``directory``; returns the module name.

    ``extra`` is Python appended to the module (e.g. a ``beat_schedule`` or tasks).
    """
    source = f"""
        from datetime import timedelta
        from celery import Celery
        from celery.schedules import crontab

        app = Celery("proj", broker={broker_url!r})
        app.conf.update(
            redis_scheduler_url={schedule_url!r},
            redis_scheduler_key_prefix={prefix!r},
            beat_scheduler="celerybeatredis.schedulers.RedisScheduler",
            result_expires=None,
            broker_connection_retry_on_startup=True,
        )
    """
    (directory / "proj.py").write_text(textwrap.dedent(source) + textwrap.dedent(extra))
    return "proj"


class CeleryProcess:
    """A ``celery -A proj <command>`` subprocess whose output goes to a log file."""

    def __init__(self, directory: Path, *command: str, name: str = "beat") -> None:
        self.directory = directory
        self.log_path = directory / f"{name}-{time.monotonic_ns()}.log"
        env = dict(os.environ, PYTHONPATH=f"{directory}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "proj", *command],
            cwd=directory, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    @classmethod
    def beat(cls, directory: Path, *extra: str, loglevel: str = "INFO") -> CeleryProcess:
        """Start ``celery beat`` with the Redis scheduler."""
        return cls(
            directory, "beat", "-S", "celerybeatredis.schedulers.RedisScheduler", "-l", loglevel,
            "--pidfile=", *extra, name="beat",
        )

    @classmethod
    def worker(cls, directory: Path, *extra: str) -> CeleryProcess:
        """Start a solo ``celery worker``."""
        return cls(directory, "worker", "-P", "solo", "-c", "1", "-l", "INFO", "--without-gossip",
                   "--without-mingle", "--without-heartbeat", *extra, name="worker")

    def output(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout: float = 30) -> None:
        """Wait until ``text`` appears in the output; fail with the output otherwise."""
        deadline = time.monotonic() + timeout
        while text not in self.output():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{text!r} not printed; output:\n{self.output()}")
            time.sleep(0.1)

    def alive(self) -> bool:
        """Whether the process still runs."""
        return self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash would."""
        self.process.kill()
        self.process.wait()

    def stop(self, timeout: float = 15) -> int:
        """SIGTERM and wait; SIGKILL after ``timeout``; returns the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()
        return int(self.process.returncode)


def decode_message(raw: bytes) -> Published:
    """Decode one message of kombu's Redis transport (Celery task protocol 2)."""
    envelope = json.loads(raw)
    body = envelope["body"]
    if envelope.get("properties", {}).get("body_encoding") == "base64":
        body = base64.b64decode(body)
    args, kwargs, _embed = json.loads(body)
    headers = envelope["headers"]
    return Published(headers["task"], headers["id"], args, kwargs, headers, envelope.get("properties", {}))


#: kombu's Redis transport keeps each priority step of a queue in its own list.
PRIORITY_LISTS = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def drain_queue(broker: redis.Redis, queue: str = "celery") -> list[Published]:
    """Pop every message now in ``queue`` and its priority lists (oldest first within each)."""
    pipe = broker.pipeline()
    for suffix in PRIORITY_LISTS:
        pipe.lrange(queue + suffix, 0, -1)
        pipe.delete(queue + suffix)
    replies = pipe.execute()
    return [decode_message(m) for raw in replies[::2] for m in reversed(raw)]


def wait_until(condition: Callable[[], Any], timeout: float = 30, interval: float = 0.1, what: str = "condition") -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def own_queue(prefix: str, extra: str = "") -> str:
    """Test-app code (``extra`` too) sending this test's tasks to a queue of its own, so no test reads or empties another's."""
    return textwrap.dedent(extra) + f"\napp.conf.task_default_queue = {'q-' + prefix!r}\n"


class Tally:
    """Counts task messages as they arrive on the broker."""

    def __init__(self, broker: redis.Redis, prefix: str) -> None:
        self.broker = broker
        self.queue = f"q-{prefix}"
        self.counts: Counter[str] = Counter()
        self.messages: list[tuple[float, str, list[object]]] = []

    def poll(self) -> Counter[str]:
        for m in drain_queue(self.broker, self.queue):
            self.counts[m.task] += 1
            self.messages.append((time.time(), m.task, m.args))
        return self.counts

    def wait_for(self, task: str, runs: int, timeout: float = 20) -> None:
        wait_until(lambda: self.poll()[task] >= runs, timeout=timeout, what=f"{runs} runs of {task}")
