"""The dashboard's entry page says when an entry's task is not one the app it was started with registers."""

from __future__ import annotations

import html
import os
import textwrap
from pathlib import Path

from celerybeatredis.store import ScheduleStore

from ..support.processes import write_app
from ..support.web import WebServer, entry_path, request, web  # noqa: F401 - web is a fixture


def test_the_entry_page_of_an_app_started_dashboard_warns_of_an_unregistered_task(
        api: ScheduleStore, redis_url: str, prefix: str, tmp_path: Path) -> None:
    api.add("t1", "proj.adds", 60.0)
    api.add("t2", "proj.add", 60.0)
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=textwrap.dedent("""
        @app.task(name="proj.add")
        def add(x, y):
            return x + y
    """))
    server = WebServer(f"{redis_url}/0", prefix, log_dir=tmp_path, celery_app_dir=tmp_path,
                       env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}).start()
    try:
        page = request(server.base, entry_path("t1"))
        assert page.status == 200
        assert ("Field 'task': 'proj.adds' is not a task the app registers (nearest: 'proj.add')"
                in html.unescape(page.body)), page.body
        assert 'id="task-warning"' not in request(server.base, entry_path("t2")).body
    finally:
        server.stop()


def test_a_dashboard_without_an_app_cannot_tell(web: WebServer, api: ScheduleStore) -> None:  # noqa: F811
    api.add("t1", "proj.adds", 60.0)
    page = request(web.base, entry_path("t1"))
    assert page.status == 200 and 'id="task-warning"' not in page.body
