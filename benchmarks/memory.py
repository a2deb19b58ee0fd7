"""Where a schedule's Redis memory goes: bytes per entry in each key of the layout.

    python benchmarks/memory.py --entries 100000

Writes ``N`` interval entries as ``benchmarks/run.py`` does (with
``RedisStore.bulk_add``, then one beat pass that looks at every entry), runs
the 20% that are due (``app.send_task`` replaced by a counter), and prints the
``used_memory`` delta per entry of each step and ``MEMORY USAGE`` of every key
of the schedule divided by its number of fields, on a private redis-server.

``--history D`` (default: the setting's default, 10; 0 = off) runs beat
with ``redis_scheduler_history = D``, then fills every entry's history to
its depth, as it is once the entry has run ``D`` times and a worker with
the integration reported each run's outcome (succeeded, with its runtime),
and prints the bytes per entry with full history; then, on the same
redis-server, writes the same entries with RedBeat, runs the same 20% with
its scheduler, and prints RedBeat's bytes per entry measured the same way and
the ratio of the two (``--redbeat-bytes B`` takes a figure instead of
measuring it). What an entry whose last run failed adds (the failure kept
after its records) is printed too.

``--layouts`` then writes the same entries, as they are after one run, in
other key layouts with plain commands and prints each one's ``used_memory``
per entry: what a layout change would save, measured instead of estimated.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from benchmarks.subjects import Ours, RedBeat
from benchmarks.workload import Burst
from celerybeatredis.settings import Settings
from celerybeatredis.storage.history import NO_OUTCOME, record, runtime_code, stamp
from tests.support.redis_server import RedisServer


def text(value: bytes | str) -> str:
    """A reply as text."""
    return value.decode() if isinstance(value, bytes) else value


def fields(client: redis.Redis, key: bytes) -> int:
    """How many members the key holds (hash fields, zset or set members)."""
    kind = text(client.type(key))
    counts = {"hash": client.hlen, "zset": client.zcard, "set": client.scard}
    return int(counts[kind](key)) if kind in counts else 1


#: An entry's run state after one run, as the scripts store it.
LAST_RUN_AT = "2026-11-24T10:00:00.123456+00:00"
DIGEST = "a1b2c3d4e5f6"

#: Layouts to compare: label -> the hash fields (key suffix -> value) each entry has
#: besides its definition in ``schedule`` and its score in ``due``.
LAYOUTS: dict[str, dict[str, str]] = {
    "definition and due score only": {},
    "+ total_run_count, last_run_at (no digest)": {"total_run_count": "1", "last_run_at": LAST_RUN_AT},
    "+ total_run_count, last_run_at, digest (this layout)": {
        "total_run_count": "1", "last_run_at": LAST_RUN_AT, "digest": DIGEST},
    "+ one state field: count, ISO time, digest": {"state": f"1 {LAST_RUN_AT} {DIGEST}"},
    "+ one state field: count, Unix time, digest": {"state": f"1 1795514400.123456 {DIGEST}"},
    "+ one state field: count, Unix time, 8-digit digest": {"state": f"1 1795514400.123456 {DIGEST[:8]}"},
}


def layouts(client: redis.Redis, subject: Ours, workload: Burst, used: Callable[[], int]) -> None:
    """Write ``workload``'s entries, as run, in each of :data:`LAYOUTS` and print ``used_memory`` per entry."""
    n = workload.n
    print(f"\n{'layout (N = ' + format(n, ',') + ', every entry has run once)':56} {'B per entry':>11}")
    for label, fields in LAYOUTS.items():
        client.flushall()
        before = used()
        pipe = client.pipeline(transaction=False)
        for i in range(n):
            entry = workload.entry(i)
            assert entry.due is not None
            pipe.hset("{t}:schedule", entry.name, json.dumps(subject.document(workload, entry)))
            pipe.zadd("{t}:due", {entry.name: entry.due})
            for key, value in fields.items():
                pipe.hset(f"{{t}}:{key}", entry.name, value)
            if len(pipe) >= 10_000:
                pipe.execute()
        pipe.execute()
        print(f"{label:56} {(used() - before) / n:>11.0f}")


#: What the worker integration keeps of a failed run after the records (an error's type and first line).
FAILURE = "|{stamp} RuntimeError: the database is gone"


def reported(code: str, at: float, late: float, seconds: float) -> str:
    """A record of a run sent at ``at``, as it is once a worker reported it succeeded in ``seconds``."""
    return record(code, stamp(at), late)[: -len(NO_OUTCOME)] + "k" + runtime_code(seconds)


def fill_history(client: redis.Redis, subject: Ours, workload: Burst, depth: int) -> None:
    """Write every entry's history as it is after ``depth`` sent runs, each reported as succeeded (plain HSET)."""
    if depth > 0:
        key = subject.store.keys.history
        t0 = 1_795_514_400.0
        pipe = client.pipeline(transaction=False)
        for i in range(workload.n):
            runs = "".join(reported("s", t0 - 60 * k - i / 1000, 0.004, 0.2 + k / 100) for k in range(depth))
            pipe.hset(key, workload.entry(i).name, f"{depth},0,0:{runs}")
            if len(pipe) >= 10_000:
                pipe.execute()
        pipe.execute()


