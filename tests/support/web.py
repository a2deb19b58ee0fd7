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
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest

from celerybeatredis.store import ScheduleStore

from .cli import SCRIPT
from .processes import write_app

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


# --- fixtures the dashboard's test modules import ----------------------------------------------------


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium for the module's tests."""
    if chromium_binary() is None:
        pytest.skip("no chromium binary: install the distribution's chromium (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=chromium_binary(), args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser tab (own cookies) that records any dialog a script opens."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.dialogs = []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    yield tab
    context.close()


@pytest.fixture
def web(redis_url: str, prefix: str, api: ScheduleStore, tmp_path: Path) -> Iterator[WebServer]:
    """The dashboard of this test's schedule on 127.0.0.1 (no authentication, as by default)."""
    server = WebServer(f"{redis_url}/0", prefix, log_dir=tmp_path).start()
    yield server
    server.stop()


def app_with_tasks(tmp_path: Path, redis_url: str, prefix: str, conf: str = "") -> None:
    """proj.py with a task that records its argument, sending to a queue of the test's own."""
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=textwrap.dedent(f"""
        @app.task(name="tasks.hello")
        def hello(value=None):
            return value

        app.conf.task_default_queue = {'q-' + prefix!r}
    """) + conf)


def entry_path(name: str) -> str:
    return "/entry?" + urlencode({"name": name})
