"""The deployment of ``deploy/`` run for real: the probes of the Kubernetes manifest, the container's ``HEALTHCHECK``
and the systemd watchdog through a Redis outage.

Beat is started as the image starts it (the Containerfile's ``CMD``, ``envapp.py``) with the environment the beat
Deployment gives it; the probes are read from the manifest and the ``HEALTHCHECK`` command from the Containerfile,
so a change there is what runs here. The offline checks of the same files are in ``tests/test_deploy.py``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ..support.processes import PROJECT_ROOT, wait_until, write_app
from ..support.redis_server import RedisServer, free_port, stop_process

yaml = pytest.importorskip("yaml", reason="the manifests are read with the test extra's pyyaml: pip install -e '.[test]'")

DEPLOY = PROJECT_ROOT / "deploy"
CONTAINERFILE = DEPLOY / "container" / "Containerfile"


def containerfile() -> dict[str, str]:
    """The Containerfile's instructions by name (the last of each), continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", CONTAINERFILE.read_text())
    found = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, rest = line.partition(" ")
            found[name] = rest.strip()
    return found


def image_command() -> list[str]:
    return list(json.loads(containerfile()["CMD"]))


def healthcheck() -> tuple[list[str], dict[str, float]]:
    """The ``HEALTHCHECK`` command and its options in seconds (``interval``, ``timeout``, ``retries``...)."""
    options, _, command = containerfile()["HEALTHCHECK"].partition(" CMD ")
    timing = {name: float(value.rstrip("s")) for name, value in re.findall(r"--([a-z-]+)=(\S+)", options)}
    return list(json.loads(command)), timing


def beat_container() -> dict[str, Any]:
    (deployment,) = yaml.safe_load_all((DEPLOY / "kubernetes" / "base" / "beat.yaml").read_text())
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def manifest_env(secrets: dict[str, str], http: str) -> dict[str, str]:
    """The beat container's environment with the Secret's keys filled in and ``redis_scheduler_http`` on ``http``."""
    env = {}
    for item in beat_container()["env"]:
        env[item["name"]] = secrets[item["valueFrom"]["secretKeyRef"]["key"]] if "valueFrom" in item else item["value"]
    assert env["CELERYBEATREDIS_HTTP"] == "0.0.0.0:9808"
    env["CELERYBEATREDIS_HTTP"] = http  # a free port on loopback: tests run side by side
    return env


def probe_passes(probe: dict[str, Any], port: int) -> bool:
    """The kubelet's httpGet probe: a status from 200 to 399 within timeoutSeconds."""
    url = f"http://127.0.0.1:{port}{probe['httpGet']['path']}"
    try:
        with urllib.request.urlopen(url, timeout=probe.get("timeoutSeconds", 1)) as answer:
            return 200 <= answer.status < 400
    except (urllib.error.URLError, OSError):
        return False


