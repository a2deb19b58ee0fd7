"""Sphinx configuration of the celerybeat-redis documentation (default theme, no extra packages)."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from celerybeatredis import __version__  # noqa: E402

project = "celerybeat-redis"
author = "celerybeat-redis contributors"
copyright = "celerybeat-redis contributors"
release = __version__
version = __version__

# napoleon reads the Google-style "Args:" / "Attributes:" / "Raises:" sections of the docstrings.
extensions = ["sphinx.ext.autodoc", "sphinx.ext.napoleon"]
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

exclude_patterns = ["_build"]
html_theme = "alabaster"
html_title = f"celerybeat-redis {version}"
