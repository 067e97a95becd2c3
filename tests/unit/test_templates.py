"""The CloudFormation templates (templates/*.yml) and `broom permissions`: the roles
grant exactly what the policies' elements declare (one source of truth,
broom/permissions.py), scoped, and nothing else; cfn-lint accepts the templates."""
import json
import re

import pytest
import yaml
from click.testing import CliRunner

from broom import permissions
from broom.cli import cli
from c7n_broom import recheck, state

import cfn_templates
from cfn_templates import (
    actions_of,
    as_written,
    load,
    policy_documents,
    resources,
    role,
    role_policy_document,
    statements,
)
from support import POLICIES

TEMPLATES = cfn_templates.TEMPLATES
# What the templates write where broom/permissions.py has placeholders.
IN_TEMPLATE = {"account": "${AWS::AccountId}", "partition": "${AWS::Partition}"}
SHIPPED = sorted(POLICIES.glob("*.yml"))


def generated(role_name, topic_account=None):
    """The statements `broom permissions --role ROLE` prints, as a template writes them."""
    actions = permissions.role_actions(role_name, permissions.policy_permissions(SHIPPED))
    return permissions.statements(actions, topic_account=topic_account, **IN_TEMPLATE)


def granted_actions(document):
    return {a for s in statements(document) for a in actions_of(s)}


# (template, role name, `broom permissions --role`, the report topic's account)
ROLES = [
    ("account.yml", "broom-lambda", "account", None),
    ("hub.yml", "broom-lambda", "hub", None),
    ("member.yml", "broom-member", "member", "${HubAccountId}"),
]


def test_shipped_policies_are_the_five_the_templates_serve():
    assert [p.name for p in SHIPPED] == [
        "ec2-tags-changed.yml", "ec2-tags-fixed.yml", "ec2-tags-hub.yml", "ec2-tags-sweep.yml",
        "ec2-tags.yml"]


# 1. One source of truth ------------------------------------------------------------

def test_generated_set_is_the_policies_permissions_plus_what_lambda_does():
    declared = set()
    for path in SHIPPED:
        for policy in yaml.safe_load(path.read_text())["policies"]:
            assert policy["mode"]["role"] == "arn:aws:iam::{account_id}:role/broom-lambda"
    for path in SHIPPED:
        declared |= permissions.policy_permissions([path])

    assert permissions.role_actions("account", declared) == declared | {
        "logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
        "sqs:SendMessage"}
    assert permissions.unscoped(permissions.role_actions("account", declared)) == []


@pytest.mark.parametrize("template, role_name, kind, topic_account", ROLES,
                         ids=[r[0] for r in ROLES])
def test_role_grants_exactly_the_generated_actions(template, role_name, kind,
                                                   topic_account):
    document = role_policy_document(load(template), role_name)

    assert granted_actions(document) == {
        a for s in generated(kind, topic_account) for a in s["Action"]}


@pytest.mark.parametrize("template, role_name, kind, topic_account", ROLES,
                         ids=[r[0] for r in ROLES])
def test_role_statements_are_the_generated_ones_scopes_and_conditions_included(
        template, role_name, kind, topic_account):
    document = as_written(role_policy_document(load(template), role_name))

    assert document["Version"] == permissions.VERSION
    assert document["Statement"] == generated(kind, topic_account)


def test_member_role_is_the_account_role_without_what_the_hub_does_itself():
    account = {a for s in generated("account") for a in s["Action"]}
    member = {a for s in generated("member") for a in s["Action"]}
    hub = {a for s in generated("hub") for a in s["Action"]}

    assert member == account - set(permissions.FUNCTION_OWN) - set(
        permissions.LAMBDA_SERVICE)
    assert hub == set(permissions.FUNCTION_OWN) | set(permissions.LAMBDA_SERVICE) | {
        "sts:AssumeRole"}


