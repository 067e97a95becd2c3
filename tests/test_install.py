"""The installed package, seen by the stock commands users run (subprocesses)."""
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from conftest import REPO

BIN = Path(sys.executable).parent
SITE = Path(sysconfig.get_paths()["purelib"])


def run(*args, check=True):
    result = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                            cwd=REPO, timeout=120)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.fixture(scope="module", autouse=True)
def installed():
    pth = SITE / "c7n_broom.pth"
    assert pth.exists(), (
        "%s is missing: install Broom with `pip install '.[test]'` (setuptools' editable "
        "mode does not install the .pth file that loads the plugin)" % pth)


def test_interpreter_start_imports_no_c7n_and_nothing_else():
    """Every Python process pays for the .pth: it must import only the tiny autoloader."""
    result = run(sys.executable, "-X", "importtime", "-c",
                 "import sys, json; print(json.dumps(sorted(sys.modules)))")
    modules = json.loads(result.stdout)
    assert "_c7n_broom_autoload" in modules
    assert not [m for m in modules if m.startswith(("c7n", "boto", "importlib.abc"))]
    # "import time: self | cumulative | name": equal times mean no nested imports
    [(own, cumulative)] = [
        line.split(":", 1)[1].split("|")[:2] for line in result.stderr.splitlines()
        if line.split("|")[-1].strip() == "_c7n_broom_autoload"]
    assert own.strip() == cumulative.strip()


def test_importing_c7n_ec2_registers_broom():
    result = run(sys.executable, "-c",
                 "import sys; from c7n.resources.ec2 import EC2; "
                 "print(EC2.filter_registry.get('allowed-codes').__module__, "
                 "EC2.action_registry.get('creator-report').__module__, "
                 "'c7n_broom' in sys.modules)")
    assert result.stdout.split() == ["c7n_broom.filters", "c7n_broom.actions", "True"]


def test_stock_custodian_validate_accepts_every_policy_file():
    for path in sorted((REPO / "policies").glob("*.yml")):
        result = run(BIN / "custodian", "validate", path)
        assert "Configuration valid" in result.stderr


def test_stock_custodian_validate_rejects_bad_broom_options(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text("policies:\n  - name: bad-codes\n    resource: aws.ec2\n"
                   "    filters:\n      - type: allowed-codes\n        codes: []\n")
    result = run(BIN / "custodian", "validate", bad, check=False)
    assert result.returncode != 0
    assert "policy:bad-codes filter:allowed-codes: 'codes'" in result.stderr
    assert "empty" in result.stderr


def test_stock_custodian_schema_documents_the_filter_and_action():
    result = run(BIN / "custodian", "schema", "aws.ec2.filters.allowed-codes")
    assert "codes-override" in result.stdout and "ignore-case" in result.stdout
    result = run(BIN / "custodian", "schema", "aws.ec2.actions.creator-report")
    assert "topic" in result.stdout


def test_stock_c7n_org_validate_accepts_the_pack():
    result = run(BIN / "c7n-org", "validate", "-c", REPO / "accounts.yml",
                 "-u", REPO / "policies" / "ec2-tags.yml")
    assert "all policies are valid" in result.stderr


def test_accounts_file_matches_c7n_org_schema():
    import jsonschema
    import yaml
    from c7n_org.cli import CONFIG_SCHEMA
    config = yaml.safe_load((REPO / "accounts.yml").read_text())
    jsonschema.validate(config, CONFIG_SCHEMA)
    assert len(config["accounts"]) == 3
    for account in config["accounts"]:
        assert isinstance(account["account_id"], str) and len(account["account_id"]) == 12
        assert account["role"].startswith("arn:aws:iam::%s:role/" % account["account_id"])
        assert account["regions"] and account["tags"]
