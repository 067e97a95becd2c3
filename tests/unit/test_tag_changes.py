"""policies/ec2-tags-changed.yml: a Code tag removed or made invalid after launch (mock_aws).

Events are EventBridge envelopes around CloudTrail CreateTags / DeleteTags records built
from AWS's documented format (tests/data/cloudtrail/create-tags.json, delete-tags.json);
each test first changes the tags in moto, as the call the record describes did.
"""
import json

import boto3
import pytest
from botocore.client import BaseClient
from c7n import handler as c7n_handler
from c7n.exceptions import PolicyValidationError
from c7n.mu import CloudWatchEventSource

from c7n_broom import handler

from support import (
    ACCOUNT,
    REGION,
    Inbox,
    create_tags,
    delete_tags,
    launch,
    load_policy,
    policy_file,
    states,
    tag_event,
)

POLICY = "ec2-tags-changed.yml"


def tag_policy(variables=None):
    [data] = policy_file(POLICY)["policies"]
    return load_policy(data, variables=variables)


def reports(inbox):
    return {m["MessageAttributes"]["broom.instance_id"]["Value"]: m
            for m in inbox.emails()}


@pytest.fixture
def describe_calls(monkeypatch):
    """The instance ids of every DescribeInstances call made during the test."""
    calls = []
    original = BaseClient._make_api_call

    def make_api_call(client, operation, params):
        if operation == "DescribeInstances":
            calls.append(list(params.get("InstanceIds", [])))
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return calls


# Removed or made invalid: reported, naming who changed it; the instance keeps running.

def test_removing_code_from_a_running_instance_is_reported_naming_who_removed_it(inbox):
    [instance] = launch(tags={"Code": "LOL", "Name": "db-1"})
    tag_policy().push(delete_tags([instance], {"Code": None}))

    assert states([instance]) == {instance: "running"}
    [message] = inbox.emails()
    body = message["Message"]
    assert "Broom would terminate EC2 instance %s in us-east-1" % instance in body
    assert "Untagged by:    bob" in body
    assert "Identity type:  IAMUser" in body
    assert "arn:aws:iam::123456789012:user/bob" in body
    assert "the instance has no Code tag" in body
    assert "Event:          DeleteTags at 2024-05-14T10:03:47Z" in body
    assert "report-only mode" in body
    assert message["Subject"] == "Broom would terminate %s in us-east-1: no Code tag" % (
        instance)
    attrs = message["MessageAttributes"]
    assert attrs["broom.outcome"]["Value"] == "would-terminate"
    assert attrs["broom.reason"]["Value"] == "missing"
    assert attrs["broom.creator"]["Value"] == "bob"


@pytest.mark.parametrize("value, reason, why", [
    ("NOPE", "invalid", 'Code="NOPE" is not an allowed code'),
    ("lol", "invalid", 'Code="lol" is not an allowed code'),  # codes are case-sensitive
    ("", "empty", "the Code tag is empty"),
])
def test_changing_code_to_a_value_that_is_not_allowed_is_reported(inbox, value, reason,
                                                                   why):
    [instance] = launch(tags={"Code": "GGG"})
    tag_policy().push(create_tags([instance], {"Code": value}))

    assert states([instance]) == {instance: "running"}
    [message] = inbox.emails()
    assert why in message["Message"]
    assert "Tagged by:      alice@example.com" in message["Message"]
    assert "AWSReservedSSO_Developer_0123456789abcdef" in message["Message"]
    assert "Event:          CreateTags at 2024-05-14T09:12:31Z" in message["Message"]
    assert message["MessageAttributes"]["broom.reason"]["Value"] == reason


def test_deleting_every_tag_removes_code_too_and_is_reported(inbox):
    """DeleteTags without a tag list deletes all user tags; its record has no tagSet."""
    [instance] = launch(tags={"Code": "BRB", "Name": "build-7"})
    # moto ignores a DeleteTags without Tags; do what EC2 does: delete them all.
    delete_tags([instance], {"Code": None, "Name": None})
    event = tag_event("delete-tags.json", [instance], tags=None)
    tag_policy().push(event)

    assert states([instance]) == {instance: "running"}
    [message] = inbox.emails()
    assert "Untagged by:    bob" in message["Message"]
    assert "the instance has no Code tag" in message["Message"]


