"""The dashboard's ASGI application: its routes, and the guard every request passes.

:func:`create_app` takes a :class:`~celerybeatredis.store.ScheduleStore`
and returns a Starlette app; ``celerybeatredis web`` serves it with uvicorn.
What the routes share is :class:`~.dashboard.Dashboard`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import redis
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from ..settings import mask_url
from ..store import ScheduleStore
from .auth import CSRF_COOKIE, is_local, new_csrf_token
from .dashboard import HERE, Dashboard, WebConfig
from .pages import BadCursor
from .routes import routes


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


def redis_location(store: ScheduleStore, config: WebConfig) -> str:
    """The schedule's Redis for a message: the configured URL with its password masked, else the client's address."""
    if config.redis_url:
        return mask_url(config.redis_url)
    kwargs = getattr(getattr(store.client, "connection_pool", None), "connection_kwargs", {})
    if "host" in kwargs:
        return f"redis://{kwargs['host']}:{kwargs.get('port', 6379)}/{kwargs.get('db', 0)}"
    return f"the Redis of {store.tags}"


def unreachable(where: str) -> Callable[[Request, Exception], Awaitable[Response]]:
    """The answer of every page while Redis cannot be reached: 503 and one line; the next request tries again."""
    async def answer(request: Request, exc: Exception) -> Response:
        return PlainTextResponse(f"cannot reach Redis at {where}: {' '.join(str(exc).split())}", 503)
    return answer


async def bad_request(request: Request, exc: Exception) -> Response:
    """A query the pages cannot read (a made-up cursor): 400 and why, in one line."""
    return PlainTextResponse(str(exc), 400)


def create_app(store: ScheduleStore, config: WebConfig | None = None) -> Starlette:
    """The dashboard for ``store`` as an ASGI app."""
    config = config or WebConfig()
    dashboard = Dashboard(store, config)
    down = unreachable(redis_location(store, config))
    app = Starlette(
        routes=[*routes(dashboard), Mount("/static", StaticFiles(directory=HERE / "static"), name="static")],
        middleware=[Middleware(Guard, config=config)],
        exception_handlers={redis.ConnectionError: down, redis.TimeoutError: down, BadCursor: bad_request},
    )
    app.state.dashboard = dashboard
    return app
