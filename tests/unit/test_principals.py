"""c7n_broom.principals: one exemption grammar, matched the same by Broom and by its SCP.

Every form is tried against every identity type (recorded CloudTrail records and the
hand-written userIdentity fixtures): Broom's answer (``exempting``) must be the one a
``broom scp`` condition gives for the same principal, evaluated with IAM's semantics
(broom/scp_eval.py) on the principal as IAM itself would present it. Those IAM values
are written out below by hand, not taken from Broom's own ``principal_arn``.
"""
import ast
import copy
import json
import re
from pathlib import Path

import pytest
from c7n.exceptions import PolicyValidationError

from broom.scp_eval import denied_by, request
from c7n_broom import decisions, principals, report
from c7n_broom.identity import creator_from_record, resolve_creator

from support import ACCOUNT, DATA, load_policy, load_record, policy_file


def identity(name):
    return json.loads((DATA / "identities" / name).read_text())


def session(role_arn, session_name):
    """An assumed-role userIdentity of ``role_arn`` (with its path), as CloudTrail
    records it: the STS ARN holds the role NAME only, the issuer the IAM ARN."""
    user_identity = copy.deepcopy(identity("assumed-role-meaningful-session.json"))
    account, name = role_arn.split(":")[4], role_arn.rpartition("/")[2]
    user_identity["arn"] = "arn:aws:sts::%s:assumed-role/%s/%s" % (account, name, session_name)
    issuer = user_identity["sessionContext"]["sessionIssuer"]
    issuer.update(arn=role_arn, userName=name, accountId=account)
    return user_identity


# name: (userIdentity, (aws:PrincipalArn, aws:PrincipalAccount) as IAM presents them)
IDENTITIES = {
    "iam-user": (
        load_record("event-cloud-trail-run-instance-creator.json")["userIdentity"],
        ("arn:aws:iam::644160558196:user/c7nbot", "644160558196")),
    "role": (identity("assumed-role-meaningful-session.json"),
             ("arn:aws:iam::123456789012:role/Developer", ACCOUNT)),
    "role-with-path": (session("arn:aws:iam::123456789012:role/ops/broom-break-glass", "oncall"),
                       ("arn:aws:iam::123456789012:role/ops/broom-break-glass", ACCOUNT)),
    # Another role, whose caller named the session broom-break-glass.
    "session-named-break-glass": (
        session("arn:aws:iam::123456789012:role/developer", "broom-break-glass"),
        ("arn:aws:iam::123456789012:role/developer", ACCOUNT)),
    # No sessionContext: the role's path is unknown to the record (but not to IAM).
    "role-without-session-context": (identity("assumed-role-without-session-context.json"),
                                     ("arn:aws:iam::123456789012:role/Developer", ACCOUNT)),
    "sso": (identity("sso-permission-set.json"), (
        "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/eu-west-1/"
        "AWSReservedSSO_AdministratorAccess_0123456789abcdef", ACCOUNT)),
    "federated-user": (identity("federated-user.json"),
                       ("arn:aws:sts::123456789012:federated-user/bob", ACCOUNT)),
    "root": (identity("root-console.json"), ("arn:aws:iam::123456789012:root", ACCOUNT)),
    # A service principal: no principal ARN nor account (and SCPs do not apply to it).
    "aws-service": (identity("aws-service.json"), (None, None)),
}

EVERYONE = set(IDENTITIES)
IN_ACCOUNT = EVERYONE - {"iam-user", "aws-service"}

