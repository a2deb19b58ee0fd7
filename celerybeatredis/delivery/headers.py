"""The headers beat puts on a run's task message: which entry sent it, the time it was due, the report asked for.

A task reads them as ``self.request.<header>``. The worker integration
(:mod:`celerybeatredis.worker`) reads the report header: a module of their
own, so a worker does not load the publisher for their names.
"""

from __future__ import annotations

#: The message header naming the entry that sent a task (the name django-celery-beat uses).
HEADER = "periodic_task_name"
#: The header giving the ISO-8601 time a run was due, on a run sent for a past time (catch-up ``all``, backfill).
SCHEDULED = "periodic_task_scheduled_at"
#: The header asking the worker integration to report a run: ``{"tag": the entry's shard's hash tag, "overlap": its
#: run has a marker, "failures": pause_after_failures or 0}``; absent when nothing is to report.
REPORT = "periodic_task_report"
