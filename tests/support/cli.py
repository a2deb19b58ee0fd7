"""Run the ``celerybeatredis`` console script as a user would, and snapshot a schedule's keys."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import redis

SCRIPT = str(Path(sys.executable).with_name("celerybeatredis"))


@dataclass(frozen=True)
class Cli:
    """The installed console script, pointed at one schedule through its environment variables."""

    url: str
    prefix: str

    def run(self, *args: str, input: str | None = None, env: dict[str, str] | None = None,
            cwd: Path | None = None, tty: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``celerybeatredis ARGS`` and capture its output; ``tty``: its stdin is a terminal (``input`` typed on it)."""
        full_env = dict(os.environ, CELERYBEATREDIS_URL=self.url, CELERYBEATREDIS_PREFIX=self.prefix, **(env or {}))
        if not tty:
            return subprocess.run([SCRIPT, *args], input=input, capture_output=True, text=True, env=full_env,
                                  cwd=cwd, timeout=120)
        typist, terminal = pty.openpty()
        try:
            os.write(typist, (input or "").encode())
            return subprocess.run([SCRIPT, *args], stdin=terminal, capture_output=True, text=True, env=full_env,
                                  cwd=cwd, timeout=120)
        finally:
            os.close(typist)
            os.close(terminal)

    def ok(self, *args: str, **kwargs: Any) -> str:
        """Run, expect exit code 0, return stdout."""
        done = self.run(*args, **kwargs)
        assert done.returncode == 0, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        return done.stdout

    def fails(self, *args: str, code: int = 1, **kwargs: Any) -> str:
        """Run, expect ``code`` with a message and no traceback; return stderr."""
        done = self.run(*args, **kwargs)
        assert done.returncode == code, f"exit {done.returncode}\nstdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        assert "Traceback" not in done.stderr, done.stderr
        if code == 1:
            assert done.stderr.startswith("Error: ") and done.stderr.count("\n") == 1, done.stderr
        return done.stderr


def snapshot(client: redis.Redis, tag: str) -> dict[bytes, Any]:
    """Everything stored under ``{tag}:*`` (to check that a failed command changed nothing)."""
    out: dict[bytes, Any] = {}
    for key in client.scan_iter(match=f"{{{tag}}}:*", count=1000):
        kind = client.type(key)
        if kind == b"hash":
            out[key] = client.hgetall(key)
        elif kind == b"zset":
            out[key] = client.zrange(key, 0, -1, withscores=True)
        elif kind == b"set":
            out[key] = client.smembers(key)
        else:
            out[key] = client.get(key)
    return out
