"""The package's imports, read with ``ast``: no circle, none against the layer order, the Lua wire kept in storage.

Every import counts: at the top of a module, under ``TYPE_CHECKING`` and inside
a function. The order is the one docs/architecture.rst draws; a module may
import from its own layer and the layers below it, never above.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "celerybeatredis"

#: The layers, bottom first: a wing (a folder of the package) or a module at its top level.
LAYERS = ("exceptions", "storage", "settings", "observe", "definitions", "policies", "decisions", "delivery", "beat",
          "managing", "store", "moving", "schedulers", "worker", "web", "cli", "__main__")
#: What the package's face (``__init__.py``) may import: the exceptions it offers.
FACE = "celerybeatredis"


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules that module ``name`` imports, wherever the import stands."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join([*parent, *([node.module] if node.module else [])])
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        elif isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target in known and target != name:
                found.add(target)
                break
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports."""
    known = modules()
    names = set(known)
    return {name: imports(name, path, names) for name, path in known.items()}


def layer(name: str) -> int:
    """The rank of module ``name`` in :data:`LAYERS` (the package's face ranks with the exceptions)."""
    if name == FACE:
        return 0
    return LAYERS.index(name.split(".")[1])


def test_every_module_has_a_layer() -> None:
    for name in graph():
        if name != FACE:
            assert name.split(".")[1] in LAYERS, f"{name} is in no layer of LAYERS (and of docs/architecture.rst)"


def test_no_import_runs_against_the_layers() -> None:
    against = [f"{name} ({LAYERS[layer(name)]}) imports {target} ({LAYERS[layer(target)]})"
               for name, targets in graph().items() for target in sorted(targets) if layer(target) > layer(name)]
    assert against == []


def test_no_modules_import_each_other_directly_or_around_a_loop() -> None:
    edges = graph()
    circles: list[list[str]] = []
    state: dict[str, int] = {}  # 1 being walked, 2 done
    path: list[str] = []

    def walk(name: str) -> None:
        state[name] = 1
        path.append(name)
        for target in sorted(edges[name]):
            if state.get(target) == 1:
                circles.append([*path[path.index(target):], target])
            elif target not in state:
                walk(target)
        path.pop()
        state[name] = 2

    for name in sorted(edges):
        if name not in state:
            walk(name)
    assert circles == []


PAGE = ROOT / "docs" / "architecture.rst"


def test_the_layers_are_the_ones_the_architecture_page_draws() -> None:
    after = PAGE.read_text(encoding="utf-8").split(".. layers, bottom first (tests/test_layers.py reads this list):", 1)[1]
    block = re.search(r"\.\. code-block:: text\n\n((?:   \S+\n)+)", after)
    assert block is not None and tuple(block.group(1).split()) == LAYERS


def test_the_architecture_page_names_every_module() -> None:
    page = PAGE.read_text(encoding="utf-8")
    sections = dict(re.findall(r"^``(celerybeatredis/|\w+/)``\n((?:   .*\n)+)", page, re.MULTILINE))
    for path in PACKAGE.rglob("*.py"):
        folder = path.parent.name + "/"
        listed = sections.get("celerybeatredis/" if path.parent == PACKAGE else folder, "")
        if path.name != "__init__.py" or path.parent == PACKAGE:
            assert f"``{path.name}``" in listed, f"docs/architecture.rst does not say what {path.relative_to(ROOT)} is"


@pytest.mark.parametrize("wire", ["EVALSHA", "register_script", "script_source", "script_keys", "SCRIPT_KEYS"])
def test_the_lua_wire_is_used_only_inside_storage(wire: str) -> None:
    outside = [str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py")
               if "storage" not in path.relative_to(PACKAGE).parts and wire in path.read_text(encoding="utf-8")]
    assert outside == []


def test_beat_has_one_logger_definition() -> None:
    defined = {str(path.relative_to(ROOT)) for path in PACKAGE.rglob("*.py") if "getLogger(" in path.read_text(encoding="utf-8")}
    # Beat's modules log through observe/log.py; the worker integration, loaded in workers, names its own.
    assert defined == {"celerybeatredis/observe/log.py", "celerybeatredis/worker.py"}


def test_a_function_local_import_never_dodges_a_circle() -> None:
    """An import inside a function is there for an optional package, a worker's start-up or the command line's,
    never to break a loop: moved to the top of its module, it would still make no circle (the module-level graph
    already counts it). The command line's group (``celerybeatredis.cli``) imports a command's module only when
    that command runs, so that ``--version`` and ``--help`` load neither Celery nor redis-py."""
    local = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                local += [(name, inner.lineno) for inner in ast.walk(node) if isinstance(inner, (ast.Import, ast.ImportFrom))]
    assert {name for name, _ in local} <= {"celerybeatredis.schedulers", "celerybeatredis.worker", "celerybeatredis.cli",
                                           "celerybeatredis.cli.web"}
