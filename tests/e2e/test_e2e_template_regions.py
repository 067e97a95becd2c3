"""The account and member templates deploy with the same parameters in every region of
an account, as a CloudFormation StackSet deploys one parameter set to many regions:
the stack in RolesRegion creates the account-wide roles, the others use them.

On moto's CloudFormation (it skips the topic policy and the alarm; cfn-lint checks
them, tests/e2e/test_templates_lint.py).
"""
import pytest

from support import ACCOUNT, REPO

FIRST, SECOND = "us-east-1", "eu-west-1"


def deploy(aws, template, region, parameters):
    cloudformation = aws.client("cloudformation", region=region)
    cloudformation.create_stack(
        StackName="broom", TemplateBody=(REPO / "templates" / template).read_text(),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()])
    [stack] = cloudformation.describe_stacks(StackName="broom")["Stacks"]
    return stack


def outputs(stack):
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def broom_roles(aws):
    return sorted(r["RoleName"] for r in aws.client("iam").list_roles()["Roles"]
                  if r["RoleName"].startswith("broom-"))


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_account_template_deploys_in_two_regions_with_the_same_parameters(fresh_aws):
    parameters = {"ReportEmail": "team@example.com"}
    stacks = {region: deploy(fresh_aws, "account.yml", region, parameters)
              for region in (FIRST, SECOND)}

    assert {r: s["StackStatus"] for r, s in stacks.items()} == {
        FIRST: "CREATE_COMPLETE", SECOND: "CREATE_COMPLETE"}
    assert broom_roles(fresh_aws) == ["broom-lambda", "broom-scheduler"]
    for region, stack in stacks.items():
        found = outputs(stack)
        assert found["LambdaRoleArn"] == "arn:aws:iam::%s:role/broom-lambda" % ACCOUNT
        assert found["ReportTopicArn"] == "arn:aws:sns:%s:%s:broom-reports" % (region, ACCOUNT)
        assert fresh_aws.client("dynamodb", region=region).describe_table(
            TableName="broom-state")["Table"]["TableStatus"] == "ACTIVE"
        assert fresh_aws.client("sqs", region=region).get_queue_url(
            QueueName="broom-dead-letters")["QueueUrl"]


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_member_template_deploys_in_two_regions_with_the_same_parameters(fresh_aws):
    parameters = {"HubAccountId": "999999999999"}
    stacks = {region: deploy(fresh_aws, "member.yml", region, parameters)
              for region in (FIRST, SECOND)}

    assert {r: s["StackStatus"] for r, s in stacks.items()} == {
        FIRST: "CREATE_COMPLETE", SECOND: "CREATE_COMPLETE"}
    # (moto's CloudFormation evaluates the forward role's !And [!Condition ...] as
    # false and skips it; the rule's target ARN is built, so it holds either way.)
    assert "broom-member" in broom_roles(fresh_aws)
    for region in stacks:
        [rule] = fresh_aws.client("events", region=region).list_rules(
            NamePrefix="broom-forward-to-hub")["Rules"]
        [target] = fresh_aws.client("events", region=region).list_targets_by_rule(
            Rule=rule["Name"])["Targets"]
        assert target["RoleArn"] == "arn:aws:iam::%s:role/broom-forward" % ACCOUNT
