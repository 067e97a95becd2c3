"""End to end: deploy policies/ec2-tags.yml per region with the stock `custodian`
command against moto's server, then run the archive it published the way Lambda does.
"""
import json
import time

import pytest

from broom.local.aws import create_lambda_role, create_state_table
from broom.local.deploy import (
    code_sha256,
    custodian_run,
    execution_env,
    invoke_deployed,
    published,
)
from broom.local.lambda_runner import archive_packages, run_archive
from c7n_broom import items, recheck

from e2e_support import (
    OTHER_REGION,
    archive_config,
    by_instance,
    deployment_snapshot,
    expected_pattern,
    function_name,
    lambda_rejects_duplicate_statement_ids,
    launch_trio,
    policy_data,
    report_fields,
    report_summary,
    run_instances_record,
    server_inbox,
    stock,
    terminated_report,
    write_policy,
)
from support import (
    ACCOUNT,
    POLICIES,
    REGION,
    create_fleet_event,
    launch,
    launch_fleet,
    states,
)

POLICY_FILE = POLICIES / "ec2-tags.yml"
POLICY = policy_data(POLICY_FILE.name)
FUNCTION = function_name(POLICY)
REGIONS = (REGION, OTHER_REGION)
NO_ROLE_ACCOUNT = "555555555555"


@pytest.fixture(scope="module")
def first_deploy(local_aws, tmp_path_factory):
    """Stock `custodian run` of policies/ec2-tags.yml in two regions (its process)."""
    local_aws.reset()
    create_lambda_role(local_aws)
    for region in REGIONS:
        create_state_table(local_aws.client("dynamodb", region=region))
        local_aws.client("scheduler", region=region).create_schedule_group(
            Name=recheck.SCHEDULE_GROUP)
    with lambda_rejects_duplicate_statement_ids():
        yield custodian_run(
            POLICY_FILE, tmp_path_factory.mktemp("deploy"), REGIONS, local_aws.env())


@pytest.fixture(scope="module")
def deployed(local_aws, first_deploy):
    """The local AWS with policies/ec2-tags.yml deployed in two regions."""
    return local_aws


def reports_of_terminated_violators(instances, region=REGION):
    """report_summary() of each violator of launch_trio(), terminated, by instance id."""
    return {instances[reason]: terminated_report(instances[reason], reason, region)
            for reason in ("missing", "invalid")}


# 1. Deploy per region ------------------------------------------------------------

def test_deploy_provisions_function_rule_target_and_permission_in_each_region(deployed):
    mode = POLICY["mode"]
    for region in REGIONS:
        lam = deployed.client("lambda", region=region)
        events = deployed.client("events", region=region)
        function = lam.get_function(FunctionName=FUNCTION)["Configuration"]
        [rule] = events.list_rules()["Rules"]
        [target] = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
        [permission] = json.loads(lam.get_policy(FunctionName=FUNCTION)["Policy"])["Statement"]

        assert function["FunctionArn"] == "arn:aws:lambda:%s:%s:function:%s" % (
            region, ACCOUNT, FUNCTION)
        assert function["Runtime"] == mode["runtime"]
        assert function["Handler"] == mode["handler"] == "c7n_broom.handler.run"
        assert function["MemorySize"] == mode["memory"]
        assert function["Timeout"] == mode["timeout"]
        assert function["Role"] == mode["role"].format(account_id=ACCOUNT)
        assert rule["Name"] == FUNCTION
        assert rule["State"] == "ENABLED"
        assert json.loads(rule["EventPattern"]) == expected_pattern(POLICY) == {
            "source": ["aws.ec2"],
            "detail-type": ["AWS API Call via CloudTrail"],
            "detail": {"eventSource": ["ec2.amazonaws.com"],
                       "eventName": ["RunInstances", "CreateFleet"]}}
        assert target["Arn"] == function["FunctionArn"]
        assert permission["Effect"] == "Allow"
        assert permission["Action"] == "lambda:InvokeFunction"
        assert permission["Principal"] == {"Service": "events.amazonaws.com"}
        assert permission["Resource"] == function["FunctionArn"]
        assert permission["Condition"] == {"ArnLike": {"AWS:SourceArn": rule["Arn"]}}


def test_deploying_again_changes_nothing(deployed, first_deploy, tmp_path):
    before = {region: deployment_snapshot(deployed, FUNCTION, region) for region in REGIONS}

    completed = custodian_run(POLICY_FILE, tmp_path, REGIONS, deployed.env())

    after = {region: deployment_snapshot(deployed, FUNCTION, region) for region in REGIONS}
    assert after == before
    assert "Publishing custodian policy lambda function" in first_deploy.stderr
    assert "Publishing" not in completed.stderr


