"""The dashboard as a user runs it: ``celerybeatredis web`` in a subprocess, and a headless Chromium driving it.

The browser is the distribution's Chromium (``/usr/bin/chromium``, or
``CELERYBEATREDIS_TEST_CHROMIUM``) launched by Playwright; .ci/run installs it.
"""

from __future__ import annotations

import http.client
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .cli import SCRIPT

CHROMIUM_ENV = "CELERYBEATREDIS_TEST_CHROMIUM"
#: Where screenshots go when set (the docs' images are made with it pointing at docs/images).
SCREENSHOTS_ENV = "CELERYBEATREDIS_WEB_SCREENSHOTS"


def chromium_binary() -> str | None:
    """The Chromium to drive: ``$CELERYBEATREDIS_TEST_CHROMIUM``, else ``chromium`` on PATH."""
    return os.environ.get(CHROMIUM_ENV) or shutil.which("chromium") or shutil.which("chromium-browser")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Response:
    status: int
    body: str
    headers: dict[str, str]


def request(base: str, path: str, method: str = "GET", body: str | None = None,
            headers: dict[str, str] | None = None, timeout: float = 30) -> Response:
    """One plain HTTP request (no cookies kept, no redirects followed), as a script or an attacker sends it."""
    where = urlsplit(base)
    conn = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        reply = conn.getresponse()
        return Response(reply.status, reply.read().decode(errors="replace"), {k.lower(): v for k, v in reply.getheaders()})
    finally:
        conn.close()


@dataclass
class WebServer:
    """A ``celerybeatredis web`` process on a free port."""

    url: str
    prefix: str
    bind_host: str = "127.0.0.1"
    args: tuple[str, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    log_dir: Path = Path(".")
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    #: Run as ``celery -A proj schedule web`` in this directory instead of the console script.
    celery_app_dir: Path | None = None

    def command(self) -> list[str]:
        bind = ["web", "--bind", f"{self.bind_host}:{self.port}", *self.args]
        if self.celery_app_dir is not None:
            return [sys.executable, "-m", "celery", "-A", "proj", "schedule", *bind]
        return [SCRIPT, "--url", self.url, "--prefix", self.prefix, *bind]

    def start(self, timeout: float = 30) -> WebServer:
        self.port = self.port or free_port()
        self.log = self.log_dir / f"web-{self.port}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(self.command(), env={**os.environ, **self.env}, stdout=out, stderr=subprocess.STDOUT,
                                            cwd=self.celery_app_dir)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"celerybeatredis web exited {self.process.returncode}:\n{self.output()}")
            try:
                request(self.base, "/static/style.css", timeout=2)
                return self
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"celerybeatredis web did not answer in {timeout}s:\n{self.output()}") from None
                time.sleep(0.1)

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def screenshot(page: Any, name: str, tmp_path: Path) -> Path:
    """Save a full-page screenshot as ``NAME.png``: under ``$CELERYBEATREDIS_WEB_SCREENSHOTS`` when set, else ``tmp_path``."""
    folder = Path(os.environ.get(SCREENSHOTS_ENV) or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path