# pattern: the identities it exempts
FORMS = {
    # NAME: the role under any path, never a session of that name.
    "broom-break-glass": {"role-with-path"},
    "Developer": {"role", "role-without-session-context"},
    "AWSReservedSSO_AdministratorAccess_*": {"sso"},
    "*broom-break-glass*": {"role-with-path"},
    # PATH/NAME
    "ops/broom-break-glass": {"role-with-path"},
    "aws-reserved/sso.amazonaws.com/*/AWSReservedSSO_AdministratorAccess_*": {"sso"},
    # role ARN: the path is part of it
    "arn:aws:iam::*:role/ops/broom-break-glass": {"role-with-path"},
    "arn:aws:iam::*:role/broom-break-glass": set(),
    "arn:aws:iam::*:role/*/broom-break-glass": {"role-with-path"},
    "arn:aws:iam::123456789012:role/Developer": {"role", "role-without-session-context"},
    "arn:aws:iam::??????????12:role/Dev*": {"role", "role-without-session-context"},
    "arn:aws-cn:iam::*:role/Developer": set(),
    # user ARN
    "arn:aws:iam::644160558196:user/c7nbot": {"iam-user"},
    "arn:aws:iam::*:user/*bot": {"iam-user"},
    # account id: every principal of the account
    ACCOUNT: IN_ACCOUNT,
    "111122223333": set(),
}


def creator(name):
    return resolve_creator(IDENTITIES[name][0])


def scp_exempts(pattern, name):
    """Whether a Deny statement carrying the SCP's exemption conditions spares the
    principal of identity ``name``, as IAM evaluates it."""
    statement = {"Sid": "Probe", "Effect": "Deny", "Action": "ec2:RunInstances",
                 "Resource": "*", "Condition": principals.scp_conditions([pattern])}
    arn, account = IDENTITIES[name][1]
    probe = request("ec2:RunInstances", "arn:aws:ec2:us-east-1:%s:instance/*" % ACCOUNT,
                    (arn, account))
    probe["context"] = {k: v for k, v in probe["context"].items() if v is not None}
    return not denied_by({"Statement": [statement]}, probe)


@pytest.mark.parametrize("pattern", FORMS)
@pytest.mark.parametrize("name", IDENTITIES)
def test_every_form_exempts_the_same_principals_in_broom_and_in_the_scp(pattern, name):
    expected = name in FORMS[pattern]
    assert (principals.exempting(creator(name), [pattern]) == pattern) is expected
    assert scp_exempts(pattern, name) is expected


@pytest.mark.parametrize("name", IDENTITIES)
def test_creator_carries_the_principal_arn_iam_sees(name):
    arn, _ = IDENTITIES[name][1]
    assert creator(name).principal_arn == (arn or "")


def test_a_session_named_like_the_break_glass_role_is_not_exempt():
    other = creator("session-named-break-glass")
    assert other.session == "broom-break-glass"
    for pattern in ("broom-break-glass", "*broom-break-glass*", "*/broom-break-glass",
                    "arn:aws:iam::*:role/*broom-break-glass*"):
        assert principals.exempting(other, [pattern]) is None, pattern


def test_a_role_under_a_path_is_exempt_by_bare_name_in_broom_and_in_the_scp():
    break_glass = creator("role-with-path")
    assert principals.exempting(break_glass, ["broom-break-glass"]) == "broom-break-glass"
    assert scp_exempts("broom-break-glass", "role-with-path")
    assert principals.scp_conditions(["broom-break-glass"]) == {"ArnNotLike": {
        "aws:PrincipalArn": ["arn:*:iam::*:role/*/broom-break-glass",
                             "arn:*:iam::*:role/broom-break-glass"]}}


def test_the_session_issuer_is_ignored_when_it_names_another_role():
    forged = session("arn:aws:iam::123456789012:role/ops/broom-break-glass", "x")
    forged["arn"] = "arn:aws:sts::123456789012:assumed-role/developer/x"
    assert resolve_creator(forged).principal_arn == "arn:aws:iam::123456789012:role/developer"


@pytest.mark.parametrize("partition", ["aws", "aws-cn", "aws-us-gov"])
def test_partitions(partition):
    role = resolve_creator({"type": "AssumedRole", "accountId": ACCOUNT,
                            "arn": "arn:%s:sts::%s:assumed-role/ops-admin/s" % (
                                partition, ACCOUNT)})
    assert role.principal_arn == "arn:%s:iam::%s:role/ops-admin" % (partition, ACCOUNT)
    assert principals.exempting(role, ["ops-admin"]) == "ops-admin"
    assert principals.exempting(role, ["arn:%s:iam::*:role/ops-admin" % partition])
    assert principals.exempting(role, ["arn:*:iam::*:role/ops-admin"])
    other = "aws-cn" if partition == "aws" else "aws"
    assert principals.exempting(role, ["arn:%s:iam::*:role/ops-admin" % other]) is None


