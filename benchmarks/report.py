"""Tables, the Markdown summary, JSON results and PNG plots of a benchmark run."""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from tests.support.redis_server import RedisServer

Results = dict[str, dict[int, dict[str, Any]]]
COLUMNS = (("ours", "celerybeat-redis"), ("redbeat", "RedBeat"), ("celery", "Celery Persistent"))


@dataclass(frozen=True)
class Figure:
    """One row kind of the table."""

    key: str
    label: str
    fmt: Callable[[float], str]
    higher_is_better: bool = True


def _rate(v: float) -> str:
    return f"{v:,.0f}"


def _one(v: float) -> str:
    return f"{v:,.1f}"


def _two(v: float) -> str:
    return f"{v:.2f}"


def _micros(v: float) -> str:
    return f"{v:,.0f}"


def _mb(v: float) -> str:
    return f"{v / 2**20:,.1f}"


FIGURES = (
    Figure("dispatch", "dispatch/s, 20% due at once, interval", _rate),
    Figure("dispatch_cpu_us", "  CPU us per dispatch: scheduler", _one, False),
    Figure("dispatch_redis_us", "  CPU us per dispatch: Redis", _one, False),
    Figure("dispatch_crontab", "dispatch/s, 20% due at once, crontab", _rate),
    Figure("dispatch_crontab_cpu_us", "  CPU us per dispatch: scheduler", _one, False),
    Figure("dispatch_crontab_redis_us", "  CPU us per dispatch: Redis", _one, False),
    Figure("e2e", "end to end dispatch/s, Redis broker", _rate),
    Figure("e2e_ratio", "end to end, x plain send_task loop", _two),
    Figure("e2e_two_ratio", "two beats, x one beat", _two),
    Figure("idle_trips", "idle tick: round trips", _two, False),
    Figure("idle_commands", "idle tick: Redis commands (incl. in Lua)", _one, False),
    Figure("idle_us", "idle tick: us", _micros, False),
    Figure("idle_trips_reconcile", "idle tick + reconciler step: round trips", _two, False),
    Figure("idle_us_reconcile", "idle tick + reconciler step: us", _micros, False),
    Figure("late_p50", "lateness p50, ms", _one, False),
    Figure("late_p99", "lateness p99, ms", _one, False),
    Figure("late_max", "lateness max, ms", _one, False),
    Figure("memory", "Redis memory per entry, bytes", _rate, False),
    Figure("insert", "bulk insert, entries/s", _rate),
    Figure("rss", "beat peak RSS, MB", _mb, False),
    Figure("startup", "beat start to first dispatch, s", _two, False),
)


def environment(server: RedisServer, args: argparse.Namespace, seconds: float) -> dict[str, Any]:
    """What the run ran on, and how it was started."""

    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "-"

    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "command": "python benchmarks/run.py " + " ".join(sys.argv[1:]),
        "sizes": args.sizes,
        "window_s": args.window,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "redis_server": _redis_version(server),
        "celery": version("celery"),
        "celery-redbeat": version("celery-redbeat"),
        "redis-py": version("redis"),
        "hiredis": version("hiredis"),
        "duration_s": round(seconds, 1),
    }


def _redis_version(server: RedisServer) -> str:
    import redis

    client = redis.Redis.from_url(server.url)
    try:
        return str(client.info("server")["redis_version"])
    finally:
        client.close()


def _get(results: Results, key: str, n: int, figure: str) -> float | None:
    value = results.get(key, {}).get(n, {}).get(figure)
    return None if value is None else float(value)


def rows(results: Results) -> list[list[str]]:
    """Table rows: figure, N, one column per scheduler, ours / RedBeat."""
    sizes = sorted({n for per in results.values() for n in per})
    out = []
    for fig in FIGURES:
        for n in sizes:
            values = [_get(results, key, n, fig.key) for key, _ in COLUMNS]
            if all(v is None for v in values):
                continue
            cells = [fig.fmt(v) if v is not None else "-" for v in values]
            ours, redbeat = values[0], values[1]
            ratio = f"{ours / redbeat:.2f}x" if ours is not None and redbeat else "-"
            out.append([fig.label, f"{n:,}", *cells, ratio])
    for n in sizes:
        plain = _get(results, "plain", n, "e2e")
        if plain is not None:
            out.append(["plain send_task loop, msgs/s", f"{n:,}", _rate(plain), "", "", ""])
    return out


