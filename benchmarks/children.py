"""Code the benchmarks' child processes share: the timed tick loop, run as source in each child (the child may run
another checkout's package, so it is text to execute rather than a function to import)."""

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