def test_arn_like_matches_each_part_on_its_own_and_is_case_sensitive():
    arn = "arn:aws:iam::123456789012:role/ops/Admin"
    assert principals.arn_like(arn, "arn:aws:iam::*:role/*")
    assert principals.arn_like(arn, "arn:aws:iam::12345678901?:role/ops/Admin")
    assert not principals.arn_like(arn, "arn:aws:iam::*:role/ops/admin")
    assert not principals.arn_like(arn, "arn:aws:iam:*:role/ops/Admin")  # five parts
    assert not principals.arn_like(arn, "arn:*:role/ops/Admin")
    assert not principals.arn_like("", "arn:aws:iam::*:role/*")
    assert not principals.arn_like(arn, "arn:aws:iam::*:role/ops/[A]dmin")  # no sets


def test_account_exemption_uses_the_principal_account():
    assert principals.exempting(creator("root"), [ACCOUNT]) == ACCOUNT
    assert principals.exempting(resolve_creator(identity("aws-account.json")),
                                ["111122223333"]) == "111122223333"
    assert principals.exempting(creator("aws-service"), [ACCOUNT]) is None


def test_patterns_outside_the_grammar_exempt_nobody_at_run_time():
    """validate() refuses them; decide() must not crash on them either."""
    everyone = [creator(name) for name in IDENTITIES]
    for pattern in ("*", "", " ", "arn:aws:sts::123456789012:assumed-role/Developer/carol",
                    "{broom_break_glass}", 5, None, "arn:aws:iam::*:role/*"):
        assert all(principals.exempting(c, [pattern]) is None for c in everyone), pattern


def test_first_matching_pattern_is_reported():
    patterns = ["someone-else", "ops/broom-break-glass", "broom-break-glass"]
    assert principals.exempting(creator("role-with-path"), patterns) == "ops/broom-break-glass"


@pytest.mark.parametrize("pattern, says", [
    ("arn:aws:sts::123456789012:assumed-role/broom-break-glass/oncall",
     "match the role: arn:aws:iam::123456789012:role/broom-break-glass"),
    ("arn:aws:sts::123456789012:federated-user/bob", "is an STS ARN"),
    ("*", "would exempt everyone: name a role or ARN"),
    ("?*", "would exempt everyone"),
    ("ops/*", "would exempt everyone"),
    ("arn:aws:iam::*:role/*", "would exempt everyone"),
    ("arn:aws:iam::123456789012:user/*", "would exempt everyone"),
    ("", "it is blank"),
    ("  ", "it is blank"),
    (5, "is not a string"),
    (None, "is not a string"),
    ("arn:aws:iam::123456789012:root", "exempt the whole account with its 12-digit id"),
    ("arn:aws:iam:us-east-1:123456789012:role/x", "IAM ARNs have no region"),
    ("arn:aws:iam::12345:role/x", "the account must be 12 digits or a wildcard"),
    ("arn:aws-mars:iam::123456789012:role/x", "unknown partition"),
    ("arn:aws:iam::123456789012:group/admins", "is not an IAM role or user ARN"),
    ("arn:aws:s3:::bucket", "is not an IAM role or user ARN"),
    ("/ops/broom-break-glass", "empty path segment"),
    ("ops/", "empty path segment"),
    ("broom break glass", "is not an IAM name"),
    ("role:x", "is not one Broom understands"),
    ("{broom_break_glass}", "is not one Broom understands"),
    ("12345678901", "looks like an account id, which has 12 digits"),
])
def test_parse_refuses_with_what_to_write_instead(pattern, says):
    with pytest.raises(ValueError, match="pattern .*" + re.escape(says)):
        principals.parse(pattern)


