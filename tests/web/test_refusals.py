"""What the dashboard answers when a save cannot go ahead, over plain HTTP: never a 500, never the user's input lost.

A save over an entry that changed since its page was loaded (409, both
versions shown), a definition the store refuses (400, the input kept),
entries whose stored text is broken, made-up page cursors, and Redis gone
away and back (503 in one line, then the pages again).
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis

from celerybeatredis.store import ScheduleStore

from ..support import web as harness
from ..support.cli import Cli
from ..support.processes import wait_until
from ..support.redis_server import RedisServer
from ..support.web import Response, WebServer, entry_path, request

browser, page, web = harness.browser, harness.page, harness.web  # the harness's fixtures, for this module's tests

CSRF = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": "cbr_csrf=tok"}


def post(server: WebServer, path: str, form: dict[str, str]) -> Response:
    """A form sent as the dashboard's own page sends it (its CSRF cookie echoed)."""
    return request(server.base, path, "POST", urlencode({**form, "csrf_token": "tok"}), CSRF)


def hidden(body: str, form_id: str, field: str) -> str:
    """The value of a hidden input of one of the entry page's forms."""
    form = re.search(rf'<form[^>]*id="{form_id}".*?</form>', body, re.S)
    assert form, body
    found = re.search(rf'<input type="hidden" name="{field}" value="([^"]*)"', form.group(0))
    assert found, form.group(0)
    return html.unescape(found.group(1))


def textarea(body: str) -> str:
    found = re.search(r'<textarea name="definition"[^>]*>(.*?)</textarea>', body, re.S)
    assert found, body
    return html.unescape(found.group(1))


def error_line(body: str) -> str:
    found = re.search(r'<p class="error" id="error">(.*?)</p>', body, re.S)
    assert found, body
    return html.unescape(found.group(1))


def input_value(body: str, form_id: str, name: str) -> str:
    form = re.search(rf'<form[^>]*id="{form_id}".*?</form>', body, re.S)
    assert form, body
    found = re.search(rf'<input name="{name}" value="([^"]*)"', form.group(0))
    assert found, (name, form.group(0))
    return html.unescape(found.group(1))


def stored(api: ScheduleStore, name: str) -> dict[str, Any]:
    raw = api.sharded.get_raw(name)
    assert raw is not None
    return json.loads(raw)


# --- optimistic edits ----------------------------------------------------------------------------


def test_a_save_over_a_pause_made_meanwhile_is_refused_showing_both_versions(web: WebServer, api: ScheduleStore) -> None:
    api.add("job", "tasks.x", 60.0)
    loaded = request(web.base, entry_path("job")).body
    version = hidden(loaded, "json-form", "version")
    assert version == hidden(loaded, "edit-form", "version") == api.get("job").version
    api.pause("job", "disk full", by="worker")  # as pause_after_failures does, while the page is open
    typed = textarea(loaded).replace("tasks.x", "tasks.edited")

    refused = post(web, "/entry/json", {"name": "job", "version": version, "definition": typed})
    assert refused.status == 409, refused.body
    assert error_line(refused.body).startswith("entry 'job' changed since it was read; nothing written")
    assert textarea(refused.body) == typed  # what the user sent, kept
    now = re.search(r'<pre class="mono" id="stored-now">(.*?)</pre>', refused.body, re.S)
    assert now and json.loads(html.unescape(now.group(1))) == stored(api, "job")  # the stored version beside it
    assert stored(api, "job")["paused"]["reason"] == "disk full" and stored(api, "job")["task"] == "tasks.x"

    # the edit form too, its values kept
    form = {"name": "job", "version": version, "task": "tasks.form", "kind": "interval", "every": "", "enabled": "on"}
    refused = post(web, "/entry/edit", form)
    assert refused.status == 409 and input_value(refused.body, "edit-form", "task") == "tasks.form"
    assert stored(api, "job")["task"] == "tasks.x" and "paused" in stored(api, "job")

    # saving again from the refusal's page writes over the version it showed, knowingly
    again = post(web, "/entry/json", {"name": "job", "version": hidden(refused.body, "json-form", "version"),
                                      "definition": typed})
    assert again.status == 303, again.body
    assert stored(api, "job")["task"] == "tasks.edited" and "paused" not in stored(api, "job")


def test_in_the_browser_a_json_save_over_a_pause_keeps_the_text_and_shows_the_pause(page: Any, web: WebServer,
                                                                                     api: ScheduleStore) -> None:
    api.add("job", "tasks.x", 60.0)
    page.goto(web.base + entry_path("job"))
    api.pause("job", "disk full", by="worker")
    editor = page.locator("#json-form textarea")
    typed = editor.input_value().replace("tasks.x", "tasks.edited")
    editor.fill(typed)
    page.click("#save-json")
    assert page.inner_text("#error").startswith("entry 'job' changed since it was read; nothing written")
    assert '"disk full"' in page.inner_text("#stored-now")
    assert page.locator("#json-form textarea").input_value() == typed
    assert stored(api, "job")["task"] == "tasks.x" and stored(api, "job")["paused"]["reason"] == "disk full"


