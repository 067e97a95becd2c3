"""End to end: policies/ec2-tags-hub.yml deployed in a central (hub) account handles a
member account's RunInstances (or CreateFleet) event by assuming the member's role, never acting in
the hub.
"""
import json

import pytest

from broom.local.aws import create_lambda_role
from broom.local.deploy import custodian_run, invoke_deployed, published

from e2e_support import (
    archive_config,
    expected_pattern,
    function_name,
    policy_data,
    report_summary,
    run_instances_record,
    server_inbox,
    terminated_report,
)
from support import ACCOUNT, POLICIES, REGION, create_fleet_event, launch, launch_fleet, states

POLICY_FILE = POLICIES / "ec2-tags-hub.yml"
POLICY = policy_data(POLICY_FILE.name)
FUNCTION = function_name(POLICY)
HUB = ACCOUNT  # moto's default account plays the hub
MEMBER = "444444444444"


def create_member_role(aws, account, hub=HUB):
    """broom-member in a member account, trusting the hub's execution role."""
    trust = {"Version": "2012-10-17", "Statement": [{
        "Effect": "Allow", "Action": "sts:AssumeRole",
        "Principal": {"AWS": "arn:aws:iam::%s:role/broom-lambda" % hub}}]}
    aws.client("iam", account=account).create_role(
        RoleName="broom-member", AssumeRolePolicyDocument=json.dumps(trust))


@pytest.fixture(scope="module")
def hub(local_aws, tmp_path_factory):
    """The hub policy deployed by stock `custodian run` into the hub account."""
    local_aws.reset()
    create_lambda_role(local_aws)
    create_member_role(local_aws, MEMBER)
    custodian_run(POLICY_FILE, tmp_path_factory.mktemp("hub"), [REGION], local_aws.env())
    return local_aws


def test_hub_deploys_one_function_that_resolves_the_member_role_per_event(hub):
    function, archive = published(hub, FUNCTION, REGION, HUB)
    policy = archive_config(archive)["policies"][0]
    [rule] = hub.client("events").list_rules()["Rules"]
    [report] = [a for a in policy["actions"] if a["type"] == "creator-report"]

    assert function["Role"] == "arn:aws:iam::%s:role/broom-lambda" % HUB
    assert function["Handler"] == "c7n_broom.handler.run"
    # Left for c7n to fill from each event's account at run time.
    assert policy["mode"]["member-role"] == "arn:aws:iam::{account_id}:role/broom-member"
    assert report["topic"] == "arn:aws:sns:%s:%s:broom-reports" % (REGION, HUB)
    assert json.loads(rule["EventPattern"]) == expected_pattern(POLICY)
    assert hub.client("lambda", account=MEMBER).list_functions()["Functions"] == []


def test_member_event_terminates_in_the_member_and_never_in_the_hub(hub):
    # The hub's topic. The member-role session publishes to it: moto does not check
    # the topic's access policy, AWS needs it to allow the members' broom-member.
    inbox = server_inbox(hub)
    member_ec2 = hub.client("ec2", account=MEMBER)
    hub_ec2 = hub.client("ec2")
    # No untagged instance in the member's event: it would wait for grace-seconds.
    [valid] = launch(ec2=member_ec2, tags={"Code": "LOL"})
    [invalid] = launch(ec2=member_ec2, tags={"Code": "NOPE"})
    hub_instances = launch(ec2=hub_ec2) + launch(ec2=hub_ec2, tags={"Code": "NOPE"})

    result = invoke_deployed(
        hub, FUNCTION, run_instances_record([valid, invalid], account=MEMBER), REGION,
        account=MEMBER, function_account=HUB)

    assert result.ok, result.logs[-4000:]
    assert "Assuming member role:arn:aws:iam::%s:role/broom-member" % MEMBER in result.logs
    assert states([valid, invalid], member_ec2) == {valid: "running", invalid: "terminated"}
    assert set(states(hub_instances, hub_ec2).values()) == {"running"}
    assert [report_summary(m) for m in inbox.emails()] == [
        terminated_report(invalid, "invalid", REGION, account=MEMBER, topic_account=HUB)]


def test_member_instant_fleet_is_judged_in_the_member(hub):
    """A member's instant EC2 Fleet (its CreateFleet record, built from the documented
    shape: support.create_fleet_event) reaches the hub like a RunInstances one."""
    inbox = server_inbox(hub)
    member_ec2 = hub.client("ec2", account=MEMBER)
    [valid] = launch_fleet(ec2=member_ec2, tags={"Code": "LOL"})
    [invalid] = launch_fleet(ec2=member_ec2, tags={"Code": "NOPE"})
    record = create_fleet_event([[valid], [invalid]], account=MEMBER)["detail"]

    result = invoke_deployed(hub, FUNCTION, record, REGION, account=MEMBER,
                             function_account=HUB)

    assert result.ok, result.logs[-4000:]
    assert "Assuming member role:arn:aws:iam::%s:role/broom-member" % MEMBER in result.logs
    assert states([valid, invalid], member_ec2) == {valid: "running", invalid: "terminated"}
    [report] = inbox.emails()
    assert report_summary(report)["instance"] == invalid
    assert report_summary(report)["account"] == MEMBER
