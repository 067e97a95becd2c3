"""`broom doctor` against moto's server: policies/ec2-tags.yml deployed with the stock
`custodian`, the account's resources created as templates/account.yml would, then one
thing broken at a time."""
import json

import pytest
from click.testing import CliRunner

from broom.cli import cli
from broom.local.aws import create_lambda_role, create_state_table
from broom.local.deploy import custodian_run

from e2e_support import function_name, policy_data
from support import ACCOUNT, POLICIES, REGION

POLICY_FILE = POLICIES / "ec2-tags.yml"
FUNCTION = function_name(policy_data(POLICY_FILE.name))
TOPIC = "arn:aws:sns:%s:%s:broom-reports" % (REGION, ACCOUNT)


@pytest.fixture(scope="module")
def deployed(local_aws, tmp_path_factory):
    local_aws.reset()
    create_lambda_role(local_aws)
    create_state_table(local_aws.client("dynamodb"))
    local_aws.client("sns").create_topic(Name="broom-reports")
    local_aws.client("sqs").create_queue(QueueName="broom-dead-letters")
    trails = local_aws.client("cloudtrail")
    bucket = "broom-trail-%s" % ACCOUNT
    local_aws.client("s3").create_bucket(Bucket=bucket)
    trails.create_trail(Name="management", S3BucketName=bucket, IsMultiRegionTrail=True)
    trails.start_logging(Name="management")
    custodian_run(POLICY_FILE, tmp_path_factory.mktemp("deploy"), [REGION], local_aws.env())
    return local_aws


def doctor(aws, monkeypatch, *args):
    for name, value in aws.env().items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["doctor", *args], catch_exceptions=False)
    return result.exit_code, result.stdout.splitlines(), result.stderr


def test_all_ok_then_each_break_is_one_fail_line(deployed, monkeypatch):
    aws = deployed
    code, lines, _ = doctor(aws, monkeypatch, "--region", REGION)
    assert code == 0, "\n".join(lines)
    assert lines == [
        "ok   role broom-lambda: exists, trusted by lambda.amazonaws.com",
        "ok   topic %s: exists, its policy lets the account's roles publish" % TOPIC,
        "ok   table broom-state: exists, TTL on 'expires', only Broom's roles write items",
        "ok   cloudtrail in %s: trail management logs management events" % REGION,
        "ok   function %s: handler, runtime and role match the policy" % FUNCTION,
        "ok   rule %s: enabled, matches the policy's events, targets the function"
        % FUNCTION,
        "ok   queue broom-dead-letters: exists, empty",
        "%s (%s): 7 checks, 0 failed" % (ACCOUNT, REGION),
    ]

    def fails():
        code, lines, _ = doctor(aws, monkeypatch, "--region", REGION)
        assert code == 1
        return [line for line in lines if line.startswith("FAIL")]

    # A failed event waits in the dead-letter queue.
    sqs = aws.client("sqs")
    url = sqs.get_queue_url(QueueName="broom-dead-letters")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps({"detail": {}}))
    assert fails() == ["FAIL queue broom-dead-letters: 1 failed event(s) waiting: read them "
                       "(sqs receive-message), fix the cause, replay them with broom "
                       "replay, then purge the queue"]
    sqs.purge_queue(QueueUrl=url)

    # The trail stops logging.
    aws.client("cloudtrail").stop_logging(Name="management")
    [line] = fails()
    assert line.startswith("FAIL cloudtrail in %s: no trail logs management events here "
                           "(management (not logging))" % REGION)
    aws.client("cloudtrail").start_logging(Name="management")

    # The function's rule is deleted.
    events = aws.client("events")
    targets = events.list_targets_by_rule(Rule=FUNCTION)["Targets"]
    events.remove_targets(Rule=FUNCTION, Ids=[t["Id"] for t in targets])
    rule = events.describe_rule(Name=FUNCTION)
    events.delete_rule(Name=FUNCTION)
    assert fails() == ["FAIL rule %s: missing: the function gets no events; deploy again"
                       % FUNCTION]
    events.put_rule(Name=FUNCTION, EventPattern=json.dumps({"source": ["aws.ec2"]}))
    assert fails() == ["FAIL rule %s: its pattern lacks eventSource ec2.amazonaws.com; its "
                       "pattern lacks eventName CreateFleet, RunInstances; it does not target the "
                       "function: deploy again" % FUNCTION]
    events.put_rule(Name=FUNCTION, EventPattern=rule["EventPattern"])
    events.put_targets(Rule=FUNCTION, Targets=targets)

    # The state table's resource policy is removed: anyone may forge Broom's state.
    dynamodb = aws.client("dynamodb")
    arn = dynamodb.describe_table(TableName="broom-state")["Table"]["TableArn"]
    guard = dynamodb.get_resource_policy(ResourceArn=arn)["Policy"]
    dynamodb.delete_resource_policy(ResourceArn=arn)
    [line] = fails()
    assert line.startswith("FAIL table broom-state: no resource policy: any principal")
    dynamodb.put_resource_policy(ResourceArn=arn, Policy=guard)

    # The state table is deleted.
    aws.client("dynamodb").delete_table(TableName="broom-state")
    assert fails() == ["FAIL table broom-state: missing: create it (templates/account.yml)"]
    create_state_table(aws.client("dynamodb"))

    # All repaired.
    code, lines, _ = doctor(aws, monkeypatch, "--region", REGION)
    assert code == 0, "\n".join(lines)


def test_missing_region_is_one_line(local_aws, monkeypatch, tmp_path):
    env = dict(local_aws.env(), AWS_CONFIG_FILE=str(tmp_path / "none"))
    for name in ("AWS_DEFAULT_REGION", "AWS_REGION"):
        env.pop(name)
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = CliRunner().invoke(cli, ["doctor"], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr == ("broom doctor failed: no AWS region: pass --region or set "
                             "AWS_DEFAULT_REGION\n")


def test_missing_credentials_is_one_line(local_aws, monkeypatch, tmp_path):
    for name, value in local_aws.env().items():
        monkeypatch.setenv(name, value)
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    result = CliRunner().invoke(cli, ["doctor", "--region", REGION], catch_exceptions=False)
    assert result.exit_code == 1
    assert result.stderr.startswith("broom doctor failed: cannot use the current AWS "
                                    "credentials in %s: Unable to locate credentials" % REGION)
    assert len(result.stderr.splitlines()) == 1


def test_the_sweeps_schedule_is_checked(deployed, monkeypatch, tmp_path):
    """The periodic sweep has a schedule, not an event pattern: doctor checks the rule
    runs on the policy's schedule (hourly when broom_sweep_schedule is unset)."""
    aws = deployed
    sweep_file = POLICIES / "ec2-tags-sweep.yml"
    sweep = function_name(policy_data(sweep_file.name))
    custodian_run(sweep_file, tmp_path, [REGION], aws.env())
    code, lines, _ = doctor(aws, monkeypatch, "--region", REGION, "--policy", str(sweep_file))
    assert code == 0, "\n".join(lines)
    assert "ok   rule %s: enabled, runs on rate(1 hour), targets the function" % sweep in lines

    aws.client("events").put_rule(Name=sweep, ScheduleExpression="rate(7 days)")
    code, lines, _ = doctor(aws, monkeypatch, "--region", REGION, "--policy", str(sweep_file))
    assert code == 1
    assert ("FAIL rule %s: it runs on rate(7 days), the policy says rate(1 hour): deploy "
            "again" % sweep) in lines
