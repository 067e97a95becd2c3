"""``broom scp``: the document's logic on sample requests, and the command.

The logic tests run requests through broom/scp_eval.py, which applies IAM's documented
condition semantics (moto evaluates only StringEquals). A RunInstances call is
authorized per resource: ``ec2:RunInstances`` on the instance, on each volume and
network interface it creates and on what it uses (subnet, security group, image),
each with the request tags of ITS OWN resource type; when the call tags resources on
creation, ``ec2:CreateTags`` is authorized too, per tagged resource, with
``ec2:CreateAction=RunInstances`` (EC2 User Guide, "Grant permission to tag Amazon
EC2 resources during creation").
"""
import json

import pytest
import yaml
from click.testing import CliRunner

from broom.cli import cli
from broom.scp import INSTANCES, SCP_LIMIT, ScpError, code_tag_scp, render
from broom.scp_eval import denied_by, holds, request

from support import REPO

POLICY = REPO / "policies" / "ec2-tags.yml"
CODES = ["GGG", "LOL"]
ACCOUNT = "111122223333"
REGION_ARN = "arn:aws:ec2:us-east-1:%s:" % ACCOUNT
INSTANCE = REGION_ARN + "instance/i-0123456789abcdef0"

DEVELOPER = ("arn:aws:iam::%s:role/developer" % ACCOUNT, ACCOUNT)
# Another role, whose caller named the session broom-break-glass: IAM sees the role.
SESSION_NAMED_BREAK_GLASS = DEVELOPER
BREAK_GLASS = ("arn:aws:iam::%s:role/ops/broom-break-glass" % ACCOUNT, ACCOUNT)
ALICE = ("arn:aws:iam::%s:user/alice" % ACCOUNT, ACCOUNT)
EXEMPT_ACCOUNT = ("arn:aws:iam::444455556666:role/anything", "444455556666")
EXEMPTIONS = ["broom-break-glass", "arn:aws:iam::*:user/alice", "444455556666"]


@pytest.fixture
def scp():
    return code_tag_scp(CODES, "Code", EXEMPTIONS)


def run_instances(principal, instance_tags=None, volume_tags=None, eni_tags=None):
    """The authorization requests of one RunInstances call, each with the tags of its
    own resource type (None: that type has no TagSpecification)."""
    requests = []
    for kind, tags in (("instance/i-0123456789abcdef0", instance_tags),
                       ("volume/vol-0123456789abcdef0", volume_tags),
                       ("network-interface/eni-0123456789abcdef0", eni_tags)):
        requests.append(request("ec2:RunInstances", REGION_ARN + kind, principal, tags))
        if tags:
            requests.append(request("ec2:CreateTags", REGION_ARN + kind, principal, tags,
                                    **{"ec2:CreateAction": "RunInstances"}))
    for used in ("subnet/subnet-0123456789abcdef0", "security-group/sg-0123456789abcdef0"):
        requests.append(request("ec2:RunInstances", REGION_ARN + used, principal))
    requests.append(request("ec2:RunInstances", "arn:aws:ec2:us-east-1::image/ami-12345678",
                            principal))
    return requests


def refusals(document, requests):
    return sorted({sid for r in requests for sid in denied_by(document, r)})


# --- RunInstances ---------------------------------------------------------------------

def test_launch_with_an_allowed_code_is_allowed(scp):
    assert refusals(scp, run_instances(DEVELOPER, {"Code": "LOL", "Name": "web"})) == []


@pytest.mark.parametrize("tags", [None, {}, {"Name": "web"}])
def test_launch_without_a_code_is_denied(scp, tags):
    assert refusals(scp, run_instances(DEVELOPER, tags)) == [
        "BroomDenyLaunchWithoutAllowedCode"]


@pytest.mark.parametrize("code", ["NOPE", "lol", ""])
def test_launch_with_a_code_outside_the_list_is_denied_twice(scp, code):
    """By the launch rule, and by the tag rule on the tag-on-create authorization."""
    assert refusals(scp, run_instances(DEVELOPER, {"Code": code})) == [
        "BroomDenyCodeOutsideTheList", "BroomDenyLaunchWithoutAllowedCode"]


