"""The dashboard (``celerybeatredis web``) in a real browser, against real beats and workers.

Headless Chromium from the distribution's packages, driven by Playwright; the
server is the console script in a subprocess, as a user starts it.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from playwright.sync_api import expect

from celerybeatredis.beats import schedule_status
from celerybeatredis.cli.web import MISSING
from celerybeatredis.store import ScheduleStore

from .cli import Cli
from .processes import CeleryProcess, wait_until, write_app
from .web import WebServer, chromium_binary, request, screenshot

CHROMIUM = chromium_binary()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """A headless Chromium for the module's tests."""
    if CHROMIUM is None:
        pytest.skip("no chromium binary: install the distribution's chromium (apt-get install chromium; .ci/run does)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser tab (own cookies) that records any dialog a script opens."""
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    tab = context.new_page()
    tab.dialogs = []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    yield tab
    context.close()


@pytest.fixture
def web(redis_url: str, prefix: str, api: ScheduleStore, tmp_path: Path) -> Iterator[WebServer]:
    """The dashboard of this test's schedule on 127.0.0.1 (no authentication, as by default)."""
    server = WebServer(f"{redis_url}/0", prefix, log_dir=tmp_path).start()
    yield server
    server.stop()


def app_with_tasks(tmp_path: Path, redis_url: str, prefix: str, conf: str = "") -> None:
    """proj.py with a task that records its argument, sending to a queue of the test's own."""
    write_app(tmp_path, f"{redis_url}/1", f"{redis_url}/0", prefix, extra=textwrap.dedent(f"""
        @app.task(name="tasks.hello")
        def hello(value=None):
            return value

        app.conf.task_default_queue = {'q-' + prefix!r}
    """) + conf)


def entry_path(name: str) -> str:
    return "/entry?" + urlencode({"name": name})


# --- pages over real beats -----------------------------------------------------------------------


@pytest.mark.e2e
def test_overview_shows_the_running_beats_and_the_day_ahead(page: Any, web: WebServer, api: ScheduleStore,
                                                            tmp_path: Path, redis_url: str, prefix: str) -> None:
    app_with_tasks(tmp_path, redis_url, prefix)
    api.add("every-minute", "tasks.hello", 60.0)
    api.add("morning", "tasks.hello", {"crontab": {"minute": "0", "hour": "9"}})
    api.bulk_add({f"spike-{i}": {"task": "tasks.hello", "crontab": {"minute": "30", "hour": "*/6"}} for i in range(40)})
    beats = [CeleryProcess.beat(tmp_path), CeleryProcess.beat(tmp_path)]
    try:
        wait_until(lambda: len(schedule_status(api.sharded).alive()) == 2, 60, what="two beats' heartbeats")
        wait_until(lambda: api.sharded.count_scores("-inf", 0) == 0, 60, what="beat to plan every entry")
        page.goto(web.base + "/")
        assert page.inner_text("#beats-alive") == "2"
        assert page.inner_text("#entries-count") == "42"
        rows = page.locator("#beats tbody tr")
        assert rows.count() == 2
        assert "ago" in rows.first.inner_text()
        # the 40 entries due at the same minute make the chart's tallest bar
        assert "peak: 40 in one minute" in page.inner_text("main")
        assert page.locator(".chart rect").count() >= 2
        screenshot(page, "web-overview", tmp_path)
    finally:
        for beat in beats:
            beat.stop()


@pytest.mark.slow
def test_search_and_paging_over_ten_thousand_entries(page: Any, web: WebServer, api: ScheduleStore, tmp_path: Path) -> None:
    names = [f"job-{i:05d}" for i in range(10_000)]
    api.bulk_add({name: {"task": "tasks.a" if i % 20 == 0 else "tasks.b", "interval": {"every": 60 + i, "period": "seconds"},
                         "enabled": i % 3 != 0} for i, name in enumerate(names)})
    page.goto(web.base + "/entries")
    assert 0 < page.locator("#entries tbody tr").count() <= 100  # one HSCAN batch or two: COUNT is a hint
    screenshot(page, "web-entries", tmp_path)

    # a name prefix
    page.fill("input[name=q]", "job-0042")
    page.click("form.filters button")
    shown = page.locator("#entries tbody tr td:first-child a").all_inner_texts()
    assert sorted(shown) == [f"job-0042{d}" for d in range(10)]

    # a glob, and a filter on the task and on enabled, paged in the browser to the end
    page.goto(web.base + "/entries?" + urlencode({"q": "job-*0", "task": "tasks.a", "enabled": "yes"}))
    seen: list[str] = []
    while True:
        seen += page.locator("#entries tbody tr td:first-child a").all_inner_texts()
        following = page.locator("#next-page")
        if following.count() == 0:
            break
        following.click()
    expected = {n for i, n in enumerate(names) if i % 20 == 0 and i % 3 != 0}
    assert set(seen) == expected and len(expected) == 333

    # every entry, page after page (each page a bounded scan), over plain HTTP
    path, listed = "/entries", set()
    while path:
        body = request(web.base, path).body
        listed |= set(re.findall(r'<a href="/entry\?name=(job-\d{5})">', body))
        found = re.search(r'<a href="([^"]+)" rel="next"', body)
        path = found.group(1).replace("&amp;", "&") if found else ""
    assert listed == set(names)


@pytest.mark.e2e
def test_an_edit_made_here_is_what_beat_runs(page: Any, web: WebServer, api: ScheduleStore, tmp_path: Path,
                                            redis_url: str, prefix: str) -> None:
    app_with_tasks(tmp_path, redis_url, prefix)
    api.add("report", "tasks.hello", 3600.0, args=["hourly"])
    beat = CeleryProcess.beat(tmp_path)
    try:
        wait_until(lambda: api.get("report").status == "scheduled", 60, what="beat to plan the entry")
        page.goto(web.base + entry_path("report"))
        screenshot(page, "web-entry", tmp_path)
        page.check("#edit-form input[name=kind][value=interval]")
        page.fill("#edit-form input[name=every]", "1s")
        page.fill("#edit-form input[name=args]", '["every second"]')
        page.click("#save-form")
        assert page.inner_text("#done") == "saved"
        assert page.inner_text("#schedule") == "every second"
        assert api.get("report").definition == {"task": "tasks.hello", "enabled": True, "args": ["every second"],
                                                "interval": {"every": 1, "period": "seconds"}}

        def runs() -> int:
            page.reload()
            return int(page.inner_text("#runs"))

        wait_until(lambda: runs() >= 2, 60, interval=0.5, what="beat to run the edited entry twice")
        assert page.locator("#history tbody tr.sent").count() >= 2
    finally:
        beat.stop()


@pytest.mark.e2e
def test_pause_with_a_reason_and_resume(page: Any, web: WebServer, api: ScheduleStore, tmp_path: Path,
                                        redis_url: str, prefix: str) -> None:
    app_with_tasks(tmp_path, redis_url, prefix)
    api.add("ticker", "tasks.hello", 1.0)
    api.add("other", "tasks.hello", 3600.0)
    beat = CeleryProcess.beat(tmp_path)
    try:
        wait_until(lambda: api.history("ticker").sent >= 1, 60, what="beat to send the entry")
        page.goto(web.base + entry_path("ticker"))
        page.fill("input[name=reason]", "database <maintenance>")
        page.click("#pause")
        assert page.inner_text("#done") == "paused"
        assert page.inner_text("#pause-reason").startswith("Paused: 'database <maintenance>' (by web:local, since ")
        assert api.get("ticker").paused.reason == "database <maintenance>"

        def skipped_while_paused() -> int:
            return sum(1 for run in api.history("ticker", 100).runs if run.outcome == "skipped: paused: database <maintenance>")

        wait_until(lambda: skipped_while_paused() >= 1, 60, what="beat to skip a run of the paused entry")
        sent = api.history("ticker").sent
        wait_until(lambda: skipped_while_paused() >= 3, 60, what="beat to skip two more runs")
        assert api.history("ticker").sent == sent
        page.goto(web.base + "/entries?paused=yes")
        assert page.locator("#entries tbody tr td:first-child a").all_inner_texts() == ["ticker"]
        screenshot(page, "web-entries-paused", tmp_path)

        page.goto(web.base + entry_path("ticker"))
        page.click("#resume")
        assert page.inner_text("#done") == "resumed"
        assert page.locator("#pause-reason").count() == 0
        wait_until(lambda: api.history("ticker").sent > sent, 60, what="beat to send the resumed entry")
    finally:
        beat.stop()


@pytest.mark.e2e
def test_run_now_arrives_at_a_real_worker(page: Any, web: WebServer, api: ScheduleStore, tmp_path: Path,
                                          redis_url: str, prefix: str) -> None:
    app_with_tasks(tmp_path, redis_url, prefix)
    api.add("yearly", "tasks.hello", {"crontab": {"minute": "0", "hour": "0", "day_of_month": "1", "month_of_year": "1"}},
            args=["by hand"])
    worker, beat = CeleryProcess.worker(tmp_path), CeleryProcess.beat(tmp_path)
    try:
        wait_until(lambda: api.get("yearly").status == "scheduled", 60, what="beat to plan the entry")
        page.goto(web.base + entry_path("yearly"))
        page.click("#run-now")
        assert page.inner_text("#done") == "run requested"
        found = wait_until(lambda: re.search(r"Task tasks\.hello\[([0-9a-f-]+)\] succeeded in [^:]+: 'by hand'", worker.output()),
                           60, what="the worker to run the task")
        page.reload()
        assert found.group(1) in page.inner_text("#history")  # the run's task id, as beat sent it
        assert page.inner_text("#runs") == "1"
    finally:
        beat.stop()
        worker.stop()


@pytest.mark.e2e
def test_a_quarantined_entry_fixed_in_the_editor_runs_again(page: Any, web: WebServer, api: ScheduleStore, tmp_path: Path,
                                                            redis_url: str, prefix: str) -> None:
    app_with_tasks(tmp_path, redis_url, prefix, conf='\napp.conf.redis_scheduler_task_allowlist = ["tasks.*"]\n')
    api.add("stray", "other.hello", 1.0, args=["fixed"])  # beat quarantines a task outside its allow-list
    worker, beat = CeleryProcess.worker(tmp_path), CeleryProcess.beat(tmp_path)
    try:
        wait_until(lambda: api.get("stray").invalid_reason, 60, what="beat to quarantine the entry")
        page.goto(web.base + "/quarantine")
        assert "is not in redis_scheduler_task_allowlist" in page.inner_text("#quarantine")
        page.click("#quarantine summary")
        screenshot(page, "web-quarantine", tmp_path)
        editor = page.locator("#quarantine textarea")
        editor.fill(editor.input_value().replace("other.hello", "tasks.hello"))
        page.click("#quarantine button")
        assert "saved stray" in page.inner_text("main")
        wait_until(lambda: "succeeded in" in worker.output() and "'fixed'" in worker.output(), 60,
                   what="the fixed entry to run on the worker")
        assert api.get("stray").invalid_reason is None
        page.goto(web.base + "/quarantine")
        assert "Nothing is quarantined." in page.inner_text("#quarantine")
    finally:
        beat.stop()
        worker.stop()


# --- adding, with the command line's rules -------------------------------------------------------


def test_add_previews_five_fire_times_and_keeps_to_the_command_lines_messages(page: Any, web: WebServer, api: ScheduleStore,
                                                                              cli: Cli, tmp_path: Path) -> None:
    page.goto(web.base + "/add")
    page.fill("input[name=name]", "nightly")
    page.fill("input[name=task]", "tasks.report")
    page.check("input[name=kind][value=crontab]")
    page.fill("input[name=cron]", "30 2 * * *")
    expect(page.locator("#preview tbody tr")).to_have_count(5)
    times = page.locator("#preview tbody tr td:nth-child(2)").all_inner_texts()
    assert len(times) == 5 and all(t.endswith("02:30:00") for t in times)
    screenshot(page, "web-add", tmp_path)
    page.click("#add")
    assert page.inner_text("#done") == "added"
    assert api.get("nightly").definition == {"task": "tasks.report", "enabled": True,
                                             "crontab": {"minute": "30", "hour": "2", "day_of_week": "*",
                                                         "day_of_month": "*", "month_of_year": "*"}}

    # a bad interval: the same words as `celerybeatredis add`
    cli_error = cli.fails("add", "other", "--task", "tasks.report", "--every", "soonish")
    page.goto(web.base + "/add")
    page.fill("input[name=name]", "other")
    page.fill("input[name=task]", "tasks.report")
    page.check("input[name=kind][value=interval]")
    page.fill("input[name=every]", "soonish")
    page.click("#add")
    assert page.inner_text("#error") == cli_error.removeprefix("Error: ").strip()
    assert not api.exists("other")


def test_edits_keep_to_the_task_allowlist(web: WebServer, api: ScheduleStore, page: Any, redis_url: str, prefix: str,
                                          tmp_path: Path) -> None:
    web.stop()
    guarded = WebServer(web.url, prefix, args=("--task-allowlist", "tasks.*"), log_dir=tmp_path).start()
    try:
        api.add("job", "tasks.ok", 60.0)
        page.goto(guarded.base + entry_path("job"))
        page.fill("#edit-form input[name=task]", "os.system")
        page.click("#save-form")
        assert page.inner_text("#error") == "entry 'job': field 'task': 'os.system' is not in redis_scheduler_task_allowlist"
        assert api.get("job").task == "tasks.ok"
    finally:
        guarded.stop()


# --- safety ----------------------------------------------------------------------------------


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


def test_json_edits_and_delete_speak_the_command_lines_words(page: Any, web: WebServer, api: ScheduleStore, cli: Cli) -> None:
    api.add("job", "tasks.x", 60.0)
    page.goto(web.base + entry_path("job"))
    for text in ('{"task": "tasks.x", "interval": {"every": 5}', '{"task": "tasks.x", "interval": {"every": -5}}'):
        expected = cli.fails("edit", "job", "--json", text).removeprefix("Error: ").strip()
        page.fill("#json-form textarea", text)
        page.click("#save-json")
        assert page.inner_text("#error") == expected
        assert page.locator("#json-form textarea").input_value() == text  # what was typed is kept to fix
    assert api.get("job").definition == {"task": "tasks.x", "enabled": True, "interval": {"every": 1, "period": "minutes"}}
    page.click("#disable")
    assert page.inner_text("#enabled") == "no"
    page.click("#enable")
    assert page.inner_text("#enabled") == "yes"
    page.click("#delete")
    assert api.exists("job")  # only a confirmation page so far
    page.click("#confirm-delete")
    assert "deleted job" in page.inner_text("main")
    assert not api.exists("job")


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
    assert "celerybeatredis[web]" in MISSING


def test_the_scheduler_imports_nothing_of_the_web_extra() -> None:
    code = ("import sys, celerybeatredis.schedulers, celerybeatredis.cli\n"
            "print(sorted(m for m in ('starlette', 'jinja2', 'uvicorn') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "[]"


def test_the_page_for_a_missing_entry_is_a_404(web: WebServer) -> None:
    reply = request(web.base, entry_path("nothing-here"))
    assert reply.status == 404 and "No entry named nothing-here" in reply.body


def test_a_page_of_entries_reads_a_bounded_slice(api: ScheduleStore, client: redis.Redis) -> None:
    from celerybeatredis.web.queries import Filters, list_entries

    api.bulk_add({f"e{i}": {"task": "tasks.x", "interval": {"every": 60, "period": "seconds"}} for i in range(3000)})
    listing = list_entries(api, Filters(task="tasks.none"), budget=1000)
    assert listing.entries == [] and not listing.done and listing.scanned <= 1000


def test_the_wheel_ships_the_templates_and_static_files(tmp_path: Path) -> None:
    import zipfile

    root = Path(__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(root)],
                   check=True, capture_output=True)
    (wheel,) = tmp_path.glob("celerybeat_redis-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    web = root / "celerybeatredis" / "web"
    shipped = {f"celerybeatredis/web/{p.relative_to(web)}" for folder in ("templates", "static") for p in (web / folder).iterdir()}
    assert shipped and shipped <= names, sorted(shipped - names)
