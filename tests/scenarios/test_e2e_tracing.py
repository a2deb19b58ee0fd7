"""OpenTelemetry: with a tracer provider in beat, each run beat sends has a span naming its entry, the time it was due
and how late it was sent; with opentelemetry-instrumentation-celery in the worker, the task's span is in its trace,
below it (below the publish span when beat has the instrumentation too, else right below it).

Beat and worker are real processes exporting their spans to one file (a ``SpanExporter`` of the test's).
"""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from celery.schedules import schedule

from celerybeatredis.store import ScheduleStore

from ..support.processes import CeleryProcess, own_queue, wait_until, write_app

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

TRACED_APP = """
    import json as _json
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

    class SpanFile(SpanExporter):
        def export(self, spans):
            with open({spans!r}, "a") as out:
                for s in spans:
                    out.write(_json.dumps({{
                        "name": s.name, "trace": s.context.trace_id, "span": s.context.span_id,
                        "parent": s.parent.span_id if s.parent else None, "attributes": dict(s.attributes),
                        "start": s.start_time}}) + "\\n")
            return SpanExportResult.SUCCESS

    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(SpanFile()))
    trace.set_tracer_provider(provider)
    if "beat" not in __import__("sys").argv or {instrument_beat}:  # else beat loads the SDK alone
        from opentelemetry.instrumentation.celery import CeleryInstrumentor

        CeleryInstrumentor().instrument()

    @app.task(name="obs.ok")
    def ok():
        return "fine"
"""


def spans(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.mark.parametrize("instrument_beat", [True, False], ids=["instrumented-beat", "sdk-only-beat"])
def test_a_runs_span_names_its_entry_due_time_and_lateness_and_the_workers_task_span_is_below_it(
        tmp_path: Path, redis_url: str, prefix: str, instrument_beat: bool) -> None:
    path = tmp_path / "spans.jsonl"
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix,
              extra=own_queue(prefix, TRACED_APP.format(spans=str(path), instrument_beat=instrument_beat)))
    ScheduleStore.from_url(f"{redis_url}/0", prefix).add("traced", "obs.ok", schedule(1))
    worker, beat = CeleryProcess.worker(tmp_path), CeleryProcess.beat(tmp_path)

    def lineages() -> list[list[dict[str, Any]]]:
        """Each worker task span with its ancestors up to a span of beat's, nearest first."""
        found = spans(path)
        by_id = {s["span"]: s for s in found}
        out = []
        for run in (s for s in found if s["name"] == "run/obs.ok"):
            line = [run]
            while line[-1]["parent"] in by_id and not line[-1]["name"].startswith("beat run"):
                line.append(by_id[line[-1]["parent"]])
            if line[-1]["name"].startswith("beat run"):
                out.append(line)
        return out

    try:
        line = wait_until(lineages, timeout=30, what="a task span below a run's span")[0]
    finally:
        beat.stop()
        worker.stop()
    names = [s["name"] for s in line]
    if instrument_beat:
        assert names == ["run/obs.ok", "apply_async/obs.ok", "beat run traced"]
    else:
        assert names == ["run/obs.ok", "beat run traced"]
    assert len({s["trace"] for s in line}) == 1
    own = line[-1]
    attributes = own["attributes"]
    assert attributes["celerybeatredis.entry"] == "traced"
    assert attributes["celerybeatredis.task"] == "obs.ok"
    due = datetime.fromisoformat(attributes["celerybeatredis.scheduled_at"])
    lateness = attributes["celerybeatredis.lateness_seconds"]
    assert 0 <= lateness < 5
    assert abs(own["start"] / 1e9 - due.timestamp() - lateness) < 5