def test_tags_on_volumes_and_network_interfaces_need_no_code(scp):
    """The statements are scoped to instances: tagging the other resources the launch
    creates (their RunInstances and CreateTags authorizations) is never refused."""
    launch = run_instances(DEVELOPER, {"Code": "LOL"}, volume_tags={"Backup": "daily"},
                           eni_tags={"Name": "eth0", "Code": "NOPE"})
    assert refusals(scp, launch) == []
    untagged_instance = run_instances(DEVELOPER, None, volume_tags={"Backup": "daily"},
                                      eni_tags={"Name": "eth0"})
    assert [r["resource"] for r in untagged_instance if denied_by(scp, r)] == [INSTANCE]


def test_launch_from_a_template_that_sets_the_code(scp):
    """A launch template's TagSpecifications are applied at launch like the request's.
    AWS documents that tag-on-create authorization (ec2:CreateTags with
    ec2:CreateAction=RunInstances) is also evaluated for tags provided by a launch
    template (EC2 User Guide, "Grant permission to tag Amazon EC2 resources during
    creation"), and tag-requiring SCPs are satisfied by putting the tags in the
    template (the documented fix in terraform-aws-modules/terraform-aws-eks#822,
    eksctl-io/eksctl#1603, aws/aws-cdk#7835): the instance's authorization sees the
    template's tags as aws:RequestTag/Code even when the request's own
    TagSpecifications are empty. Not checked against a live account (moto evaluates
    no SCP); this models that behaviour: the template's Code decides."""
    template_tags = {"Code": "GGG", "Name": "from-template"}
    assert refusals(scp, run_instances(DEVELOPER, template_tags)) == []
    assert refusals(scp, run_instances(DEVELOPER, {"Name": "from-template"})) == [
        "BroomDenyLaunchWithoutAllowedCode"]


def instant_fleet(principal, instance_tags=None):
    """The authorization requests of one CreateFleet call of type instant: CreateFleet
    itself on the fleet and the launch template it names, then each launch authorized
    as ec2:RunInstances of the CALLER, with the fleet request's instance tags as
    aws:RequestTag (an instant fleet needs no service-linked role: EC2 User Guide, "EC2
    Fleet prerequisites"; an SCP's explicit deny of ec2:RunInstances on instance/*
    comes back in an instant fleet's errors, aws/karpenter-provider-aws#7370; and
    Karpenter's published controller policy scopes ec2:RunInstances and
    ec2:CreateFleet on instance/* with aws:RequestTag conditions, which only works if
    the fleet's instance tags are the launch's request tags). Modelled, not checked
    against a live account (moto evaluates no SCP)."""
    requests = [request("ec2:CreateFleet", REGION_ARN + kind, principal)
                for kind in ("fleet/fleet-0a1b2c3d-4e5f-6789-abcd-ef0123456789",
                             "launch-template/lt-0abcdef1234567890")]
    return requests + run_instances(principal, instance_tags)


@pytest.mark.parametrize("tags, denied", [
    ({"Code": "LOL", "karpenter.sh/nodepool": "default"}, []),
    ({"karpenter.sh/nodepool": "default"}, ["BroomDenyLaunchWithoutAllowedCode"]),
    (None, ["BroomDenyLaunchWithoutAllowedCode"]),
    ({"Code": "NOPE"}, ["BroomDenyCodeOutsideTheList", "BroomDenyLaunchWithoutAllowedCode"]),
])
def test_an_instant_fleets_launches_are_held_to_the_same_rule(scp, tags, denied):
    assert refusals(scp, instant_fleet(DEVELOPER, tags)) == denied


def test_the_create_fleet_call_itself_is_not_what_the_scp_refuses(scp):
    """Only the launches are refused: the call returns them as errors, and a fleet
    whose instances are tagged with an allowed code is not held up by its own tags."""
    assert not any(denied_by(scp, r) for r in instant_fleet(DEVELOPER)
                   if r["action"] == "ec2:CreateFleet")


