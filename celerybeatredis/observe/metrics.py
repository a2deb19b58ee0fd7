"""``/metrics``: beat's own counters (:class:`~.stats.BeatStats`) and the schedule's gauges, for Prometheus.

Imported only when ``redis_scheduler_http`` is set: it needs ``prometheus_client``
(the ``metrics`` extra). Everything is read at scrape time by one collector, so
beat's loop never touches ``prometheus_client``. Series are labelled by the
schedule's tag, never by entry name: a schedule of a million entries stays a
few dozen series.
"""

from __future__ import annotations

from collections.abc import Iterator

import redis
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from ..storage.sharded_store import ShardedStore
from .log import logger
from .stats import OUTCOMES, BeatStats, Histogram
from .status import schedule_status

#: Every metric name /metrics serves (histograms and counters as declared, before the _bucket/_total suffixes).
METRIC_NAMES = (
    "celerybeatredis_runs", "celerybeatredis_publish_errors", "celerybeatredis_dispatch_lateness_seconds",
    "celerybeatredis_tick_duration_seconds", "celerybeatredis_lua_duration_seconds", "celerybeatredis_last_tick_age_seconds",
    "celerybeatredis_due_backlog", "celerybeatredis_entries", "celerybeatredis_quarantined_entries",
    "celerybeatredis_beats_alive", "celerybeatredis_run_results", "celerybeatredis_run_runtime_seconds",
)

#: The words of the result letters the worker integration counts in ``{T}:outcomes`` (storage/history.py, RESULTS).
RESULT_WORDS = {"k": "succeeded", "f": "failed", "r": "retried", "v": "revoked"}


class BeatCollector(Collector):
    """Builds every series from ``stats`` and, for the gauges of the schedule, a few reads of ``store``."""

    def __init__(self, stats: BeatStats, store: ShardedStore) -> None:
        self.stats = stats
        self.store = store
        self.tag = store.tag

    def collect(self) -> Iterator[Metric]:
        stats, tag = self.stats, [self.tag]
        runs = CounterMetricFamily("celerybeatredis_runs", "Runs this beat handled, by outcome: sent, reverted "
                                   "(put back unsent), quarantined.", labels=["schedule", "outcome"])
        for outcome in OUTCOMES:
            runs.add_metric([self.tag, outcome], stats.runs[outcome])
        yield runs
        errors = CounterMetricFamily("celerybeatredis_publish_errors", "Sends to the broker that failed.", labels=["schedule"])
        errors.add_metric(tag, stats.publish_errors)
        yield errors
        yield _histogram("celerybeatredis_dispatch_lateness_seconds", "Seconds from a run's due time to its send.",
                         {(self.tag,): stats.lateness}, ["schedule"])
        yield _histogram("celerybeatredis_tick_duration_seconds", "Seconds one tick of beat took.",
                         {(self.tag,): stats.tick}, ["schedule"])
        yield _histogram("celerybeatredis_lua_duration_seconds", "Seconds a Lua script call took, round trip included.",
                         {(self.tag, name): h for name, h in list(stats.lua.items())}, ["schedule", "script"])
        if stats.last_tick is not None:
            age = GaugeMetricFamily("celerybeatredis_last_tick_age_seconds", "Seconds since this beat's last tick ended.",
                                    labels=["schedule"])
            age.add_metric(tag, stats.clock() - stats.last_tick)
            yield age
        yield from self.schedule_gauges()

    def schedule_gauges(self) -> Iterator[Metric]:
        """Gauges read from Redis; left out (and logged) while Redis cannot be reached."""
        try:
            status = schedule_status(self.store)
        except redis.RedisError as exc:
            logger.warning("beat: /metrics could not read the schedule's gauges from Redis: %s", exc)
            return
        for name, doc, value in (
            ("celerybeatredis_due_backlog", "Entries past due now, not sent yet.", status.due_backlog),
            ("celerybeatredis_entries", "Entries in the schedule.", status.entries),
            ("celerybeatredis_quarantined_entries", "Entries quarantined (see `celerybeatredis invalid`).", status.quarantined),
            ("celerybeatredis_beats_alive", "Beats whose heartbeat is at most 30 s old.", len(status.alive())),
        ):
            gauge = GaugeMetricFamily(name, doc, labels=["schedule"])
            gauge.add_metric([self.tag], value)
            yield gauge
        yield from self.results()

    def results(self) -> Iterator[Metric]:
        """Runs the worker integration reported, by result, and their runtime: counted by every worker in Redis."""
        try:
            counts = self.store.outcome_counts()
        except redis.RedisError as exc:
            logger.warning("beat: /metrics could not read the run results from Redis: %s", exc)
            return
        results = CounterMetricFamily("celerybeatredis_run_results", "Runs the worker integration reported, by "
                                      "result (celerybeatredis.worker in the workers' imports).", labels=["schedule", "result"])
        for letter, word in RESULT_WORDS.items():
            results.add_metric([self.tag, word], counts.get(letter, 0))
        yield results
        runtime = CounterMetricFamily("celerybeatredis_run_runtime_seconds", "Seconds the reported runs took, summed.",
                                      labels=["schedule"])
        runtime.add_metric([self.tag], counts.get("ms", 0) / 1000)
        yield runtime


def _histogram(name: str, doc: str, series: dict[tuple[str, ...], Histogram], labels: list[str]) -> Metric:
    family = HistogramMetricFamily(name, doc, labels=labels)
    for values, histogram in series.items():
        counts, total, buckets = list(histogram.counts), 0, []
        for bound, count in zip((*map(str, histogram.bounds), "+Inf"), counts):
            total += count
            buckets.append((bound, float(total)))
        family.add_metric(list(values), buckets, histogram.sum)
    return family


def registry(stats: BeatStats, store: ShardedStore) -> CollectorRegistry:
    """A registry of its own holding beat's collector (not the global one: two schedulers in a process do not clash)."""
    found = CollectorRegistry(auto_describe=False)
    found.register(BeatCollector(stats, store))
    return found
