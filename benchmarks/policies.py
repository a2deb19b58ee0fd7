"""Dispatch throughput of entries carrying run policies against plain entries, side by side in one run.

    python benchmarks/policies.py --entries 100000 --rounds 2

Each round runs every variant once, in turn, in a process of its own against
the same private redis-server: ``N`` interval entries with 20% due at once,
written and prepared as ``benchmarks/run.py`` does, then ticked until they
are sent, with ``app.send_task`` replaced by a counter. Variants:

* ``plain``: the entries as ``benchmarks/run.py`` writes them;
* ``overlap``: every entry also carries ``"overlap": "skip"``, alone;
* ``policies``: every entry also carries the members of :data:`POLICIES`;
* ``rrule``: every entry's interval is replaced by an ``rrule`` with the same
  slots (hourly, the due ones due now), one rule shared as the intervals share
  theirs; ``rrules``: each entry a rule of its own (starts up to 3,000 s
  apart), so each is parsed and expanded apart: the cost of a rule's times.

The jitter is below a second, so every due entry is still due when the run
starts and the figure is the cost of working out each jittered time; the
calendar excludes no day of the run, so the figure is the cost of the check.
Printed per run and as medians: dispatches per second, beat's and Redis's CPU
time per dispatch, and each variant's ratio to ``plain``; then the median of
each round's rate ratio (the variants of a round run back to back, so load
that changes between rounds moves it less).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.sidebyside import TIMED_TICKS, print_medians, run_rounds

#: The calendar every ``policies`` entry excludes: days that are never the day of the run.
CALENDAR = {"dates": ["2001-01-01", "2002-12-25"], "ranges": [["2003-12-24", "2003-12-26"]]}
#: Definition members every ``policies`` entry carries.
POLICIES: dict[str, Any] = {"jitter": 0.9, "exclude": ["bench-holidays"], "overlap": "skip"}
#: ``overlap`` alone: each run commits a run marker, and claims read the markers back (no worker ends them here).
VARIANTS: dict[str, dict[str, Any]] = {"plain": {}, "overlap": {"overlap": "skip"}, "policies": POLICIES,
                                       "rrule": {"rrule": "FREQ=HOURLY"}, "rrules": {"rrule": "FREQ=HOURLY", "spread": 3000}}

#: Run in a child process: one variant's figures.
CHILD = """
import json, sys, time
from datetime import datetime, timezone
from pathlib import Path
url, n, workdir, extra, calendar = sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5])
import redis
from benchmarks.subjects import Ours
from benchmarks.workload import Burst
from celerybeatredis.store import ScheduleStore

class WithPolicies(Ours):
    def document(self, workload, entry):
        doc = dict(super().document(workload, entry), **{k: v for k, v in extra.items() if k != "spread"})
        if "rrule" in extra:  # the interval's slots as a rule: its first time is the due time (or up to spread s before)
            back = 1 + (entry.index % extra["spread"] if extra.get("spread") else 0)
            start = datetime.fromtimestamp(workload.now - back, timezone.utc).isoformat()
            del doc["interval"]
            doc["rrule"] = {"rule": extra["rrule"], "dtstart": start}
        return doc

server = redis.Redis.from_url(url + "/0")
server.flushall()
subject = WithPolicies(url, workdir)
ScheduleStore(server, subject.prefix).set_calendar("bench-holidays", **{k: v for k, v in calendar.items()})
workload = Burst(n, "interval")
subject.insert(workload, range(n))
subject.prepare(workload)
app, recorder = subject.stub_app()
app.tasks  # the app is finalized before the clock starts
sched = subject.scheduler(app)
due = workload.due_count()
""" + TIMED_TICKS


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000, help="N (default 100,000)")
    parser.add_argument("--rounds", type=int, default=2, help="runs of every variant (default 2)")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated, 'plain' first (default {','.join(VARIANTS)})")
    return parser.parse_args(argv)


def run_once(extra: dict[str, Any], url: str, entries: int, workdir: Path) -> dict[str, float]:
    """One variant's figures, from a process of its own."""
    calendar = {"dates": CALENDAR["dates"], "ranges": [tuple(r) for r in CALENDAR["ranges"]]}
    done = subprocess.run(
        [sys.executable, "-c", CHILD, url, str(entries), str(workdir), json.dumps(extra), json.dumps(calendar)],
        capture_output=True, text=True, check=False, cwd=Path(__file__).resolve().parent.parent,
    )
    if done.returncode != 0:
        raise SystemExit(f"the run failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    if result["sent"] < result["due"]:
        raise SystemExit(f"only {result['sent']:.0f} of {result['due']:.0f} due entries were sent: {result}")
    return result


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    chosen = args.variants.split(",")
    if chosen[0] != "plain" or not set(chosen) <= set(VARIANTS):
        raise SystemExit(f"--variants: 'plain' first, then any of {', '.join(VARIANTS)}")
    results = run_rounds(chosen, args.rounds, lambda name, url, workdir: run_once(VARIANTS[name], url, args.entries, workdir))
    print_medians(results, f"\nN = {args.entries:,} interval, 20% due at once, medians of {args.rounds} round(s); "
                           f"policies: {json.dumps(POLICIES)}")
    # Each round runs the variants back to back: a ratio within a round is less moved by load that changes between
    # rounds than the ratio of medians taken over different rounds.
    print("  rate against plain's in the same round, median (each round):")
    for name, runs in results.items():
        ratios = [r["rate"] / p["rate"] for r, p in zip(runs, results["plain"])]
        print(f"    {name}: {statistics.median(ratios):.2f}x ({', '.join(f'{x:.2f}' for x in ratios)})")


if __name__ == "__main__":
    main()
