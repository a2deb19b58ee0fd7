"""The wheel, installed without extras into a new virtualenv, runs beat and a worker against a Redis broker.

This is a user's first hour: ``pip install`` the package, point Celery at Redis,
start a worker and beat. A dependency that only an extra (or the test extra)
happens to bring, as ``packaging`` for kombu's Redis transport once was, fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from ..support.processes import PROJECT_ROOT, wait_until

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


@pytest.fixture(scope="module")
def bare_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtualenv with only the wheel (and what it requires) installed."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(root), str(PROJECT_ROOT)],
                   check=True, capture_output=True, timeout=300)
    (wheel,) = root.glob("celerybeat_redis-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, capture_output=True, timeout=120)
    python = venv / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stdout + done.stderr
    return python


def clean_env(directory: Path) -> dict[str, str]:
    """The environment of a user's shell: nothing of this checkout or of the suite's virtualenv."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env["PYTHONPATH"] = str(directory)
    return env


@pytest.fixture
def project(tmp_path: Path, redis_url: str, prefix: str) -> Iterator[Path]:
    queue = f"q-{prefix}"
    (tmp_path / "proj.py").write_text(textwrap.dedent(f"""
        from celery import Celery

        app = Celery("proj", broker={redis_url + '/1'!r})
        app.conf.update(
            redis_scheduler_url={redis_url + '/0'!r},
            redis_scheduler_key_prefix={prefix!r},
            beat_scheduler="celerybeatredis.schedulers.RedisScheduler",
            task_default_queue={queue!r},
            beat_schedule={{"note-every-second": {{"task": "proj.note", "schedule": 1.0}}}},
        )


        @app.task
        def note():
            with open({str(tmp_path / 'runs.txt')!r}, "a") as runs:
                runs.write("ran\\n")
    """))
    yield tmp_path


def test_the_wheel_without_extras_runs_beat_and_a_worker_on_a_redis_broker(bare_venv: Path, project: Path) -> None:
    env = clean_env(project)
    where = subprocess.run([str(bare_venv), "-c", "import celerybeatredis; print(celerybeatredis.__file__)"],
                           cwd=project, env=env, capture_output=True, text=True, timeout=60)
    assert str(bare_venv.parent.parent) in where.stdout, where.stdout + where.stderr
    logs = {name: (project / f"{name}.log").open("wb") for name in ("worker", "beat")}
    common = [str(bare_venv), "-m", "celery", "-A", "proj"]
    procs = {
        "worker": subprocess.Popen([*common, "worker", "-P", "solo", "--loglevel=INFO", "--without-gossip",
                                    "--without-mingle", "--without-heartbeat"],
                                   cwd=project, env=env, stdout=logs["worker"], stderr=subprocess.STDOUT),
        "beat": subprocess.Popen([*common, "beat", "--loglevel=INFO", "--pidfile="],
                                 cwd=project, env=env, stdout=logs["beat"], stderr=subprocess.STDOUT),
    }
    runs = project / "runs.txt"
    try:
        wait_until(lambda: runs.exists() or any(p.poll() is not None for p in procs.values()), timeout=120,
                   what="a run of the beat_schedule entry at the worker")
    finally:
        for proc in procs.values():
            proc.terminate()
        codes = {name: proc.wait(30) for name, proc in procs.items()}
        for log in logs.values():
            log.close()
    output = "\n".join(f"--- {name}\n{(project / f'{name}.log').read_text(errors='replace')}" for name in procs)
    assert runs.exists(), output
    assert "ModuleNotFoundError" not in output and "Traceback" not in output, output
    assert codes == {"worker": 0, "beat": 0}, output
