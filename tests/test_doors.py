"""Every door that writes or reads a definition gives the same verdict, in the same words.

Hypothesis makes definitions, good and broken in each way a user has broken
them (misspelled members, a crontab that never fires, wrong types, a
missing or doubled schedule kind, names with control or direction
characters), and gives each to every door: ``ScheduleStore.add``, the
command line's ``add --json``, an ``import`` line, the dashboard (its JSON
editor, or its add form for a name), and a document written straight into
Redis that a real beat tick reads. The doors must agree with
``ScheduleStore.add``: accepted, or refused with its one line; none answers
with a traceback or a 500; a refused write leaves Redis unchanged.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import redis
from celery import Celery
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from markupsafe import escape

from celerybeatredis.exceptions import CeleryBeatRedisError
from celerybeatredis.schedulers import RedisScheduler
from celerybeatredis.store import ScheduleStore

from .support.cli import Cli, snapshot
from .support.helpers import T0
from .support.web import Response, WebServer, entry_path, request

pytestmark = [pytest.mark.slow]

GOOD_INTERVAL = {"task": "tasks.door", "interval": {"every": 5, "period": "seconds"}}
GOOD_CRONTAB = {"task": "tasks.door", "crontab": {"minute": "*/5", "hour": "*"}}

#: Broken (or fine) values for single members, each as users have written them.
MEMBER_VALUES: list[tuple[str, Any]] = [
    ("max_run_count", 0), ("max_run_count", "3"), ("max_run_count", True), ("max_run_count", 3),
    ("jitter", -1), ("jitter", 2.5), ("overlap", "sometimes"), ("overlap", "skip"), ("catchup", 5),
    ("catchup", "all"), ("enabled", "yes"), ("enabled", False), ("args", {}), ("args", [1, 2]), ("kwargs", []),
    ("options", {"priority": "high"}), ("start_time", "tomorrow"), ("expires", "2030-01-01T00:00:00Z"),
    ("description", 7), ("exclude", ["no-such-calendar"]), ("exclude", "holidays"), ("one_off", 1),
    ("enabeld", False), ("intreval", {"every": 5}), ("max_runs", 3), ("descripton", "x"), ("jiter", 1),
    ("_note", "a member of the user's own"), ("name", "the seed's own name member"),
]
SCHEDULES: list[dict[str, Any]] = [
    {"interval": {"every": 5, "period": "minutes"}},
    {"interval": {"every": 0}},
    {"interval": {"every": 5, "period": "fortnights"}},
    {"interval": {"every": 5, "perod": "minutes"}},
    {"crontab": {"minute": "0", "hour": "3", "day_of_month": "31", "month_of_year": "2"}},
    {"crontab": {"minute": "0", "hour": "3", "day_of_month": "31", "month_of_year": "4,6,9"}},
    {"crontab": {"minute": "*/0"}},
    {"crontab": {"minute": "61"}},
    {"crontab": {"minutes": "5"}},
    {"crontab": {"minute": "0", "timezone": "Mars/Olympus"}},
    {"clocked": "2030-01-01T00:00:00Z"},
    {"clocked": {"at": "not a time"}},
    {"interval": {"every": 5}, "crontab": {"minute": "1"}},
    {},
]
TASKS: list[Any] = ["tasks.door", "", 5, None]
BAD_NAMES = ["a\nforged log line", "tab\there", "nul\x00byte", "right\u202eto-left", "zero\u200bwidth",
             " leading", "trailing ", "../../etc/passwd", "x" * 201, ""]


@st.composite
def definitions(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    task = draw(st.sampled_from(TASKS))
    if task is not None:
        doc["task"] = task
    doc.update(draw(st.sampled_from(SCHEDULES)))
    for member, value in draw(st.lists(st.sampled_from(MEMBER_VALUES), max_size=2, unique_by=lambda mv: mv[0])):
        doc[member] = value
    return doc


names = st.one_of(st.from_regex(r"[a-z][a-z0-9:._-]{0,30}", fullmatch=True), st.sampled_from(BAD_NAMES))


def verdict(store: ScheduleStore, name: str, doc: dict[str, Any]) -> str | None:
    """What the Python API says: None (written), or its one-line refusal."""
    try:
        store.add(name, doc)
    except CeleryBeatRedisError as exc:
        return str(exc)
    return None


def web_form(server: WebServer, path: str, action: str) -> tuple[dict[str, str], str]:
    """The hidden inputs of the form posting to ``action`` on ``path``, and the cookie the page set."""
    page = request(server.base, path)
    assert page.status == 200, page.body
    form = re.search(rf'<form[^>]*action="{re.escape(action)}"[^>]*>(.*?)</form>', page.body, re.S)
    assert form is not None, f"no form posting to {action} on {path}"
    hidden = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', form.group(1)))
    return hidden, page.headers["set-cookie"].split(";")[0]


def post(server: WebServer, path: str, action: str, fields: dict[str, str]) -> Response:
    from urllib.parse import urlencode

    hidden, cookie = web_form(server, path, action)
    return request(server.base, action, "POST", urlencode({**hidden, **fields}),
                   {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded"})


def said_by_web(reply: Response, message: str | None) -> None:
    assert reply.status < 500, reply.body
    if message is None:
        assert reply.status == 303, reply.body[:2000]
    else:
        assert reply.status == 400 and str(escape(message)) in reply.body, (message, reply.body[:3000])


def beat_reason(app: Celery, client: redis.Redis, tag: str, name: str, doc: dict[str, Any]) -> str | None:
    """Write ``doc`` as redis-cli would, let one beat tick read it; beat's quarantine reason, or None."""
    client.hset(f"{{{tag}}}:schedule", name, json.dumps(doc))
    client.zadd(f"{{{tag}}}:due", {name: 0})
    scheduler = RedisScheduler(app)
    try:
        scheduler.tick(now=T0)
    finally:
        scheduler.close()
    reason = client.hget(f"{{{tag}}}:invalid", name)
    return None if reason is None else reason.decode()


