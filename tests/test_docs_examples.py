"""Every example of README.rst and docs/**/*.rst runs as printed.

The runner collects every code block and runs it against a redis-server this
module starts (tests/support/redis_server.py), in a directory of its own per page. It
fails on a block it does not know how to run, so no example is silently left
out. The only rewriting it does is the address: ``localhost:6379`` (the
documented default) becomes ``127.0.0.1:<port>`` of that server, and
``redis-cli`` gets ``-p <port>``. Nothing else of an example is changed.

What each block is:

* ``.. code-block:: python``: run as a script; ``.. example: file NAME``
  before it makes it a file of the quick start's project instead (written, not
  run), and ``.. example: config`` a settings fragment that is exec'd and
  parsed by ``celerybeatredis.settings.Settings`` (never connected to).
* ``.. code-block:: console``: each ``$ `` line is a command, the lines after
  it its expected output (``...`` stands for anything; a line of only ``...``
  for any lines). Commands run in bash with a terminal, as a user sees them.
  ``celery ... worker`` and ``celery ... beat`` run in the background until
  the page ends. ``pip`` commands are checked, not run: the extras they name
  exist and are installed, and nothing is installed by name from the package
  index. ``export VAR=VALUE`` sets VAR for the rest of the page.
  ``.. example: exit N``: every command exits with N instead of 0.
  ``.. example: long``: too long to run here (the demo, the test suite, the
  benchmarks): the program is run with ``--help`` and every ``--option`` the
  example uses must be listed; a ``pytest`` command must be in .ci/run as
  printed, which CI runs.
* ``.. code-block:: text``: output or other text, not run; ``.. example:
  output`` compares it with the output of the python block before it, and
  ``.. example: output worker`` (or ``beat``) waits until each of its lines is
  in that background process's log.
* ``.. literalinclude::`` of a file of ``deploy/``: shown as it is, not run
  here (``tests/test_deploy.py`` and ``tests/scenarios/test_deploying.py``
  check those files).
* ``.. code-block:: json``: ``.. example: definition`` is validated as a
  schedule definition of the quick start's schedule (database 1, so a calendar
  it excludes is one an earlier block wrote there), ``.. example: export`` as
  a line of ``celerybeatredis export``.

The README is one scenario (its quick start, then its recipes against the
running worker and beat); each docs page is a test of its own, in a flushed
server, with the quick start's project files in its directory.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pty
import re
import select
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
import redis
from celery import Celery
from packaging.requirements import Requirement

from celerybeatredis import __version__
from celerybeatredis.moving.transfer import parse_line
from celerybeatredis.settings import Settings
from celerybeatredis.store import ScheduleStore

from .support.redis_server import RedisServer, cli_binary

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.rst"
DOC_PAGES = sorted((ROOT / "docs").rglob("*.rst"))
DOCUMENTED_ADDRESS = "localhost:6379"
DIRECTIVE = re.compile(r"^(\s*)\.\.\s+code-block::\s*(\S*)\s*$")
MARKER = re.compile(r"^\s*\.\.\s+example:\s*(.*?)\s*$")
#: ``.. literalinclude::`` shows a file of deploy/ as it is: tests/test_deploy.py checks those files, and
#: tests/scenarios/test_deploying.py runs them.
INCLUDE = re.compile(r"^\s*\.\.\s+literalinclude::\s*(\S+)\s*$")
OTHER_BLOCKS = re.compile(r"^\s*\.\.\s+(code|sourcecode|highlight|literalinclude|doctest|testcode)::")
KNOWN = {
    "python": {"", "file", "config"},
    "console": {"", "exit", "long"},
    "text": {"", "output"},
    "json": {"definition", "export"},
}
#: Waiting for a background process's output, and for one command.
OUTPUT_TIMEOUT = 60.0
COMMAND_TIMEOUT = 180.0


@dataclass(frozen=True)
class Block:
    """One code block: where it is, its language, the runner's marker before it, its text."""

    path: Path
    line: int
    language: str
    marker: str
    text: str

    @property
    def where(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"

    @property
    def kind(self) -> str:
        return self.marker.split(" ", 1)[0]

    @property
    def argument(self) -> str:
        return self.marker.split(" ", 1)[1] if " " in self.marker else ""


def collect(path: Path) -> list[Block]:
    """Every code block of ``path``; raise on a block written in a form the runner does not take."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    marker_at: int | None = None
    marker = ""
    i = 0
    while i < len(lines):
        line = lines[i]
        where = f"{path.relative_to(ROOT)}:{i + 1}"
        included = INCLUDE.match(line)
        if included:
            shown = (path.parent / included.group(1)).resolve()
            assert shown.is_relative_to(ROOT / "deploy") and shown.is_file(), f"{where}: include only files of deploy/"
            i += 1
            continue
        if OTHER_BLOCKS.match(line):
            raise AssertionError(f"{where}: use '.. code-block:: LANGUAGE', not {line.strip()!r}")
        if line.rstrip().endswith("::") and not line.lstrip().startswith(".."):
            raise AssertionError(f"{where}: a literal block ('::') has no language; use '.. code-block:: LANGUAGE'")
        found = MARKER.match(line)
        if found:
            if marker_at is not None:
                raise AssertionError(f"{path.relative_to(ROOT)}:{marker_at + 1}: marker without a code block after it")
            marker_at, marker = i, found.group(1)
            i += 1
            continue
        directive = DIRECTIVE.match(line)
        if not directive:
            if marker_at is not None and line.strip():
                raise AssertionError(f"{path.relative_to(ROOT)}:{marker_at + 1}: marker without a code block after it")
            i += 1
            continue
        indent = len(directive.group(1))
        body: list[str] = []
        j = i + 1
        while j < len(lines) and (not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent):
            body.append(lines[j])
            j += 1
        text = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
        blocks.append(Block(path, i + 1, directive.group(2), marker, text))
        marker_at, marker = None, ""
        i = j
    if marker_at is not None:
        raise AssertionError(f"{path.relative_to(ROOT)}:{marker_at + 1}: marker without a code block after it")
    return blocks


def check_known(block: Block) -> None:
    """Fail on a block the runner does not know how to run."""
    kinds = KNOWN.get(block.language)
    assert kinds is not None, f"{block.where}: no runner for a {block.language or 'language-less'!r} block"
    assert block.kind in kinds, f"{block.where}: no runner for a {block.language} block marked {block.marker!r}"
    if block.kind == "file":
        assert block.argument, f"{block.where}: 'file' needs a file name"
    if block.kind == "output":
        assert block.argument in ("", "worker", "beat"), f"{block.where}: output of {block.argument!r}?"
    if block.language == "console":
        assert block.text.startswith("$ "), f"{block.where}: a console block starts with a '$ ' command"


def quick_start_files() -> dict[str, str]:
    """The files of the README's quick start project, as printed."""
    return {b.argument: b.text for b in collect(README) if b.kind == "file"}


# --- output ------------------------------------------------------------------------------------


def output_pattern(expected: str) -> re.Pattern[str]:
    """``expected`` as a regular expression: ``...`` matches anything, a line of only ``...`` any lines."""
    parts = []
    for line in expected.rstrip("\n").splitlines():
        if line.strip() == "...":
            parts.append(r"(?:[^\n]*\n)*?")
        else:
            parts.append(re.escape(line.rstrip()).replace(re.escape("..."), ".*?") + "\n")
    return re.compile("".join(parts))


def normalized(output: str) -> str:
    lines = [line.rstrip() for line in output.replace("\r\n", "\n").replace("\r", "\n").split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "".join(line + "\n" for line in lines)


def assert_output(where: str, command: str, expected: str, actual: str, rewritten: str | None = None) -> None:
    """``actual`` matches ``expected`` as printed, or with the address rewritten (a program may print either)."""
    candidates = [expected] if rewritten is None else [expected, rewritten]
    assert any(output_pattern(c).fullmatch(normalized(actual)) for c in candidates), (
        f"{where}: {command!r} printed:\n{actual}\nexpected:\n{candidates[-1]}")


def run_in_terminal(command: str, cwd: Path, env: dict[str, str]) -> tuple[int, str]:
    """Run ``command`` in bash with stdout and stderr on a terminal, as a user sees its output."""
    master, slave = pty.openpty()
    process = subprocess.Popen(["bash", "-c", command], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                               stdout=slave, stderr=slave, start_new_session=True)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + COMMAND_TIMEOUT
    try:
        while True:
            ready, _, _ = select.select([master], [], [], 0.2)
            if ready:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
            elif process.poll() is not None:
                break
            if time.monotonic() > deadline:
                os.killpg(process.pid, signal.SIGKILL)
                raise AssertionError(f"{command!r} did not finish in {COMMAND_TIMEOUT}s:\n{b''.join(chunks).decode()}")
        return process.wait(), b"".join(chunks).decode(errors="replace")
    finally:
        os.close(master)


# --- background processes -------------------------------------------------------------------------


@dataclass
class Background:
    """A ``celery worker`` / ``celery beat`` started by an example, its output in a log file."""

    command: str
    log: Path
    process: subprocess.Popen[bytes]

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for(self, where: str, expected: str) -> None:
        """Wait until every line of ``expected`` matches a line of the log (indentation aside)."""
        patterns = {line.strip(): output_pattern(line.strip()) for line in expected.splitlines() if line.strip()}
        deadline = time.monotonic() + OUTPUT_TIMEOUT
        while True:
            lines = [line.strip() + "\n" for line in self.output().splitlines()]
            missing = [text for text, p in patterns.items() if not any(p.fullmatch(line) for line in lines)]
            if not missing:
                return
            if self.process.poll() is not None or time.monotonic() > deadline:
                state = "exited" if self.process.poll() is not None else f"after {OUTPUT_TIMEOUT}s"
                raise AssertionError(f"{where}: {self.command!r} ({state}) never printed\n" + "\n".join(missing) + "\n"
                                     f"its output:\n{self.output()[-6000:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


# --- the runner ---------------------------------------------------------------------------------


def extras_and_requirements() -> tuple[set[str], list[Requirement]]:
    dist = metadata.distribution("celerybeat-redis")
    return set(dist.metadata.get_all("Provides-Extra") or []), [Requirement(r) for r in dist.requires or []]


def installed(requirement: Requirement) -> bool:
    try:
        metadata.version(requirement.name)
    except metadata.PackageNotFoundError:
        return False
    return True


@dataclass
class Runner:
    """Runs one page's blocks in order, in ``workdir``, against the server on ``port``."""

    port: int
    workdir: Path
    env: dict[str, str] = field(default_factory=dict)
    background: dict[str, Background] = field(default_factory=dict)
    last_output: str | None = None
    ran: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CELERYBEATREDIS_") and k != "REDIS_URL"}
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
        env.pop("PYTHONPATH", None)
        self.env = env
        self.redis_cli = cli_binary()

    def rewrite(self, text: str) -> str:
        """The only rewriting: the documented address becomes the test server's."""
        text = text.replace(DOCUMENTED_ADDRESS, f"127.0.0.1:{self.port}")
        return re.sub(r"(?<![\w/.-])redis-cli(?=\s)", f"{shlex.quote(self.redis_cli)} -p {self.port}", text)

    def count(self, kind: str) -> None:
        self.ran[kind] = self.ran.get(kind, 0) + 1

    def run(self, block: Block) -> None:
        check_known(block)
        handler = getattr(self, f"run_{block.language}")
        handler(block)

    def close(self) -> None:
        for process in self.background.values():
            process.stop()

    # python

    def run_python(self, block: Block) -> None:
        source = self.rewrite(block.text)
        if block.kind == "file":
            (self.workdir / block.argument).write_text(source)
            self.count("python file")
            return
        if block.kind == "config":
            self.check_config(block, source)
            self.count("python config")
            return
        script = self.workdir / f"example_{block.line}.py"
        script.write_text(source)
        done = subprocess.run([sys.executable, script.name], cwd=self.workdir, env=self.env, capture_output=True,
                              text=True, timeout=COMMAND_TIMEOUT)
        assert done.returncode == 0, f"{block.where}: exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        self.last_output = done.stdout
        self.count("python script")

    @staticmethod
    def check_config(block: Block, source: str) -> None:
        namespace: dict[str, object] = {}
        exec(compile(source, block.where, "exec"), namespace)
        settings = {k: v for k, v in namespace.items() if not k.startswith("__")}
        known = {f"redis_scheduler_{f.name}" for f in dataclasses.fields(Settings)}
        known |= set(re.findall(r'"(CELERY_REDIS_SCHEDULER_\w+)"', (ROOT / "celerybeatredis" / "settings.py").read_text()))
        celery_names = {key.lower() for key in Celery(set_as_current=False).conf.keys()}
        unknown = [k for k in settings if k not in known and k.lower() not in celery_names]
        assert not unknown, f"{block.where}: not a setting: {unknown}"
        app = Celery("example", set_as_current=False)
        app.conf.update(settings)
        try:
            Settings.from_app(app)
        except ValueError as exc:
            raise AssertionError(f"{block.where}: {exc}") from None

    # text and json

    def run_text(self, block: Block) -> None:
        if block.kind != "output":
            self.count("text (not run)")
            return
        expected = self.rewrite(block.text)
        if block.argument:
            process = self.background.get(block.argument)
            assert process is not None, f"{block.where}: no {block.argument} is running"
            process.wait_for(block.where, expected)
            self.count(f"text output of {block.argument}")
            return
        assert self.last_output is not None, f"{block.where}: no python block ran before this output"
        assert_output(block.where, "the python block before", block.text, self.last_output, expected)
        self.count("text output of python")

    def run_json(self, block: Block) -> None:
        document = json.loads(block.text)
        store = ScheduleStore(redis.Redis(port=self.port, db=1), "tasks:meta:")  # the quick start's schedule
        if block.kind == "definition":
            store.validate("example", document)
        else:
            parse_line(store, json.dumps(document), 1)
        self.count(f"json {block.kind}")

    # console

    def run_console(self, block: Block) -> None:
        for command, expected in commands(block):
            self.run_command(block, command, expected)

    def run_command(self, block: Block, command: str, expected: str) -> None:
        where = f"{block.where}: $ {command}"
        if "pytest" in shlex.split(command, comments=True):
            ci = (ROOT / ".ci" / "run").read_text().splitlines()
            assert command in ci, f"{where}: .ci/run does not run this command as printed"
        for part in command.split(" && "):
            self.run_part(block, where, part, expected)

    def run_part(self, block: Block, where: str, command: str, expected: str) -> None:
        words = shlex.split(command, comments=True)
        if words[0] == "export":
            name, _, value = words[1].partition("=")
            self.env[name] = self.rewrite(value)
            self.count("console export")
            return
        if words[0] == "pip":
            self.check_pip(where, words)
            self.count("console pip (checked)")
            return
        if words[0] == "pytest":
            self.count("console pytest (in .ci/run)")
            return
        if block.kind == "long":
            self.check_help(where, words)
            self.count("console long (--help)")
            return
        if words[0] == "celery" and ("worker" in words or "beat" in words):
            assert not expected, f"{where}: a background process has its output in an 'output' block"
            role = "worker" if "worker" in words else "beat"
            log = self.workdir / f"{role}.log"
            process = subprocess.Popen(["bash", "-c", self.rewrite(command)], cwd=self.workdir, env=self.env,
                                       stdin=subprocess.DEVNULL, stdout=log.open("wb"), stderr=subprocess.STDOUT,
                                       start_new_session=True)
            self.background[role] = Background(command, log, process)
            self.count(f"console {role} (background)")
            return
        code, output = run_in_terminal(self.rewrite(command), self.workdir, self.env)
        want = int(block.argument) if block.kind == "exit" else 0
        assert code == want, f"{where}: exit {code}, not {want}; output:\n{output}"
        if expected:
            assert_output(where, command, expected, output, self.rewrite(expected))
        self.count(f"console {words[0]}")

    @staticmethod
    def check_pip(where: str, words: list[str]) -> None:
        """A pip command names this project (or a wheel of it) and extras that exist and are installed."""
        assert words[1] in ("install", "wheel"), f"{where}: pip {words[1]}?"
        extras, requirements = extras_and_requirements()
        args = iter(words[2:])
        for arg in args:
            if arg in ("-w", "--wheel-dir"):
                next(args)
                continue
            if arg.startswith("-"):
                continue
            wheel = f"dist/celerybeat_redis-{__version__}-py3-none-any.whl"
            if arg == wheel:
                continue
            found = re.fullmatch(r"\.(?:\[([\w,-]+)\])?", arg)
            assert found, f"{where}: installs {arg!r}; install this project from its checkout ('.') or {wheel}"
            for extra in (found.group(1) or "").split(","):
                if not extra:
                    continue
                assert extra in extras, f"{where}: no extra {extra!r} in setup.py"
                for req in requirements:
                    if req.marker and req.marker.evaluate({"extra": extra}):
                        assert installed(req), f"{where}: {req.name} of the {extra} extra is not installed"
        assert metadata.version("celerybeat-redis") == __version__

    def check_help(self, where: str, words: list[str]) -> None:
        """A command too long to run: its program takes every ``--option`` the example gives."""
        first = next((i for i, w in enumerate(words) if w.startswith("--")), len(words))
        done = subprocess.run([*words[:first], "--help"], cwd=ROOT, env=self.env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT)
        assert done.returncode == 0, f"{where}: --help exit {done.returncode}\n{done.stdout}\n{done.stderr}"
        for option in (w.split("=", 1)[0] for w in words[first:] if w.startswith("--")):
            assert option in done.stdout, f"{where}: {option} is not an option of {' '.join(words[:first])}"


def commands(block: Block) -> Iterator[tuple[str, str]]:
    """``(command, expected output)`` for each ``$`` line of a console block."""
    command: str | None = None
    output: list[str] = []
    for line in block.text.splitlines():
        if line.startswith("$ "):
            if command is not None:
                yield command, "\n".join(output)
            command, output = line[2:], []
        else:
            output.append(line)
    if command is not None:
        yield command, "\n".join(output)


# --- tests ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs_server() -> Iterator[RedisServer]:
    """A redis-server of the examples' own: each page starts from an empty server."""
    server = RedisServer().start()
    try:
        yield server
    finally:
        server.cleanup()


def run_page(path: Path, server: RedisServer, workdir: Path, project: dict[str, str] | None = None) -> Runner:
    redis.Redis(port=server.port).flushall()
    runner = Runner(server.port, workdir)
    for name, text in (project or {}).items():
        (workdir / name).write_text(runner.rewrite(text))
    try:
        for block in collect(path):
            runner.run(block)
    finally:
        runner.close()
    return runner


def test_every_block_is_one_the_runner_knows() -> None:
    """Checked without running anything, so an unknown block fails even when the slow tests are left out."""
    blocks = [block for path in (README, *DOC_PAGES) for block in collect(path)]
    assert blocks
    for block in blocks:
        check_known(block)


def test_readme_test_command_is_what_ci_runs() -> None:
    commands_in_readme = [c for b in collect(README) if b.language == "console" for c, _ in commands(b)]
    assert "pip install -e '.[test]' && pytest" in commands_in_readme
    assert "pip install -e '.[server]' && python -m celerybeatredis demo" in commands_in_readme
    assert "pip install -e '.[test]' && pytest" in (ROOT / ".ci" / "run").read_text().splitlines()


@pytest.mark.slow
@pytest.mark.e2e
def test_readme_quick_start_and_recipes(docs_server: RedisServer, tmp_path: Path) -> None:
    """The quick start as one scenario: its files, a worker and beat, the run in the worker's log, then the recipes."""
    runner = run_page(README, docs_server, tmp_path)
    assert runner.ran.get("console worker (background)") == 1 and runner.ran.get("console beat (background)") == 1
    assert runner.ran.get("text output of worker", 0) >= 2


def page_param(page: Path) -> object:
    """A page that starts celery processes is slow and end to end."""
    starts = re.search(r"^\s*\$ celery .*\b(worker|beat)\b", page.read_text(), re.MULTILINE)
    return pytest.param(page, id=page.stem, marks=[pytest.mark.slow, pytest.mark.e2e] if starts else [])


@pytest.mark.parametrize("page", [page_param(p) for p in DOC_PAGES])
def test_docs_page_examples(page: Path, docs_server: RedisServer, tmp_path: Path) -> None:
    run_page(page, docs_server, tmp_path, quick_start_files())
