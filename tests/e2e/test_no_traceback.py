"""No traceback, ever, for a user's environment: every `broom` subcommand and the stock
`custodian validate`, run as users run them, with a profile that does not exist, with
no AWS configuration at all, and with a policy file that is not YAML.

Commands that make no AWS call work in all of them; the others fail with one line
naming what to change. (`custodian validate` on a file that is not YAML prints
c7n's own PyYAML traceback, with or without Broom: not Broom's to change.)
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import POLICIES, REPO

BIN = Path(sys.executable).parent
TAGS = str(POLICIES / "ec2-tags.yml")
EVENT = str(REPO / "tests" / "data" / "cloudtrail" / "event-cloud-trail-run-instances.json")
ACCOUNTS = str(REPO / "accounts.yml")

#: Commands that make no AWS call: they must work whatever the AWS configuration.
NO_AWS = {
    "scp": ["broom", "scp"],
    "scp-policy": ["broom", "scp", "--policy", TAGS],
    "permissions": ["broom", "permissions", "--policy", TAGS],
    "preflight": ["broom", "preflight", "-c", ACCOUNTS, "-u", TAGS],
    "whatif-local": ["broom", "whatif", "--policy", TAGS, EVENT],
    "custodian-validate": ["custodian", "validate", TAGS],
}
#: Commands that need AWS: one line naming what to change.
NEEDS_AWS = {
    "doctor": ["broom", "doctor"],
    "uninstall": ["broom", "uninstall", "--dry-run"],
    "replay": ["broom", "replay", TAGS, EVENT],
    "replay-queue": ["broom", "replay", TAGS, "sqs://broom-dead-letters"],
    "whatif-s3": ["broom", "whatif", "s3://org-trail/AWSLogs/"],
}


def environment(tmp_path, **extra):
    """The test's environment without any AWS variable, and no AWS files."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(HOME=str(tmp_path), AWS_CONFIG_FILE=str(tmp_path / "no-config"),
               AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "no-credentials"), **extra)
    return env


def run(args, env, timeout=180):
    return subprocess.run([str(BIN / args[0])] + list(args[1:]), capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=timeout)


def assert_no_traceback(result):
    output = result.stdout + result.stderr
    assert "Traceback" not in output, output[-3000:]
    assert "Error on request" not in output, output[-3000:]  # moto's server thread


CONDITIONS = {"missing-profile": {"AWS_PROFILE": "doesnotexist"}, "no-config": {}}


@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("name", sorted(NO_AWS))
def test_commands_that_need_no_aws_work_whatever_the_configuration(tmp_path, condition,
                                                                   name):
    result = run(NO_AWS[name], environment(tmp_path, **CONDITIONS[condition]))
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr[-2000:]


@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("name", sorted(NEEDS_AWS))
def test_commands_that_need_aws_say_what_to_change_in_one_line(tmp_path, condition, name):
    args = NEEDS_AWS[name]
    result = run(args, environment(tmp_path, **CONDITIONS[condition]))
    assert_no_traceback(result)
    assert result.returncode == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("broom %s failed: " % args[1])
    if condition == "missing-profile":
        assert "AWS_PROFILE=doesnotexist names no profile" in line
    else:
        assert "no AWS credentials" in line or "no AWS region" in line


def test_demo_works_with_a_profile_that_does_not_exist(tmp_path):
    """The local AWS ignores the user's profile: before, moto's server thread died on
    it for every request and the demo failed."""
    result = run(["broom", "demo"], environment(tmp_path, AWS_PROFILE="doesnotexist"),
                 timeout=300)
    assert_no_traceback(result)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "terminated the two others" in result.stdout


@pytest.fixture
def not_yaml(tmp_path):
    path = tmp_path / "policy.yml"
    path.write_text("policies:\n  - name: [unclosed\n")
    return str(path)


def test_a_policy_file_that_is_not_yaml_is_one_line_in_every_command(tmp_path, not_yaml,
                                                                     fresh_aws):
    """doctor and replay get working credentials (the local AWS), so that they reach
    the policy file."""
    env = fresh_aws.env()
    env.update(HOME=str(tmp_path))
    commands = [
        ["broom", "scp", "--policy", not_yaml],
        ["broom", "permissions", "--policy", not_yaml],
        ["broom", "preflight", "-c", ACCOUNTS, "-u", not_yaml],
        ["broom", "whatif", "--policy", not_yaml, EVENT],
        ["broom", "replay", not_yaml, EVENT],
        ["broom", "doctor", "--policy", not_yaml],
        ["broom", "demo", "--policy", not_yaml],
    ]
    for args in commands:
        result = run(args, env)
        assert_no_traceback(result)
        assert result.returncode == 1, (args, result.stderr)
        [line] = result.stderr.splitlines()
        assert line.startswith("broom %s failed: %s: not a readable policy file (" % (
            args[1], not_yaml)), (args, line)


def test_an_accounts_file_that_is_not_yaml_is_one_line(tmp_path, not_yaml):
    result = run(["broom", "preflight", "-c", not_yaml, "-u", TAGS], environment(tmp_path))
    assert_no_traceback(result)
    [line] = result.stderr.splitlines()
    assert line.startswith("broom preflight failed: %s: not a readable accounts file" %
                           not_yaml)