def test_every_instance_of_a_bulk_change_is_reported(inbox):
    ids = launch(count=3, tags={"Code": "YLO"})
    tag_policy().push(create_tags(ids, {"Code": "TYPO"}))
    assert set(states(ids).values()) == {"running"}
    assert set(reports(inbox)) == set(ids)


# Compliant after the call, or the call did not touch Code: nothing at all.

def test_adding_a_valid_code_reports_nothing(inbox):
    [untagged] = launch()
    [wrong] = launch(tags={"Code": "NOPE"})
    tag_policy().push(create_tags([untagged, wrong], {"Code": "LOL", "Owner": "alice"}))
    assert states([untagged, wrong]) == {untagged: "running", wrong: "running"}
    assert inbox.emails() == []


@pytest.mark.parametrize("change", ["create", "delete"])
def test_changing_another_tag_of_a_compliant_instance_reports_nothing(inbox, change):
    [instance] = launch(tags={"Code": "LOL", "Name": "web-1"})
    if change == "create":
        event = create_tags([instance], {"Name": "web-2"})
    else:
        event = delete_tags([instance], {"Name": None})
    tag_policy().push(event)
    assert inbox.emails() == []


def test_delete_tags_that_does_not_match_the_value_leaves_code_and_reports_nothing(inbox):
    """DeleteTags Code=OLD on an instance tagged Code=LOL deletes nothing."""
    [instance] = launch(tags={"Code": "LOL"})
    tag_policy().push(delete_tags([instance], {"Code": "OLD"}))
    assert inbox.emails() == []


@pytest.mark.parametrize("change", ["create", "delete"])
def test_another_tag_changed_on_an_instance_without_code_is_not_blamed_on_the_tagger(
        inbox, change, describe_calls):
    """A tool that tags Name right after launch and Code a moment later (inside the
    main policy's grace period), or an exempt or older instance: a call that does not
    touch Code is not this policy's business, and costs no describe."""
    [instance] = launch(tags={"Name": "build-7"})
    if change == "create":
        event = create_tags([instance], {"Name": "build-8"})
    else:
        event = delete_tags([instance], {"Name": None})
    tag_policy().push(event)
    assert inbox.emails() == []
    assert describe_calls == [[instance]]  # resolved once, then filtered by the event


# Only instances: these calls tag every kind of EC2 resource.

def test_only_the_instances_of_a_mixed_event_are_considered(inbox, describe_calls):
    ec2 = boto3.client("ec2", region_name=REGION)
    group = ec2.create_security_group(GroupName="web", Description="web")["GroupId"]
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8)["VolumeId"]
    [instance] = launch(tags={"Code": "LOL"})
    event = create_tags([group, volume, instance], {"Code": "NOPE"})
    event["detail"]["requestParameters"]["resourcesSet"]["items"].insert(
        0, {"resourceId": "ami-12345678"})

    policy = tag_policy()
    assert policy.resource_manager.match_ids(
        ["ami-12345678", group, volume, instance]) == [instance]
    policy.push(event)

    assert describe_calls[0] == [instance]
    assert set(reports(inbox)) == {instance}


def test_code_set_on_other_resources_only_does_nothing(inbox, describe_calls):
    ec2 = boto3.client("ec2", region_name=REGION)
    group = ec2.create_security_group(GroupName="db", Description="db")["GroupId"]
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8)["VolumeId"]
    tag_policy().push(create_tags([group, volume], {"Code": "NOPE"}))
    assert describe_calls == []
    assert inbox.emails() == []


# Failed calls changed nothing: the Lambda handler skips them.

