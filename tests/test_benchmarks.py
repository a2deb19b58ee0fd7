"""A smoke run of the benchmark harness (N = 1,000), so it keeps working.

It checks what the harness produces and that every scheduler dispatched each
due entry exactly once; it never checks a speed (that is what the harness is for).
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = [pytest.mark.slow, pytest.mark.e2e]

EVERY_SUBJECT = ("dispatch", "dispatch_crontab", "idle_us", "idle_trips", "idle_commands", "late_p50", "late_p99",
                 "late_max", "insert", "e2e", "e2e_ratio", "rss", "startup")


def test_quick_run_writes_every_figure_for_every_scheduler(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["meta"]["sizes"] == [1000]
    results = data["results"]
    assert set(results) == {"ours", "redbeat", "celery", "plain"}
    for key in ("ours", "redbeat", "celery"):
        figures = results[key]["1000"]
        missing = [f for f in EVERY_SUBJECT if f not in figures]
        assert not missing, f"{key} lacks {missing}"
        for name in EVERY_SUBJECT:
            assert math.isfinite(figures[name]) and figures[name] >= 0, (key, name, figures[name])
        # Each due entry dispatched exactly once, in every figure.
        assert figures["dispatch_sent"] == figures["dispatch_due"] == 200, key
        assert figures["dispatch_crontab_sent"] == figures["dispatch_crontab_due"] == 200, key
        assert figures["late_sent"] == figures["late_due"] == 1000, key
        assert figures["e2e_published"] == figures["e2e_due"] == 201, key
    for key in ("ours", "redbeat"):
        assert results[key]["1000"]["memory"] > 0
    ours = results["ours"]["1000"]
    assert ours["e2e_two_published"] == 201
    assert ours["idle_trips_reconcile"] == 2.0  # claim and reconciler step, one call each
    assert {t["target"].split(" at ")[0] for t in data["targets"]} >= {"dispatch >= 10x RedBeat", "lateness p99 <= 50 ms"}
    summary = (tmp_path / "results.md").read_text()
    assert "| figure | N | celerybeat-redis | RedBeat | Celery Persistent | ours / RedBeat |" in summary
    for plot in ("throughput.png", "lateness.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "dispatch/s, 20% due at once, interval" in run.stdout


def test_the_policies_benchmark_sends_every_due_entry_of_both_variants(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "policies.py"), "--entries", "1000", "--rounds", "1"],
        capture_output=True, text=True, timeout=600, cwd=tmp_path,
    )
    assert run.returncode == 0, run.stderr[-3000:]  # it stops with an error when a variant sent fewer than were due
    assert "round 1 plain: " in run.stdout and "round 1 policies: " in run.stdout
    assert '"jitter": 0.9, "exclude": ["bench-holidays"]' in run.stdout
