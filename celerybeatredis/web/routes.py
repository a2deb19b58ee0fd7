"""The pages and actions: overview, entries, one entry, quarantine, add, login.

Reading pages are plain functions (Starlette runs them in its thread pool, as
the Redis client blocks); actions read their form, check the CSRF token, and
call :class:`~celerybeatredis.store.ScheduleStore` as the command line does.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from ..exceptions import CeleryBeatRedisError, EntryExists, EntryNotFound
from ..kinds import KINDS
from .app import Dashboard
from .auth import CSRF_FIELD, LOGIN_COOKIE, csrf_problem
from .forms import FORM_FIELDS, check_allowed, definition_from_form, definition_from_json, kind_flags, preview
from .queries import PAGE_SIZE, Filters, chart_bars, is_paused, kind_of, list_entries, overview


def entry_url(name: str, **extra: str) -> str:
    return "/entry?" + urlencode({"name": name, **extra})


def routes(dash: Dashboard) -> list[Route]:
    """Every route of the dashboard, bound to ``dash``."""

    def overview_page(request: Request) -> Response:
        view = overview(dash.store)
        bars, peak = chart_bars(view)
        return dash.render(request, "overview.html", view=view, bars=bars, peak=peak, alive=view.status.alive())

    def entries_page(request: Request) -> Response:
        params = request.query_params
        filters = Filters(**{k: params.get(k, "").strip() for k in Filters.__dataclass_fields__})
        try:
            cursor = int(params.get("cursor", "0"))
        except ValueError:
            cursor = 0
        listing = list_entries(dash.store, filters, cursor)
        next_url = "/entries?" + urlencode({**filters.query(), "cursor": listing.cursor}) if not listing.done else None
        return dash.render(request, "entries.html", listing=listing, filters=filters, kinds=list(KINDS), now=dash.now(),
                           next_url=next_url, first=cursor == 0, page_size=PAGE_SIZE, entry_url=entry_url,
                           total=dash.store.count(), is_paused=is_paused)

    def entry_page(request: Request, error: str | None = None, status_code: int = 200,
                   json_text: str | None = None) -> Response:
        name = request.query_params.get("name", "")
        try:
            entry = dash.store.get(name)
        except EntryNotFound:
            return dash.render(request, "missing.html", 404, name=name)
        fires: list[Any] = []
        fire_error = None
        try:
            fires = dash.store.next_runs(name, 10)
        except CeleryBeatRedisError as exc:
            fire_error = str(exc)
        history = dash.store.history(name, 20)
        doc = entry.definition or {}
        text = json_text if json_text is not None else (
            json.dumps(entry.definition, indent=2, ensure_ascii=False) if entry.definition is not None else entry.raw)
        return dash.render(request, "entry.html", status_code, entry=entry, doc=doc, fires=fires, fire_error=fire_error,
                           history=history, now=dash.now(), json_text=text, error=error, kind=kind_of(doc),
                           kinds=kind_flags(), form_fields=FORM_FIELDS, form_values=_form_values(doc),
                           done=request.query_params.get("done"), entry_url=entry_url, paused=is_paused(entry))

    async def guarded(request: Request) -> tuple[dict[str, str], Response | None]:
        form = {k: str(v) for k, v in (await request.form()).items()}
        problem = csrf_problem(request, form.get(CSRF_FIELD))
        return form, (PlainTextResponse(problem, 403) if problem else None)

    def action(change: Callable[[str, dict[str, str], str], str]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            form, refused = await guarded(request)
            if refused:
                return refused
            name = form.get("name", "")
            try:
                done = change(name, form, request.state.user)
            except EntryNotFound:
                return dash.render(request, "missing.html", 404, name=name)
            except CeleryBeatRedisError as exc:
                return entry_page(_with_name(request, name), error=str(exc), status_code=400,
                                  json_text=form.get("definition"))
            return RedirectResponse(form.get("next") or entry_url(name, done=done), 303)
        return endpoint

    def edit(name: str, form: dict[str, str], user: str) -> str:
        current = dash.store.get(name).definition
        doc = definition_from_form(form, current)
        check_allowed(dash.config.settings, name, doc)
        return "saved" if dash.store.replace(name, doc) else "unchanged"

    def edit_json(name: str, form: dict[str, str], user: str) -> str:
        doc = definition_from_json(form.get("definition", ""))
        check_allowed(dash.config.settings, name, doc)
        return "saved" if dash.store.replace(name, doc) else "unchanged"

    def enable(name: str, form: dict[str, str], user: str) -> str:
        check_allowed(dash.config.settings, name, dash.store.get(name).definition or {})
        return "enabled" if dash.store.enable(name) else "already enabled"

    def disable(name: str, form: dict[str, str], user: str) -> str:
        return "disabled" if dash.store.disable(name) else "already disabled"

    def pause(name: str, form: dict[str, str], user: str) -> str:
        reason = form.get("reason", "").strip()
        if not reason:
            raise CeleryBeatRedisError(f"entry {name!r}: a pause needs a reason")
        dash.store.pause(name, reason, by=f"web:{user}")
        return "paused"

    def resume(name: str, form: dict[str, str], user: str) -> str:
        dash.store.resume(name)
        return "resumed"

    def run_now(name: str, form: dict[str, str], user: str) -> str:
        dash.store.run_now(name)
        return "run requested"

    def delete_confirm(request: Request) -> Response:
        name = request.query_params.get("name", "")
        if not dash.store.exists(name):
            return dash.render(request, "missing.html", 404, name=name)
        return dash.render(request, "delete.html", name=name, entry_url=entry_url)

    async def delete(request: Request) -> Response:
        form, refused = await guarded(request)
        if refused:
            return refused
        name = form.get("name", "")
        try:
            dash.store.remove(name)
        except EntryNotFound:
            return dash.render(request, "missing.html", 404, name=name)
        return RedirectResponse("/entries?" + urlencode({"done": f"deleted {name}"}), 303)

    def quarantine_page(request: Request) -> Response:
        try:
            cursor = int(request.query_params.get("cursor", "0"))
        except ValueError:
            cursor = 0
        page = dash.store.invalid(cursor, PAGE_SIZE)
        entries = dash.store.find([item.name for item in page.items])
        rows = [(item, entry, json.dumps(entry.definition, indent=2, ensure_ascii=False)
                 if entry and entry.definition is not None else (entry.raw if entry else ""))
                for item, entry in zip(page.items, entries)]
        return dash.render(request, "quarantine.html", rows=rows, next_cursor=page.cursor, entry_url=entry_url,
                           total=dash.store.sharded.invalid_count(), done=request.query_params.get("done"))

    def add_page(request: Request, error: str | None = None, form: dict[str, str] | None = None,
                 status_code: int = 200) -> Response:
        values = form or {"kind": "interval", "enabled": "on"}
        return dash.render(request, "add.html", status_code, error=error, values=values, kinds=kind_flags(),
                           form_fields=FORM_FIELDS)

    async def add(request: Request) -> Response:
        form, refused = await guarded(request)
        if refused:
            return refused
        name = form.get("name", "").strip()
        try:
            doc = definition_from_form(form)
            check_allowed(dash.config.settings, name, doc)
            dash.store.add(name, doc)
        except EntryExists:
            return add_page(request, f"entry {name!r} exists; use --replace, or edit to change it", form, 400)
        except CeleryBeatRedisError as exc:
            return add_page(request, str(exc), form, 400)
        return RedirectResponse(entry_url(name, done="added"), 303)

    def preview_fragment(request: Request) -> Response:
        form = {k: str(v) for k, v in request.query_params.items()}
        try:
            doc = definition_from_form(form)
            times = preview(dash.store, form.get("name", "").strip(), doc, dash.store.server_time())
        except CeleryBeatRedisError as exc:
            return dash.render(request, "preview.html", error=str(exc), times=[])
        return dash.render(request, "preview.html", error=None, times=times, now=dash.now())

    def login_page(request: Request) -> Response:
        return dash.render(request, "login.html", error=None)

    async def login(request: Request) -> Response:
        form = {k: str(v) for k, v in (await request.form()).items()}
        problem = csrf_problem(request, form.get(CSRF_FIELD))
        if problem:
            return PlainTextResponse(problem, 403)
        auth = dash.config.auth
        if not auth.check_token(form.get("token", "")):
            return dash.render(request, "login.html", 401, error="wrong token")
        response = RedirectResponse("/", 303)
        response.set_cookie(LOGIN_COOKIE, auth.login_digest(), httponly=True, samesite="strict")
        return response

    return [
        Route("/", overview_page),
        Route("/entries", entries_page),
        Route("/entry", entry_page),
        Route("/entry/edit", action(edit), methods=["POST"]),
        Route("/entry/json", action(edit_json), methods=["POST"]),
        Route("/entry/enable", action(enable), methods=["POST"]),
        Route("/entry/disable", action(disable), methods=["POST"]),
        Route("/entry/pause", action(pause), methods=["POST"]),
        Route("/entry/resume", action(resume), methods=["POST"]),
        Route("/entry/run-now", action(run_now), methods=["POST"]),
        Route("/entry/delete", delete_confirm),
        Route("/entry/delete", delete, methods=["POST"]),
        Route("/quarantine", quarantine_page),
        Route("/add", add_page),
        Route("/add", add, methods=["POST"]),
        Route("/preview", preview_fragment),
        Route("/login", login_page),
        Route("/login", login, methods=["POST"]),
    ]


def _with_name(request: Request, name: str) -> Request:
    """``request`` as the entry page reads it: with ``name`` in its query string (an action's name is in its form)."""
    scope = dict(request.scope, query_string=urlencode({"name": name}).encode())
    clone = Request(scope, request.receive)
    clone.state.user, clone.state.csrf = request.state.user, request.state.csrf
    return clone


def _form_values(doc: dict[str, Any]) -> dict[str, str]:
    """The edit form's values for a definition (JSON fields as JSON text)."""
    values: dict[str, str] = {"task": str(doc.get("task", "")), "kind": kind_of(doc)}
    for field in FORM_FIELDS:
        value = doc.get(field.name)
        if value is None or value is False:
            continue
        values[field.name] = json.dumps(value, ensure_ascii=False) if field.flag_kind == "json" else (
            "on" if value is True else str(value))
    if doc.get("enabled", True) is not False:
        values["enabled"] = "on"
    return values


__all__ = ["HTMLResponse", "routes"]
