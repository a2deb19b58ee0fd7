"""Task names checked against the tasks a Celery app registers, where the app is known.

An entry's ``task`` is only a name: beat sends it whether or not any worker
knows it, and a worker that does not drops each run with "Received
unregistered task". Where an app is at hand (``celery -A proj schedule``, the
dashboard started with it, beat), a name it does not register is reported
with the nearest one it does. An app that registers no task of its own
(beyond Celery's ``celery.*``), such as a beat that does not import the
tasks, cannot tell: nothing is reported then.
"""

from __future__ import annotations

import weakref
from typing import Any

from celery import Celery

from .checks import nearest

#: Celery's own tasks, registered in every app.
CELERY_TASKS = "celery."


class TaskNames:
    """The task names ``app`` registers, its default modules (``imports``, ``include``, autodiscovery) imported
    first, as a worker imports them."""

    def __init__(self, app: Celery) -> None:
        self.app = app
        self._tasks: Any = None

    @property
    def tasks(self) -> Any:
        """The app's task registry (a mapping of names), its modules imported on first use."""
        if self._tasks is None:
            try:
                self.app.loader.import_default_modules()
            except Exception:  # noqa: BLE001 - a module that fails to import leaves the tasks it would register out
                pass
            self._tasks = self.app.tasks
        return self._tasks

    def own(self) -> list[str]:
        """The names the app registers beyond Celery's own, sorted."""
        return sorted(name for name in self.tasks if not name.startswith(CELERY_TASKS))

    def problem(self, task: object) -> str | None:
        """Why ``task`` is not a name the app registers, with the nearest one it does; None if it is, or if the app
        registers no task of its own (it cannot tell)."""
        if not isinstance(task, str) or not task or task in self.tasks:
            return None
        own = self.own()
        if not own:
            return None
        return f"{task!r} is not a task the app registers (nearest: {nearest(task, own, cutoff=0.0)!r})"


_NAMES: weakref.WeakKeyDictionary[Celery, TaskNames] = weakref.WeakKeyDictionary()


def task_names(app: Celery) -> TaskNames:
    """The :class:`TaskNames` of ``app``, made once per app (its modules are imported once)."""
    names = _NAMES.get(app)
    if names is None:
        names = _NAMES[app] = TaskNames(app)
    return names
