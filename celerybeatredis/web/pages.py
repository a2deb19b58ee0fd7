"""The reading pages: overview, entries, one entry, quarantine, the add form and its preview, login.

Plain functions to Starlette, which runs them in its thread pool (the Redis
client blocks); each reads with bounded commands (see queries.py).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from ..definitions.kinds import KINDS
from ..definitions.labels import shown as labels_shown
from ..definitions.tasknames import task_names
from ..exceptions import CeleryBeatRedisError, EntryNotFound
from ..managing.display import outcome_fields
from .dashboard import Dashboard
from .forms import FORM_FIELDS, definition_from_form, kind_flags, preview
from .queries import PAGE_SIZE, Filters, chart_bars, is_paused, kind_of, list_entries, overview


def entry_url(name: str, **extra: str) -> str:
    """The entry page's URL (names go in the query string: they may hold any character)."""
    return "/entry?" + urlencode({"name": name, **extra})


#: Scan cursors Redis takes: HSCAN's are unsigned 64-bit, and a sharded scan's cursor also holds the shard.
_CURSOR_LIMIT = 2**64


class BadCursor(CeleryBeatRedisError):
    """A ``cursor`` in a listing's URL that no "Next page" link made: answered with 400 and this one line."""


def _cursor(request: Request, shards: int) -> int:
    """The page's ``cursor`` (0 when absent), as the "Next page" links write it.

    Raises:
        BadCursor: not a whole number from 0 up to what a scan over ``shards`` shards can hand back.
    """
    text = request.query_params.get("cursor", "0").strip() or "0"
    if not text.isascii() or not text.isdigit() or int(text) >= _CURSOR_LIMIT * shards:
        raise BadCursor(f"cursor {text[:40]!r} is not a page cursor (a whole number from 0, as a Next page link "
                        "gives); start again from the first page")
    return int(text)