# --- CreateTags / DeleteTags on existing instances -------------------------------------

@pytest.mark.parametrize("tags, denied", [
    ({"Code": "LOL"}, []),
    ({"Code": "NOPE"}, ["BroomDenyCodeOutsideTheList"]),
    ({"Code": ""}, ["BroomDenyCodeOutsideTheList"]),
    ({"Code": "NOPE", "Name": "x"}, ["BroomDenyCodeOutsideTheList"]),
    ({"Name": "x"}, []),
])
def test_create_tags(scp, tags, denied):
    assert denied_by(scp, request("ec2:CreateTags", INSTANCE, DEVELOPER, tags)) == denied


@pytest.mark.parametrize("tags, denied", [
    (["Code"], ["BroomDenyRemovingCode"]),
    ({"Code": "LOL"}, ["BroomDenyRemovingCode"]),
    (["Name", "Code"], ["BroomDenyRemovingCode"]),
    # DeleteTags with no Tags deletes every tag, Code included: IAM sees no aws:TagKeys.
    (None, ["BroomDenyRemovingEveryTag"]),
    (["Name"], []),
])
def test_delete_tags(scp, tags, denied):
    assert denied_by(scp, request("ec2:DeleteTags", INSTANCE, DEVELOPER, tags)) == denied


def test_tag_changes_on_other_resources_are_not_touched(scp):
    volume = REGION_ARN + "volume/vol-0123456789abcdef0"
    assert denied_by(scp, request("ec2:DeleteTags", volume, DEVELOPER)) == []
    assert denied_by(scp, request("ec2:CreateTags", volume, DEVELOPER, {"Code": "X"})) == []


# --- exemptions ----------------------------------------------------------------------

def every_refused_request(principal):
    return (run_instances(principal)
            + run_instances(principal, {"Code": "NOPE"})
            + [request("ec2:CreateTags", INSTANCE, principal, {"Code": "NOPE"}),
               request("ec2:DeleteTags", INSTANCE, principal, ["Code"]),
               request("ec2:DeleteTags", INSTANCE, principal)])


@pytest.mark.parametrize("principal", [BREAK_GLASS, ALICE, EXEMPT_ACCOUNT],
                         ids=["role-with-path-by-name", "user-arn", "account-id"])
def test_exempt_principals_are_never_refused(scp, principal):
    assert refusals(scp, every_refused_request(principal)) == []


def test_everyone_else_is_refused_everything(scp):
    assert refusals(scp, every_refused_request(DEVELOPER)) == [
        "BroomDenyCodeOutsideTheList", "BroomDenyLaunchWithoutAllowedCode",
        "BroomDenyRemovingCode", "BroomDenyRemovingEveryTag"]
    for principal in (SESSION_NAMED_BREAK_GLASS,
                      ("arn:aws:iam::%s:user/bob" % ACCOUNT, ACCOUNT),
                      ("arn:aws:iam::%s:root" % ACCOUNT, ACCOUNT)):
        assert "BroomDenyLaunchWithoutAllowedCode" in refusals(scp, run_instances(principal))


def test_no_exemptions_means_no_exemption_conditions():
    document = code_tag_scp(CODES, "Code")
    assert all(set(s["Condition"]) <= {"StringNotEquals", "ForAnyValue:StringEquals", "Null"}
               for s in document["Statement"])
    assert refusals(document, every_refused_request(BREAK_GLASS))


def test_ignore_case_codes_are_compared_ignoring_case():
    document = code_tag_scp(CODES, "Code", ignore_case=True)
    assert refusals(document, run_instances(DEVELOPER, {"Code": "lol"})) == []
    assert refusals(document, run_instances(DEVELOPER, {"Code": "nope"}))


def test_every_statement_is_scoped_to_instances(scp):
    assert {s["Resource"] for s in scp["Statement"]} == {INSTANCES}


# --- the evaluator itself: IAM's documented edge cases ---------------------------------