def test_a_refused_save_keeps_what_was_typed(web: WebServer, api: ScheduleStore, cli: Cli) -> None:
    api.add("job", "tasks.x", 60.0)
    version = api.get("job").version
    form = {"name": "job", "version": version, "task": "tasks.typed", "kind": "interval", "every": "soonish",
            "description": "typed here", "enabled": "on"}
    refused = post(web, "/entry/edit", form)
    assert refused.status == 400, refused.body
    assert error_line(refused.body) == cli.fails("edit", "job", "--every", "soonish").removeprefix("Error: ").strip()
    assert input_value(refused.body, "edit-form", "task") == "tasks.typed"
    assert input_value(refused.body, "edit-form", "every") == "soonish"
    assert input_value(refused.body, "edit-form", "description") == "typed here"
    assert hidden(refused.body, "edit-form", "version") == version  # still the version the input was made from

    for text in ('{"task": 5, "interval": {"every": 1}}',
                 '{"task": "t.x", "crontab": {"minute": "0", "hour": "3", "day_of_month": "31", "month_of_year": "2"}}'):
        refused = post(web, "/entry/json", {"name": "job", "version": version, "definition": text})
        assert refused.status == 400, refused.body
        assert error_line(refused.body).startswith("entry 'job': ") and "\n" not in error_line(refused.body)
        assert textarea(refused.body) == text
    assert stored(api, "job")["task"] == "tasks.x"

    added = post(web, "/add", {"name": "feb", "task": "t.x", "kind": "crontab", "cron": "0 3 31 2 *", "enabled": "on"})
    assert added.status == 400 and error_line(added.body).startswith("entry 'feb': ") and 'value="0 3 31 2 *"' in added.body
    assert not api.exists("feb")


# --- entries whose stored text is broken ------------------------------------------------------------

BROKEN = {
    "not-json": "{oops",
    "an-array": "[1, 2]",
    "task-five": json.dumps({"task": 5, "interval": {"every": 5}}),
    "feb-31": json.dumps({"task": "t.x", "crontab": {"minute": "0", "hour": "3", "day_of_month": "31",
                                                      "month_of_year": "2"}}),
}


def test_broken_entries_read_as_invalid_on_every_page_and_can_be_deleted(web: WebServer, api: ScheduleStore,
                                                                       client: redis.Redis) -> None:
    api.add("good", "tasks.x", 60.0)
    client.hset(api.sharded.keys.schedule, mapping=BROKEN)
    client.hset(api.sharded.keys.invalid, mapping={"not-json": "entry 'not-json': not JSON", "an-array": "not an object"})
    listing = request(web.base, "/entries")
    assert listing.status == 200, listing.body
    for name in BROKEN:
        row = re.search(rf'<tr class="(\w+)">\s*<td><a href="/entry\?name={name}">', listing.body)
        assert row and row.group(1) == "invalid", name
    for path in ["/", "/entries?q=feb", "/entries?q=*-*", "/entries?quarantined=yes", "/entries?kind=crontab",
                 "/quarantine"]:
        reply = request(web.base, path)
        assert reply.status == 200, (path, reply.body)
    assert "day &#39;31&#39; never occurs in month_of_year" in request(web.base, entry_path("feb-31")).body
    for name in BROKEN:
        shown = request(web.base, entry_path(name))
        assert shown.status == 200 and 'id="quarantine-reason"' in shown.body, (name, shown.body)
        assert request(web.base, "/entry/delete?" + urlencode({"name": name})).status == 200
        deleted = post(web, "/entry/delete", {"name": name})
        assert deleted.status == 303 and not api.exists(name)
    preview = request(web.base, "/preview?" + urlencode({"name": "x", "task": "t.x", "kind": "crontab", "cron": "0 3 31 2 *"}))
    assert preview.status == 400 and "day &#39;31&#39; never occurs in month_of_year" in preview.body
    assert api.exists("good")


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


def test_the_add_form_and_its_preview_take_an_rrule_seconds_and_a_phase(web: WebServer, api: ScheduleStore) -> None:
    forms = {
        "standup": {"kind": "rrule", "rrule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", "dtstart": "2026-01-05T09:00:00",
                    "timezone": "Europe/Berlin"},
        "phased": {"kind": "interval", "every": "6h", "offset": "5h", "timezone": "Europe/Berlin"},
        "fast": {"kind": "crontab", "cron": "*/15 * * * * *"},
    }
    for name, form in forms.items():
        preview = request(web.base, "/preview?" + urlencode({"name": name, "task": "t.x", "enabled": "on", **form}))
        assert preview.status == 200 and preview.body.count("<tr><td>") >= 5, (name, preview.body)
        assert "ruled out" not in preview.body, (name, preview.body)
        added = post(web, "/add", {"name": name, "task": "t.x", "enabled": "on", **form})
        assert added.status == 303, (name, added.body)
    assert stored(api, "standup")["rrule"] == {"rule": "FREQ=WEEKLY;BYDAY=MO;BYHOUR=9", "dtstart": "2026-01-05T09:00:00",
                                               "timezone": "Europe/Berlin"}
    assert stored(api, "phased")["interval"] == {"every": 6, "period": "hours", "offset": 5, "timezone": "Europe/Berlin"}
    assert stored(api, "fast")["crontab"]["second"] == "*/15"
    refused = post(web, "/add", {"name": "bad", "task": "t.x", "kind": "rrule", "rrule": "FREQ=SOMETIMES", "enabled": "on"})
    assert refused.status == 400 and error_line(refused.body).startswith("entry 'bad': field 'rrule.rule': ")
