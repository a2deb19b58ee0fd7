"""Beat's warning of entries whose task its app does not register: once per entry and task name, not every run.

Beat sends such an entry's runs all the same (its workers may register tasks
it does not import); see :mod:`~celerybeatredis.definitions.tasknames` for
when an app can tell.
"""

from __future__ import annotations

from celery import Celery

from ..definitions.tasknames import task_names
from ..observe.log import logger


class UnregisteredTasks:
    """Called with each admitted entry's name and task; logs a WARNING the first time an entry names a task ``app``
    does not register."""

    def __init__(self, app: Celery) -> None:
        self.names = task_names(app)
        #: ``(entry, task)`` pairs already reported by this process.
        self.reported: set[tuple[str, str]] = set()

    def __call__(self, entry: str, task: str) -> None:
        try:
            if task in self.names.tasks or (entry, task) in self.reported:
                return
            self.reported.add((entry, task))
            problem = self.names.problem(task)
        except Exception:  # a warning must never keep an entry from running
            logger.debug("beat: cannot read the app's tasks", exc_info=True)
            return
        if problem:
            logger.warning("beat: entry %r: field 'task': %s; a worker that does not register it drops each run "
                           "(said once per entry)", entry, problem)
