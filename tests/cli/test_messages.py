"""What the command line says when a read finds nothing, a change will not last, or the server is not what it seems."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from celerybeatredis.cli import main
from celerybeatredis.cli.writing import add_command
from celerybeatredis.store import ScheduleStore

from ..support.cli import Cli
from ..support.web import WebServer

EVERY_5S = {"task": "tasks.s", "interval": {"every": 5, "period": "seconds"}}
#: How each entry point points at another schedule, as the messages name it.
ELSEWHERE = "another schedule: --url and --prefix, or CELERYBEATREDIS_URL and CELERYBEATREDIS_PREFIX"


# --- a read that finds nothing names where it looked ------------------------------------------------------------


def test_an_empty_list_names_the_schedule_it_read_and_how_to_choose_another(cli: Cli, tag: str, redis_url: str) -> None:
    url = f"{redis_url}/0"
    footer = cli.ok("list").strip().splitlines()[-1]
    assert footer == f"0 shown of 0 entries: {{{tag}}} at {url} holds no entries; {ELSEWHERE}"


def test_an_empty_export_names_the_schedule_it_read(cli: Cli, tag: str, redis_url: str) -> None:
    done = cli.run("export")
    assert done.returncode == 0 and done.stdout == ""
    assert done.stderr == f"exported 0 entries: {{{tag}}} at {redis_url}/0 holds no entries; {ELSEWHERE}\n"


def test_the_list_of_a_schedule_with_entries_keeps_its_plain_footer(cli: Cli, api: ScheduleStore) -> None:
    api.add("a", EVERY_5S)
    assert cli.ok("list", "--match", "zzz*").strip().splitlines()[-1] == "0 shown of 1 entries"


@pytest.mark.parametrize("args", [["show", "nope"], ["next", "nope"], ["history", "nope"], ["edit", "nope", "--task", "t"],
                                  ["remove", "nope"], ["pause", "nope", "--reason", "r"], ["calendar", "show", "nope"]])
def test_an_unknown_name_names_the_schedule_and_how_to_choose_another(cli: Cli, tag: str, redis_url: str,
                                                                       args: list[str]) -> None:
    error = cli.fails(*args)
    assert f"no {'calendar' if args[0] == 'calendar' else 'entry'} named 'nope' in {{{tag}}} at {redis_url}/0; " \
           f"{ELSEWHERE}" in error


def test_unknown_names_name_the_schedule_and_hide_its_password(cli: Cli, tag: str, redis_url: str) -> None:
    url = redis_url.replace("redis://", "redis://:s3cret@") + "/0"
    error = Cli(url, cli.prefix).fails("remove", "x", "y")
    assert "s3cret" not in error
    assert f"no entries named 'x', 'y' in {{{tag}}} at {redis_url.replace('redis://', 'redis://:****@')}/0" in error


def test_the_celery_plugin_names_the_apps_settings_to_choose_another(tmp_path: Path, redis_url: str, prefix: str) -> None:
    (tmp_path / "proj.py").write_text(
        "from celery import Celery\n"
        f"app = Celery('proj', broker='{redis_url}/0')\n"
        f"app.conf.update(redis_scheduler_url='{redis_url}/0', redis_scheduler_key_prefix='{prefix}')\n")
    done = subprocess.run([sys.executable, "-m", "celery", "-A", "proj", "schedule", "show", "nope"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert "the app's redis_scheduler_url and redis_scheduler_key_prefix" in done.stderr


# --- Redis errors name the URL ------------------------------------------------------------------------------------


@pytest.fixture
def not_redis() -> Iterator[int]:
    """A TCP server that answers as RabbitMQ does to bytes that are not AMQP: its protocol header, then it hangs up."""
    server = socket.create_server(("127.0.0.1", 0))
    port = int(server.getsockname()[1])

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"AMQP\x00\x00\x09\x01")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield port
    server.close()


def test_a_server_that_is_not_redis_is_named_as_such(cli: Cli, not_redis: int) -> None:
    url = f"redis://127.0.0.1:{not_redis}/0"
    error = Cli(url, cli.prefix).fails("list")
    assert error == f"Error: the server at {url} is not a Redis server (its answer is not in Redis's protocol)\n"


def test_a_database_out_of_range_names_the_url(cli: Cli, redis_url: str) -> None:
    error = Cli(f"{redis_url}/99", cli.prefix).fails("list")
    assert error == f"Error: Redis error at {redis_url}/99: DB index is out of range\n"


# --- changes to beat_schedule entries last until beat starts ------------------------------------------------------


STATIC_NOTE = "note: s comes from beat_schedule: the next beat start puts the code's version back (change beat_schedule to keep it)"


@pytest.mark.parametrize("args", [["edit", "s", "--every", "10s"], ["disable", "s"], ["pause", "s", "--reason", "r"],
                                  ["remove", "s"]])
def test_a_change_to_a_beat_schedule_entry_says_that_beat_puts_it_back(cli: Cli, api: ScheduleStore, args: list[str]) -> None:
    api.sharded.put_raw({"s": json.dumps(EVERY_5S)}, static=True)
    done = cli.run(*args)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == STATIC_NOTE


@pytest.mark.parametrize("args", [["edit", "d", "--every", "10s"], ["disable", "d"], ["run-now", "s"]])
def test_changes_that_last_carry_no_note(cli: Cli, api: ScheduleStore, args: list[str]) -> None:
    api.sharded.put_raw({"s": json.dumps(EVERY_5S)}, static=True)
    api.add("d", EVERY_5S)
    done = cli.run(*args)
    assert done.returncode == 0 and done.stderr == "", done.stderr


# --- edit without a terminal ------------------------------------------------------------------------------------


def test_edit_without_flags_and_without_a_terminal_refuses_in_one_line(cli: Cli, api: ScheduleStore) -> None:
    api.add("e", EVERY_5S)
    before = api.get("e").raw
    # An editor that would "save" an unchanged file: without the refusal the command would pass as "e unchanged".
    error = cli.fails("edit", "e", env={"EDITOR": "true", "VISUAL": ""})
    assert error == "Error: edit e: no terminal for $EDITOR; give the changes as flags, --set/--unset or --json\n"
    assert api.get("e").raw == before


# --- wording ----------------------------------------------------------------------------------------------------


def test_calendar_list_agrees_in_number(cli: Cli) -> None:
    cli.ok("calendar", "set", "one", "--date", "2030-12-25", "--range", "2030-12-24:2030-12-31")
    cli.ok("calendar", "set", "two", "--date", "2030-12-25", "--date", "2030-12-26")
    listed = cli.ok("calendar", "list").splitlines()
    assert listed == ["one: 1 date; 1 range", "two: 2 dates; 0 ranges"]


def _commands(group: click.Group, ctx: click.Context) -> Iterator[tuple[str, click.Command]]:
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None
        if isinstance(command, click.Group):
            yield from ((f"{name} {sub}", c) for sub, c in _commands(command, ctx))
        else:
            yield name, command


def test_every_option_of_every_command_has_help() -> None:
    ctx = click.Context(main)
    bare = [f"{name} {'/'.join(param.opts)}" for name, command in _commands(main, ctx) for param in command.params
            if isinstance(param, click.Option) and not param.help and param.name != "help"]
    assert bare == []


def test_add_help_speaks_of_add_not_only_of_edit() -> None:
    [timezone] = [param for param in add_command.params if param.name == "timezone"]
    assert isinstance(timezone, click.Option) and timezone.help
    assert "default: the app's" in timezone.help
    assert not re.search(r"(?<!edit takes it )alone", timezone.help), timezone.help


def test_the_dashboard_banner_has_no_parentheses_in_parentheses(redis_url: str, prefix: str, tag: str,
                                                                api: ScheduleStore, tmp_path: Path) -> None:
    server = WebServer(f"{redis_url}/0", prefix, log_dir=tmp_path).start()
    try:
        banner = next(line for line in server.output().splitlines() if line.startswith("dashboard of"))
    finally:
        server.stop()
    assert banner == f"dashboard of {{{tag}}} on http://127.0.0.1:{server.port} (no authentication, loopback only)"
