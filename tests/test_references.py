"""Every cross-reference in the package's docstrings and comments names something that exists.

A reader follows ``:mod:`` / ``:class:`` / ``:func:`` ... references to find
where a thing lives; after a module moves, a reference to its old place
would send them nowhere. Relative references (``~.batch.Batch``) are read
from the module they stand in, as Sphinx reads them.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "celerybeatredis"
REFERENCE = re.compile(r":(?:mod|func|class|meth|attr|data):`~?([A-Za-z_.]+)`")


def references() -> list[tuple[str, int, str]]:
    """``(module, line, absolute dotted target)`` of every reference into the package."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        module = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            for target in REFERENCE.findall(line):
                if target.startswith("."):
                    dots = len(target) - len(target.lstrip("."))
                    base = package.split(".")
                    target = ".".join([*base[: len(base) - (dots - 1)], target.lstrip(".")])
                if target.startswith("celerybeatredis"):
                    found.append((module, lineno, target))
    return found


def resolves(target: str) -> bool:
    """Whether ``target`` (a module, or a name in one) exists."""
    parts = target.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            found: Any = importlib.import_module(".".join(parts[:cut]))
        except ImportError:
            continue
        for name in parts[cut:]:
            if not hasattr(found, name):
                return False
            found = getattr(found, name)
        return True
    return False


def test_the_package_has_references_to_check() -> None:
    assert len(references()) > 100


@pytest.mark.parametrize(("module", "line", "target"), references())
def test_a_reference_names_something_that_exists(module: str, line: int, target: str) -> None:
    assert resolves(target), f"{module}, line {line}: {target} does not exist"
