"""The wheel carries the Lua scripts, and the package finds them there; every install hint installs this package."""

from __future__ import annotations

import re
import subprocess
import sys
import zipfile
from pathlib import Path

from celerybeatredis.storage.scripts import SCRIPT_NAMES

ROOT = Path(__file__).resolve().parent.parent
LUA = ROOT / "celerybeatredis" / "storage" / "lua"


def test_wheel_ships_and_finds_the_lua_scripts(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(ROOT)],
        check=True, capture_output=True,
    )
    (wheel,) = tmp_path.glob("celerybeat_redis-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"celerybeatredis/storage/lua/{n}.lua" for n in SCRIPT_NAMES} <= set(names)
    includes = {f"celerybeatredis/storage/lua/includes/{p.name}" for p in (LUA / "includes").glob("*.lua")}
    assert includes and includes <= set(names)
    (licence,) = [n for n in names if n.endswith("LICENSE") and ".dist-info/" in n]
    assert "Apache License" in zipfile.ZipFile(wheel).read(licence).decode()
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = (
        "import celerybeatredis.storage.scripts as s, pathlib;"
        f"assert pathlib.Path(s.__file__).is_relative_to(pathlib.Path(r'{site}'));"
        "from importlib import resources;"
        "assert resources.files('celerybeatredis.storage').joinpath('lua', 'claim.lua').is_file();"
        "print(len(s.load_script_text('claim')), '--@include' in s.script_source('claim'))"
    )
    out = subprocess.run([sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, r'{site}'); {probe}"],
                         cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(len((LUA / "claim.lua").read_text())), "False"]


def test_readme_renders_as_restructuredtext_without_warnings() -> None:
    """README.rst is the package's long description: a malformed table or a broken link would spoil that page."""
    import io

    import docutils.core
    from docutils.writers.null import Writer

    warnings = io.StringIO()
    docutils.core.publish_string((ROOT / "README.rst").read_text(encoding="utf-8"), writer=Writer(),
                                 settings_overrides={"warning_stream": warnings, "report_level": 2, "halt_level": 5})
    assert warnings.getvalue() == ""
    for image in ("throughput.png", "lateness.png"):
        assert (ROOT / "benchmarks" / "results" / "latest" / image).is_file()


#: An install of the package index's ``celerybeat-redis`` (or ``celerybeatredis``), which is an old, unrelated package:
#: ``pip install celerybeat-redis``, ``install 'celerybeat-redis[metrics]'``; a wheel file built here does not count.
INDEX_INSTALL = re.compile(r"\binstall\s+(?:-\S+\s+)*[`'\"]*celerybeat[-_.]?redis(?![\w.-]*\.whl)", re.IGNORECASE)
#: The one place that names it on purpose: README.rst's warning not to run it.
WARNING = "Do not run ``pip install celerybeat-redis``"


def test_every_install_hint_installs_this_package_not_the_index_one() -> None:
    """Messages and docs say how to install an extra the way README.rst installs the package (from the checkout)."""
    files = [*(ROOT / "celerybeatredis").rglob("*.py"), *(ROOT / "celerybeatredis" / "web" / "templates").rglob("*.html"),
             *(ROOT / "docs").rglob("*.rst"), ROOT / "README.rst", ROOT / "setup.py", *(ROOT / "tests" / "support").rglob("*.py"),
             *(ROOT / "benchmarks").glob("*.py")]
    found = [f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
             for path in files for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
             if INDEX_INSTALL.search(line.replace(WARNING, ""))]
    assert found == []
    assert INDEX_INSTALL.search("redis_scheduler_http needs prometheus_client: pip install 'celerybeat-redis[metrics]'")
    assert INDEX_INSTALL.search("install celerybeatredis[web]")
    assert not INDEX_INSTALL.search("pip install dist/celerybeat_redis-1.0.0.dev0-py3-none-any.whl")
