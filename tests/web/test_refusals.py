"""What the dashboard answers when a request cannot go ahead, over plain HTTP: never a 500.

Made-up page cursors, and Redis gone away and back (503 in one line, then
the pages again).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

import pytest

from celerybeatredis.store import ScheduleStore

from ..support import web as harness
from ..support.processes import wait_until
from ..support.redis_server import RedisServer
from ..support.web import Response, WebServer, entry_path, request

web = harness.web  # the harness's fixture, for this module's tests

CSRF = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": "cbr_csrf=tok"}


def post(server: WebServer, path: str, form: dict[str, str]) -> Response:
    """A form sent as the dashboard's own page sends it (its CSRF cookie echoed)."""
    return request(server.base, path, "POST", urlencode({**form, "csrf_token": "tok"}), CSRF)


# --- made-up cursors, Redis away -------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/entries", "/quarantine"])
@pytest.mark.parametrize("cursor", ["99999999999999999999999", "-5", "abc", "18446744073709551616"])
def test_a_made_up_cursor_is_a_400_in_one_line(web: WebServer, api: ScheduleStore, path: str, cursor: str) -> None:
    reply = request(web.base, f"{path}?cursor={cursor}")
    assert reply.status == 400, reply.body
    assert reply.body == f"cursor {cursor!r} is not a page cursor (a whole number from 0, as a Next page link gives); " \
                         "start again from the first page"
    assert request(web.base, f"{path}?cursor=18446744073709551615").status == 200  # the largest HSCAN cursor


@pytest.mark.slow
def test_with_redis_down_every_page_is_a_503_naming_it_and_the_dashboard_recovers(api: ScheduleStore, prefix: str,
                                                                                 tmp_path: Path) -> None:
    server = RedisServer("--user", "web", "on", ">s3cret", "~*", "&*", "+@all").start()
    url = f"redis://web:s3cret@127.0.0.1:{server.port}/0"
    dashboard = WebServer(url, prefix, log_dir=tmp_path).start()
    pages = ["/", "/entries", entry_path("job"), "/quarantine", "/entry/delete?name=job",
             "/preview?" + urlencode({"task": "t.x", "kind": "interval", "every": "5s"})]
    try:
        ScheduleStore.from_url(url, prefix).add("job", "tasks.x", 60.0)
        assert all(request(dashboard.base, path).status == 200 for path in pages)
        server.stop()
        for path in pages:
            reply = request(dashboard.base, path)
            assert reply.status == 503, (path, reply.status, reply.body)
            assert reply.body.startswith(f"cannot reach Redis at redis://web:****@127.0.0.1:{server.port}/0: ")
            assert "\n" not in reply.body.strip() and "s3cret" not in reply.body
        reply = post(dashboard, "/entry/disable", {"name": "job"})
        assert reply.status == 503 and reply.body.startswith("cannot reach Redis at ")
        assert "Traceback" not in dashboard.output()
        server.start()
        ScheduleStore.from_url(url, prefix).add("job", "tasks.x", 60.0)
        for path in pages:
            wait_until(lambda path=path: request(dashboard.base, path).status == 200, 30, what=f"{path} to answer again")
        assert post(dashboard, "/entry/disable", {"name": "job"}).status == 303
    finally:
        dashboard.stop()
        server.cleanup()