class Notifications:
    """systemd's notification socket, as the watchdog sees it: what it was sent, one datagram a message."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[str] = []

    def read(self) -> list[str]:
        while True:
            try:
                self.messages.append(self.sock.recv(4096).decode())
            except BlockingIOError:
                return self.messages

    def next_with(self, text: str, after: int) -> int | None:
        """Index of the first message after ``after`` that holds ``text``."""
        return next((i for i, m in enumerate(self.read()) if i > after and text in m), None)


@pytest.fixture
def schedule() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.mark.slow
@pytest.mark.e2e
def test_probes_healthcheck_and_watchdog_follow_a_redis_outage(tmp_path: Path, redis_url: str, prefix: str,
                                                              schedule: RedisServer) -> None:
    """Beat as the image and the manifest run it, under the systemd watchdog: each check passes, fails within its
    bound once Redis is killed (the manifest's periodSeconds x failureThreshold, the HEALTHCHECK's interval x
    retries), and passes again once Redis is back on the same port."""
    port = free_port()
    # The app's own schedule URL is wrong on purpose: envapp must set the environment's.
    write_app(tmp_path, f"{redis_url}/1", "redis://127.0.0.1:1/0", prefix,
              f"app.conf.task_default_queue = 'q-{prefix}'\napp.conf.beat_schedule = {{'tick': {{'task': 't.tick', 'schedule': 1.0}}}}\n")
    env = manifest_env({"url": f"{schedule.url}/0", "broker-url": f"{redis_url}/1"}, f"127.0.0.1:{port}")
    env["CELERYBEATREDIS_PREFIX"] = prefix
    env = dict(os.environ, **env, PYTHONPATH=os.pathsep.join([str(tmp_path), str(DEPLOY / "container"), os.environ.get("PYTHONPATH", "")]))
    assert env["CELERYBEATREDIS_APP"] == "proj"
    notifications = Notifications(tmp_path / "notify")
    env.update(NOTIFY_SOCKET=str(notifications.path), WATCHDOG_USEC="2000000")  # a check a second

    command = image_command()
    assert command[0] == "celery"
    log = (tmp_path / "beat.log").open("wb")
    beat = subprocess.Popen([sys.executable, str(DEPLOY / "systemd" / "beat-watchdog.py"), sys.executable, "-m", *command],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT)
    container = beat_container()
    probes = {name: container[name] for name in ("readinessProbe", "livenessProbe")}
    check, timing = healthcheck()

    def check_exits() -> int:
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", *check], env=env, capture_output=True, timeout=timing["timeout"])
        assert time.monotonic() - started < timing["timeout"]
        return done.returncode

    def output() -> str:
        return (tmp_path / "beat.log").read_text(errors="replace")

    try:
        assert check[0] == "celerybeatredis"
        for name, probe in probes.items():
            wait_until(lambda probe=probe: probe_passes(probe, port), timeout=30, what=f"{name} to pass\n{output()}")
        wait_until(lambda: check_exits() == 0, timeout=timing["start-period"], what="the HEALTHCHECK to pass")
        ready = wait_until(lambda: notifications.next_with("READY=1", -1), timeout=30, what="READY=1")
        assert "WATCHDOG=1" in notifications.messages[ready]

        schedule.kill()
        killed = time.monotonic()
        bounds = {name: probe["periodSeconds"] * probe["failureThreshold"] for name, probe in probes.items()}
        for name, probe in probes.items():
            wait_until(lambda probe=probe: not probe_passes(probe, port), timeout=bounds[name], what=f"{name} to fail")
            assert time.monotonic() - killed <= bounds[name]
        wait_until(lambda: check_exits() == 1, timeout=timing["interval"] * timing["retries"], what="the HEALTHCHECK to fail")
        seen = len(notifications.read()) - 1
        stopped = wait_until(lambda: notifications.next_with("STATUS=beat not ticking", seen), timeout=30,
                             what="the watchdog to see beat not ticking")
        assert "WATCHDOG=1" not in notifications.messages[stopped]
        assert beat.poll() is None, output()

        schedule.start()
        restarted = time.monotonic()
        for name, probe in probes.items():
            # Back before the liveness probe would have restarted the pod, counting from Redis's return.
            wait_until(lambda probe=probe: probe_passes(probe, port), timeout=bounds["livenessProbe"], what=f"{name} to pass again")
        assert time.monotonic() - restarted <= bounds["livenessProbe"]
        wait_until(lambda: check_exits() == 0, timeout=timing["interval"] * timing["retries"], what="the HEALTHCHECK to pass again")
        wait_until(lambda: notifications.next_with("WATCHDOG=1", stopped), timeout=30, what="WATCHDOG=1 again")
        assert [m for m in notifications.messages[stopped:] if "WATCHDOG=1" in m and "not ticking" in m] == []

        beat.terminate()  # systemd's stop: the watchdog passes SIGTERM on, beat stops cleanly
        assert beat.wait(30) == 0, output()
        assert "Traceback" not in output()
    finally:
        stop_process(beat, timeout=20)
        log.close()


#: A built image of the Containerfile (tools/build-image.sh prints its name; CI builds one and sets this).
IMAGE_ENV = "CELERYBEATREDIS_TEST_IMAGE"


@pytest.mark.slow
@pytest.mark.e2e
def test_the_built_image_runs_beat_and_its_healthcheck_follows_redis(tmp_path: Path, prefix: str, schedule: RedisServer) -> None:
    """The image itself, run with buildah (chroot isolation, the host's network): its command with the manifest's
    environment serves /healthz, and its HEALTHCHECK, as the image records it, passes, fails within interval x
    retries of Redis being killed, and passes again once Redis is back."""
    image, buildah = os.environ.get(IMAGE_ENV), shutil.which("buildah")
    if not image or buildah is None:
        pytest.skip(f"no image to run: build one with tools/build-image.sh and name it in {IMAGE_ENV} (buildah needed)")
    store = [buildah, "--storage-driver", "vfs"]
    config = json.loads(subprocess.run([*store, "inspect", "--type", "image", image], capture_output=True, check=True,
                                       text=True).stdout)["Docker"]["config"]
    test, timing = config["Healthcheck"]["Test"], config["Healthcheck"]
    assert test[0] == "CMD" and config["User"] == "10001:10001"
    app = tmp_path / "app"
    app.mkdir(mode=0o755)
    write_app(app, f"{schedule.url}/1", "redis://127.0.0.1:1/0", prefix,
              "app.conf.beat_schedule = {'tick': {'task': 't.tick', 'schedule': 1.0}}\n")
    (app / "proj.py").chmod(0o644)
    app.chmod(0o755)
    port = free_port()
    env = manifest_env({"url": f"{schedule.url}/0", "broker-url": f"{schedule.url}/1"}, f"127.0.0.1:{port}")
    env["CELERYBEATREDIS_PREFIX"] = prefix
    container = subprocess.run([*store, "from", image], capture_output=True, check=True, text=True).stdout.strip()
    run = [*store, "run", "--isolation", "chroot", "--volume", f"{app}:/app:ro",
           *[f"--env={name}={value}" for name, value in env.items()], container, "--"]
    log = (tmp_path / "image-beat.log").open("wb")
    beat = subprocess.Popen([*run, *config["Cmd"]], stdout=log, stderr=subprocess.STDOUT)
    probe = beat_container()["readinessProbe"]

    def healthcheck_exits() -> int:
        return subprocess.run([*run, *test[1:]], capture_output=True, timeout=timing["Timeout"] / 1e9 + 10).returncode

    def output() -> str:
        return (tmp_path / "image-beat.log").read_text(errors="replace")

    try:
        wait_until(lambda: probe_passes(probe, port), timeout=60, what=f"/healthz from the image's beat\n{output()}")
        wait_until(lambda: healthcheck_exits() == 0, timeout=timing["StartPeriod"] / 1e9, what="the image's HEALTHCHECK to pass")
        schedule.kill()
        killed = time.monotonic()
        bound, probe_bound = timing["Interval"] / 1e9 * timing["Retries"], probe["periodSeconds"] * probe["failureThreshold"]
        # The probe fails within the manifest's period x threshold of the kill (not at one moment chosen by the test).
        wait_until(lambda: not probe_passes(probe, port), timeout=probe_bound, what="/healthz to fail")
        assert time.monotonic() - killed <= probe_bound
        wait_until(lambda: healthcheck_exits() == 1, timeout=bound, what="the image's HEALTHCHECK to fail")
        schedule.start()
        restarted = time.monotonic()
        # Back before the liveness probe would have restarted the pod, counting from Redis's return.
        liveness = beat_container()["livenessProbe"]
        live_bound = liveness["periodSeconds"] * liveness["failureThreshold"]
        wait_until(lambda: probe_passes(probe, port), timeout=live_bound, what="/healthz to pass again")
        assert time.monotonic() - restarted <= live_bound
        wait_until(lambda: healthcheck_exits() == 0, timeout=bound, what="the image's HEALTHCHECK to pass again")
        assert beat.poll() is None and "Traceback" not in output(), output()
    finally:
        stop_process(beat, timeout=20)
        log.close()
        subprocess.run([*store, "rm", container], capture_output=True)
