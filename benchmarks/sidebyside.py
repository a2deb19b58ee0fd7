"""Side-by-side dispatch runs (compare.py, policies.py): the timed tick loop each child process runs, and the parent's
rounds, which run every subject once in turn against one private redis-server and print medians and ratios.

The tick loop is source text run in each child (the child may run another checkout's package, so it is text to
execute rather than a function to import).
"""

from __future__ import annotations

import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.support.redis_server import RedisServer

#: A subject's figures from one run: ``rate`` (dispatches/s), ``cpu_us`` and ``redis_us`` (CPU per dispatch), ...
Figures = dict[str, float]

#: Ticks ``sched`` until ``recorder`` counted ``due`` sends (at most 600 s), then prints one JSON line: dispatches per
#: second, beat's and Redis's CPU time per dispatch in microseconds, and the counts. Expects ``server`` (the Redis
#: client), ``sched``, ``recorder`` and ``due`` to be defined, and ``json`` and ``time`` imported.
TIMED_TICKS = """
def redis_cpu():
    info = server.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]
cpu, rcpu, started = time.process_time(), redis_cpu(), time.perf_counter()
deadline = started + 600
while recorder.count < due and time.perf_counter() < deadline:
    sched.tick()
took = time.perf_counter() - started
cpu, rcpu = time.process_time() - cpu, redis_cpu() - rcpu
sched.close()
per = 1e6 / max(recorder.count, 1)
print(json.dumps({"rate": recorder.count / took, "cpu_us": cpu * per, "redis_us": rcpu * per, "sent": recorder.count,
                  "due": due}))
"""


def run_rounds(names: list[str], rounds: int, run: Callable[[str, str, Path], Figures]) -> dict[str, list[Figures]]:
    """``run(name, redis url, workdir)`` for every name in turn, ``rounds`` times, on one private redis-server; each
    run printed as it ends. Alternating the subjects within a round is what makes their ratios fair on a noisy machine."""
    server = RedisServer().start()
    results: dict[str, list[Figures]] = {name: [] for name in names}
    try:
        with tempfile.TemporaryDirectory() as workdir:
            for round_no in range(1, rounds + 1):
                for name in names:
                    got = run(name, server.url, Path(workdir))
                    results[name].append(got)
                    print(f"round {round_no} {name}: {got['rate']:,.0f} dispatches/s, CPU per dispatch: "
                          f"beat {got['cpu_us']:.1f} us, Redis {got['redis_us']:.1f} us", flush=True)
    finally:
        server.cleanup()
    return results


def print_medians(results: dict[str, list[Figures]], heading: str) -> None:
    """``heading``, then each subject's median figures and their ratios to the first subject's."""
    medians = {name: {k: statistics.median(r[k] for r in runs) for k in ("rate", "cpu_us", "redis_us")}
               for name, runs in results.items()}
    first = next(iter(medians.values()))
    print(heading)
    for name, m in medians.items():
        print(f"  {name}: {m['rate']:,.0f}/s ({m['rate'] / first['rate']:.2f}x), beat {m['cpu_us']:.1f} us "
              f"({m['cpu_us'] / first['cpu_us']:.2f}x), Redis {m['redis_us']:.1f} us ({m['redis_us'] / first['redis_us']:.2f}x)")
