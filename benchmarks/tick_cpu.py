"""Beat's own CPU per claimed entry, without Redis or a broker: a claim's reply decoded, the batch decided, its commit's
ARGV encoded, side by side for two (or more) source trees.

    python benchmarks/tick_cpu.py /path/to/old-checkout . --entries 20000 --repeat 15

Each tree runs in a process of its own (its package first on ``sys.path``) on
the same synthetic claim: ``N`` interval entries, each due, with a last run,
the reply laid out as ``claim.lua`` returns it. Each stage is timed ``--repeat``
times and its fastest run kept, which a shared, noisy machine moves least:
``cold`` decides with a new codec each time (every definition parsed, as in a
burst of entries beat has not seen), ``warm`` with one that has parsed them
all (a beat in its stride). Printed in microseconds per entry, and each tree's
ratio to the first. The full tick with Redis is ``benchmarks/compare.py``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

#: Run with the tree first on ``sys.path``: prints one JSON line of the fastest time per stage, in seconds.
CHILD = r"""
import json, sys, time
from pathlib import Path
tree, n, repeat = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.path.insert(0, tree)
import celerybeatredis
assert celerybeatredis.__file__.startswith(str(Path(tree).resolve())), celerybeatredis.__file__
from celery import Celery
try:  # the wings
    from celerybeatredis.decisions.planner import Planner, TickClock
    from celerybeatredis.definitions.codec import Codec
    from celerybeatredis.settings import Settings
    from celerybeatredis.storage.wire import commit_args, decode_claim
    plans_of = lambda planned: planned.decisions
except ImportError:  # a tree from before them
    from celerybeatredis.codec import Codec
    from celerybeatredis.planning import Planner, TickClock
    from celerybeatredis.settings import Settings
    from celerybeatredis.wire import commit_args, decode_claim
    plans_of = lambda planned: planned.plans

NOW = 1_795_514_400.0
app = Celery("tick-cpu", set_as_current=False)
settings = Settings.from_app(app)
reply = [repr(NOW).encode(), repr(NOW + 3).encode(), b"", b"0"]
for i in range(n):
    doc = json.dumps({"task": "tasks.add", "interval": {"every": 60, "period": "seconds"}, "args": [i, i]})
    reply += [f"entry-{i}".encode(), repr(NOW - 1).encode(), doc.encode(), b"3",
              b"2026-11-24T09:19:00+00:00", b"0123456789ab", None]

def timed(stage):
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        stage()
        best = min(best, time.perf_counter() - started)
    return best

claim = decode_claim(reply)
clock = TickClock()
warm = Planner(Codec(app, nowfun=clock.now, cache_size=2 * n), clock, settings)
planned = warm.plan(claim)
assert sum(d.run is not None for d in planned.decisions) == n, "every entry runs"
def cold():
    fresh = TickClock()
    Planner(Codec(app, nowfun=fresh.now, cache_size=2 * n), fresh, settings).plan(claim)
print(json.dumps({
    "decode": timed(lambda: decode_claim(reply)),
    "plan_cold": timed(cold),
    "plan_warm": timed(lambda: warm.plan(claim)),
    "commit_args": timed(lambda: commit_args(plans_of(planned), 20)),
}))
"""

STAGES = ("decode", "plan_cold", "plan_warm", "commit_args")


def run(tree: str, entries: int, repeat: int) -> dict[str, float]:
    """One tree's fastest seconds per stage, from a process of its own."""
    done = subprocess.run([sys.executable, "-c", CHILD, str(Path(tree).resolve()), str(entries), str(repeat)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{tree}: the run failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("trees", nargs="+", help="source checkouts to compare; ratios are to the first")
    parser.add_argument("--entries", type=int, default=20_000, help="entries in the claim (default 20,000)")
    parser.add_argument("--repeat", type=int, default=15, help="runs of each stage; the fastest is kept (default 15)")
    args = parser.parse_args(argv)
    results = {tree: run(tree, args.entries, args.repeat) for tree in args.trees}
    first = results[args.trees[0]]
    per = 1e6 / args.entries
    print(f"N = {args.entries:,} due interval entries, fastest of {args.repeat}, microseconds per entry:")
    for tree, got in results.items():
        cells = [f"{stage} {got[stage] * per:.2f} ({got[stage] / first[stage]:.2f}x)" for stage in STAGES]
        total = sum(got[s] for s in ("decode", "plan_cold", "commit_args"))
        base = sum(first[s] for s in ("decode", "plan_cold", "commit_args"))
        print(f"  {tree}: {', '.join(cells)}; decode + cold plan + commit ARGV {total * per:.2f} ({total / base:.2f}x)")


if __name__ == "__main__":
    main()
