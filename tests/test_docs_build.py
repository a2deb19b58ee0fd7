"""The documentation in docs/ builds with Sphinx, warnings turned into errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_docs_build_without_warnings(tmp_path: Path) -> None:
    """A broken reference, a docstring autodoc cannot read or a malformed table fails here, with Sphinx's output."""
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-b", "html", "docs", str(tmp_path / "html")],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, f"sphinx-build failed:\n{done.stdout}\n{done.stderr}"
    built = {p.name for p in (tmp_path / "html").glob("*.html")}
    pages = {p.with_suffix(".html").name for p in (ROOT / "docs").glob("*.rst")}
    assert pages <= built, pages - built
    assert "ScheduleStore.add" in (tmp_path / "html" / "api.html").read_text()
