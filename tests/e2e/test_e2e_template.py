"""A fresh account, the way the README deploys it: templates/account.yml through
CloudFormation (moto's server), then the stock `custodian run`, then the published
archive running as the role the stack created.

moto's CloudFormation creates the role, its policy, the topic, the state table, the
scheduler role and the dead-letter queue; it skips the topic policy, the e-mail
subscription and the alarm (not implemented there, cfn-lint checks them). Whether the
role's permissions are exactly enough is proven with IAM enforcement on in
test_e2e_iam.py; here, that the template provides everything the deployment uses.
"""
import pytest

from broom.local.deploy import custodian_run, invoke_deployed

from e2e_support import function_name, launch_trio, policy_data, run_instances_record, server_inbox
from support import ACCOUNT, POLICIES, REGION, REPO, states

POLICY_FILE = POLICIES / "ec2-tags.yml"
FUNCTION = function_name(policy_data(POLICY_FILE.name))


@pytest.mark.filterwarnings("ignore:Tried to parse:UserWarning")
def test_account_template_then_the_policy_then_the_archive_does_its_job(fresh_aws, tmp_path):
    cloudformation = fresh_aws.client("cloudformation")
    cloudformation.create_stack(
        StackName="broom", TemplateBody=(REPO / "templates" / "account.yml").read_text(),
        Capabilities=["CAPABILITY_NAMED_IAM"],
        Parameters=[{"ParameterKey": "ReportEmail", "ParameterValue": "team@example.com"}])
    [stack] = cloudformation.describe_stacks(StackName="broom")["Stacks"]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert outputs["LambdaRoleArn"] == "arn:aws:iam::%s:role/broom-lambda" % ACCOUNT
    assert outputs["StateTableName"] == "broom-state"

    custodian_run(POLICY_FILE, tmp_path, [REGION], fresh_aws.env())
    inbox = server_inbox(fresh_aws)
    ec2 = fresh_aws.client("ec2")
    instances = launch_trio(ec2)

    result = invoke_deployed(fresh_aws, FUNCTION, run_instances_record(instances.values()),
                             REGION)

    assert result.ok, result.logs[-4000:]
    assert "state table" not in result.logs  # the stack's table was found and used
    assert states(instances.values(), ec2) == {
        instances["valid"]: "running", instances["missing"]: "terminated",
        instances["invalid"]: "terminated"}
    assert len(inbox.emails()) == 2
    dead_letters = fresh_aws.client("sqs").get_queue_attributes(
        QueueUrl=fresh_aws.client("sqs").get_queue_url(QueueName="broom-dead-letters")[
            "QueueUrl"], AttributeNames=["ApproximateNumberOfMessages"])
    assert dead_letters["Attributes"]["ApproximateNumberOfMessages"] == "0"
