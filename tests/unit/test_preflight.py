"""`broom preflight`: every account's vars filled into every policy as `c7n-org run`
does, checked with no AWS calls."""
import textwrap

import pytest
from click.testing import CliRunner

from broom.cli import cli

from support import REPO

TAGS = str(REPO / "policies" / "ec2-tags.yml")
CHANGED = str(REPO / "policies" / "ec2-tags-changed.yml")
HUB = str(REPO / "policies" / "ec2-tags-hub.yml")
SWEEP = str(REPO / "policies" / "ec2-tags-sweep.yml")
POLICY = "broom-ec2-require-code-tag"


def invoke(*args):
    return CliRunner().invoke(cli, ["preflight", *args],
                                              catch_exceptions=False)


@pytest.fixture
def accounts(tmp_path):
    def write(text, name="accounts.yml"):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return str(path)
    return write


def lines(output):
    return [line for line in output.splitlines() if line]


def test_shipped_accounts_pass_with_broom_optional_vars_unset():
    result = invoke("-c", str(REPO / "accounts.yml"), "-u", TAGS, "-u", CHANGED, "-u", SWEEP)
    assert result.exit_code == 0, result.output + result.stderr
    # sandbox: 2 regions, data-team: 1, training: 1; three policies in each
    assert lines(result.stdout) == [
        "checked 3 policies in each of 4 account-regions (3 accounts, 2 regions): "
        "12 deployments"]
    # the shipped exemption is a bare role name (kept so that an existing break-glass
    # role stays exempt wherever it is): one warning per file says to pin it
    assert [line.split(": policy ")[0] for line in lines(result.stderr)] == [
        "warn: " + TAGS, "warn: " + CHANGED, "warn: " + SWEEP]
    assert all("exempts 'broom-break-glass', a role of that name at any path" in line
               for line in lines(result.stderr))


def test_an_exemption_by_arn_or_path_is_not_warned_about(accounts, tmp_path):
    policy = tmp_path / "pinned.yml"
    policy.write_text(open(TAGS).read().replace(
        "exempt-principals: [broom-break-glass]",
        "exempt-principals: [ops/broom-break-glass, "
        "\"arn:aws:iam::111111111111:role/broom-break-glass\", \"111111111111\"]"))
    path = accounts("""
        accounts:
          - {account_id: "111111111111", name: a, role: r-deployer, regions: [us-east-1]}
        """)
    result = invoke("-c", path, "-u", str(policy))
    assert result.exit_code == 0, result.output + result.stderr
    assert result.stderr == ""


def test_every_bad_var_of_an_account_gets_its_own_line(accounts):
    path = accounts("""
        accounts:
          - account_id: "111111111111"
            name: sandbox
            role: arn:aws:iam::111111111111:role/broom-deployer
            regions: [us-east-1]
          - account_id: "222222222222"
            name: data-team
            role: arn:aws:iam::222222222222:role/broom-deployer
            regions: [eu-west-1, us-east-1]
            vars:
              broom_codes: []
              broom_enforcement: reportonly
              broom_topic: not-an-arn
        """)
    result = invoke("-c", path, "-u", TAGS)
    assert result.exit_code == 1
    out = lines(result.stdout)
    assert len(out) == 6  # three problems in each of two regions; sandbox is fine
    prefix = "data-team (222222222222) eu-west-1 %s: " % POLICY
    assert out[0] == prefix + ("filter:allowed-codes 'codes-override': the list of "
                               "allowed codes is empty: every instance would violate")
    assert out[1].startswith(prefix + "action:safe-terminate 'enforcement' must be one of")
    assert "'reportonly'" in out[1]
    assert out[2].startswith(prefix + "action:creator-report 'topic-override' must be an "
                                      "SNS topic ARN")
    assert "'not-an-arn'" in out[2]
    assert all(line.startswith("data-team (222222222222) us-east-1 ") for line in out[3:])
    assert "sandbox" not in result.output
    assert "3 problem" not in result.stderr and "6 problem(s)" in result.stderr


def test_top_level_vars_apply_and_account_vars_win(accounts):
    path = accounts("""
        vars:
          broom_enforcement: report-sometimes
        accounts:
          - account_id: "111111111111"
            name: a
            role: arn:aws:iam::111111111111:role/broom-deployer
            regions: [us-east-1]
          - account_id: "222222222222"
            name: b
            role: arn:aws:iam::222222222222:role/broom-deployer
            regions: [us-east-1]
            vars: {broom_enforcement: report-only}
        """)
    result = invoke("-c", path, "-u", TAGS)
    assert result.exit_code == 1
    [line] = lines(result.stdout)
    assert line.startswith("a (111111111111) us-east-1 %s: action:safe-terminate" % POLICY)
    assert "'report-sometimes'" in line


