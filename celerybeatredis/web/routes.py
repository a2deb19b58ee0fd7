"""Which URL does what: the reading pages (pages.py) on GET, the writes (actions.py) on POST."""

from __future__ import annotations

from starlette.routing import Route

from .actions import Actions
from .dashboard import Dashboard
from .pages import Pages


def routes(dash: Dashboard) -> list[Route]:
    """Every route of the dashboard, bound to ``dash``."""
    pages = Pages(dash)
    act = Actions(dash, pages)
    return [
        Route("/", pages.overview),
        Route("/entries", pages.entries),
        Route("/entry", pages.entry),
        Route("/entry/edit", act.on_entry(act.edit, keeps="form"), methods=["POST"]),
        Route("/entry/json", act.on_entry(act.edit_json, keeps="json"), methods=["POST"]),
        Route("/entry/enable", act.on_entry(act.enable), methods=["POST"]),
        Route("/entry/disable", act.on_entry(act.disable), methods=["POST"]),
        Route("/entry/pause", act.on_entry(act.pause), methods=["POST"]),
        Route("/entry/resume", act.on_entry(act.resume), methods=["POST"]),
        Route("/entry/run-now", act.on_entry(act.run_now), methods=["POST"]),
        Route("/entry/delete", pages.delete),
        Route("/entry/delete", act.delete, methods=["POST"]),
        Route("/quarantine", pages.quarantine),
        Route("/add", pages.add),
        Route("/add", act.add, methods=["POST"]),
        Route("/preview", pages.preview),
        Route("/login", pages.login),
        Route("/login", act.login, methods=["POST"]),
    ]


__all__ = ["routes"]
