"""The headers beat puts on a run's task message: which entry sent it, which run it is, the report asked for.

A task reads them as ``self.request.<header>``. The worker integration
(:mod:`celerybeatredis.worker`) reads the report headers: a module of their
own, so a worker does not load the publisher for their names.
"""

from __future__ import annotations

#: The message header naming the entry that sent a task (the name django-celery-beat uses).
HEADER = "periodic_task_name"
#: The header giving the ISO-8601 time a run was due, on a run sent for a past time (catch-up ``all``, backfill).
SCHEDULED = "periodic_task_scheduled_at"
#: The header giving the ISO-8601 UTC time the schedule gave for a run (its slot, before jitter), on every run.
FIRE_TIME = "periodic_task_fire_time"
#: The header giving a run's fire id, on every run: its task id, the same for every send of the run (a re-send after
#: a beat died, a retry), so a task can tell a run it already did.
FIRE_ID = "periodic_task_fire_id"
#: The header telling the worker integration where a run's history record is: ``"<stamp> <hash tag>"`` (the record's
#: batch stamp, the entry's shard); absent with history off.
RUN = "periodic_task_run"
#: The header asking the worker integration to report a run: ``{"tag": the entry's shard's hash tag, "overlap": its
#: run has a marker, "failures": pause_after_failures or 0}``; absent when nothing is to report.
REPORT = "periodic_task_report"
#: The headers beat sets on every run besides the entry's name, which the fast paths fill in per run.
PER_RUN = (FIRE_TIME, FIRE_ID, RUN)