def test_a_var_holding_braces_or_a_built_in_is_refused(accounts):
    path = accounts("""
        accounts:
          - account_id: "111111111111"
            name: a
            role: broom-deployer
            vars:
              broom_topic: "arn:aws:sns:{region}:111111111111:reports"
              broom_codes: "LOL,{account_id}"
        """)
    result = invoke("-c", path, "-u", TAGS)
    assert result.exit_code == 1
    out = lines(result.stdout)
    # no regions: c7n-org deploys to us-east-1 and us-west-2
    assert {line.split()[2] for line in out} == {"us-east-1", "us-west-2"}
    assert any("filter:allowed-codes 'codes-override'" in line for line in out)
    assert any("write the topic ARN out in full" in line for line in out)


def test_accounts_option_selects_by_name_or_id(accounts):
    path = accounts("""
        accounts:
          - {account_id: "111111111111", name: good, role: r-deployer, regions: [us-east-1]}
          - account_id: "222222222222"
            name: bad
            role: r-deployer
            regions: [us-east-1]
            vars: {broom_codes: []}
        """)
    assert invoke("-c", path, "-u", TAGS, "--accounts", "good").exit_code == 0
    assert invoke("-c", path, "-u", TAGS, "--accounts", "111111111111").exit_code == 0
    assert invoke("-c", path, "-u", TAGS, "-a", "good,222222222222").exit_code == 1
    result = invoke("-c", path, "-u", TAGS, "--accounts", "nobody")
    assert result.exit_code == 1
    assert "no account named or numbered nobody" in result.stderr


def test_region_option_replaces_the_accounts_regions(accounts):
    path = accounts("""
        accounts:
          - {account_id: "111111111111", name: a, role: r-deployer, regions: [us-east-1]}
        """)
    result = invoke("-c", path, "-u", TAGS, "-r", "eu-west-1", "-r", "eu-central-1")
    assert result.exit_code == 0
    assert ("checked 1 policy in each of 2 account-regions (1 account, 2 regions): "
            "2 deployments") in result.output


def test_a_broom_var_the_policies_checked_do_not_use_is_a_warning(accounts):
    """(A var Broom does not know is an error: tests/unit/test_unknown_names.py.)"""
    path = accounts("""
        accounts:
          - account_id: "111111111111"
            name: a
            role: r-deployer
            regions: [us-east-1]
            vars: {broom_sweep_schedule: rate(6 hours)}
        """)
    result = invoke("-c", path, "-u", TAGS)
    assert result.exit_code == 0
    assert ("warn: a (111111111111): var 'broom_sweep_schedule' is used by none of the "
            "policies checked") in lines(result.stderr)


def test_a_var_outside_broom_elements_is_held_to_the_schema_and_must_be_filled(
        accounts, tmp_path):
    policy = tmp_path / "policy.yml"
    policy.write_text(open(TAGS).read().replace("memory: 256", 'memory: "{lambda_memory}"'))
    path = accounts("""
        accounts:
          - {account_id: "111111111111", name: a, role: r-deployer, regions: [us-east-1],
             vars: {lambda_memory: lots}}
          - {account_id: "222222222222", name: b, role: r-deployer, regions: [us-east-1]}
        """)
    result = invoke("-c", path, "-u", str(policy))
    assert result.exit_code == 1
    a, b = lines(result.stdout)
    assert a.startswith("a (111111111111) us-east-1 %s: after its vars are filled: " % POLICY)
    assert "lots" in a
    assert b == ("b (222222222222) us-east-1 %s: mode.memory holds {lambda_memory}, which "
                 "neither the account's vars nor c7n fill" % POLICY)


def test_hub_policy_keeps_its_member_role_placeholder(accounts):
    path = accounts("""
        accounts:
          - {account_id: "111111111111", name: hub, role: r-deployer, regions: [us-east-1]}
        """)
    result = invoke("-c", path, "-u", HUB)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("text, message", [
    ("accounts:\n  - {account_id: '12', name: a, role: r-deployer}\n",
     "accounts/0/account_id: '12' does not match"),
    ("accounts: [\n", "not a readable accounts file"),
    ("accounts:\n  - {account_id: '111111111111', role: r-deployer, regions: [all]}\n",
     "'regions: [all]' needs an AWS call"),
])
def test_a_bad_accounts_file_is_one_line(accounts, text, message):
    result = invoke("-c", accounts(text), "-u", TAGS)
    assert result.exit_code == 1
    [line] = lines(result.stderr)
    assert line.startswith("broom preflight failed: ") and message in line


def test_a_bad_policy_file_is_one_line(accounts, tmp_path):
    policy = tmp_path / "policy.yml"
    policy.write_text(open(TAGS).read().replace("grace-seconds: 10", "grace-seconds: -1"))
    path = accounts("""
        accounts:
          - {account_id: "111111111111", name: a, role: r-deployer, regions: [us-east-1]}
        """)
    result = invoke("-c", path, "-u", str(policy))
    assert result.exit_code == 1
    [line] = lines(result.stderr)
    assert line.startswith("broom preflight failed: %s: " % policy)