# 2. Run what was deployed --------------------------------------------------------

def test_published_archive_is_what_lambda_holds_and_ships_c7n_and_broom(deployed):
    for region in REGIONS:
        function, archive = published(deployed, FUNCTION, region)
        policy = archive_config(archive)["policies"][0]

        assert code_sha256(archive) == function["CodeSha256"]
        assert {"c7n", "c7n_broom"} <= set(archive_packages(archive))
        assert policy["name"] == POLICY["name"]
        assert policy["mode"]["handler"] == "c7n_broom.handler.run"
        [report] = [a for a in policy["actions"] if a["type"] == "creator-report"]
        assert report["topic"] == "arn:aws:sns:%s:%s:broom-reports" % (region, ACCOUNT)


def test_run_instances_event_terminates_the_two_violators_and_reports_each_once(deployed):
    inbox = server_inbox(deployed)
    ec2 = deployed.client("ec2")
    instances = launch_trio(ec2)
    record = run_instances_record(instances.values())

    first = invoke_deployed(deployed, FUNCTION, record, REGION)
    after_first = states(instances.values(), ec2)
    reports = inbox.emails()
    again = invoke_deployed(deployed, FUNCTION, record, REGION)  # EventBridge retries

    assert first.ok, first.logs[-4000:]
    assert after_first == {
        instances["valid"]: "running",
        instances["missing"]: "terminated",
        instances["invalid"]: "terminated"}
    assert len(reports) == 2
    assert {instance_id: report_summary(message)
            for instance_id, message in by_instance(reports).items()
            } == reports_of_terminated_violators(instances)
    assert again.ok, again.logs[-4000:]
    assert inbox.emails() == []
    assert states(instances.values(), ec2) == after_first


def test_instant_fleet_event_terminates_its_untagged_instances_and_reports_once(deployed):
    """An instant EC2 Fleet (CreateFleet, as Karpenter launches nodes) on moto's server,
    and the CreateFleet record naming its instances, built from the documented shape
    (support.create_fleet_event), delivered to the published archive."""
    inbox = server_inbox(deployed)
    ec2 = deployed.client("ec2")
    untagged = launch_fleet(2, ec2=ec2)
    [tagged] = launch_fleet(tags={"Code": "LOL"}, ec2=ec2)
    # Two instance types: one fleetInstanceSet item each; the second holds one id,
    # recorded as the element alone.
    record = create_fleet_event([untagged, [tagged]])["detail"]

    first = invoke_deployed(deployed, FUNCTION, record, REGION)
    reports = inbox.emails()
    again = invoke_deployed(deployed, FUNCTION, record, REGION)  # EventBridge retries

    assert first.ok, first.logs[-4000:]
    assert states(untagged + [tagged], ec2) == {
        untagged[0]: "terminated", untagged[1]: "terminated", tagged: "running"}
    assert sorted(by_instance(reports)) == sorted(untagged)
    fields = report_fields(reports[0]["Message"])
    assert report_summary(reports[0])["action taken"] == "terminated"
    assert fields["Launched by"] == (
        "KarpenterController-demo (session name is not meaningful; role shown)")
    assert fields["Event"].startswith("CreateFleet at %s" % record["eventTime"])
    assert again.ok, again.logs[-4000:]
    assert inbox.emails() == []


def test_function_in_eu_west_1_acts_in_its_own_region(deployed):
    home_inbox = server_inbox(deployed, region=REGION)
    inbox = server_inbox(deployed, region=OTHER_REGION)
    home_ec2 = deployed.client("ec2", region=REGION)
    ec2 = deployed.client("ec2", region=OTHER_REGION)
    [bystander] = launch(ec2=home_ec2)  # untagged, but not in this event
    # No untagged instance in this event: it would wait for grace-seconds.
    [valid] = launch(ec2=ec2, tags={"Code": "LOL"})
    [invalid] = launch(ec2=ec2, tags={"Code": "NOPE"})

    result = invoke_deployed(
        deployed, FUNCTION, run_instances_record([valid, invalid], region=OTHER_REGION),
        OTHER_REGION)

    assert result.ok, result.logs[-4000:]
    assert states([valid, invalid], ec2) == {valid: "running", invalid: "terminated"}
    assert states([bystander], home_ec2) == {bystander: "running"}
    assert [report_summary(m) for m in inbox.emails()] == [
        terminated_report(invalid, "invalid", OTHER_REGION)]
    assert home_inbox.emails() == []


