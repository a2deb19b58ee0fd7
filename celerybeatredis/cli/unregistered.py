"""Task names checked against the Celery app's tasks by ``celery -A proj schedule add`` / ``edit`` and ``show``.

Only the Celery subcommand knows an app; the plain ``celerybeatredis``
script cannot check. An app that registers tasks of its own refuses a name it
does not register (``--allow-unregistered`` writes it anyway: the workers
may register tasks the app does not import); an app with none of its own
cannot tell, and refuses nothing (:mod:`~celerybeatredis.definitions.tasknames`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from ..definitions.tasknames import task_names
from ..exceptions import InvalidDefinition
from .base import Context

F = TypeVar("F", bound=Callable[..., Any])

ALLOW_FLAG = "--allow-unregistered"


def allow_unregistered_option(func: F) -> F:
    """``--allow-unregistered``: write a task name the app does not register."""
    return click.option(ALLOW_FLAG, "allow_unregistered", is_flag=True,
                        help="Write a task name the app does not register (celery -A proj schedule checks names "
                             "against the app's tasks).")(func)


def task_problem(obj: Context, task: object) -> str | None:
    """Why ``task`` is not a task of the command's app; None without an app, or when it is (or the app cannot tell)."""
    return task_names(obj.app).problem(task) if obj.app is not None else None


def check_task(obj: Context, name: str, task: object, allow: bool, before: object = None) -> None:
    """Refuse writing entry ``name`` with a ``task`` the app does not register, unless ``allow`` or the entry already
    names it (``before``): a one-line error naming the entry, ``task`` and the nearest registered name."""
    if allow or task == before:
        return
    problem = task_problem(obj, task)
    if problem:
        raise click.ClickException(InvalidDefinition("task", f"{problem}; {ALLOW_FLAG} writes it anyway", name).reason)