@pytest.mark.parametrize("operator, keys, context, expected", [
    ("StringEquals", {"k": ["a", "b"]}, {"k": "b"}, True),  # values ORed
    ("StringEquals", {"k": "a"}, {}, False),  # absent key: false
    ("StringNotEquals", {"k": ["a", "b"]}, {"k": "b"}, False),
    ("StringNotEquals", {"k": "a"}, {}, True),  # absent key, negated: true
    ("ArnNotLike", {"k": "arn:aws:iam::*:role/x"}, {}, True),
    ("ArnLike", {"k": "arn:aws:iam::*:role/*"}, {"k": "arn:aws:iam::1:user/x"}, False),
    ("StringEquals", {"k": "a", "j": "b"}, {"k": "a"}, False),  # keys ANDed
    ("ForAnyValue:StringEquals", {"k": ["a"]}, {}, False),  # absent: false
    ("ForAnyValue:StringEquals", {"k": ["a"]}, {"k": ["b", "a"]}, True),
    ("ForAllValues:StringEquals", {"k": ["a"]}, {}, True),  # absent: true
    ("ForAllValues:StringEquals", {"k": ["a"]}, {"k": ["a", "b"]}, False),
    ("Null", {"k": "true"}, {}, True),
    ("Null", {"k": "true"}, {"k": ["a"]}, False),
    ("Null", {"k": "false"}, {"k": "a"}, True),
])
def test_evaluator_follows_iam_semantics(operator, keys, context, expected):
    assert holds(operator, keys, context) is expected


def test_evaluator_refuses_operators_it_does_not_know():
    with pytest.raises(KeyError):
        holds("NumericLessThan", {"k": "1"}, {"k": "0"})


# --- the command ---------------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(cli, ["scp", *map(str, args)], catch_exceptions=False)


def failed(result, says):
    """One ``broom scp failed:`` line on stderr naming the problem, exit 1, nothing on
    stdout."""
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("broom scp failed: ") and says in line, line
    return line


def test_scp_refuses_launches_without_an_allowed_code():
    result = invoke()
    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    document["Statement"] = [s for s in document["Statement"]
                             if s["Resource"] == INSTANCES]  # the rest guard Broom itself
    launch_rule, create, delete, delete_all = document["Statement"]
    assert launch_rule["Action"] == "ec2:RunInstances"
    assert launch_rule["Condition"]["StringNotEquals"] == {
        "aws:RequestTag/Code": ["BRB", "GGG", "LOL", "YLO"]}
    assert create["Condition"]["ForAnyValue:StringEquals"] == {"aws:TagKeys": ["Code"]}
    assert delete["Action"] == delete_all["Action"] == "ec2:DeleteTags"
    assert delete_all["Condition"]["Null"] == {"aws:TagKeys": "true"}
    # The shipped policy exempts broom-break-glass: under any path, as Broom does.
    assert all(s["Condition"]["ArnNotLike"] == {"aws:PrincipalArn": [
        "arn:*:iam::*:role/*/broom-break-glass", "arn:*:iam::*:role/broom-break-glass"]}
        for s in document["Statement"])
    assert not refusals(document, every_refused_request(BREAK_GLASS))


def test_scp_takes_codes_from_the_command_line():
    document = json.loads(invoke("--codes", "ABC,DEF").output)
    assert document["Statement"][0]["Condition"]["StringNotEquals"] == {
        "aws:RequestTag/Code": ["ABC", "DEF"]}


def test_scp_refuses_an_empty_code_list():
    failed(invoke("--codes", " , "), "empty")


def test_scp_says_when_it_would_exceed_the_size_limit():
    codes = ",".join("CODE%04d" % n for n in range(600))
    line = failed(invoke("--codes", codes), "over AWS Organizations' limit of %d" % SCP_LIMIT)
    assert "fewer codes or exemptions" in line
    failed(invoke("--codes", codes, "--compact"), "over AWS Organizations' limit")


def test_scp_checks_the_size_of_what_it_prints_and_offers_compact():
    """100 codes: 3,452 characters minified, over 6,000 as indented JSON."""
    codes = ",".join("CODE%04d" % n for n in range(100))
    failed(invoke("--codes", codes), "use --compact")
    result = invoke("--codes", codes, "--compact")
    assert result.exit_code == 0, result.output
    printed = result.stdout.rstrip("\n")
    assert len(printed) <= SCP_LIMIT and "\n" not in printed and " " not in printed
    assert len(json.loads(printed)["Statement"][0]["Condition"]["StringNotEquals"][
        "aws:RequestTag/Code"]) == 100


