"""End-to-end tests: moto's standalone server, the stock CLIs, archive runs.

Every test under tests/e2e is marked ``e2e``. The stock commands they run
(``custodian``, ``c7n-org``, ``broom``) import the INSTALLED copy of Broom, so the
session stops before the first of them when that copy differs from the working tree.
"""
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

import support

HERE = Path(__file__).parent

#: Run by a fresh interpreter outside the repository, as the console scripts start.
WHERE_INSTALLED = """\
import importlib.util, json, sysconfig
specs = {name: importlib.util.find_spec(name) for name in ("c7n_broom", "broom")}
print(json.dumps({"purelib": sysconfig.get_paths()["purelib"],
                  "origins": {name: spec and spec.origin for name, spec in specs.items()}}))
"""


def pytest_collection_modifyitems(config, items):
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.e2e)


def installed_copy():
    """({package: the site directory the stock commands import it from}, purelib)."""
    with tempfile.TemporaryDirectory() as outside:
        completed = subprocess.run([sys.executable, "-c", WHERE_INSTALLED], cwd=outside,
                                   capture_output=True, text=True, timeout=60)
    if completed.returncode != 0:
        pytest.exit("cannot tell where Broom is installed: %s" % completed.stderr,
                    returncode=1)
    found = json.loads(completed.stdout)
    missing = sorted(name for name, origin in found["origins"].items() if not origin)
    if missing:
        pytest.exit("Broom is not installed (no %s): run pip install '.[test]'"
                    % ", ".join(missing), returncode=1)
    return ({name: Path(origin).parent.parent for name, origin in found["origins"].items()},
            Path(found["purelib"]))


@pytest.fixture(autouse=True, scope="session")
def installed_broom_is_current():
    """The installed Broom is the working tree: every .py of c7n_broom/ and broom/,
    every policies/*.yml (installed as broom/policies/), the autoloader and its .pth."""
    sites, purelib = installed_copy()
    stale = []
    for package, site in sites.items():
        stale += support.stale_files(site, packages=(package,), root_files=())
    stale += support.stale_files(purelib, packages=(), root_files=support.ROOT_FILES)
    if stale:
        pytest.exit("the installed Broom is stale: run pip install '.[test]' (differs: %s)"
                    % ", ".join(stale), returncode=1)
