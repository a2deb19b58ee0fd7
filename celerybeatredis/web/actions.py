"""The writes: each reads its form, checks the CSRF token, and calls the store as the command line does.

An action that fails shows its page again with the error in the command
line's words, and changes nothing; one that succeeds redirects (303) to the
page that shows its effect. The Redis calls run in the thread pool, as the
pages' do, so a slow one holds up no other request.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response

from ..exceptions import CeleryBeatRedisError, EntryChanged, EntryExists, EntryNotFound
from .auth import CSRF_FIELD, LOGIN_COOKIE, csrf_problem
from .dashboard import Dashboard
from .forms import check_allowed, definition_from_form, definition_from_json
from .pages import Pages, Typed, entry_url

Form = dict[str, str]
Change = Callable[[str, Form, str], str]


def _typed(form: Form, keeps: str | None) -> Typed | None:
    """What the user sent from the form ``keeps`` names, to show again if the save is refused."""
    if keeps == "json":
        return Typed(version=form.get("version", ""), json_text=form.get("definition", ""))
    if keeps == "form":
        return Typed(version=form.get("version", ""), form=form)
    return None


def _local_path(target: str | None) -> str | None:
    """``target`` if it is a path of this site (never ``//host`` or a URL elsewhere), else None."""
    return target if target and target.startswith("/") and not target.startswith("//") and "\\" not in target else None


class Actions:
    """The POST endpoints, bound to one dashboard."""

    def __init__(self, dash: Dashboard, pages: Pages) -> None:
        self.dash = dash
        self.pages = pages

    async def _form(self, request: Request) -> tuple[Form, Response | None]:
        """The form, and a 403 to send instead when its CSRF token does not hold."""
        form = {k: str(v) for k, v in (await request.form()).items()}
        problem = csrf_problem(request, form.get(CSRF_FIELD))
        return form, (PlainTextResponse(problem, 403) if problem else None)

    def on_entry(self, change: Change, keeps: str | None = None) -> Callable[[Request], Awaitable[Response]]:
        """An endpoint applying ``change(name, form, user)`` to the form's entry; it returns what to report.

        A refused change shows the entry page again with the error; the page
        keeps what the user typed when ``keeps`` names the form it came from
        (``"json"``: the JSON editor, ``"form"``: the edit form): 400 for a
        definition the store refuses, 409 (with the stored definition beside
        it) for an entry that changed since the page was loaded.
        """
        async def endpoint(request: Request) -> Response:
            form, refused = await self._form(request)
            if refused:
                return refused
            name = form.get("name", "")
            typed = _typed(form, keeps)
            try:
                done = await run_in_threadpool(change, name, form, request.state.user)
            except EntryNotFound:
                return self.pages.missing(request, name)
            except EntryChanged as exc:
                error = f"{exc}: the definition stored now is shown beside what you sent; save again to write yours over it"
                return await run_in_threadpool(self.pages.entry, request, name, error=error, status_code=409, typed=typed,
                                               changed=True)
            except CeleryBeatRedisError as exc:
                return await run_in_threadpool(self.pages.entry, request, name, error=str(exc), status_code=400,
                                               typed=typed)
            return RedirectResponse(_local_path(form.get("next")) or entry_url(name, done=done), 303)
        return endpoint

    # --- changes to one entry (see on_entry) --------------------------------------------------------

    def edit(self, name: str, form: Form, user: str) -> str:
        doc = definition_from_form(form, self.dash.store.get(name).definition)
        check_allowed(self.dash.config.settings, name, doc)
        return "saved" if self.dash.store.replace(name, doc, expected=form.get("version") or None) else "unchanged"

    def edit_json(self, name: str, form: Form, user: str) -> str:
        doc = definition_from_json(form.get("definition", ""))
        check_allowed(self.dash.config.settings, name, doc)
        return "saved" if self.dash.store.replace(name, doc, expected=form.get("version") or None) else "unchanged"

    def enable(self, name: str, form: Form, user: str) -> str:
        check_allowed(self.dash.config.settings, name, self.dash.store.get(name).definition or {})
        return "enabled" if self.dash.store.enable(name) else "already enabled"

    def disable(self, name: str, form: Form, user: str) -> str:
        return "disabled" if self.dash.store.disable(name) else "already disabled"

    def pause(self, name: str, form: Form, user: str) -> str:
        reason = form.get("reason", "").strip()
        if not reason:
            raise CeleryBeatRedisError(f"entry {name!r}: a pause needs a reason")
        self.dash.store.pause(name, reason, by=f"web:{user}")
        return "paused"

    def resume(self, name: str, form: Form, user: str) -> str:
        self.dash.store.resume(name)
        return "resumed"

    def run_now(self, name: str, form: Form, user: str) -> str:
        self.dash.store.run_now(name)
        return "run requested"

    # --- the others ------------------------------------------------------------------------------------

    async def delete(self, request: Request) -> Response:
        form, refused = await self._form(request)
        if refused:
            return refused
        name = form.get("name", "")
        try:
            await run_in_threadpool(self.dash.store.remove, name)
        except EntryNotFound:
            return self.pages.missing(request, name)
        return RedirectResponse("/entries?" + urlencode({"done": f"deleted {name}"}), 303)

    async def add(self, request: Request) -> Response:
        form, refused = await self._form(request)
        if refused:
            return refused
        name = form.get("name", "")  # as typed: a name with white space around it is refused, as at every door
        try:
            await run_in_threadpool(self._add, name, form)
        except EntryExists:
            return self.pages.add(request, f"entry {name!r} exists; use --replace, or edit to change it", form, 400)
        except CeleryBeatRedisError as exc:
            return self.pages.add(request, str(exc), form, 400)
        return RedirectResponse(entry_url(name, done="added"), 303)

    def _add(self, name: str, form: Form) -> None:
        doc = definition_from_form(form)
        check_allowed(self.dash.config.settings, name, doc)
        self.dash.store.add(name, doc)

    async def login(self, request: Request) -> Response:
        form, refused = await self._form(request)
        if refused:
            return refused
        auth = self.dash.config.auth
        if not auth.check_token(form.get("token", "")):
            return self.pages.login(request, "wrong token", 401)
        response = RedirectResponse("/", 303)
        response.set_cookie(LOGIN_COOKIE, auth.login_digest(), httponly=True, samesite="strict")
        return response
