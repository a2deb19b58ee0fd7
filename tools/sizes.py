"""Report the package's modules, classes and functions that are larger than the layout aims for.

A report, not a gate: it prints what is over the limits and exits 0, so CI
shows where a split is due without failing a change that adds a line.

    python tools/sizes.py [--modules 400] [--classes 250] [--functions 60] [PATH ...]
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sizes(path: Path) -> list[tuple[str, str, int]]:
    """``(kind, name, lines)`` for the module and every class and function in it."""
    source = path.read_text(encoding="utf-8")
    found = [("module", str(path.relative_to(ROOT)), len(source.splitlines()))]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            kind = "class" if isinstance(node, ast.ClassDef) else "function"
            lines = (node.end_lineno or node.lineno) - node.lineno + 1
            found.append((kind, f"{path.relative_to(ROOT)}:{node.lineno} {node.name}", lines))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", type=int, default=400)
    parser.add_argument("--classes", type=int, default=250)
    parser.add_argument("--functions", type=int, default=60)
    parser.add_argument("paths", nargs="*", type=Path, default=[ROOT / "celerybeatredis"])
    opts = parser.parse_args()
    limits = {"module": opts.modules, "class": opts.classes, "function": opts.functions}
    files = sorted(p.resolve() for base in opts.paths for p in (base.rglob("*.py") if base.is_dir() else [base]))
    over = [(kind, name, lines) for path in files for kind, name, lines in sizes(path) if lines > limits[kind]]
    for kind, name, lines in sorted(over, key=lambda row: -row[2]):
        print(f"{kind:<8} {lines:>5} lines (limit {limits[kind]})  {name}")
    print(f"{len(over)} over the limits in {len(files)} files")


if __name__ == "__main__":
    main()
