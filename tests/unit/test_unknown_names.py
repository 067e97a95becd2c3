"""A var or key Broom does not know is an error naming it and the nearest known one.

A misspelt var (``broom_code`` for ``broom_codes``) would leave the policy's default
codes in force, and Broom, which enforces by default, would terminate that team's
instances while CI is green.
"""
import textwrap

import pytest
from click.testing import CliRunner

from broom import varnames
from broom.cli import cli

from support import REPO

TAGS = str(REPO / "policies" / "ec2-tags.yml")
TRAIL = str(REPO / "tests" / "data" / "cloudtrail")
EVENT = str(REPO / "tests" / "data" / "cloudtrail" / "event-cloud-trail-run-instances.json")


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def write(tmp_path):
    def write(name, text):
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return str(path)
    return write


def accounts_with(write, vars_text, key="vars"):
    return write("accounts.yml", """
        accounts:
          - account_id: "111111111111"
            name: data
            role: r-deployer
            regions: [us-east-1]
            %s: %s
        """ % (key, vars_text))


def test_preflight_fails_on_a_misspelt_account_var_naming_the_nearest(write):
    result = invoke("preflight", "-c", accounts_with(write, "{broom_code: [LOL, DATA]}"),
                    "-u", TAGS)
    assert result.exit_code == 1
    [line] = result.stdout.splitlines()
    assert line.startswith("data (111111111111): unknown var 'broom_code' "
                           "(did you mean broom_codes?)")
    assert "--allow-var" in line


def test_preflight_accepts_a_var_a_given_policy_uses_or_one_allowed_by_name(write):
    own = write("own.yml", open(TAGS).read().replace("memory: 256", 'memory: "{fn_memory}"'))
    path = accounts_with(write, "{fn_memory: 512, team_owner: data}")
    result = invoke("preflight", "-c", path, "-u", own)
    assert result.exit_code == 1
    assert "unknown var 'team_owner'" in result.stdout
    assert "fn_memory" not in result.stdout
    result = invoke("preflight", "-c", path, "-u", own, "--allow-var", "team_owner")
    assert result.exit_code == 0, result.output


def test_preflight_fails_on_a_misspelt_placeholder_in_a_policy(write):
    policy = write("typo.yml", open(TAGS).read().replace("{broom_codes}", "{broom_code}"))
    result = invoke("preflight", "-c", accounts_with(write, "{broom_codes: [LOL]}"),
                    "-u", policy)
    assert result.exit_code == 1
    assert ("%s: {broom_code} is not a var Broom, c7n or any account sets (did you mean "
            "broom_codes?)" % policy) in result.stdout


@pytest.mark.parametrize("key, says", [
    ("acount_id", "accounts[0] (data): unknown key 'acount_id' (did you mean account_id?)"),
    ("var", "accounts[0] (data): unknown key 'var' (did you mean vars?)"),
])
def test_preflight_names_a_misspelt_key_of_the_accounts_file(write, key, says):
    path = write("accounts.yml", """
        accounts:
          - account_id: "111111111111"
            name: data
            role: r-deployer
            %s: x
        """ % key)
    result = invoke("preflight", "-c", path, "-u", TAGS)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("broom preflight failed: %s: %s" % (path, says))


def test_whatif_refuses_an_unknown_var_and_accepts_the_policys_own(write):
    result = invoke("whatif", "--var", "broom_enforcment=report-only", TRAIL)
    assert result.exit_code == 1
    assert ("unknown var 'broom_enforcment' (did you mean broom_enforcement?)"
            in result.stderr)
    assert "TIME" not in result.stdout  # nothing was simulated
    result = invoke("whatif", "--var", "broom_enforcement=report-only", TRAIL)
    assert "report only (no Code tag)" in result.stdout


def test_replay_refuses_an_unknown_var_before_any_aws_call():
    result = invoke("replay", "--var", "broom_enforcment=report-only", TAGS, EVENT)
    assert result.exit_code != 0
    assert "unknown var 'broom_enforcment' (did you mean broom_enforcement?)" in result.stderr


@pytest.mark.parametrize("old, new, says", [
    ("        codes: [", "        code: [",
     "policy:broom-ec2-require-code-tag filter:allowed-codes: unknown option 'code' "
     "(did you mean codes?) (valid: codes, codes-override, grace-seconds, ignore-case, "
     "key, value_from)"),
    ("      events:", "      event:",
     "policy:broom-ec2-require-code-tag: 'mode': unknown option 'event' "
     "(did you mean events?)"),
])
@pytest.mark.parametrize("command", ["scp", "whatif"])
def test_a_misspelt_option_is_one_line_naming_it_not_a_json_schema(write, command, old,
                                                                    new, says):
    text = open(TAGS).read()
    assert old in text
    policy = write("typo.yml", text.replace(old, new, 1))
    args = ["scp", "--policy", policy] if command == "scp" else [
        "whatif", "--policy", policy, TRAIL]
    result = invoke(*args)
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith("broom %s failed: %s: %s" % (command, policy, says))
    assert "Failed validating" not in line and "'properties'" not in line


def test_names_are_suggested_only_when_close():
    assert varnames.hint("broom_enforcment", varnames.BROOM_VARS) == (
        " (did you mean broom_enforcement?)")
    assert varnames.hint("team_owner", varnames.BROOM_VARS) == ""


def test_c7n_builtin_vars_are_read_from_c7n():
    assert {"account_id", "region", "partition", "now"} <= varnames.builtin_vars()