def test_render_counts_whitespace():
    document = code_tag_scp(["C%04d" % n for n in range(200)])
    assert len(render(document, compact=True)) <= SCP_LIMIT
    with pytest.raises(ScpError, match="as printed.*use --compact"):
        render(document)


def policy_with(tmp_path, change):
    data = yaml.safe_load(POLICY.read_text())
    change(data["policies"][0])
    path = tmp_path / "policy.yml"
    path.write_text(yaml.safe_dump(data))
    return path


def safe_terminate(policy):
    [action] = [a for a in policy["actions"] if a["type"] == "safe-terminate"]
    return action


def test_scp_refuses_exempt_principals_given_as_a_string(tmp_path):
    """A string would be read one character per pattern: every one-letter role exempt."""
    path = policy_with(tmp_path, lambda p: safe_terminate(p).update(
        {"exempt-principals": "broom-break-glass"}))
    failed(invoke("--policy", path), "'broom-break-glass' is not of type 'array'")


def test_scp_refuses_a_session_arn_as_its_policy_does(tmp_path):
    path = policy_with(tmp_path, lambda p: safe_terminate(p).update(
        {"exempt-principals": ["arn:aws:sts::123456789012:assumed-role/break-glass/x"]}))
    failed(invoke("--policy", path), "match the role: arn:aws:iam::123456789012:role/break-glass")


def test_scp_refuses_an_exemption_it_cannot_fill(tmp_path):
    path = policy_with(tmp_path, lambda p: safe_terminate(p).update(
        {"exempt-principals": ["arn:aws:iam::{account_id}:role/ops/oncall"]}))
    failed(invoke("--policy", path), "holds the variable {account_id}")


def test_scp_takes_every_exemption_form_from_the_policy(tmp_path):
    path = policy_with(tmp_path, lambda p: safe_terminate(p).update(
        {"exempt-principals": EXEMPTIONS}))
    result = invoke("--policy", path)
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    for principal in (BREAK_GLASS, ALICE, EXEMPT_ACCOUNT):
        assert refusals(document, every_refused_request(principal)) == []
    assert refusals(document, every_refused_request(DEVELOPER))


def test_scp_uses_the_policy_defaults_when_variables_are_unset(tmp_path):
    """codes-override: "{broom_codes}" left unexpanded means the policy's codes."""
    path = policy_with(tmp_path, lambda p: p["filters"][0].update(
        {"codes": ["X1", "X2"], "ignore-case": True}))
    document = json.loads(invoke("--policy", path).stdout)
    assert document["Statement"][0]["Condition"]["StringNotEqualsIgnoreCase"] == {
        "aws:RequestTag/Code": ["X1", "X2"]}


def test_scp_asks_for_codes_the_policy_reads_at_run_time(tmp_path):
    def value_from(policy):
        check = policy["filters"][0]
        del check["codes"]
        check["value_from"] = {"url": "s3://bucket/codes.json", "format": "json"}
    path = policy_with(tmp_path, value_from)
    failed(invoke("--policy", path), "pass them with --codes")
    assert json.loads(invoke("--policy", path, "--codes", "A").stdout)["Statement"]


@pytest.mark.parametrize("text", ["", "foo: 1\n", "- name: x\n  resource: aws.ec2\n",
                                  "policies: [\n"])
def test_scp_names_a_file_that_is_not_a_policy_file(tmp_path, text):
    path = tmp_path / "policy.yml"
    path.write_text(text)
    failed(invoke("--policy", path), str(path))


def test_scp_refuses_a_policy_its_own_validation_refuses(tmp_path):
    path = policy_with(tmp_path, lambda p: safe_terminate(p).update(
        {"enforcement": "dry-run"}))
    failed(invoke("--policy", path), "'enforcement' must be one of")
