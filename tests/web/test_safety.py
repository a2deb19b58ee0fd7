"""The dashboard's safety: who may connect, CSRF on every write, escaped values, read-only, and its packaging.

The same harness as test_dashboard.py: the console script in a subprocess and the
distribution's headless Chromium.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from celerybeatredis.cli.web import MISSING
from celerybeatredis.store import ScheduleStore

from ..support import web as harness
from ..support.processes import write_app
from ..support.web import WebServer, entry_path, request

browser, page, web = harness.browser, harness.page, harness.web  # the harness's fixtures, for this module's tests


def test_names_and_args_with_script_tags_render_inert(page: Any, web: WebServer, api: ScheduleStore, tmp_path: Path) -> None:
    evil = '<script>alert("name")</script><img src=x onerror="alert(1)">'
    api.add(evil, "tasks.<script>alert('task')</script>", 60.0, args=["</textarea><script>alert('args')</script>"],
            description='"><svg onload=alert(2)>')
    api.sharded.stores[0].client.hset(api.sharded.stores[0].keys.invalid, evil, "<script>alert('reason')</script>")
    for path in ("/entries", entry_path(evil), "/quarantine", "/entries?" + urlencode({"q": evil})):
        page.goto(web.base + path)
        page.wait_for_load_state("load")
        assert page.locator("main script, main img, main svg").count() == 0, path
    page.goto(web.base + entry_path(evil))
    assert page.inner_text("#entry-name") == evil  # shown as text, exactly
    assert "</textarea><script>alert('args')</script>" in page.locator("#json-form textarea").input_value()
    assert page.dialogs == []


def test_a_stored_name_with_direction_or_control_characters_is_shown_escaped(page: Any, web: WebServer,
                                                                             api: ScheduleStore) -> None:
    look_alike = "invoice\u202efdp.exe\nsecond line"  # written with redis-cli: no door accepts such a name
    shard = api.sharded.stores[0]
    shard.client.hset(shard.keys.schedule, look_alike, '{"task": "tasks.x", "interval": {"every": 60}}')
    page.goto(web.base + "/entries")
    assert "invoice\\u202efdp.exe\\nsecond line" in page.inner_text("main")
    page.goto(web.base + entry_path(look_alike))
    assert page.inner_text("#entry-name") == "invoice\\u202efdp.exe\\nsecond line"
    assert "\u202e" not in page.inner_text("main")


def test_csrf_is_enforced_on_every_write(web: WebServer, api: ScheduleStore, page: Any) -> None:
    api.add("job", "tasks.x", 60.0)
    form = {"name": "job"}
    writes = ["/entry/disable", "/entry/run-now", "/entry/delete", "/entry/json", "/entry/edit", "/add"]
    for path in writes:  # no token at all
        reply = request(web.base, path, "POST", urlencode(form), {"Content-Type": "application/x-www-form-urlencoded"})
        assert reply.status == 403, (path, reply.status, reply.body)
    # a token that is not the cookie's
    reply = request(web.base, "/entry/disable", "POST", urlencode({**form, "csrf_token": "guess"}),
                    {"Content-Type": "application/x-www-form-urlencoded", "Cookie": "cbr_csrf=other"})
    assert reply.status == 403
    # the right pair, from another site's page
    reply = request(web.base, "/entry/disable", "POST", urlencode({**form, "csrf_token": "same"}),
                    {"Content-Type": "application/x-www-form-urlencoded", "Cookie": "cbr_csrf=same",
                     "Origin": "http://evil.example"})
    assert reply.status == 403 and "another site" in reply.body
    assert api.get("job").enabled and api.exists("job")
    # the dashboard's own form passes
    page.goto(web.base + entry_path("job"))
    page.click("#disable")
    assert page.inner_text("#done") == "disabled"
    assert not api.get("job").enabled


def test_read_only_shows_no_actions_and_refuses_writes(api: ScheduleStore, page: Any, redis_url: str, prefix: str,
                                                       tmp_path: Path) -> None:
    api.add("job", "tasks.x", 60.0)
    server = WebServer(f"{redis_url}/0", prefix, args=("--read-only",), log_dir=tmp_path).start()
    try:
        page.goto(server.base + entry_path("job"))
        assert page.locator("#run-now, #disable, #edit-form, #json-form").count() == 0
        token = page.context.cookies()[0]["value"]
        reply = request(server.base, "/entry/disable", "POST", urlencode({"name": "job", "csrf_token": token}),
                        {"Content-Type": "application/x-www-form-urlencoded", "Cookie": f"cbr_csrf={token}"})
        assert reply.status == 403 and "read-only" in reply.body
        assert api.get("job").enabled
    finally:
        server.stop()


def non_local_address() -> str:
    """An address of this machine other than loopback, or 0.0.0.0 (all of them) when it has none."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing interface
            return str(probe.getsockname()[0])
        except OSError:
            return "0.0.0.0"


