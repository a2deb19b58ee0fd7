"""Run celery beat under systemd's watchdog, judged by ``celerybeatredis status``.

``beat-watchdog.py celery -A proj beat ...`` starts the command and, every
half of ``WatchdogSec``, runs ``celerybeatredis status --json`` (the schedule
from ``CELERYBEATREDIS_URL`` and ``CELERYBEATREDIS_PREFIX``). While the
schedule lists this beat (this host, the command's pid) as having ticked within
``--max-age``, it tells systemd ``READY=1`` (once) and ``WATCHDOG=1``, and
says which in ``STATUS=`` (``systemctl status`` shows it). A beat
that stops ticking (a hung loop, a Redis it cannot reach) gets no more
``WATCHDOG=1``, and systemd restarts it; another beat ticking on the schedule
does not keep this one alive. SIGTERM and SIGINT are passed on to beat, and the
exit code is beat's. Without ``NOTIFY_SOCKET`` (not under systemd) it only runs
the command.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from typing import Any

#: Seconds since its last tick within which this beat counts as alive (status's --max-age).
MAX_AGE = float(os.environ.get("CELERYBEATREDIS_MAX_AGE", "30"))


def notify(message: str) -> None:
    """Send ``message`` to systemd's notification socket, if there is one."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.sendto(message.encode(), address)


def not_ticking(pid: int) -> str | None:
    """None while the schedule lists the beat of ``pid`` on this host as having ticked within :data:`MAX_AGE`, else why not."""
    command = [sys.executable, "-m", "celerybeatredis", "status", "--json", "--max-age", f"{MAX_AGE:g}"]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=max(MAX_AGE / 2, 5))
        beats: list[dict[str, Any]] = json.loads(done.stdout)["beats"] if done.stdout else []
    except subprocess.TimeoutExpired:
        return "celerybeatredis status timed out"
    except (ValueError, KeyError):
        beats = []
    if not done.stdout:
        return (done.stderr.strip().splitlines() or [f"celerybeatredis status exited with {done.returncode}"])[-1]
    host = socket.gethostname()
    if any(b.get("pid") == pid and b.get("host") == host and float(b.get("age", MAX_AGE + 1)) <= MAX_AGE for b in beats):
        return None
    return f"no tick of this beat (pid {pid} on {host}) within {MAX_AGE:g}s"


def main(command: list[str]) -> int:
    if not command:
        print("usage: beat-watchdog.py celery -A proj beat [options]", file=sys.stderr)
        return 2
    beat = subprocess.Popen(command)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda number, _frame: beat.send_signal(number))
    # systemd asks for a sign of life at least every WATCHDOG_USEC; check twice as often.
    interval = int(os.environ.get("WATCHDOG_USEC", "30000000")) / 2e6
    ready = False
    while beat.poll() is None:
        if os.environ.get("NOTIFY_SOCKET"):
            problem = not_ticking(beat.pid)
            if problem is None:
                notify(("" if ready else "READY=1\n") + "WATCHDOG=1\nSTATUS=beat ticking")
                ready = True
            else:
                notify(f"STATUS=beat not ticking: {problem}")
        deadline = time.monotonic() + interval
        while beat.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
    return beat.returncode if beat.returncode >= 0 else 128 - beat.returncode  # killed by a signal: as a shell says it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