def test_kms_grant_exists_only_with_a_key_and_only_on_that_key():
    for template in ("account.yml", "hub.yml", "member.yml"):
        loaded = load(template)
        [key_policy] = resources(loaded, "AWS::IAM::RolePolicy").values()
        [statement] = statements(key_policy["Properties"]["PolicyDocument"])
        parameter = "HubKmsKeyArn" if template == "member.yml" else "KmsKeyArn"

        assert key_policy["Condition"] == "HasKmsKey"
        assert loaded["Conditions"]["HasKmsKey"] == {
            "Fn::Not": [{"Fn::Equals": [{"Ref": parameter}, ""]}]}
        assert sorted(statement["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
        assert statement["Resource"] == {"Ref": parameter}


# 2. Nothing wider than needed --------------------------------------------------------

@pytest.mark.parametrize("template", cfn_templates.names())
def test_no_template_grants_a_wildcard_action(template):
    found = list(policy_documents(load(template)))
    assert found
    for document in found:
        for statement in statements(document):
            assert "NotAction" not in statement and "NotResource" not in statement
            for action in actions_of(statement):
                service, _, name = action.partition(":")
                assert service and name and "*" not in action, (template, action)


#: Read-only calls IAM cannot scope to a resource: EC2's Describe*, the Price List API
#: (report costs) and CloudTrail's LookupEvents (the sweep's creators).
def granted_on_everything(action):
    return action.startswith("ec2:Describe") or action in (
        "pricing:GetProducts", "cloudtrail:LookupEvents")


@pytest.mark.parametrize("template", cfn_templates.names())
def test_only_reads_without_resource_types_are_granted_on_every_resource(template):
    """EC2's Describe calls, the Price List API and CloudTrail's LookupEvents name
    no resources in IAM."""
    for document in policy_documents(load(template)):
        for statement in statements(document):
            resource = statement.get("Resource")
            everything = resource == "*" or (isinstance(resource, list) and "*" in resource)
            if everything:
                assert all(granted_on_everything(a) for a in actions_of(statement)), (
                    template, statement)


def test_protection_can_be_cleared_and_nothing_else_modified():
    [statement] = [s for s in generated("account")
                   if "ec2:ModifyInstanceAttribute" in s["Action"]]
    assert statement["Condition"] == {"StringEquals": {
        "ec2:Attribute": ["disableApiTermination", "disableApiStop"]}}
    assert statement["Action"] == ["ec2:ModifyInstanceAttribute"]


def test_scheduler_role_is_passed_to_the_scheduler_only_and_invokes_broom_only():
    for template in ("account.yml", "hub.yml"):
        scheduler = role(load(template), recheck.SCHEDULER_ROLE)["Properties"]
        [trust] = scheduler["AssumeRolePolicyDocument"]["Statement"]
        [invoke] = as_written(statements(scheduler["Policies"][0]["PolicyDocument"]))

        assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}
        assert invoke["Action"] == ["lambda:InvokeFunction"]
        assert invoke["Resource"] == (
            "arn:${AWS::Partition}:lambda:*:${AWS::AccountId}:function:custodian-broom-*")
    [passing] = [s for s in generated("account") if s["Action"] == ["iam:PassRole"]]
    assert passing["Resource"].endswith(":role/" + recheck.SCHEDULER_ROLE)
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}}


def test_execution_roles_trust_lambda_only():
    for template in ("account.yml", "hub.yml"):
        trust = role(load(template), "broom-lambda")["Properties"]["AssumeRolePolicyDocument"]
        assert trust["Statement"] == [{
            "Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
            "Action": "sts:AssumeRole"}]


# 3. What the templates create is what the policies and the plugin use ----------------

def test_state_table_is_the_one_broom_uses():
    for template in ("account.yml", "member.yml"):
        [table] = resources(load(template), "AWS::DynamoDB::Table").values()
        properties = table["Properties"]

        assert properties["TableName"] == state.DEFAULT_TABLE
        assert properties["BillingMode"] == "PAY_PER_REQUEST"
        assert properties["KeySchema"] == [{"AttributeName": state.KEY, "KeyType": "HASH"}]
        assert properties["AttributeDefinitions"] == [
            {"AttributeName": state.KEY, "AttributeType": "S"}]
        assert properties["TimeToLiveSpecification"] == {
            "AttributeName": state.TTL_ATTRIBUTE, "Enabled": True}