class Pages:
    """The pages that only read, bound to one dashboard."""

    def __init__(self, dash: Dashboard) -> None:
        self.dash = dash

    def overview(self, request: Request) -> Response:
        view = overview(self.dash.store)
        bars, peak = chart_bars(view)
        axis = [f"{datetime.fromtimestamp(view.start.timestamp() + hour * 3600, timezone.utc):%H:%M}" for hour in range(0, 25, 3)]
        return self.dash.render(request, "overview.html", view=view, bars=bars, peak=peak, alive=view.status.alive(),
                                axis=axis)

    def entries(self, request: Request) -> Response:
        params = request.query_params
        filters = Filters(**{k: params.get(k, "").strip() for k in Filters.__dataclass_fields__})
        cursor = _cursor(request, self.dash.store.shards)
        listing = list_entries(self.dash.store, filters, cursor)
        next_url = "/entries?" + urlencode({**filters.query(), "cursor": listing.cursor}) if not listing.done else None
        return self.dash.render(request, "entries.html", listing=listing, filters=filters, kinds=list(KINDS),
                                now=self.dash.now(), next_url=next_url, first=cursor == 0, page_size=PAGE_SIZE,
                                entry_url=entry_url, total=self.dash.store.count())

    def entry(self, request: Request, name: str | None = None, error: str | None = None, status_code: int = 200,
              typed: Typed | None = None, changed: bool = False) -> Response:
        """The entry page; a save that failed shows it again with its ``error`` and what was ``typed`` kept.

        The forms carry the version of the entry they show. A refused save
        keeps the version the user's input was made from; a save refused
        because the entry ``changed`` meanwhile shows the stored definition
        beside the user's input and carries its version, so saving again
        writes over it knowingly.
        """
        store = self.dash.store
        name = request.query_params.get("name", "") if name is None else name
        try:
            entry = store.get(name)
        except EntryNotFound:
            return self.missing(request, name)
        stored_text = json.dumps(entry.definition, indent=2, ensure_ascii=False) if entry.definition is not None else entry.raw
        version = typed.version if typed is not None and typed.version and not changed else entry.version
        fires: list[Any] = []
        fire_error = None
        try:
            fires = store.next_runs(name, 10)
        except CeleryBeatRedisError as exc:
            fire_error = str(exc)
        doc = entry.definition or {}
        json_text = typed.json_text if typed is not None and typed.json_text is not None else stored_text
        values = typed.form if typed is not None and typed.form is not None else form_values(doc)
        history = store.history(name, 20)
        return self.dash.render(
            request, "entry.html", status_code, entry=entry, doc=doc, fires=fires, fire_error=fire_error,
            history=history, outcomes=outcome_fields(history), now=self.dash.now(), json_text=json_text, error=error, kinds=kind_flags(),
            form_fields=FORM_FIELDS, form_values=values, done=None if error else request.query_params.get("done"),
            entry_url=entry_url, paused=is_paused(entry), version=version, stored_text=stored_text if changed else None,
            task_warning=task_names(store.codec.app).problem(entry.task))

    def missing(self, request: Request, name: str) -> Response:
        return self.dash.render(request, "missing.html", 404, name=name)

    def delete(self, request: Request) -> Response:
        name = request.query_params.get("name", "")
        if not self.dash.store.exists(name):
            return self.missing(request, name)
        return self.dash.render(request, "delete.html", name=name, entry_url=entry_url)

    def quarantine(self, request: Request) -> Response:
        store = self.dash.store
        page = store.invalid(_cursor(request, store.shards), PAGE_SIZE)
        entries = store.find([item.name for item in page.items])
        rows = [(item, entry, json.dumps(entry.definition, indent=2, ensure_ascii=False)
                 if entry and entry.definition is not None else (entry.raw if entry else ""))
                for item, entry in zip(page.items, entries)]
        return self.dash.render(request, "quarantine.html", rows=rows, next_cursor=page.cursor, entry_url=entry_url,
                                total=store.sharded.across.invalid_count(), done=request.query_params.get("done"))

    def add(self, request: Request, error: str | None = None, form: dict[str, str] | None = None,
            status_code: int = 200) -> Response:
        values = form or {"kind": "interval", "enabled": "on"}
        return self.dash.render(request, "add.html", status_code, error=error, values=values, kinds=kind_flags(),
                                form_fields=FORM_FIELDS)

    def preview(self, request: Request) -> Response:
        """The add form's next five fire times, as an HTML fragment app.js puts in place (400: why there are none)."""
        form = {k: str(v) for k, v in request.query_params.items()}
        try:
            doc = definition_from_form(form)
            times = preview(self.dash.store, form.get("name", "").strip(), doc, self.dash.store.server_time())
        except (CeleryBeatRedisError, ValueError) as exc:  # ValueError: a schedule that fails as its times are worked out
            return self.dash.render(request, "preview.html", 400, error=refusal(exc, form.get("name", "").strip() or "new-entry"),
                                    times=[])
        return self.dash.render(request, "preview.html", error=None, times=times)

    def login(self, request: Request, error: str | None = None, status_code: int = 200) -> Response:
        return self.dash.render(request, "login.html", status_code, error=error)


@dataclass(frozen=True)
class Typed:
    """What a user sent with a save that was refused, shown again to fix: the JSON editor's text or the edit
    form's values, and the version of the entry they were made from."""

    version: str
    json_text: str | None = None
    form: dict[str, str] | None = None


def refusal(exc: Exception, name: str) -> str:
    """A refused preview in one line: the store's own message, or a plain ``ValueError`` of Celery's naming the entry."""
    if isinstance(exc, CeleryBeatRedisError):
        return str(exc)
    return f"entry {name!r}: {' '.join(str(exc).split())}"


def form_values(doc: dict[str, Any]) -> dict[str, str]:
    """The edit form's values for a definition: its kind, its task, its fields (JSON ones as JSON text)."""
    values: dict[str, str] = {"task": str(doc.get("task", "")), "kind": kind_of(doc)}
    for field in FORM_FIELDS:
        value = doc.get(field.name)
        if value is None or value is False:
            continue
        if field.flag_kind == "pairs" and isinstance(value, dict):
            values[field.name] = labels_shown(value)
            continue
        values[field.name] = json.dumps(value, ensure_ascii=False) if field.flag_kind == "json" else (
            "on" if value is True else str(value))
    if doc.get("enabled", True) is not False:
        values["enabled"] = "on"
    return values
