"""The installed package, seen by the stock commands users run (subprocesses)."""
import json
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from e2e_support import write_policy
from support import POLICIES, REPO, policy_with

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
    for path in sorted(POLICIES.glob("*.yml")):
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
                 "-u", POLICIES / "ec2-tags.yml")
    assert "all policies are valid" in result.stderr


def no_aws_config(tmp_path, **extra):
    """An environment with no AWS configuration at all (no credentials, no files)."""
    import os
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "none"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), **extra)
    return env


@pytest.mark.parametrize("broken", [{}, {"AWS_PROFILE": "doesnotexist"}],
                         ids=["no-config", "missing-profile"])
def test_broom_help_version_and_completion_need_no_aws_configuration(tmp_path, broken):
    """Before: `AWS_PROFILE=doesnotexist broom --help` crashed with ProfileNotFound."""
    import importlib.metadata
    env = no_aws_config(tmp_path, **broken)
    for args, expected in ((["--help"], "Usage: broom"),
                           (["--version"], "broom, version %s" % importlib.metadata.version(
                               "c7n-broom"))):
        result = subprocess.run([str(BIN / "broom")] + args, capture_output=True, text=True,
                                env=env, timeout=60)
        assert result.returncode == 0, result.stderr
        assert expected in result.stdout
    completion = subprocess.run([str(BIN / "broom")], capture_output=True, text=True,
                                env=dict(env, _BROOM_COMPLETE="bash_source"), timeout=60)
    assert "_broom_completion" in completion.stdout


def test_stock_custodian_validate_needs_no_aws_configuration(tmp_path):
    result = subprocess.run([str(BIN / "custodian"), "validate",
                             str(POLICIES / "ec2-tags.yml")],
                            capture_output=True, text=True, env=no_aws_config(tmp_path),
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Configuration valid" in result.stderr


# What a user sees from custodian validate: the messages tests/unit/test_validation.py
# checks in process, and the exit status.

POLICY = "broom-ec2-require-code-tag"
LAMBDA_WITHOUT_THE_PLUGIN = {
    "name": "broom-lambda-check", "resource": "aws.ec2",
    "mode": {"type": "cloudtrail", "events": ["RunInstances"],
             "role": "arn:aws:iam::123456789012:role/broom-lambda"},
    "actions": [{"type": "creator-report",
                 "topic": "arn:aws:sns:us-east-1:123456789012:broom-reports"}]}


@pytest.mark.parametrize("data, says", [
    (policy_with("filter:allowed-codes", **{"grace-seconds": -1}),
     ["Error on policy:%s" % POLICY, "-1 is less than the minimum of 0",
      "On instance['grace-seconds']"]),
    (policy_with("action:safe-terminate", **{"exempt-accounts": [123456789012]}),
     ["Error on policy:%s" % POLICY, "123456789012 is not of type 'string'",
      "On instance['exempt-accounts'][0]"]),
    (policy_with("action:safe-terminate", enforcement="dry-run"),
     ["policy:%s action:safe-terminate: 'enforcement' must be one of" % POLICY]),
    (policy_with("filter:allowed-codes", codes=[]),
     ["policy:%s filter:allowed-codes: 'codes': the list of allowed codes is empty" % POLICY]),
    (LAMBDA_WITHOUT_THE_PLUGIN,
     ["policy:broom-lambda-check uses Broom's creator-report in cloudtrail mode: add "
      "packages: [c7n_broom] and handler: c7n_broom.handler.run"]),
    ({"name": "not-ec2", "resource": "aws.s3", "source": "broom-describe"},
     ["policy:not-ec2: 'source: broom-describe' works only with resource aws.ec2"]),
], ids=["schema-grace-seconds", "schema-unquoted-account", "validate-enforcement",
        "validate-empty-codes", "lambda-packaging", "source-on-s3"])
def test_stock_custodian_validate_shows_the_message_and_fails(tmp_path, data, says):
    result = run(BIN / "custodian", "validate", write_policy(tmp_path / "policy.yml", data),
                 check=False)
    assert result.returncode == 1
    for text in says:
        assert text in result.stdout + result.stderr