HEADER = ["figure", "N", *(label for _, label in COLUMNS), "ours / RedBeat"]


def table(results: Results, meta: dict[str, Any]) -> str:
    """The results as a plain-text table."""
    body = rows(results)
    widths = [max(len(str(r[i])) for r in [HEADER, *body]) for i in range(len(HEADER))]
    lines = ["  ".join(str(c).rjust(w) if i else str(c).ljust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [HEADER, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    targets = "\n".join(f"[{'met' if ok else 'MISSED'}] {text}: {value}" for text, value, ok in check_targets(results))
    return "\n".join(lines) + "\n\n" + targets


def markdown(results: Results, meta: dict[str, Any]) -> str:
    """The Markdown summary: environment, table, targets."""
    lines = [
        "# Benchmark results",
        "",
        f"`{meta['command']}` on {meta['date']}: {meta['cpus']} CPUs, Python {meta['python']}, "
        f"Redis {meta['redis_server']}, Celery {meta['celery']}, celery-redbeat {meta['celery-redbeat']}, "
        f"redis-py {meta['redis-py']}, hiredis {meta['hiredis']}; took {meta['duration_s']:.0f} s.",
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join(["---"] * 2 + ["---:"] * (len(HEADER) - 2)) + "|",
    ]
    lines += ["| " + " | ".join(r) + " |" for r in rows(results)]
    lines += ["", "## Targets", ""]
    lines += [f"- {'met' if ok else '**missed**'}: {text}: {value}" for text, value, ok in check_targets(results)]
    lines += ["", "Plots: `throughput.png` (dispatch/s vs N), `lateness.png` (publish time minus due time).", ""]
    return "\n".join(lines)


def check_targets(results: Results) -> list[tuple[str, str, bool]]:
    """Each target of the project with the measured value and whether it was met."""
    out: list[tuple[str, str, bool]] = []
    ours = results.get("ours", {})
    sizes = sorted(ours)
    if not sizes:
        return out
    small, large = sizes[0], sizes[-1]

    def add(text: str, value: float | None, ok: Callable[[float], bool], fmt: str = "{:,.2f}") -> None:
        if value is not None:
            out.append((text, fmt.format(value), ok(value)))

    for n in sizes:
        mine, theirs = _get(results, "ours", n, "dispatch"), _get(results, "redbeat", n, "dispatch")
        if mine is not None and theirs:
            add(f"dispatch >= 10x RedBeat at N={n:,}", mine / theirs, lambda v: v >= 10, "{:.1f}x")
    add(f"dispatch >= 50,000/s at N={large:,}", _get(results, "ours", large, "dispatch"), lambda v: v >= 50_000, "{:,.0f}/s")
    for n in sizes:
        add(f"end to end >= 0.8x plain send_task loop at N={n:,}", _get(results, "ours", n, "e2e_ratio"), lambda v: v >= 0.8, "{:.2f}x")
        add(f"two beats >= 1.5x one at N={n:,}", _get(results, "ours", n, "e2e_two_ratio"), lambda v: v >= 1.5, "{:.2f}x")
    for n in sizes:
        add(f"idle tick <= 2 round trips (with reconciler step) at N={n:,}",
            _get(results, "ours", n, "idle_trips_reconcile"), lambda v: v <= 2, "{:.2f}")
    small_us, large_us = _get(results, "ours", small, "idle_us"), _get(results, "ours", large, "idle_us")
    if small_us and large_us is not None and large != small:
        add(f"idle tick costs the same at N={large:,} as at N={small:,} (us ratio)", large_us / small_us, lambda v: v <= 1.25, "{:.2f}x")
        small_c, large_c = _get(results, "ours", small, "idle_commands"), _get(results, "ours", large, "idle_commands")
        if small_c is not None and large_c is not None:
            add(f"idle tick Redis commands at N={large:,} equal N={small:,}", large_c - small_c, lambda v: abs(v) < 0.5, "{:+.1f}")
    add(f"lateness p99 <= 50 ms at N={large:,}", _get(results, "ours", large, "late_p99"), lambda v: v <= 50, "{:.1f} ms")
    for n in sizes:
        mine, theirs = _get(results, "ours", n, "memory"), _get(results, "redbeat", n, "memory")
        if mine is not None and theirs:
            add(f"memory per entry <= 0.5x RedBeat at N={n:,}", mine / theirs, lambda v: v <= 0.5, "{:.2f}x")
    for n in sizes:
        add(f"bulk insert >= 50,000/s at N={n:,}", _get(results, "ours", n, "insert"), lambda v: v >= 50_000, "{:,.0f}/s")
    small_rss, large_rss = _get(results, "ours", small, "rss"), _get(results, "ours", large, "rss")
    if small_rss is not None and large_rss is not None and large != small:
        add(f"beat RSS at N={large:,} within 10 MB of N={small:,}", (large_rss - small_rss) / 2**20, lambda v: v <= 10, "{:+.1f} MB")
    add(f"startup to first dispatch <= 1 s at N={large:,}", _get(results, "ours", large, "startup"), lambda v: v <= 1.0, "{:.2f} s")
    return out


def plot(results: Results, out: Path) -> list[Path]:
    """``throughput.png`` and ``lateness.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=80)
    for key, label in COLUMNS:
        per = results.get(key, {})
        for figure, style, kind in (("dispatch", "-o", "interval"), ("dispatch_crontab", "--s", "crontab")):
            points = sorted((n, v[figure]) for n, v in per.items() if figure in v)
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], style, label=f"{label} ({kind})")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("entries in the schedule (N)")
    ax.set_ylabel("due entries dispatched per second")
    ax.set_title("Dispatch throughput, 20% of N due at once (publish stubbed)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    paths.append(out / "throughput.png")
    fig.savefig(paths[-1])
    plt.close(fig)

    bars = [(label, n, v) for key, label in COLUMNS for n, v in sorted(results.get(key, {}).items()) if "late_p50" in v]
    if bars:
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=80)
        width = 0.27
        for j, (stat, name) in enumerate((("late_p50", "p50"), ("late_p99", "p99"), ("late_max", "max"))):
            xs = [i + (j - 1) * width for i in range(len(bars))]
            ax.bar(xs, [max(v[stat], 0.01) for _, _, v in bars], width, label=name)
        ax.set_xticks(range(len(bars)))
        ax.set_xticklabels([f"{label}\nN={n:,}" for label, n, _ in bars], fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("publish time - due time, ms")
        ax.set_title("Dispatch lateness, 10k entries due over the window")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out / "lateness.png")
        fig.savefig(paths[-1])
        plt.close(fig)
    return paths


def write(results: Results, meta: dict[str, Any], out: Path) -> list[Path]:
    """``results.json``, ``results.md`` and the plots, in ``out``."""
    data = {"meta": meta, "results": {k: {str(n): v for n, v in per.items()} for k, per in results.items()},
            "targets": [{"target": t, "value": v, "met": ok} for t, v, ok in check_targets(results)]}
    json_path = out / "results.json"
    json_path.write_text(json.dumps(_rounded(data), indent=1, sort_keys=True) + "\n", encoding="utf-8")
    md_path = out / "results.md"
    md_path.write_text(markdown(results, meta), encoding="utf-8")
    return [json_path, md_path, *plot(results, out)]


def _rounded(value: Any) -> Any:
    """``value`` with floats cut to four significant digits after the point, to keep the file small."""
    if isinstance(value, float):
        return round(value, 4)
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    return value