# Bad input -----------------------------------------------------------------------

def test_deploy_into_an_account_without_the_execution_role_fails_and_deploys_nothing(
        local_aws, tmp_path):
    completed = stock("custodian", [
        "run", "-s", tmp_path, "--cache-period", "0", POLICY_FILE, "-r", REGION,
        "--assume", "arn:aws:iam::%s:role/broom-deployer" % NO_ROLE_ACCOUNT],
        local_aws.env())

    assert completed.returncode != 0
    # Stock custodian relays Lambda's message, which does not name the role
    # (arn:aws:iam::555555555555:role/broom-lambda): README must say which one.
    assert "The role defined for the function cannot be assumed by Lambda" in completed.output
    assert "policies had errors while executing\n - %s" % POLICY["name"] in completed.output
    assert local_aws.client("lambda", account=NO_ROLE_ACCOUNT).list_functions()[
        "Functions"] == []
    assert local_aws.client("events", account=NO_ROLE_ACCOUNT).list_rules()["Rules"] == []


@pytest.mark.parametrize("section, unknown", [
    ("filters", {"type": "allowed-codez", "codes": ["LOL"]}),
    ("actions", {"type": "creator-reprot", "topic": "arn:aws:sns:us-east-1:1:x"}),
], ids=["filter", "action"])
def test_unknown_element_fails_validate_and_run_naming_it(
        local_aws, tmp_path, section, unknown):
    data = dict(POLICY, name="broom-typo")
    data[section] = data[section] + [unknown]
    policy_file = write_policy(tmp_path / "typo.yml", data)

    validated = stock("custodian", ["validate", policy_file], local_aws.env())
    ran = stock("custodian", ["run", "-s", tmp_path / "out", "--cache-period", "0",
                              policy_file], local_aws.env())

    for completed in (validated, ran):
        assert completed.returncode != 0
        assert "Error on policy:broom-typo resource:aws.ec2" in completed.output
        assert "'type': '%s'" % unknown["type"] in completed.output
    assert "custodian-broom-typo" not in [
        f["FunctionName"] for f in local_aws.client("lambda").list_functions()["Functions"]]


# 3. Only AWS's own events make it act ---------------------------------------------

def test_deployed_rule_matches_aws_events_and_not_forged_ones(deployed):
    """The deployed rule's pattern, on a probe bus whose rule feeds a queue (moto has no
    TestEventPattern, and cannot deliver to Lambda): forged events never match."""
    events, sqs = deployed.client("events"), deployed.client("sqs")
    [rule] = events.list_rules()["Rules"]
    queue = sqs.create_queue(QueueName="pattern-probe")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    events.create_event_bus(Name="pattern-probe")
    events.put_rule(Name="probe", EventBusName="pattern-probe",
                    EventPattern=rule["EventPattern"])
    events.put_targets(Rule="probe", EventBusName="pattern-probe",
                       Targets=[{"Id": "queue", "Arn": queue_arn}])
    record = run_instances_record(["i-0123456789abcdef0"])

    def delivered(source):
        events.put_events(Entries=[{
            "EventBusName": "pattern-probe", "Source": source,
            "DetailType": "AWS API Call via CloudTrail", "Detail": json.dumps(record)}])
        received = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=0).get("Messages", [])
        for message in received:
            sqs.delete_message(QueueUrl=queue, ReceiptHandle=message["ReceiptHandle"])
        return [json.loads(m["Body"])["source"] for m in received]

    assert delivered("aws.ec2") == ["aws.ec2"]
    # What any principal with events:PutEvents can send (AWS refuses "aws.*" sources).
    assert delivered("custom.ec2") == []
    assert delivered("attacker") == []


FORGERIES = {
    "custom source": ({"source": "custom.ec2"}, {}),
    "other detail-type": ({"detail-type": "EC2 Instance State-change Notification"}, {}),
    "envelope of another account": ({"account": "999999999999"}, {}),
    "envelope of another region": ({"region": OTHER_REGION}, {}),
    "call not subscribed": ({}, {"eventName": "TerminateInstances"}),
}


@pytest.mark.parametrize("envelope, record_change", FORGERIES.values(), ids=FORGERIES)
def test_published_archive_refuses_events_aws_did_not_emit(deployed, envelope,
                                                             record_change):
    inbox = server_inbox(deployed)
    ec2 = deployed.client("ec2")
    [victim] = launch(ec2=ec2, tags={"Code": "NOPE"})
    record = dict(run_instances_record([victim]), **record_change)

    result = invoke_deployed(deployed, FUNCTION, record, REGION, envelope=envelope)

    assert result.ok, result.logs[-4000:]
    assert "refusing an event that is not AWS's record of a subscribed call" in result.logs
    assert states([victim], ec2) == {victim: "running"}
    assert inbox.emails() == []


