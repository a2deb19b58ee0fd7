"""Beat's own CPU per claimed entry, without Redis or a broker: a claim's reply decoded, the batch decided, its commit's
ARGV encoded, side by side for two (or more) source trees.

    python benchmarks/tick_cpu.py /path/to/old-checkout . --entries 20000 --repeat 15
    python benchmarks/tick_cpu.py /path/to/old-checkout . --entries 20000 --repeat 15 --policies

Each tree runs in a process of its own (its package first on ``sys.path``) on
the same synthetic claim: ``N`` interval entries, each due, with a last run,
the reply laid out as ``claim.lua`` returns it. Each stage is timed ``--repeat``
times and its fastest run kept, which a shared, noisy machine moves least:
``cold`` decides with a new codec each time (every definition parsed, as in a
burst of entries beat has not seen), ``warm`` with one that has parsed them
all (a beat in its stride). With ``--policies`` every entry carries the run
policies of ``benchmarks/policies.py``. Printed in microseconds per entry, and
each tree's ratio to the first. The full tick with Redis is
``benchmarks/compare.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.policies import CALENDAR, POLICIES

#: Run with the tree first on ``sys.path``: prints one JSON line of the fastest time per stage, in seconds.
CHILD = r"""
import json, sys, time
from datetime import datetime, timezone
from pathlib import Path
tree, n, repeat, members, calendar = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), json.loads(sys.argv[4]), json.loads(sys.argv[5])
sys.path.insert(0, tree)
import celerybeatredis
assert celerybeatredis.__file__.startswith(str(Path(tree).resolve())), celerybeatredis.__file__
from celery import Celery
try:  # the wings
    from celerybeatredis.decisions.planner import Planner, TickClock
    from celerybeatredis.definitions.calendars import parse_calendar
    from celerybeatredis.definitions.codec import Codec
    from celerybeatredis.settings import Settings
    from celerybeatredis.storage.wire import commit_args, decode_claim
    plans_of = lambda planned: planned.decisions
except ImportError:  # a tree from before them
    from celerybeatredis.calendars import parse_calendar
    from celerybeatredis.codec import Codec
    from celerybeatredis.planning import Planner, TickClock
    from celerybeatredis.settings import Settings
    from celerybeatredis.wire import commit_args, decode_claim
    plans_of = lambda planned: planned.plans

NOW = 1_795_514_400.0
#: The last run 61 s ago: due a second ago, within its jitter too (below a second).
LAST = datetime.fromtimestamp(NOW - 61, timezone.utc).isoformat().encode()
app = Celery("tick-cpu", set_as_current=False)
settings = Settings.from_app(app)
reply = [repr(NOW).encode(), repr(NOW + 3).encode(), b"", b"0"]
for i in range(n):
    doc = json.dumps({"task": "tasks.add", "interval": {"every": 60, "period": "seconds"}, "args": [i, i], **members})
    reply += [f"entry-{i}".encode(), repr(NOW - 1).encode(), doc.encode(), b"3", LAST, b"0123456789ab", None]

def timed(stage):
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        stage()
        best = min(best, time.perf_counter() - started)
    return best

calendars = {name: parse_calendar(name, doc) for name, doc in calendar.items()}

def planner(clock):
    made = Planner(Codec(app, nowfun=clock.now, cache_size=2 * n), clock, settings)
    made.calendars = calendars
    return made

claim = decode_claim(reply)
clock = TickClock()
warm = planner(clock)
planned = warm.plan(claim)
assert sum(d.run is not None for d in planned.decisions) == n, "every entry runs"
def cold():
    planner(TickClock()).plan(claim)
print(json.dumps({
    "decode": timed(lambda: decode_claim(reply)),
    "plan_cold": timed(cold),
    "plan_warm": timed(lambda: warm.plan(claim)),
    "commit_args": timed(lambda: commit_args(plans_of(planned), 20)),
}))
"""

STAGES = ("decode", "plan_cold", "plan_warm", "commit_args")


def run(tree: str, entries: int, repeat: int, policies: bool) -> dict[str, float]:
    """One tree's fastest seconds per stage, from a process of its own."""
    members, calendar = (POLICIES, {POLICIES["exclude"][0]: CALENDAR}) if policies else ({}, {})
    done = subprocess.run([sys.executable, "-c", CHILD, str(Path(tree).resolve()), str(entries), str(repeat),
                           json.dumps(members), json.dumps(calendar)], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: the run failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs="+", help="source checkouts to compare; ratios are to the first")
    parser.add_argument("--entries", type=int, default=20_000, help="entries in the claim (default 20,000)")
    parser.add_argument("--repeat", type=int, default=15, help="runs of each stage; the fastest is kept (default 15)")
    parser.add_argument("--policies", action="store_true",
                        help="every entry carries the run policies of benchmarks/policies.py (and its calendar)")
    args = parser.parse_args(argv)
    results = {tree: run(tree, args.entries, args.repeat, args.policies) for tree in args.trees}
    first = results[args.trees[0]]
    per = 1e6 / args.entries
    policies = f", every entry with {json.dumps(POLICIES)}" if args.policies else ""
    print(f"N = {args.entries:,} due interval entries{policies}, fastest of {args.repeat}, microseconds per entry:")
    for tree, got in results.items():
        cells = [f"{stage} {got[stage] * per:.2f} ({got[stage] / first[stage]:.2f}x)" for stage in STAGES]
        total = sum(got[s] for s in ("decode", "plan_cold", "commit_args"))
        base = sum(first[s] for s in ("decode", "plan_cold", "commit_args"))
        print(f"  {tree}: {', '.join(cells)}; decode + cold plan + commit ARGV {total * per:.2f} ({total / base:.2f}x)")


if __name__ == "__main__":
    main()
