"""The dashboard's ASGI application: settings, templates, and the guard every request passes.

:func:`create_app` takes a :class:`~celerybeatredis.store.ScheduleStore`
and returns a Starlette app; ``celerybeatredis web`` serves it with uvicorn.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..display import describe_schedule, duration, last_run, next_run, relative
from ..settings import Settings
from ..store import ScheduleStore
from .auth import CSRF_COOKIE, CSRF_FIELD, WebAuth, is_local, new_csrf_token

HERE = Path(__file__).parent


@dataclass
class WebConfig:
    """How the dashboard runs.

    Attributes:
        auth: Credentials every request must carry (none: loopback only).
        read_only: Refuse every write and show no actions.
        settings: The scheduler settings whose ``task_allowlist`` edits here must keep to.
        title: Shown in the header (the schedule's hash tags by default).
    """

    auth: WebAuth = field(default_factory=WebAuth)
    read_only: bool = False
    settings: Settings = field(default_factory=Settings)
    title: str = ""


def _templates() -> Environment:
    env = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["schedule_words"] = describe_schedule
    env.filters["duration"] = duration
    env.filters["iso"] = lambda when: when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if when else "-"
    env.globals.update(next_run=next_run, last_run=last_run, relative=relative)
    return env


class Dashboard:
    """What the routes share: the store, the config, the templates."""

    def __init__(self, store: ScheduleStore, config: WebConfig) -> None:
        self.store = store
        self.config = config
        self.templates = _templates()

    def now(self) -> datetime:
        """The Redis server's clock, which every beat shares."""
        return datetime.fromtimestamp(self.store.server_time(), timezone.utc)

    def render(self, request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        page = self.templates.get_template(template).render(
            request=request, csrf_field=CSRF_FIELD, csrf_token=request.state.csrf, read_only=self.config.read_only,
            title=self.config.title or self.store.tags, user=request.state.user, **context)
        return HTMLResponse(page, status_code=status_code)


class Guard(BaseHTTPMiddleware):
    """Authentication on every request, a CSRF cookie for every browser, no writes in read-only mode."""

    def __init__(self, app: Any, config: WebConfig) -> None:
        super().__init__(app)
        self.config = config

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        open_paths = ("/login", "/static/")
        if not self.config.auth.configured and not is_local(request.url.hostname or ""):
            # without credentials only this machine may connect; a foreign Host is a page that rebound its DNS here
            return PlainTextResponse("unexpected Host: without authentication the dashboard answers only to a "
                                     "loopback address", 403)
        user = self.config.auth.user(request)
        if user is None and not request.url.path.startswith(open_paths):
            if self.config.auth.users:
                return PlainTextResponse("authentication required", 401,
                                         headers={"WWW-Authenticate": 'Basic realm="celerybeatredis"'})
            if request.method == "GET" and "text/html" in request.headers.get("accept", ""):
                return RedirectResponse("/login", 303)
            return PlainTextResponse("authentication required", 401)
        if request.method == "POST" and self.config.read_only and request.url.path != "/login":
            return PlainTextResponse("the dashboard is read-only", 403)
        request.state.user = user
        fresh = CSRF_COOKIE not in request.cookies
        request.state.csrf = new_csrf_token() if fresh else request.cookies[CSRF_COOKIE]
        response = await call_next(request)
        response.headers.setdefault("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; "
                                    "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        if fresh:
            response.set_cookie(CSRF_COOKIE, request.state.csrf, httponly=True, samesite="strict")
        return response


def create_app(store: ScheduleStore, config: WebConfig | None = None) -> Starlette:
    """The dashboard for ``store`` as an ASGI app."""
    from .routes import routes  # the routes need Dashboard, defined above

    config = config or WebConfig()
    dashboard = Dashboard(store, config)
    app = Starlette(
        routes=[*routes(dashboard), Mount("/static", StaticFiles(directory=HERE / "static"), name="static")],
        middleware=[Middleware(Guard, config=config)],
    )
    app.state.dashboard = dashboard
    return app