@pytest.fixture
def lambda_handler(monkeypatch, tmp_path):
    """Broom's Lambda entry point with this policy as its config.json (what
    ``custodian run`` deploys), run in-process against moto."""
    import tempfile
    policy = tag_policy()
    (tmp_path / "config.json").write_text(json.dumps({
        "execution-options": {"account_id": ACCOUNT}, "policies": [policy.data]}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(c7n_handler, "policy_config", None)
    monkeypatch.setattr(c7n_handler, "policy_data", None)
    return lambda event: handler.run(event, None)


def test_failed_create_tags_is_skipped(inbox, lambda_handler, caplog):
    """Someone without ec2:CreateTags tries to set Code on an instance that has none:
    nothing changed, so nothing is reported (and no one is blamed)."""
    [untagged] = launch()
    event = tag_event("create-tags.json", [untagged], {"Code": "NOPE"})
    event["detail"]["errorCode"] = "Client.UnauthorizedOperation"
    event["detail"]["errorMessage"] = "You are not authorized to perform this operation."
    event["detail"]["responseElements"] = None

    with caplog.at_level("INFO", logger="custodian.broom.handler"):
        assert lambda_handler(event) is None
    assert "the call failed (Client.UnauthorizedOperation" in caplog.text
    assert states([untagged]) == {untagged: "running"}
    assert inbox.emails() == []

    del event["detail"]["errorCode"]  # the same call, had it succeeded, is reported
    assert lambda_handler(event) is True
    assert set(reports(inbox)) == {untagged}


# Enforcement and the pack's consistency.

def test_tag_changes_are_only_reported_unless_the_account_opts_in(inbox):
    [instance] = launch(tags={"Code": "LOL"})
    policy = tag_policy(variables={"broom_enforcement": "enforce"})
    policy.push(delete_tags([instance], {"Code": None}))
    assert states([instance]) == {instance: "running"}
    assert len(inbox.emails()) == 1


def test_an_account_can_opt_in_to_quarantine_on_tag_changes(inbox, state_table):
    """An instance whose Code is removed later has history: the opted-in account
    quarantines it (a notice now; the sweep stops and terminates it later unless it
    is fixed: tests/unit/test_quarantine.py)."""
    [instance] = launch(tags={"Code": "LOL"})
    policy = tag_policy(variables={"broom_tag_change_enforcement": "enforce"})
    policy.push(delete_tags([instance], {"Code": None}))
    assert states([instance]) == {instance: "running"}
    [message] = inbox.emails()
    assert "Action taken:   none yet (quarantined: will be stopped at " in message["Message"]
    assert message["MessageAttributes"]["broom.outcome"]["Value"] == "quarantined"


def test_codes_and_topic_come_from_the_same_account_vars(aws):
    team = Inbox(topic_name="team-a-reports")
    [instance] = launch(tags={"Code": "DATA"})
    tag_policy(variables={"broom_codes": "DATA,LOL", "broom_topic": team.topic_arn}).push(
        create_tags([instance], {"Code": "LOL2"}))
    [message] = team.emails()
    assert "(allowed codes: DATA, LOL)" in message["Message"]


def test_event_rule_listens_for_create_and_delete_tags_on_ec2():
    [data] = policy_file(POLICY)["policies"]
    pattern = json.loads(CloudWatchEventSource(data["mode"], None).render_event_pattern())
    assert pattern == {
        "source": ["aws.ec2"],
        "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {"eventSource": ["ec2.amazonaws.com"],
                   "eventName": ["CreateTags", "DeleteTags"]}}


def test_shares_the_main_policy_settings_except_enforcement_and_grace():
    """The two policies of the pack must not drift apart."""
    [main] = policy_file("ec2-tags.yml")["policies"]
    [changed] = policy_file(POLICY)["policies"]
    settings = ("role", "packages", "handler", "runtime", "memory", "timeout")
    assert {k: changed["mode"][k] for k in settings} == {k: main["mode"][k] for k in settings}
    assert changed["source"] == main["source"]
    [main_codes] = [f for f in main["filters"] if f.get("type") == "allowed-codes"]
    [changed_codes] = [f for f in changed["filters"] if f.get("type") == "allowed-codes"]
    assert changed_codes == {k: v for k, v in main_codes.items() if k != "grace-seconds"}
    main_actions = {a["type"]: a for a in main["actions"]}
    changed_actions = {a["type"]: a for a in changed["actions"]}
    assert changed_actions["creator-report"] == main_actions["creator-report"]
    # force differs on purpose: tag rights must not clear termination protection.
    assert main_actions["safe-terminate"]["force"] is True
    assert changed_actions["safe-terminate"]["force"] is False
    own = ("enforcement", "default-enforcement", "force", "quarantine")
    assert {k: v for k, v in changed_actions["safe-terminate"].items()
            if k not in own} == {k: v for k, v in main_actions["safe-terminate"].items()
                                 if k not in own}



def test_tag_change_policy_refuses_force(aws):
    """Tag rights must not become terminate rights on protected instances."""
    [data] = policy_file(POLICY)["policies"]
    [terminate] = [a for a in data["actions"] if a["type"] == "safe-terminate"]
    terminate["force"] = True
    with pytest.raises(PolicyValidationError) as error:
        load_policy(data)
    message = str(error.value)
    assert message.startswith(
        "policy:broom-ec2-code-tag-changed action:safe-terminate: 'force': true")
    assert "CreateTags" in message and "termination protection" in message