def test_policies_send_failed_events_to_the_queue_the_templates_create():
    for path in SHIPPED:
        [policy] = yaml.safe_load(path.read_text())["policies"]
        assert policy["mode"]["dead_letter_config"] == {
            "TargetArn": "arn:aws:sqs:{region}:{account_id}:broom-dead-letters"}
    for template in ("account.yml", "hub.yml"):
        loaded = load(template)
        [queue] = resources(loaded, "AWS::SQS::Queue").values()
        [alarm] = [a["Properties"] for a in resources(loaded, "AWS::CloudWatch::Alarm").values()
                   if a["Properties"].get("Namespace") == "AWS/SQS"]

        assert queue["Properties"]["QueueName"] == "broom-dead-letters"
        assert (alarm["Namespace"], alarm["MetricName"]) == (
            "AWS/SQS", "ApproximateNumberOfMessagesVisible")
        assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {
            "Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}}]
        assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
        assert alarm["AlarmActions"] == [{"Fn::If": [
            "HasAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "ReportTopic"}]}]


def test_report_topic_is_the_one_the_policies_publish_to():
    for path in SHIPPED:
        [policy] = yaml.safe_load(path.read_text())["policies"]
        # ec2-tags-fixed.yml reports nothing: it only resolves Security Hub findings
        for report in [a for a in policy["actions"] if a["type"] == "creator-report"]:
            assert report["topic"] == "arn:aws:sns:{region}:{account_id}:broom-reports"
    for template in ("account.yml", "hub.yml"):
        [topic] = resources(load(template), "AWS::SNS::Topic").values()
        assert topic["Properties"]["TopicName"] == "broom-reports"


def test_account_topic_lets_broom_lambda_and_the_alarm_publish():
    loaded = load("account.yml")
    [topic_policy] = resources(loaded, "AWS::SNS::TopicPolicy").values()
    broom, alarm = statements(topic_policy["Properties"]["PolicyDocument"])

    assert broom["Principal"] == {"AWS": {"Fn::If": [
        "CreateRoles", {"Fn::GetAtt": ["LambdaRole", "Arn"]},
        {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/broom-lambda"}]}}
    assert (broom["Action"], broom["Resource"]) == ("sns:Publish", {"Ref": "ReportTopic"})
    assert alarm["Principal"] == {"Service": "cloudwatch.amazonaws.com"}


# 4. Hub and spoke ---------------------------------------------------------------------

def test_hub_bus_accepts_events_from_the_organisation_only():
    [bus_policy] = resources(load("hub.yml"), "AWS::Events::EventBusPolicy").values()
    properties = bus_policy["Properties"]

    assert properties["EventBusName"] == "default"
    assert as_written(properties["Statement"]) == {
        "Sid": "broom-organisation-forwards", "Effect": "Allow", "Principal": "*",
        "Action": "events:PutEvents",
        "Resource": "arn:${AWS::Partition}:events:${AWS::Region}:${AWS::AccountId}"
                    ":event-bus/default",
        "Condition": {"StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}}}}


def test_hub_topic_lets_member_roles_of_the_organisation_publish():
    [topic_policy] = resources(load("hub.yml"), "AWS::SNS::TopicPolicy").values()
    members, _alarm = as_written(statements(topic_policy["Properties"]["PolicyDocument"]))

    assert members["Action"] == "sns:Publish"
    assert members["Condition"] == {
        "StringEquals": {"aws:PrincipalOrgID": {"Ref": "OrganizationId"}},
        "ArnLike": {"aws:PrincipalArn": "arn:${AWS::Partition}:iam::*:role/broom-member"}}


def test_member_role_trusts_only_the_hub_function_role():
    hub_policy = yaml.safe_load((POLICIES / "ec2-tags-hub.yml").read_text())["policies"][0]
    member = role(load("member.yml"), "broom-member")["Properties"]

    assert hub_policy["mode"]["member-role"] == "arn:aws:iam::{account_id}:role/broom-member"
    assert as_written(member["AssumeRolePolicyDocument"]["Statement"]) == [{
        "Effect": "Allow",
        "Principal": {"AWS": "arn:${AWS::Partition}:iam::${HubAccountId}:role/broom-lambda"},
        "Action": "sts:AssumeRole"}]


def test_member_forwards_only_aws_events_of_the_subscribed_calls_to_the_hub_bus():
    loaded = load("member.yml")
    [rule] = resources(loaded, "AWS::Events::Rule").values()
    [target] = as_written(rule["Properties"]["Targets"])
    forward = role(loaded, "broom-forward")["Properties"]
    [put] = as_written(statements(forward["Policies"][0]["PolicyDocument"]))
    subscribed = sorted({e["event"] for path in SHIPPED for e in yaml.safe_load(
        path.read_text())["policies"][0]["mode"].get("events", ())})  # the sweep: none

    assert rule["Properties"]["EventPattern"] == {
        "source": ["aws.ec2"],
        "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {"eventSource": ["ec2.amazonaws.com"],
                   "eventName": ["RunInstances", "CreateFleet", "CreateTags", "DeleteTags"]}}
    assert sorted(rule["Properties"]["EventPattern"]["detail"]["eventName"]) == subscribed
    assert target["Arn"] == (
        "arn:${AWS::Partition}:events:${AWS::Region}:${HubAccountId}:event-bus/default")
    # Deployed in the hub itself, it forwards nothing (the events are there already).
    assert rule["Condition"] == "Forward"
    assert loaded["Conditions"]["Forward"] == {"Fn::Not": [{"Fn::Equals": [
        {"Ref": "HubAccountId"}, {"Ref": "AWS::AccountId"}]}]}
    assert put["Action"] == ["events:PutEvents"]
    assert put["Resource"] == "arn:${AWS::Partition}:events:*:${HubAccountId}:event-bus/default"


# 5. The deployer ---------------------------------------------------------------------

def test_deployer_may_deploy_broom_functions_and_rules_and_pass_broom_lambda_only():
    deployer = role(load("deployer.yml"), "broom-deployer")["Properties"]
    found = as_written(statements(deployer["Policies"][0]["PolicyDocument"]))
    by_sid = {s["Sid"]: s for s in found}
    functions = "arn:${AWS::Partition}:lambda:*:${AWS::AccountId}:function:custodian-broom-*"

    assert {a for s in found for a in s["Action"]} == {
        "lambda:CreateFunction", "lambda:GetFunction", "lambda:GetFunctionConfiguration",
        "lambda:ListTags", "lambda:TagResource", "lambda:UntagResource",
        "lambda:UpdateFunctionCode", "lambda:UpdateFunctionConfiguration",
        "lambda:AddPermission", "events:DescribeRule", "events:ListTargetsByRule",
        "events:PutRule", "events:PutTargets", "iam:PassRole"}
    assert by_sid["BroomDeployFunctions"]["Resource"] == functions
    assert by_sid["BroomLetEventsInvoke"] == {
        "Sid": "BroomLetEventsInvoke", "Effect": "Allow", "Action": ["lambda:AddPermission"],
        "Resource": functions,
        "Condition": {"StringEquals": {"lambda:Principal": "events.amazonaws.com"}}}
    assert by_sid["BroomDeployRules"]["Resource"] == (
        "arn:${AWS::Partition}:events:*:${AWS::AccountId}:rule/custodian-broom-*")
    assert by_sid["BroomPassExecutionRole"]["Resource"] == (
        "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/broom-lambda")
    assert by_sid["BroomPassExecutionRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "lambda.amazonaws.com"}}


# 6. Parameters CloudFormation itself checks ------------------------------------------

PARAMETER_VALUES = {
    "OrganizationId": (["o-abcdefghij", "o-a1b2c3d4e5f6g7h8i9"],
                       ["", "o-short", "O-ABCDEFGHIJ", "o-abcdefghij ", "r-abcdefghij"]),
    "HubAccountId": (["111111111111"], ["", "11111111111", "1111111111111", "abc"]),
    "RolesRegion": (["us-east-1", "eu-west-1", "ap-southeast-2", "us-gov-west-1"],
                    ["", "true", "us-east", "US-EAST-1", "us-east-1 "]),
    "ReportEmail": (["", "team@example.com"], ["team", "team@example", "a b@example.com"]),
    "KmsKeyArn": (["", "arn:aws:kms:eu-west-1:111111111111:key/1234abcd-12ab-34cd-56ef-"
                       "1234567890ab"],
                  ["alias/broom", "arn:aws:kms:eu-west-1:111111111111:alias/broom",
                   "arn:aws:kms:eu-west-1:1111:key/x"]),
    "HubKmsKeyArn": (["", "arn:aws:kms:us-east-1:222222222222:key/mrk-1234abcd"],
                     ["arn:aws:sns:us-east-1:222222222222:broom-reports"]),
    "AlarmTopicArn": (["", "arn:aws:sns:eu-west-1:111111111111:on-call"],
                      ["on-call", "arn:aws:sqs:eu-west-1:111111111111:on-call",
                       "arn:aws:sns:eu-west-1:111111111111:on-call.fifo"]),
    "DeployerPrincipalArn": (["arn:aws:iam::111111111111:role/ci-deploy",
                              "arn:aws:iam::111111111111:role/ops/c7n-org",
                              "arn:aws:iam::111111111111:user/alice"],
                             ["", "*", "arn:aws:iam::*:role/ci", "arn:aws:sts::111111111111:"
                              "assumed-role/ci/session"]),
}


@pytest.mark.parametrize("template", cfn_templates.names())
def test_every_parameter_is_constrained_by_cloudformation(template):
    for name, parameter in load(template).get("Parameters", {}).items():
        assert "AllowedPattern" in parameter or "AllowedValues" in parameter, (template, name)
        if "AllowedPattern" not in parameter:
            continue
        good, bad = PARAMETER_VALUES[name]
        pattern = parameter["AllowedPattern"]
        for value in good:
            assert re.fullmatch(pattern, value), (template, name, value)
        for value in bad:
            assert not re.fullmatch(pattern, value), (template, name, value)
        if "Default" in parameter:
            assert re.fullmatch(pattern, parameter["Default"])


# 7. `broom permissions` ----------------------------------------------------------------

def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_broom_permissions_prints_the_account_role_policy_of_the_shipped_policies():
    result = invoke("permissions", "--account", "111111111111")

    assert result.exit_code == 0, result.output
    document = json.loads(result.output)
    assert document == {"Version": "2012-10-17", "Statement": permissions.statements(
        permissions.role_actions("account", permissions.policy_permissions(SHIPPED)),
        account="111111111111")}
    [report] = [s for s in document["Statement"] if s["Sid"] == "BroomReport"]
    assert report["Resource"] == "arn:aws:sns:*:111111111111:broom-reports"


def test_broom_permissions_for_a_member_reports_to_the_hub_topic():
    result = invoke("permissions", "--role", "member", "--account", "222222222222",
                    "--hub-account", "111111111111",
                    "--policy", str(POLICIES / "ec2-tags-hub.yml"))

    assert result.exit_code == 0, result.output
    by_sid = {s["Sid"]: s for s in json.loads(result.output)["Statement"]}
    assert by_sid["BroomReport"]["Resource"] == "arn:aws:sns:*:111111111111:broom-reports"
    assert by_sid["BroomState"]["Resource"] == (
        "arn:aws:dynamodb:*:222222222222:table/broom-state")
    assert "BroomRecheck" not in by_sid and "BroomLogs" not in by_sid


def test_broom_permissions_grants_unknown_actions_on_everything_and_says_so(tmp_path):
    path = tmp_path / "reboot.yml"
    path.write_text(yaml.safe_dump({"policies": [{
        "name": "reboot-it", "resource": "aws.ec2",
        "actions": [{"type": "reboot"}]}]}))

    result = CliRunner().invoke(cli, ["permissions", "--policy", str(path)])

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["Statement"][-1] == {"Sid": "BroomUnscoped", "Effect": "Allow",
                                         "Action": ["ec2:RebootInstances"], "Resource": "*"}
    assert 'no known resource scope for ec2:RebootInstances: granted on "*"' in result.stderr


BAD_FILES = {
    "unknown filter": ("policies:\n  - name: typo\n    resource: aws.ec2\n"
                       "    filters: [{type: allowed-codez, codes: [LOL]}]\n",
                       "'type': 'allowed-codez'"),
    "not a policy file": ("just: a mapping\n", "no 'policies:' list at the top"),
    "not YAML": ("policies: [\n", "not a readable policy file"),
    "no policy": ("policies: []\n", "no policy in it"),
}


@pytest.mark.parametrize("text, says", BAD_FILES.values(), ids=BAD_FILES)
def test_broom_permissions_refuses_a_file_that_does_not_load(tmp_path, text, says):
    path = tmp_path / "bad.yml"
    path.write_text(text)

    result = CliRunner().invoke(cli, ["permissions", "--policy", str(path)])

    assert result.exit_code == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("broom permissions failed: %s: " % path)
    assert says in line