def test_record_naming_an_instance_launched_at_another_time_terminates_nothing(deployed):
    """A stale or forged RunInstances record (a replayed log file, a dead-letter
    message) naming an instance that was running before it: an anomaly, reported."""
    inbox = server_inbox(deployed)
    ec2 = deployed.client("ec2")
    [bystander] = launch(ec2=ec2, tags={"Code": "NOPE"})
    ec2.modify_instance_attribute(InstanceId=bystander, DisableApiTermination={"Value": True})
    record = dict(run_instances_record([bystander]), eventTime="2026-01-05T10:00:00Z")

    result = invoke_deployed(deployed, FUNCTION, record, REGION)

    assert result.ok, result.logs[-4000:]
    assert states([bystander], ec2) == {bystander: "running"}
    [report] = inbox.emails()
    assert report["MessageAttributes"]["broom.outcome"]["Value"] == "anomaly"
    assert "the RunInstances record is from 2026-01-05T10:00:00Z" in report["Message"]
    assert "it was not terminated" in report["Message"]


def test_published_archive_logs_one_line_per_event_not_its_credentials(deployed):
    ec2 = deployed.client("ec2")
    [valid] = launch(ec2=ec2, tags={"Code": "LOL"})
    record = run_instances_record([valid])

    result = invoke_deployed(deployed, FUNCTION, record, REGION)

    assert result.ok, result.logs[-4000:]
    assert "handling event '%s' 'RunInstances' account '%s' region '%s' instances '%s'" % (
        record["eventID"], ACCOUNT, REGION, valid) in result.logs
    for secret in (record["userIdentity"]["accessKeyId"], record["sourceIPAddress"],
                   record["userAgent"]):
        assert secret not in result.logs


# 4. The cap holds, and what it holds is checked again ------------------------------

def test_held_instances_are_rechecked_by_the_schedule_the_archive_creates(deployed):
    inbox = server_inbox(deployed)
    ec2 = deployed.client("ec2")
    ids = launch(21, tags={"Code": "NOPE"}, ec2=ec2)

    held = invoke_deployed(deployed, FUNCTION, run_instances_record(ids), REGION)

    assert held.ok, held.logs[-4000:]
    assert set(states(ids, ec2).values()) == {"running"}
    [digest] = inbox.emails()
    assert digest["MessageAttributes"]["broom.outcome"]["Value"] == "held-by-cap"
    scheduler = deployed.client("scheduler")
    [listed] = scheduler.list_schedules()["Schedules"]
    schedule = scheduler.get_schedule(Name=listed["Name"], GroupName=recheck.SCHEDULE_GROUP)
    assert schedule["Target"]["Arn"] == "arn:aws:lambda:%s:%s:function:%s" % (
        REGION, ACCOUNT, FUNCTION)
    assert "Broom checks them again at" in digest["Message"]

    # An hour later EventBridge Scheduler invokes the function with the schedule's input;
    # meanwhile the owner fixed one instance. (The archive runs on the real clock: the
    # hold Broom recorded is made due now, as an hour passing would.)
    ec2.create_tags(Resources=[ids[0]], Tags=[{"Key": "Code", "Value": "LOL"}])
    delivered = json.loads(schedule["Target"]["Input"])
    dynamodb = deployed.client("dynamodb")
    dynamodb.update_item(TableName="broom-state", Key={"pk": {"S": recheck.hold_key(delivered)}},
                         UpdateExpression="SET due = :now, expires = :expires",
                         ExpressionAttributeValues={
                             ":now": {"N": "%d" % time.time()},
                             ":expires": {"N": "%d" % (time.time() + items.HOLD_TTL)}})
    config, archive = published(deployed, FUNCTION, REGION)
    rechecked = run_archive(archive, config["Handler"], delivered,  # as the scheduler does
                            env=execution_env(deployed, config, REGION),
                            timeout=config["Timeout"], function_name=FUNCTION,
                            memory_mb=config["MemorySize"])

    assert rechecked.ok, rechecked.logs[-4000:]
    assert states(ids, ec2) == dict({i: "terminated" for i in ids[1:]}, **{ids[0]: "running"}), (
        rechecked.logs[-4000:])
    outcomes = [m["MessageAttributes"]["broom.outcome"]["Value"] for m in inbox.emails()]
    assert outcomes == ["terminated"] * 20