@pytest.fixture
def door_web(redis_url: str, prefix: str, api: ScheduleStore, tmp_path: Path) -> Any:
    server = WebServer(f"{redis_url}/0", prefix, log_dir=tmp_path).start()
    yield server
    server.stop()
    assert "Traceback" not in server.output(), server.output()


@settings(max_examples=30, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names, doc=definitions())
def test_every_door_gives_the_api_verdict_in_its_words(name: str, doc: dict[str, Any], api: ScheduleStore, cli: Cli,
                                                       client: redis.Redis, tag: str, app: Celery,
                                                       door_web: WebServer, tmp_path: Path) -> None:
    api.drop()
    before = snapshot(client, tag)
    expected = verdict(api, name, doc)
    if expected is not None:
        assert snapshot(client, tag) == before and "\n" not in expected
        assert expected.startswith("entry ") and "field " in expected, expected
    api.drop()

    # the command line: add --json (an argument cannot hold a NUL byte; the import below carries that name)
    if "\x00" not in name:
        done = cli.run("add", name, "--json", json.dumps(doc))
        assert "Traceback" not in done.stderr, done.stderr
        assert (done.returncode, done.stderr) == ((0, "") if expected is None else (1, f"Error: {expected}\n"))
        assert expected is not None or snapshot(client, tag) != before
        api.drop()

    # an import line
    lines = tmp_path / "entries.jsonl"
    lines.write_text(json.dumps({"name": name, "definition": doc}) + "\n")
    done = cli.run("import", str(lines))
    assert "Traceback" not in done.stderr, done.stderr
    if expected is None:
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 1 and done.stderr.startswith(f"Error: line 1: {expected}; nothing imported"), done.stderr
        assert snapshot(client, tag) == before
    api.drop()

    # the dashboard: the JSON editor of an entry of that name, or, for a name no entry may have, the add form
    if expected is not None and expected == verdict(api, name, GOOD_INTERVAL):  # the name is at fault
        said_by_web(post(door_web, "/add", "/add", {"name": name, "task": "tasks.door", "kind": "interval",
                                                    "every": "5s", "enabled": "on"}), expected)
        assert snapshot(client, tag) == before
    else:
        api.drop()
        api.add(name, GOOD_CRONTAB)
        stored = snapshot(client, tag)
        said_by_web(post(door_web, entry_path(name), "/entry/json", {"definition": json.dumps(doc)}), expected)
        assert expected is None or snapshot(client, tag) == stored
    api.drop()

    # redis-cli and a real beat tick: the same reason for the document (beat runs a stored name as it is)
    expected_doc = verdict(api, "door-beat", doc)
    api.drop()
    assert beat_reason(app, client, tag, "door-beat", doc) == expected_doc
    api.drop()


