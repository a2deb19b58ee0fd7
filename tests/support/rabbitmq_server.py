"""Start a throwaway ``rabbitmq-server`` node for the tests: its own node name, ports, data and log directories."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from kombu import Connection

from .redis_server import free_port

#: Why the RabbitMQ tests skip when there is no server to start.
NO_RABBITMQ = "no rabbitmq-server on PATH (.ci/run installs Debian's)"


def rabbitmq_binary() -> str | None:
    """The ``rabbitmq-server`` to start; None when it cannot be had.

    Debian's ``/usr/sbin/rabbitmq-server`` switches to the ``rabbitmq`` user, who cannot read a test's private
    directory: the script it wraps (``/usr/lib/rabbitmq/bin``) runs the node as the caller.
    """
    return shutil.which("rabbitmq-server", path="/usr/lib/rabbitmq/bin") or shutil.which("rabbitmq-server")


class RabbitMQServer:
    """A private RabbitMQ node on free ports (AMQP and Erlang distribution), in its own directory."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dist_port = free_port()
        self.directory = Path(tempfile.mkdtemp(prefix="cbr-rabbitmq-"))
        self.node = f"cbr{os.getpid()}x{self.port}@localhost"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The node's AMQP URL (the default guest user, allowed from localhost)."""
        return f"amqp://guest:guest@127.0.0.1:{self.port}//"

    def start(self, timeout: float = 90.0) -> RabbitMQServer:
        """Start the node and wait until it takes AMQP connections."""
        binary = rabbitmq_binary()
        if binary is None:
            raise RuntimeError(NO_RABBITMQ)
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\nloopback_users.guest = true\n")
        env = dict(
            os.environ, RABBITMQ_NODENAME=self.node, RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port), RABBITMQ_MNESIA_BASE=str(self.directory / "mnesia"),
            RABBITMQ_LOG_BASE=str(self.directory / "log"), RABBITMQ_ENABLED_PLUGINS_FILE=str(self.directory / "enabled_plugins"),
            RABBITMQ_CONFIG_FILE=str(self.directory / "rabbitmq"), RABBITMQ_PID_FILE=str(self.directory / "pid"),
            RABBITMQ_FEATURE_FLAGS_FILE=str(self.directory / "feature_flags"),
            RABBITMQ_PLUGINS_EXPAND_DIR=str(self.directory / "plugins"), RABBITMQ_QUORUM_DIR=str(self.directory / "quorum"),
            RABBITMQ_STREAM_DIR=str(self.directory / "stream"), ERL_CRASH_DUMP=str(self.directory / "erl_crash.dump"),
            HOME=str(self.directory),
        )
        self._log = (self.directory / "stdout.log").open("wb")
        self.process = subprocess.Popen([binary], env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        cwd=self.directory, start_new_session=True)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"rabbitmq-server exited: {(self.directory / 'stdout.log').read_text()[-2000:]}")
            try:
                with Connection(self.url, connect_timeout=1) as conn:
                    conn.connect()
                return self
            except Exception:  # noqa: BLE001 - not up yet
                if time.monotonic() > deadline:
                    raise RuntimeError(f"rabbitmq-server did not start in {timeout}s") from None
                time.sleep(0.5)

    def ctl(self, *args: str) -> str:
        """Run ``rabbitmqctl`` against this node (e.g. to raise a memory alarm); its output."""
        binary = rabbitmq_binary()
        if binary is None:
            raise RuntimeError(NO_RABBITMQ)
        done = subprocess.run([str(Path(binary).with_name("rabbitmqctl")), "-n", self.node, *args], capture_output=True,
                              text=True, env=dict(os.environ, HOME=str(self.directory)), timeout=60, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed: {done.stderr.strip()[-500:]}")
        return done.stdout

    def stop(self) -> None:
        """Stop the node (and the Erlang processes it started) and remove its directory."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, 15)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)
                self.process.wait()
        self.process = None
        shutil.rmtree(self.directory, ignore_errors=True)
