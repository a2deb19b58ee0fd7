"""How long the command line takes to start: ``--version`` and ``--help``, and what ``--version`` imports.

Every command pays the start-up before it talks to Redis, so it is measured on
the two commands that talk to nothing. ``-X importtime`` shows where the time
goes: the package's own modules and the heavy ones behind them (Celery, redis-py).
Point ``PYTHONPATH`` at the checkout to measure; run it on two checkouts to compare::

    PYTHONPATH=/path/to/older-checkout python benchmarks/cli_startup.py
    PYTHONPATH=. python benchmarks/cli_startup.py --runs 20
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

#: Modules a start-up that needs no schedule should not load.
HEAVY = ("celery.app", "redis", "kombu", "celerybeatredis.cli.demo", "celerybeatredis.store", "celerybeatredis.settings")


def import_times(args: list[str]) -> dict[str, tuple[int, int]]:
    """Module -> (self, cumulative) microseconds, from one run under ``-X importtime``."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "celerybeatredis", *args],
                          capture_output=True, text=True, check=True)
    times: dict[str, tuple[int, int]] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "|" not in line or "self [us]" in line:
            continue
        own, total, name = line.removeprefix("import time:").split("|")
        times[name.strip()] = (int(own), int(total))
    return times


def wall_times(args: list[str], runs: int) -> list[float]:
    """Seconds of ``runs`` whole runs of ``python -m celerybeatredis ARGS``."""
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "celerybeatredis", *args], capture_output=True, check=True)
        out.append(time.perf_counter() - start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="Whole runs timed per command.")
    options = parser.parse_args()
    times = import_times(["--version"])
    total = sum(own for own, _ in times.values())
    print(f"--version imports {len(times)} modules in {total / 1000:.0f} ms (-X importtime, self times summed)")
    for name in HEAVY:
        if name in times:
            print(f"  {name:<28} {times[name][1] / 1000:7.1f} ms cumulative")
        else:
            print(f"  {name:<28}  not imported")
    for args in (["--version"], ["--help"]):
        runs = wall_times(args, options.runs)
        print(f"python -m celerybeatredis {' '.join(args):<10} median {statistics.median(runs):.3f} s, "
              f"min {min(runs):.3f} s over {len(runs)} runs")


if __name__ == "__main__":
    main()
