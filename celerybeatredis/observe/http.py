"""Beat's HTTP endpoint (``redis_scheduler_http``): ``/healthz`` and ``/metrics``, served from a daemon thread.

``/healthz`` answers from what the tick recorded (no Redis call): 200 while
the last tick ended within :func:`alive_within` and did not fail, else 503
with the reason. ``/metrics`` is prometheus_client's WSGI app over
:mod:`.metrics`. Imported only when the setting is on.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app

from ..storage.sharded_store import ShardedStore
from .log import logger
from .metrics import registry
from .stats import BeatStats

#: Added to three sleeps between ticks in the /healthz bound: a slow tick (a full batch per shard) is not "stuck".
ALIVE_MARGIN = 10.0


def alive_within(max_interval: float, publish_retry_seconds: float, max_backoff: float) -> float:
    """Seconds since the last tick ended after which the loop counts as stuck: 3 x the longest sleep + a margin."""
    return 3 * max(max_interval, publish_retry_seconds, max_backoff) + ALIVE_MARGIN


class _Server(ThreadingMixIn, WSGIServer):
    """One thread a request, none of which keeps beat from exiting."""

    daemon_threads = True
    allow_reuse_address = True


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    """No access log line per scrape in beat's log."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


class HealthServer:
    """Serves ``/healthz`` and ``/metrics`` on ``(host, port)`` until beat exits."""

    def __init__(self, address: tuple[str, int], stats: BeatStats, store: ShardedStore, alive: float) -> None:
        self.stats = stats
        self.alive = alive
        self.metrics = make_wsgi_app(registry(stats, store))
        host, port = address
        server_class = _Server6 if ":" in host else _Server
        self.server = make_server(host, port, self.app, server_class=server_class, handler_class=_QuietHandler)
        self.thread = threading.Thread(target=self.server.serve_forever, name="celerybeatredis-http", daemon=True)

    def start(self) -> None:
        self.thread.start()
        host, port = self.server.server_address[:2]
        logger.info("beat: serving /healthz and /metrics on http://%s:%s", host, port)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == "/healthz":
            problem = self.stats.health(self.alive)
            body = (problem or "ok").encode() + b"\n"
            start_response("503 Service Unavailable" if problem else "200 OK",
                           [("Content-Type", "text/plain; charset=utf-8"), ("Content-Length", str(len(body)))])
            return [body]
        if path in ("/metrics", "/"):
            return self.metrics(environ, start_response)
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [b"not found: try /healthz or /metrics\n"]
