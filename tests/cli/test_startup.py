"""The command line starts without loading what its command does not need: ``--version`` loads no Celery, no redis-py."""

from __future__ import annotations

import subprocess
import sys

import click

from celerybeatredis.cli import celery_command, main

#: Modules that only a command that talks to a schedule needs.
HEAVY = ("celery", "kombu", "redis", "celerybeatredis.settings", "celerybeatredis.store", "celerybeatredis.cli.base",
         "celerybeatredis.cli.demo", "celerybeatredis.cli.reading", "celerybeatredis.cli.writing")


def imported(*args: str) -> set[str]:
    """The modules ``python -m celerybeatredis ARGS`` imports, as ``-X importtime`` lists them."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "celerybeatredis", *args],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return {line.rpartition("|")[2].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}


def loaded(modules: set[str], name: str) -> bool:
    return name in modules or any(module.startswith(name + ".") for module in modules)


def test_version_loads_no_celery_and_no_redis() -> None:
    modules = imported("--version")
    assert "celerybeatredis.cli" in modules
    assert [name for name in HEAVY if loaded(modules, name)] == []


def test_help_lists_every_command_of_both_entry_points() -> None:
    done = subprocess.run([sys.executable, "-m", "celerybeatredis", "--help"], capture_output=True, text=True, timeout=60)
    listed = {line.split()[0] for line in done.stdout.split("Commands:", 1)[1].splitlines() if line.strip()}
    assert listed == set(main.list_commands(click.Context(main)))
    assert {"list", "edit", "drop", "calendar", "demo"} <= listed
    assert set(celery_command.list_commands(click.Context(celery_command))) == listed - {"demo"}


def test_a_command_loads_its_own_module_only() -> None:
    modules = imported("status", "--help")
    assert loaded(modules, "celerybeatredis.cli.health")
    assert not loaded(modules, "celerybeatredis.cli.demo") and not loaded(modules, "celerybeatredis.cli.web")