def failure_bytes(client: redis.Redis, key: str, workload: Burst, sample: int = 1000) -> float:
    """Bytes a kept last failure adds to an entry's history, over ``sample`` entries (their fields restored after)."""
    names = [workload.entry(i).name for i in range(min(sample, workload.n))]
    values = client.hmget(key, names)
    before = client.memory_usage(key, samples=0) or 0
    pipe = client.pipeline(transaction=False)
    for name, value in zip(names, values):
        if value is not None:
            pipe.hset(key, name, value + FAILURE.format(stamp=stamp(1_795_514_400.0)).encode())
    pipe.execute()
    after = client.memory_usage(key, samples=0) or 0
    client.hset(key, mapping={name: value for name, value in zip(names, values) if value is not None})
    return (after - before) / len(names)


def redbeat_bytes(url: str, workload: Burst, used: Callable[[], int]) -> float:
    """RedBeat's ``used_memory`` per entry for ``workload``, measured as :func:`main` measures ours: written, then
    the 20% that are due run once by its scheduler (its run state added)."""
    subject = RedBeat(url, Path(tempfile.mkdtemp(prefix="cbr-memory-redbeat-")))
    before = used()
    subject.insert(workload, range(workload.n))
    subject.prepare(workload)
    prepared = used()
    app, recorder = subject.stub_app()
    sched = subject.scheduler(app)
    while recorder.count < workload.due_count():
        sched.tick()
    subject.close(sched)
    per_run = (used() - prepared) / max(recorder.count, 1)
    return (prepared - before) / workload.n + per_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--entries", type=int, default=100_000, help="schedule size N")
    parser.add_argument("--layouts", action="store_true", help="also measure other key layouts (see above)")
    parser.add_argument("--history", type=int, default=Settings().history,
                        help="redis_scheduler_history: runs kept per entry (default %(default)s; 0 = off)")
    parser.add_argument("--redbeat-bytes", type=float, default=None,
                        help="RedBeat's bytes per entry, instead of measuring them in this run")
    args = parser.parse_args()
    n: int = args.entries

    server = RedisServer().start()
    try:
        client = redis.Redis.from_url(server.url)

        def used() -> int:
            return int(client.info("memory")["used_memory"])

        subject = Ours(server.url, Path(tempfile.mkdtemp(prefix="cbr-memory-")))
        workload = Burst(n, "interval")
        before = used()
        subject.insert(workload, range(n))
        inserted = used()
        subject.prepare(workload)
        prepared = used()
        app, recorder = subject.stub_app(redis_scheduler_history=args.history)
        sched = subject.scheduler(app)
        while recorder.count < workload.due_count():
            sched.tick()
        subject.close(sched)
        ran = used()

        per_run = (ran - prepared) / max(recorder.count, 1)
        print(f"N = {n:,}; used_memory per entry: written {(inserted - before) / n:.0f} B, "
              f"after beat looked at it {(prepared - before) / n:.0f} B, a first run adds {per_run:.0f} B "
              f"(the figure benchmarks/run.py reports: {(prepared - before) / n + per_run:.0f} B)")
        history_key = subject.store.keys.history
        first_records = client.memory_usage(history_key, samples=0) or 0  # the one record each run wrote
        fill_history(client, subject, workload, args.history)
        history = (client.memory_usage(history_key, samples=0) or 0) / n
        total = (prepared - before) / n + per_run - first_records / max(recorder.count, 1) + history
        failing = failure_bytes(client, history_key, workload) if args.history else 0.0
        theirs = args.redbeat_bytes
        print(f"history depth {args.history}: {history:.0f} B per entry once full, outcomes included ({{T}}:history, "
              f"MEMORY USAGE); an entry that has run, with full history: {total:.0f} B; a last failure kept adds "
              f"{failing:.0f} B to an entry")
        print(f"{'key':32} {'type':6} {'members':>9} {'encoding':10} {'B per member':>12}")
        for key in sorted(client.scan_iter(match=f"{{{subject.store.keys.tag}}}:*")):
            count = fields(client, key)
            usage = client.memory_usage(key, samples=0) or 0
            encoding = text(client.object("encoding", key))
            print(f"{key.decode():32} {text(client.type(key)):6} {count:>9,} {encoding:10} {usage / count:>12.0f}")
        if theirs is None:
            client.flushall()
            theirs = redbeat_bytes(server.url, workload, used)
        print(f"RedBeat, the same entries and runs: {theirs:.0f} B per entry; ours with full history is "
              f"{total / theirs:.2f}x RedBeat's")
        if args.layouts:
            layouts(client, subject, workload, used)
    finally:
        server.stop()


if __name__ == "__main__":
    main()
