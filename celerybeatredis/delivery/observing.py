"""What the tools users watch Celery with see of each run beat sends: Sentry Crons' check-ins, an OpenTelemetry span.

Sentry's Celery integration (``monitor_beat_tasks=True``), like other
monitors, wraps Celery's ``Scheduler.apply_entry``: the wrapper sends the
"in progress" check-in and puts the monitor's headers on the entry, and the
worker reports "ok" or "error" from them. Beat sends its runs without
``apply_entry``, so when that method is wrapped each run is passed through it
(:func:`through_apply_entry`), the wrapper seeing the run as under Celery's
own scheduler. With an OpenTelemetry tracer provider set, each run is sent
within a span of its own (:func:`run_span`) naming the entry, the time it was
due and how late it is sent; the trace context rides in the message headers,
so the worker's task span is its child. Both need each message built by
Celery (:func:`observed`): the wrapper's headers and a trace context differ
from run to run. Neither library is imported unless the application loaded
it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from datetime import datetime, timezone
from importlib import import_module
from typing import Any

from celery.beat import ScheduleEntry, Scheduler
from kombu import Producer

#: The tracer's name, and the prefix of the span's attributes.
TRACER = "celerybeatredis"


def apply_entry_wrapped() -> bool:
    """Whether a library wrapped Celery's ``Scheduler.apply_entry`` (Sentry's Celery integration does)."""
    method = Scheduler.apply_entry
    return getattr(method, "__module__", "celery.beat") != "celery.beat" or hasattr(method, "__wrapped__")


def tracer() -> Any:
    """The OpenTelemetry tracer runs are traced with; None when the application set no tracer provider (the API's
    default one records nothing) or did not load OpenTelemetry."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    provider = trace.get_tracer_provider()
    if isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return None
    return provider.get_tracer(TRACER)


def observed() -> bool:
    """Whether each run's message must be built by Celery for what watches runs to see it (read once per run)."""
    return apply_entry_wrapped() or tracer() is not None


class _Relay:
    """Stands in for the scheduler in a call of ``Scheduler.apply_entry``: sends through the scheduler's
    ``apply_async`` and keeps its error, which Celery's ``apply_entry`` would only log."""

    def __init__(self, scheduler: Scheduler) -> None:
        self._scheduler = scheduler
        self.error: BaseException | None = None

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scheduler, name)

    def apply_async(self, entry: ScheduleEntry, producer: Producer | None = None, advance: bool = True,
                    **kwargs: Any) -> Any:
        try:
            return self._scheduler.apply_async(entry, producer=producer, advance=advance, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the caller sorts it (the broker's fault, or the entry's)
            self.error = exc
            return None


def through_apply_entry(scheduler: Scheduler, entry: ScheduleEntry, producer: Producer | None) -> None:
    """Send ``entry`` through ``Scheduler.apply_entry`` as it is now (wrapped), with ``scheduler``'s ``apply_async``.

    Raises:
        Exception: what ``apply_async`` raised (Celery's ``apply_entry`` would have logged and dropped it).
    """
    relay = _Relay(scheduler)
    Scheduler.apply_entry(relay, entry, producer=producer)
    if relay.error is not None:
        raise relay.error


def run_span(name: str, task: str, due: float, scheduled: str, now: datetime,
             headers: dict[str, Any], fire_time: str = "") -> Any:
    """A context in which entry ``name``'s run of ``task`` is sent, traced when a tracer provider is set: its span
    carries the run's scheduled time (``scheduled``, ISO-8601, for a run sent for a past time, else its slot before
    jitter, ``fire_time``, else ``due``, Unix seconds; 0 for a run-now or a run sent again) and how late ``now`` is
    after the time it was due (jitter included); its trace context is put in ``headers``."""
    found = tracer()
    if found is None:
        return nullcontext()
    return _traced(found, name, task, due, scheduled, now, headers, fire_time)


def _at(iso: str) -> datetime:
    when = datetime.fromisoformat(iso)
    return when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)


@contextmanager
def _traced(found: Any, name: str, task: str, due: float, scheduled: str, now: datetime,
            headers: dict[str, Any], fire_time: str) -> Iterator[None]:
    """:func:`run_span` with a tracer."""
    attributes: dict[str, Any] = {f"{TRACER}.entry": name, f"{TRACER}.task": task}
    due_at = _at(scheduled) if scheduled else (datetime.fromtimestamp(due, timezone.utc) if due > 0 else None)
    slot = _at(scheduled or fire_time) if scheduled or fire_time else due_at
    if slot is not None and due_at is not None:
        attributes[f"{TRACER}.scheduled_at"] = slot.isoformat()
        attributes[f"{TRACER}.lateness_seconds"] = max(0.0, (now - due_at).total_seconds())
    with found.start_as_current_span(f"beat run {name}", attributes=attributes):
        # Part of the API the tracer came from; replaced by the publish span's when Celery's instrumentation runs in beat.
        import_module("opentelemetry.propagate").inject(headers)
        yield
