"""``python -m celerybeatredis demo``: the scheduler at work, in one command.

Uses ``REDIS_URL`` if set, else starts a throwaway ``redis-server`` from PATH
in a temporary directory. Installs a few example entries, runs a real
``celery beat`` with this scheduler and a real worker for a while, prints
each run as the worker records it, shows the ``list`` view, then stops
everything and removes what it made.

The worker and beat import this module as their Celery app
(``celery -A celerybeatredis.cli.demo``); it reads where to work from the
environment the demo gives them.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import IO, Any

import click
import redis
from celery import Celery
from celery.schedules import crontab

from ..managing.display import LIST_HEADERS, describe_schedule, list_row, table
from ..settings import mask_url
from ..store import ScheduleStore
from .binaries import redis_server_binary

ENV_URL = "CELERYBEATREDIS_DEMO_URL"
ENV_PREFIX = "CELERYBEATREDIS_DEMO_PREFIX"
ENV_QUEUE = "CELERYBEATREDIS_DEMO_QUEUE"
ENV_RUNS = "CELERYBEATREDIS_DEMO_RUNS"
TASK = "celerybeatredis.cli.demo.record"
STARTUP_TIMEOUT = 90.0

app = Celery("celerybeatredis-demo", set_as_current=False)
app.conf.update(
    broker_url=os.environ.get(ENV_URL, "redis://127.0.0.1:6379/0"),
    redis_scheduler_url=os.environ.get(ENV_URL, "redis://127.0.0.1:6379/0"),
    redis_scheduler_key_prefix=os.environ.get(ENV_PREFIX, "celerybeatredis-demo:"),
    task_default_queue=os.environ.get(ENV_QUEUE, "celerybeatredis-demo"),
    beat_scheduler="celerybeatredis.schedulers.RedisScheduler",
    beat_schedule={},
    result_expires=None,
    task_ignore_result=True,
    worker_enable_remote_control=False,
    broker_connection_retry_on_startup=True,
    enable_utc=True,
)


@app.task(name=TASK, shared=False)  # shared tasks join every app finalized later: users' apps too
def record(entry: str) -> None:
    """What the example entries run: note the run where the demo reads it."""
    line = json.dumps({"entry": entry, "at": time.time(), "pid": os.getpid()})
    with open(os.environ[ENV_RUNS], "a", encoding="utf-8") as runs:
        runs.write(line + "\n")


@click.command("demo")
@click.option("--seconds", type=click.FloatRange(min=1), default=20.0, show_default=True,
              help="How long beat and the worker run once they are up.")
def demo_command(seconds: float) -> None:
    """Run beat and a worker on example entries and print each run (uses REDIS_URL, else a throwaway redis-server)."""
    Demo(seconds).run()


class Demo:
    """One demo run: a Redis, example entries, beat and a worker, and the cleanup."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.tag = f"celerybeatredis-demo-{uuid.uuid4().hex[:8]}"
        self.prefix = f"{self.tag}:"
        self.dir = Path(tempfile.mkdtemp(prefix="celerybeatredis-demo-"))
        self.runs = self.dir / "runs.jsonl"
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopped: list[str] = []
        self.logs: dict[str, IO[bytes]] = {}
        self.url = ""
        self.started = time.monotonic()
        self.started_wall = time.time()

    def run(self) -> None:
        """Run the demo from start to cleanup."""
        store: ScheduleStore | None = None
        interrupted = False
        previous = signal.signal(signal.SIGTERM, _interrupt)
        try:
            self.url = os.environ.get("REDIS_URL") or self._start_redis()
            store = ScheduleStore.from_url(self.url, self.prefix)
            store.client.ping()
            self._start_celery()
            self._install(store)
            self._watch(store)
            self._show_list(store)
        except redis.ConnectionError as exc:
            raise click.ClickException(f"cannot reach Redis at {mask_url(self.url)}: {exc}") from None
        except KeyboardInterrupt:
            interrupted = True
            click.echo("\ninterrupted; stopping")
        finally:
            signal.signal(signal.SIGTERM, previous)
            self._stop_celery()
            if store is not None and "redis" not in self.processes:
                self._clean_shared_redis(store)
            self._stop("redis")
            shutil.rmtree(self.dir, ignore_errors=True)
        if self.stopped:
            click.echo(f"stopped {', '.join(self.stopped)}; removed the demo's keys and files")
        if interrupted:
            raise SystemExit(130)

    # --- processes ------------------------------------------------------------------------------

    def _start_redis(self) -> str:
        binary = redis_server_binary()
        if binary is None:
            raise click.ClickException(
                "redis-server is not on PATH: install Redis (e.g. apt-get install redis-server, brew install redis), "
                "or the binary of the server extra (pip install -e '.[server]' in the source checkout), "
                "or set REDIS_URL to a Redis the demo may use"
            )
        port = _free_port()
        self._spawn("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                              "--dir", str(self.dir)])
        client = redis.Redis(port=port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.processes["redis"].poll() is not None or time.monotonic() > deadline:
                    raise click.ClickException(f"redis-server did not start:\n{self._tail('redis')}") from None
                time.sleep(0.05)
        client.close()
        url = f"redis://127.0.0.1:{port}/0"
        click.echo(f"started a throwaway redis-server at {url} (set REDIS_URL to use your own)")
        return url

    def _start_celery(self) -> None:
        click.echo("starting a celery worker and celery beat ...")
        common = [sys.executable, "-m", "celery", "-A", "celerybeatredis.cli.demo"]
        self._spawn("worker", [*common, "worker", "-P", "solo", "-c", "1", "-l", "INFO", "--without-gossip",
                               "--without-mingle", "--without-heartbeat"])
        self._spawn("beat", [*common, "beat", "-l", "INFO", "--pidfile=", "-s", str(self.dir / "beat-schedule")])
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while not ("ready." in self._log_text("worker") and "beat: Starting" in self._log_text("beat")):
            self._check_alive()
            if time.monotonic() > deadline:
                raise click.ClickException(f"beat and the worker did not start within {STARTUP_TIMEOUT:.0f}s:\n"
                                           f"{self._tail('worker')}\n{self._tail('beat')}")
            time.sleep(0.1)

    def _spawn(self, name: str, command: list[str]) -> None:
        log = (self.dir / f"{name}.log").open("wb")
        package_root = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ, **{ENV_URL: self.url, ENV_PREFIX: self.prefix, ENV_QUEUE: self.tag,
                                  ENV_RUNS: str(self.runs)})
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH", "")) if p)
        self.logs[name] = log
        self.processes[name] = subprocess.Popen(command, cwd=self.dir, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def _stop(self, name: str, timeout: float = 20.0) -> None:
        process = self.processes.pop(name, None)
        if process is not None:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            self.stopped.append(f"{'redis-server' if name == 'redis' else name} (pid {process.pid})")
        log = self.logs.pop(name, None)
        if log is not None:
            log.close()

    def _stop_celery(self) -> None:
        for name in ("beat", "worker"):
            self._stop(name)

    def _check_alive(self) -> None:
        for name in ("worker", "beat"):
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                raise click.ClickException(f"celery {name} exited with code {process.returncode}:\n{self._tail(name)}")

    def _log_text(self, name: str) -> str:
        try:
            return (self.dir / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def _tail(self, name: str, lines: int = 15) -> str:
        return "\n".join(f"  {name}| {line}" for line in self._log_text(name).splitlines()[-lines:])

    def _clean_shared_redis(self, store: ScheduleStore) -> None:
        """On a Redis that outlives the demo, remove the demo's schedule and queue."""
        try:
            store.drop()
            store.client.delete(self.tag, f"_kombu.binding.{self.tag}", f"_kombu.binding_permanent.{self.tag}")
        except redis.RedisError:
            click.echo(f"could not remove the demo's keys ({{{self.tag}}}:*, {self.tag}) from {mask_url(self.url)}")

    # --- the show -------------------------------------------------------------------------------

    def _install(self, store: ScheduleStore) -> None:
        now = datetime.fromtimestamp(store.server_time(), timezone.utc)
        once_at = (now + timedelta(seconds=max(2.0, min(5.0, self.seconds / 3)))).replace(microsecond=0)
        examples: list[tuple[str, Any]] = [
            ("every-2s", timedelta(seconds=2)),
            ("every-3s", timedelta(seconds=3)),
            ("every-minute", crontab(minute="*")),
            ("once-soon", once_at),
        ]
        click.echo(f"schedule {{{self.tag}}} at {mask_url(self.url)}:")
        for name, schedule in examples:
            store.add(name, TASK, schedule, args=[name])
            click.echo(f"  {name:<13} {describe_schedule(store.get(name).definition)}")
        click.echo(f"running for {self.seconds:g}s (Ctrl-C stops early); each line is a run the worker did:")
        self.started = time.monotonic()
        self.started_wall = time.time()

    def _watch(self, store: ScheduleStore) -> None:
        deadline = self.started + self.seconds
        actions = [
            (self.seconds * 0.4, "every-minute", store.run_now, "run_now: beat sends it within a second, as a run"),
            (self.seconds * 0.6, "every-3s", store.disable, "disable: only its 'enabled' field changes"),
        ]
        offset = 0
        # On a slow or busy machine the first run can take longer than a short demo: wait for it (up to the start-up
        # bound), so the demo always shows the worker running something.
        latest = deadline + STARTUP_TIMEOUT
        while time.monotonic() < deadline or (offset == 0 and time.monotonic() < latest):
            self._check_alive()
            elapsed = time.monotonic() - self.started
            while actions and elapsed >= actions[0][0]:
                _, name, action, what = actions.pop(0)
                action(name)
                click.echo(f"  [{elapsed:5.1f}s] -> {name}: {what}")
            offset = self._print_runs(store, offset)
            time.sleep(0.2)
        self._print_runs(store, offset)

    def _print_runs(self, store: ScheduleStore, offset: int) -> int:
        try:
            with self.runs.open("rb") as runs:
                runs.seek(offset)
                chunk = runs.read()
        except FileNotFoundError:
            return offset
        complete = chunk[: chunk.rfind(b"\n") + 1]
        for line in complete.decode("utf-8").splitlines():
            run = json.loads(line)
            count = store.get(run["entry"]).total_run_count
            at = datetime.fromtimestamp(run["at"]).strftime("%H:%M:%S.%f")[:-3]
            elapsed = run["at"] - self.started_wall
            click.echo(f"  [{elapsed:5.1f}s] {at}  ran {run['entry']:<13} (run #{count}, worker pid {run['pid']})")
        return offset + len(complete)

    def _show_list(self, store: ScheduleStore) -> None:
        now = datetime.fromtimestamp(store.server_time(), timezone.utc)
        entries = sorted(store.iter_entries(), key=lambda e: e.name)
        click.echo("\nthe schedule now (celerybeatredis list):")
        click.echo(table(LIST_HEADERS, [list_row(e, now) for e in entries]))


def _interrupt(signum: int, frame: object) -> None:
    """SIGTERM stops the demo as Ctrl-C does: children stopped, files removed."""
    raise KeyboardInterrupt


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