def test_scp_conditions_group_arns_and_accounts():
    conditions = principals.scp_conditions([
        "ops/oncall", "arn:aws:iam::*:user/alice", ACCOUNT, "111122223333", "ops/oncall"])
    assert conditions == {
        "ArnNotLike": {"aws:PrincipalArn": ["arn:*:iam::*:role/ops/oncall",
                                            "arn:aws:iam::*:user/alice"]},
        "StringNotEquals": {"aws:PrincipalAccount": ["111122223333", ACCOUNT]},
    }
    assert principals.scp_conditions([]) == {}
    with pytest.raises(ValueError, match="names a role session"):
        principals.scp_conditions(["arn:aws:sts::1:assumed-role/r/s"])


def test_decide_leaves_an_exempt_role_session_alone_and_says_which_pattern():
    creator_ = creator_from_record({"userIdentity": IDENTITIES["role-with-path"][0]})
    resources = [{"InstanceId": "i-1", "State": {"Name": "running"}}]
    settings = decisions.Settings(exempt_principals=("broom-break-glass",))
    decision = decisions.decide(resources, creator_, ACCOUNT, settings)["i-1"]
    assert not decision.terminate
    assert decision.outcome == report.Outcome(
        report.EXEMPT, "launched by an exempt principal (broom-break-glass)")
    other = resolve_creator(IDENTITIES["session-named-break-glass"][0])
    assert decisions.decide(resources, other, ACCOUNT, settings)["i-1"].terminate


def main_policy(**terminate_options):
    [data] = policy_file("ec2-tags.yml")["policies"]
    for action in data["actions"]:
        if action["type"] == "safe-terminate":
            action.update(terminate_options)
    return data


@pytest.mark.parametrize("pattern, says", [
    ("arn:aws:sts::123456789012:assumed-role/broom-break-glass/oncall",
     "policy:broom-ec2-require-code-tag action:safe-terminate: 'exempt-principals' "
     "pattern 'arn:aws:sts::123456789012:assumed-role/broom-break-glass/oncall' names a "
     "role session"),
    ("arn:aws:iam::*:role/*", "policy:broom-ec2-require-code-tag action:safe-terminate: "
     "'exempt-principals' pattern 'arn:aws:iam::*:role/*' would exempt everyone"),
])
def test_safe_terminate_refuses_patterns_outside_the_grammar(pattern, says):
    with pytest.raises(PolicyValidationError) as error:
        load_policy(main_policy(**{"exempt-principals": ["broom-break-glass", pattern]}))
    assert str(error.value).startswith(says)


def test_safe_terminate_accepts_every_form_and_leaves_variables_for_later():
    patterns = [p for p in FORMS] + ["arn:aws:iam::{account_id}:role/ops/oncall",
                                     "{broom_break_glass}"]
    policy = load_policy(main_policy(**{"exempt-principals": patterns}))
    [action] = [a for a in policy.resource_manager.actions if a.type == "safe-terminate"]
    assert "arn:aws:iam::%s:role/ops/oncall" % ACCOUNT in action.settings().exempt_principals


def test_module_imports_only_the_standard_library():
    tree = ast.parse(Path(principals.__file__).read_text())
    imported = {alias.name.partition(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.partition(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}
    assert imported <= {"functools", "re", "dataclasses"}


def test_safe_terminate_checks_a_variable_once_it_is_filled():
    data = main_policy(**{"exempt-principals": ["{broom_break_glass}"]})
    with pytest.raises(PolicyValidationError, match="pattern '\\*' would exempt everyone"):
        load_policy(data, variables={"broom_break_glass": "*"})
    policy = load_policy(main_policy(**{"exempt-principals": ["{broom_break_glass}"]}),
                         variables={"broom_break_glass": "ops/oncall"})
    [action] = [a for a in policy.resource_manager.actions if a.type == "safe-terminate"]
    assert action.settings().exempt_principals == ("ops/oncall",)