def test_a_non_local_bind_needs_authentication(api: ScheduleStore, page: Any, redis_url: str, prefix: str, tmp_path: Path) -> None:
    api.add("job", "tasks.x", 60.0)
    # without credentials it does not start
    refused = WebServer(f"{redis_url}/0", prefix, bind_host="0.0.0.0", log_dir=tmp_path)
    with pytest.raises(AssertionError, match=r"refusing to listen on 0\.0\.0\.0:[0-9]+ without authentication"):
        refused.start()
    # with a token it starts, and refuses any request without it
    secret = "s3cret-token-value"
    server = WebServer(f"{redis_url}/0", prefix, bind_host="0.0.0.0", log_dir=tmp_path,
                       env={"CELERYBEATREDIS_WEB_TOKEN": secret}).start()
    try:
        host = non_local_address()
        base = f"http://{host if host != '0.0.0.0' else '127.0.0.1'}:{server.port}"
        assert request(base, "/entries").status == 401
        assert request(base, entry_path("job")).status == 401
        assert request(base, "/entries", headers={"Authorization": "Bearer wrong"}).status == 401
        assert request(base, "/entries", headers={"Authorization": f"Bearer {secret}"}).status == 200
        # a browser logs in with the form
        page.goto(base + "/entries")
        assert page.url.endswith("/login")
        page.fill("input[name=token]", secret)
        page.click("form button")
        page.goto(base + "/entries")
        assert "job" in page.inner_text("#entries")
    finally:
        server.stop()
    assert secret not in server.output()
    # basic-auth users
    users = WebServer(f"{redis_url}/0", prefix, bind_host="0.0.0.0", log_dir=tmp_path,
                      env={"CELERYBEATREDIS_WEB_USERS": "alice:pw-one,bob:pw-two"}).start()
    try:
        denied = request(users.base, "/")
        assert denied.status == 401 and denied.headers["www-authenticate"].startswith("Basic")
        wrong = base64.b64encode(b"alice:pw-two").decode()
        assert request(users.base, "/", headers={"Authorization": f"Basic {wrong}"}).status == 401
        right = base64.b64encode(b"bob:pw-two").decode()
        assert request(users.base, "/", headers={"Authorization": f"Basic {right}"}).status == 200
    finally:
        users.stop()
    assert "pw-one" not in users.output() and "pw-two" not in users.output()


def test_without_credentials_only_a_loopback_host_is_answered(web: WebServer, api: ScheduleStore) -> None:
    api.add("job", "tasks.x", 60.0)
    assert request(web.base, "/entries", headers={"Host": f"localhost:{web.port}"}).status == 200
    rebound = request(web.base, "/entries", headers={"Host": f"attacker.example:{web.port}"})
    assert rebound.status == 403 and "job" not in rebound.body


def test_celery_schedule_web_takes_the_apps_settings(api: ScheduleStore, redis_url: str, prefix: str, tmp_path: Path) -> None:
    api.add("job", "tasks.x", 60.0)
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=textwrap.dedent("""
        app.conf.redis_scheduler_web_users = {"carol": "app-password"}
        app.conf.redis_scheduler_task_allowlist = ["tasks.*"]
    """))
    server = WebServer(f"{redis_url}/0", prefix, bind_host="0.0.0.0", log_dir=tmp_path, celery_app_dir=tmp_path,
                       env={"PYTHONPATH": str(tmp_path)}).start()
    try:
        assert request(server.base, "/entries").status == 401
        login = {"Authorization": "Basic " + base64.b64encode(b"carol:app-password").decode()}
        listing = request(server.base, "/entries", headers=login)
        assert listing.status == 200 and "job" in listing.body
        # the app's allow-list holds for edits made here
        cookie = listing.headers["set-cookie"].split(";")[0]
        page_reply = request(server.base, entry_path("job"), headers={**login, "Cookie": cookie})
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page_reply.body).group(1)
        reply = request(server.base, "/entry/json", "POST",
                        urlencode({"name": "job", "csrf_token": csrf, "definition": '{"task": "os.system", "interval": {"every": 5}}'}),
                        {**login, "Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})
        assert reply.status == 400 and "&#39;os.system&#39; is not in redis_scheduler_task_allowlist" in reply.body
        assert api.get("job").task == "tasks.x"
    finally:
        server.stop()
    assert "app-password" not in server.output()


def test_without_the_web_extra_the_command_says_what_to_install(redis_url: str, prefix: str) -> None:
    code = textwrap.dedent("""
        import sys
        sys.modules["uvicorn"] = None  # as if the web extra were not installed
        from celerybeatredis.cli import main
        main(["web"], prog_name="celerybeatredis")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "CELERYBEATREDIS_URL": f"{redis_url}/0", "CELERYBEATREDIS_PREFIX": prefix})
    assert done.returncode == 1
    assert done.stderr == f"Error: {MISSING}\n"
    assert "pip install '.[web]'" in MISSING


def test_the_scheduler_imports_nothing_of_the_web_extra() -> None:
    code = ("import sys, celerybeatredis.schedulers, celerybeatredis.cli\n"
            "print(sorted(m for m in ('starlette', 'jinja2', 'uvicorn') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_the_wheel_ships_the_templates_and_static_files(tmp_path: Path) -> None:
    import zipfile

    root = Path(__file__).resolve().parents[2]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("celerybeat_redis-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    package = root / "celerybeatredis" / "web"
    shipped = {f"celerybeatredis/web/{p.relative_to(package)}" for folder in ("templates", "static") for p in (package / folder).iterdir()}
    assert shipped and shipped <= names, sorted(shipped - names)