CRONS = ["*/5 * * * *", "0 9 * * mon-fri", "0 3 31 2 *", "0 3 31 4,6 *", "*/0 * * * *", "61 * * * *", "* * *", "0 25 * * *"]
EVERIES = ["5s", "2h", "250ms", "0s", "fortnight"]


@st.composite
def flag_sets(draw: st.DrawFn) -> dict[str, str]:
    flags = {"task": draw(st.sampled_from(["tasks.door", "tasks.other", ""]))}
    kind = draw(st.sampled_from(["cron", "every"]))
    flags[kind] = draw(st.sampled_from(CRONS if kind == "cron" else EVERIES))
    for option, values in (("overlap", ["skip", "buffer_one", "sometimes"]), ("jitter", ["2.5", "-1", "0"]),
                           ("catchup", ["all", "never"]), ("description", ["nightly", "x" * 50])):
        if draw(st.booleans()):
            flags[option] = draw(st.sampled_from(values))
    return flags


@settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=names, flags=flag_sets())
def test_the_add_flags_and_the_dashboards_add_form_say_the_same(name: str, flags: dict[str, str], api: ScheduleStore,
                                                                 cli: Cli, client: redis.Redis, tag: str,
                                                                 door_web: WebServer) -> None:
    api.drop()
    before = snapshot(client, tag)
    message: str | None = None
    if "\x00" not in name:  # (an argument cannot hold a NUL byte)
        args = [f"--{option}={value}" for option, value in flags.items()]
        done = cli.run("add", name, *args)
        assert "Traceback" not in done.stderr, done.stderr
        if done.returncode:
            assert done.returncode in (1, 2) and done.stderr.endswith("\n"), done.stderr
            message = done.stderr.splitlines()[-1].removeprefix("Error: ")
            assert snapshot(client, tag) == before
        api.drop()
    form = {"name": name, "kind": "crontab" if "cron" in flags else "interval", "enabled": "on", **flags}
    reply = post(door_web, "/add", "/add", form)
    if "\x00" in name:
        assert reply.status == 400, reply.body  # the name's refusal, or the flags', which are read first
    else:
        said_by_web(reply, message)
    if message is None or reply.status != 400:
        return
    assert snapshot(client, tag) == before
    if message.startswith("entry "):  # a definition the flags built: the Python API refuses it in the same words
        spec: dict[str, Any] = (dict(zip(("minute", "hour", "day_of_month", "month_of_year", "day_of_week"), flags["cron"].split()))
                                if "cron" in flags else {"every": flags["every"]})
        if "every" in flags:
            return  # a duration that reads is never refused later; one that does not is the flag's own error
        doc: dict[str, Any] = {"task": flags["task"], "crontab": spec, "enabled": True}
        doc.update({k: (json.loads(v) if k == "jitter" else v) for k, v in flags.items() if k not in ("task", "cron")})
        assert verdict(api, name, doc) == message
    api.drop()
