"""The dashboard (``celerybeatredis web``) in a real browser, against real beats and workers: its pages and forms.

Headless Chromium from the distribution's packages, driven by Playwright; the
server is the console script in a subprocess, as a user starts it. Safety
(authentication, CSRF, escaping) is in test_safety.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
import redis
from playwright.sync_api import expect

from celerybeatredis.observe.status import schedule_status
from celerybeatredis.storage.history import record, runtime_code, stamp
from celerybeatredis.store import ScheduleStore
from celerybeatredis.web.queries import Filters, list_entries, overview

from ..support import web as harness
from ..support.cli import Cli
from ..support.processes import CeleryProcess, wait_until
from ..support.web import WebServer, app_with_tasks, entry_path, request, screenshot

browser, page, web = harness.browser, harness.page, harness.web  # the harness's fixtures, for this module's tests

# --- pages over real beats -----------------------------------------------------------------------


@pytest.mark.e2e
def test_overview_shows_the_running_beats_and_the_day_ahead(page: Any, web: WebServer, api: ScheduleStore,
                                                            tmp_path: Path, redis_url: str, prefix: str) -> None:
    app_with_tasks(tmp_path, redis_url, prefix)
    api.add("nightly", "tasks.hello", {"crontab": {"minute": "15", "hour": "3"}})
    api.add("morning", "tasks.hello", {"crontab": {"minute": "0", "hour": "9"}})
    api.bulk_add({f"spike-{i}": {"task": "tasks.hello", "crontab": {"minute": "30", "hour": "*/6"}} for i in range(40)})
    api.bulk_add({f"daily-{i}": {"task": "tasks.hello", "crontab": {"minute": str(i * 7 % 29), "hour": str(i % 24)}}
                  for i in range(300)})  # once a day each, spread over the day (never at :30): a few in one minute at most
    beats = [CeleryProcess.beat(tmp_path), CeleryProcess.beat(tmp_path)]
    try:
        wait_until(lambda: len(schedule_status(api.sharded).alive()) == 2, 60, what="two beats' heartbeats")
        # planned: no entry pending, nor claimed (a claimed entry's score is its lease's end until beat commits it)
        wait_until(lambda: max(overview(api).per_minute) == 40, 60, what="beat to plan every entry")
        page.goto(web.base + "/")
        assert page.inner_text("#beats-alive") == "2"
        assert page.inner_text("#entries-count") == "342"
        assert page.inner_text("#publish-errors") == "0"
        rows = page.locator("#beats tbody tr")
        assert rows.count() == 2
        assert "ago" in rows.first.inner_text()
        # the 40 entries due at the same minute make the chart's tallest bar
        assert "peak: 40 in one minute" in page.inner_text("main")
        assert page.locator(".chart rect").count() >= 120
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

    def to_the_end() -> list[str]:
        """The names on this page and on every next one (a page may stop short: its scan is bounded)."""
        seen: list[str] = []
        while True:
            seen += page.locator("#entries tbody tr td:first-child a").all_inner_texts()
            following = page.locator("#next-page")
            if following.count() == 0:
                return seen
            following.click()

    # a name prefix, typed in the search box
    page.fill("input[name=q]", "job-0042")
    page.click("form.filters button")
    assert sorted(to_the_end()) == [f"job-0042{d}" for d in range(10)]

    # an exact name comes first, wherever the scan stands
    page.goto(web.base + "/entries?" + urlencode({"q": "job-09999"}))
    assert page.locator("#entries tbody tr td:first-child a").first.inner_text() == "job-09999"

    # a glob, and a filter on the task and on enabled, paged in the browser to the end
    page.goto(web.base + "/entries?" + urlencode({"q": "job-*0", "task": "tasks.a", "enabled": "yes"}))
    seen = to_the_end()
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


def test_the_page_for_a_missing_entry_is_a_404(web: WebServer) -> None:
    reply = request(web.base, entry_path("nothing-here"))
    assert reply.status == 404 and "No entry named nothing-here" in reply.body


def test_the_entry_page_and_the_failing_filter_show_what_workers_reported(web: WebServer, api: ScheduleStore,
                                                                         client: redis.Redis, prefix: str) -> None:
    tag = prefix.rstrip(":")
    every = {"task": "tasks.x", "interval": {"every": 60, "period": "seconds"}}
    api.bulk_add({"good": every, "bad": every})
    at = 1_795_514_400.0
    for name, result in (("good", "k"), ("bad", "f")):  # a run each, reported as a worker with the integration does
        client.hset(f"{{{tag}}}:history", name, "1,0,0:" + record("s", stamp(at), 0.25))
        api.sharded.store_for(name).runs.run_outcome(name, stamp(at), result, runtime_code(1.5), "KeyError: 'id'")
    assert [e.name for e in list_entries(api, Filters(failing="yes")).entries] == ["bad"]
    assert [e.name for e in list_entries(api, Filters(failing="no")).entries] == ["good"]
    assert list_entries(api, Filters(q="good", failing="yes")).exact is None  # an exact name passes the filter too
    bad = request(web.base, entry_path("bad")).body
    assert "failed in 1.5s: KeyError: &#39;id&#39;" in bad and "last fail" in bad and "last ok" in bad
    assert "succeeded in 1.5s" in request(web.base, entry_path("good")).body


def test_a_page_of_entries_reads_a_bounded_slice(api: ScheduleStore, client: redis.Redis) -> None:
    api.bulk_add({f"e{i}": {"task": "tasks.x", "interval": {"every": 60, "period": "seconds"}} for i in range(3000)})
    listing = list_entries(api, Filters(task="tasks.none"), budget=1000)
    assert listing.entries == [] and not listing.done and listing.scanned <= 1000


def test_a_sharded_schedule_pages_through_every_shard_and_charts_them_all(client: redis.Redis, prefix: str,
                                                                         app: Any) -> None:
    store = ScheduleStore(client, prefix, app, shards=3)
    try:
        names = {f"s{i:04d}" for i in range(900)}
        store.bulk_add({name: {"task": "tasks.x", "interval": {"every": 60, "period": "seconds"}} for name in names})
        now = store.server_time()
        for shard in store.sharded.stores:  # as beat plans them: each due in 5 minutes
            due = [n.decode() for n in shard.client.hkeys(shard.keys.schedule)]
            shard.client.zadd(shard.keys.due, dict.fromkeys(due, now + 300))
        seen: list[str] = []
        cursor = 0
        while True:
            listing = list_entries(store, Filters(), cursor, page_size=50)
            seen += [entry.name for entry in listing.entries]
            if listing.done:
                break
            cursor = listing.cursor
        assert set(seen) == names
        view = overview(store)
        assert sum(view.per_minute) == 900 and max(view.per_minute) == 900
        assert view.status.entries == 900
    finally:
        store.drop()
