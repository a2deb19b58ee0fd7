"""Dispatch throughput of two (or more) source trees of celerybeat-redis, side by side in one run.

    python benchmarks/compare.py /path/to/old-checkout . --entries 100000 --rounds 2
    python benchmarks/compare.py .::redis_scheduler_history=0 . --entries 100000 --rounds 3
    python benchmarks/compare.py /path/to/old-checkout . --entries 100000 --rounds 5 --policies

A tree written ``PATH::setting=value[,setting=value]`` runs with those Celery
settings (a value is read as JSON when it is JSON): one tree can so be set
against itself, e.g. with a feature off and on. With ``--policies`` every entry
carries the run policies of ``benchmarks/policies.py`` (jitter, a calendar,
``overlap: skip``), so two trees are compared on the policies' path too.

Each round runs every tree once, in turn, in a process of its own against the
same private redis-server: ``N`` interval (or crontab) entries with 20% due at
once, written and prepared as ``benchmarks/run.py`` does, then ticked until
they are sent, with ``app.send_task`` replaced by a counter. Printed per run
and as medians: dispatches per second, and beat's and Redis's CPU time per
dispatch; then each tree's ratio to the first. Alternating the trees within one
run is what makes the ratios fair on a shared, noisy machine.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.policies import CALENDAR, POLICIES
from benchmarks.sidebyside import TIMED_TICKS, print_medians, run_rounds

#: Run in a child process with the tree first on ``sys.path``: that tree's package and harness.
CHILD = """
import json, sys, time
from pathlib import Path
tree, url, n, kind, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], Path(sys.argv[5])
conf = json.loads(sys.argv[6])
fill = int(sys.argv[7])
members, calendar = json.loads(sys.argv[8]), json.loads(sys.argv[9])
sys.path.insert(0, tree)
import redis
import celerybeatredis
from benchmarks.subjects import Ours
from benchmarks.workload import Burst
from celerybeatredis.store import ScheduleStore
assert celerybeatredis.__file__.startswith(str(Path(tree).resolve())), celerybeatredis.__file__
server = redis.Redis.from_url(url + "/0")
server.flushall()

class WithMembers(Ours):
    def document(self, workload, entry):
        return dict(super().document(workload, entry), **members)

subject = WithMembers(url, workdir)
if calendar:
    ScheduleStore(server, subject.prefix).set_calendar(calendar.pop("name"), **calendar)
workload = Burst(n, kind)
subject.insert(workload, range(n))
subject.prepare(workload)
if fill and hasattr(subject.store.keys, "history"):  # every entry's history full, as after that many runs (a tree without history: none)
    try:
        from celerybeatredis.storage.history import record, stamp
    except ImportError:  # a tree from before the wings
        from celerybeatredis.history import record, stamp
    pipe = server.pipeline(transaction=False)
    runs = f"{fill},0,0:" + "".join(record("s", stamp(1_795_514_400.0 - 60 * k), 0.004) for k in range(fill))
    for i in range(n):
        pipe.hset(subject.store.keys.history, workload.entry(i).name, runs)
        if len(pipe) >= 10_000:
            pipe.execute()
    pipe.execute()
app, recorder = subject.stub_app(**conf)
app.tasks  # the app is finalized before the clock starts
sched = subject.scheduler(app)
due = workload.due_count()
""" + TIMED_TICKS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs="+", help="source checkouts to compare (PATH or PATH::setting=value,...); "
                        "ratios are to the first")
    parser.add_argument("--entries", type=int, default=100_000, help="N (default 100,000)")
    parser.add_argument("--kind", choices=("interval", "crontab"), default="interval")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every tree (default 2)")
    parser.add_argument("--fill-history", type=int, default=0, metavar="D",
                        help="start with every entry's run history full at depth D (trees that have history.py)")
    parser.add_argument("--policies", action="store_true",
                        help="every entry carries the run policies of benchmarks/policies.py (and its calendar)")
    return parser.parse_args(argv)


def tree_conf(spec: str) -> tuple[Path, dict[str, Any]]:
    """``PATH::setting=value,...`` as the tree's path and its settings (values read as JSON when they are JSON)."""
    path, _, settings = spec.partition("::")
    conf: dict[str, Any] = {}
    for item in filter(None, settings.split(",")):
        key, _, value = item.partition("=")
        try:
            conf[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            conf[key.strip()] = value
    return Path(path), conf


def run_once(spec: str, url: str, args: argparse.Namespace, workdir: Path) -> dict[str, float]:
    """One tree's figures, from a process of its own."""
    tree, conf = tree_conf(spec)
    members, calendar = ({}, {}) if not args.policies else (POLICIES, {"name": POLICIES["exclude"][0], **CALENDAR})
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(tree.resolve()), url, str(args.entries), args.kind, str(workdir), json.dumps(conf),
         str(args.fill_history), json.dumps(members), json.dumps(calendar)],
        capture_output=True, text=True, check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{tree}: the run failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = run_rounds(args.trees, args.rounds, lambda tree, url, workdir: run_once(tree, url, args, workdir))
    policies = f", every entry with {json.dumps(POLICIES)}" if args.policies else ""
    print_medians(results, f"\nN = {args.entries:,} {args.kind}{policies}, medians of {args.rounds} round(s):")

if __name__ == "__main__":
    main()
