"""Launches the RunInstances rule alone may not see: an instant EC2 Fleet (CreateFleet,
as Karpenter and other node provisioners use) names the instances it launched in its
own record. See docs/launch-paths.md.

The CreateFleet records here are built by ``support.create_fleet_event`` from the
documented shape (its docstring says where it comes from); none is recorded.
"""
import copy
import json

import boto3
import pytest
from c7n.cwe import CloudWatchEvents
from click.testing import CliRunner

import broom.replay
from broom.cli import cli
from c7n_broom import decisions, events, handler, omitted, recheck

from support import (
    ACCOUNT,
    IDENTITIES,
    REGION,
    REPO,
    create_fleet_event,
    launch,
    launch_fleet,
    load_policy,
    policy_file,
    run_instances_event,
    states,
)

A, B, C = "i-0000000000000000a", "i-0000000000000000b", "i-0000000000000000c"
SHIPPED = ("ec2-tags.yml", "ec2-tags-hub.yml")


def policy_data(name="ec2-tags.yml"):
    [data] = policy_file(name)["policies"]
    return data


def main_policy(variables=None, **terminate_options):
    data = policy_data()
    [terminate] = [a for a in data["actions"] if a["type"] == "safe-terminate"]
    terminate.update(terminate_options)
    return load_policy(data, variables=variables)


def report_only():
    return main_policy(variables={"broom_enforcement": "report-only"})


def policy_ids(event, name="ec2-tags.yml"):
    """The ids c7n extracts from an event with the shipped policy's ``events``."""
    return CloudWatchEvents.get_ids(event, policy_data(name)["mode"])


# 1. The record: ids and request tags in both XML-derived shapes ----------------------

SHAPES = {
    "one instance, recorded as the element alone": ([[A]], True, [A]),
    "one instance, recorded as a list": ([[A]], False, [A]),
    "two types, several instances each": ([[A, B], [C]], True, [A, B, C]),
    "two types, lists throughout": ([[A, B], [C]], False, [A, B, C]),
    "nothing launched": ([], True, []),
}


@pytest.mark.parametrize("groups, single, expected", SHAPES.values(), ids=list(SHAPES))
@pytest.mark.parametrize("name", SHIPPED)
def test_the_policies_and_broom_read_the_same_ids_from_a_create_fleet_record(
        name, groups, single, expected):
    event = create_fleet_event(groups, single_as_element=single)

    assert events.launched_instances(event["detail"]) == expected
    assert policy_ids(event, name) == expected


def test_a_partially_failed_fleet_names_what_it_launched_and_not_its_errors():
    event = create_fleet_event([[A]], errors=["InsufficientInstanceCapacity"] * 2)

    assert events.launched_instances(event["detail"]) == [A]
    assert policy_ids(event) == [A]
    assert events.skip_reason(event) is None


@pytest.mark.parametrize("errors", [["InsufficientInstanceCapacity"], ["A", "B"]])
def test_a_fleet_that_launched_nothing_is_skipped_with_the_reason(errors):
    event = create_fleet_event([], errors=errors)

    assert policy_ids(event) == []
    assert events.skip_reason(event) == (
        "CreateFleet record names no launched instance (responseElements has no "
        "instance ids)")


@pytest.mark.parametrize("fleet_type", ["maintain", "request"])
def test_a_fleet_that_launches_later_is_skipped_saying_runinstances_will_follow(fleet_type):
    event = create_fleet_event([], fleet_type=fleet_type)

    assert "a fleet of type '%s' launches later, by RunInstances" % fleet_type in (
        events.skip_reason(event))


MALFORMED = {
    "response null": None,
    "response a string": "oops",
    "fleetInstanceSet a list": {"CreateFleetResponse": {"fleetInstanceSet": [A]}},
    "item a number": {"CreateFleetResponse": {"fleetInstanceSet": {"item": 7}}},
    "instanceIds a string": {"CreateFleetResponse": {"fleetInstanceSet": {"item": {
        "instanceIds": A}}}},
    "ids not instance ids": {"CreateFleetResponse": {"fleetInstanceSet": {"item": {
        "instanceIds": {"item": ["vol-0123", 5, None, {"id": A}]}}}}},
}


@pytest.mark.parametrize("response", MALFORMED.values(), ids=list(MALFORMED))
def test_a_malformed_create_fleet_response_names_nothing_and_reaches_nothing(
        deployed, handed_over, response):
    deployed(policy_data())
    event = create_fleet_event([[A]])
    event["detail"]["responseElements"] = response

    assert events.launched_instances(event["detail"]) == []
    assert "names no launched instance" in events.skip_reason(event)
    assert handler.run(event, None) is None
    assert handed_over == []


def test_request_tags_are_read_from_the_fleet_requests_instance_tag_specification():
    event = create_fleet_event([[A]], tags={"Code": "LOL", "Name": "node"})
    specs = event["detail"]["requestParameters"]["CreateFleetRequest"]["TagSpecification"]

    assert events.request_tags(event["detail"]) == {"Code": "LOL", "Name": "node"}
    assert events.request_tags(event["detail"], "fleet") == {"karpenter.sh/nodepool": "default"}
    # one specification with one tag, each recorded as the element alone
    specs[:] = [dict(specs[0], Tag={"Key": "Code", "Value": "GGG", "tag": 1})]
    event["detail"]["requestParameters"]["CreateFleetRequest"]["TagSpecification"] = specs[0]
    assert events.request_tags(event["detail"]) == {"Code": "GGG"}


def test_a_tag_value_recorded_as_a_number_is_left_for_ec2_to_tell():
    """``Code: "007"`` may be recorded as 7: guessing "7" could call an allowed code
    invalid; the tag is judged as EC2 shows it instead."""
    event = create_fleet_event([[A]], tags={"Code": "007", "Name": "node"})
    for tag in event["detail"]["requestParameters"]["CreateFleetRequest"][
            "TagSpecification"][0]["Tag"]:
        if tag["Key"] == "Code":
            tag["Value"] = 7

    assert events.request_tags(event["detail"]) == {"Name": "node"}


# 2. The handler: subscriptions and trust --------------------------------------------

@pytest.mark.parametrize("name", SHIPPED)
def test_the_shipped_policies_subscribe_to_create_fleet(name):
    assert ("ec2.amazonaws.com", "CreateFleet") in events.subscriptions(
        [policy_data(name)["mode"]], CloudWatchEvents.trail_events)


def test_an_instant_fleets_record_is_handed_over(deployed, handed_over):
    deployed(policy_data())
    event = create_fleet_event([[A, B]])

    handler.run(copy.deepcopy(event), None)

    assert [events.launched_instances(e["detail"]) for e in handed_over] == [[A, B]]


@pytest.mark.parametrize("change", [
    {"source": "custom.ec2"}, {"account": "999999999999"}, {"region": "eu-west-1"}])
def test_a_forged_create_fleet_event_is_refused(deployed, handed_over, caplog, change):
    deployed(policy_data())
    event = create_fleet_event([[A]])
    event.update(change)
    with caplog.at_level("WARNING", logger="custodian.broom.handler"):
        handler.run(event, None)
    assert handed_over == []
    assert "not AWS's record of a subscribed call" in caplog.text


def test_a_failed_or_empty_fleet_is_skipped_with_a_log_line(deployed, handed_over, caplog):
    deployed(policy_data())
    failed = create_fleet_event([[A]])
    failed["detail"].update(errorCode="Client.UnauthorizedOperation",
                            errorMessage="You are not authorized to perform this operation.")
    failed["detail"]["responseElements"] = None
    with caplog.at_level("INFO", logger="custodian.broom.handler"):
        handler.run(failed, None)
        handler.run(create_fleet_event([], errors=["InsufficientInstanceCapacity"]), None)
    assert handed_over == []
    assert "skipping CreateFleet event" in caplog.text
    assert "the call failed (Client.UnauthorizedOperation" in caplog.text
    assert "names no launched instance" in caplog.text


# 3. The policy on moto: terminate, report, launch-time check, cap --------------------

def test_an_untagged_instant_fleet_is_terminated_and_its_caller_named(inbox):
    untagged = launch_fleet(2)
    [tagged] = launch_fleet(tags={"Code": "LOL"})
    event = create_fleet_event([untagged, [tagged]])

    main_policy().push(event)

    assert states(untagged + [tagged]) == {
        untagged[0]: "terminated", untagged[1]: "terminated", tagged: "running"}
    messages = inbox.emails()
    assert {m["MessageAttributes"]["broom.instance_id"]["Value"] for m in messages} == set(
        untagged)
    body = messages[0]["Message"]
    assert "Launched by:    KarpenterController-demo" in body
    assert "Role:           KarpenterController-demo" in body
    assert "Event:          CreateFleet at %s" % event["detail"]["eventTime"] in body


def test_the_fleet_requests_code_tag_counts_before_ec2_shows_it(inbox):
    """DescribeInstances can omit tags just after launch: the record's request tags
    (recorded by AWS, not chosen by whoever reads them) say what the launch asked for."""
    [instance] = launch_fleet()  # moto: EC2 shows no tag at all
    main_policy().push(create_fleet_event([[instance]], tags={"Code": "LOL"}))

    assert states([instance]) == {instance: "running"}
    assert inbox.emails() == []


def test_a_fleet_record_naming_an_instance_launched_at_another_time_terminates_nothing(inbox):
    """The ids come from the record: one naming an older instance (a replayed record,
    a dead-letter message) must not get it terminated."""
    [older] = launch(tags={"Code": "NOPE"})
    event = create_fleet_event([[older]], event_time="2026-01-05T10:00:00Z")

    main_policy().push(event)

    assert states([older]) == {older: "running"}
    [report] = inbox.emails()
    assert report["MessageAttributes"]["broom.outcome"]["Value"] == "anomaly"
    assert "but the CreateFleet record is from 2026-01-05T10:00:00Z" in report["Message"]


def test_a_fleet_without_a_code_is_not_held_by_the_cap(inbox):
    """As for RunInstances: an untagged launch is its launcher's doing, whatever its
    size; a bad code list cannot cause it."""
    ids = launch_fleet(3)
    main_policy(**{"max-terminations": 2}).push(create_fleet_event([ids]))
    assert set(states(ids).values()) == {"terminated"}


def test_a_fleet_with_a_code_that_is_not_allowed_is_held_by_the_cap(inbox):
    ids = launch_fleet(3, tags={"Code": "NOPE"})
    main_policy(**{"max-terminations": 2}).push(create_fleet_event([ids]))
    assert set(states(ids).values()) == {"running"}
    assert {m["MessageAttributes"]["broom.outcome"]["Value"] for m in inbox.emails()} == {
        "held-by-cap"}


@pytest.mark.parametrize("reason, free", [("missing", True), ("empty", True),
                                          ("invalid", False)])
def test_cap_free_treats_create_fleet_as_a_launch(reason, free):
    resource = {"c7n:broom-violation": {"reason": reason}}
    assert decisions.cap_free(resource, "CreateFleet") is free
    assert decisions.cap_free(resource, "CreateTags") is False


def test_one_report_for_a_fleet_launch_named_by_both_its_records(inbox, state_table):
    """EC2 Fleet launches an instant fleet's instances with RunInstances records of
    its own (invokedBy ec2fleet.amazonaws.com, the caller's identity): with the
    CreateFleet record that is two events for one launch, and one report."""
    [instance] = launch_fleet()
    by_fleet = run_instances_event([instance])
    by_fleet["detail"]["userIdentity"] = dict(
        create_fleet_event([[instance]])["detail"]["userIdentity"],
        invokedBy="ec2fleet.amazonaws.com")

    report_only().push(by_fleet)
    report_only().push(create_fleet_event([[instance]]))

    assert states([instance]) == {instance: "running"}
    assert len(inbox.emails()) == 1


def test_a_plain_run_instances_record_keeps_one_report_per_event():
    record = run_instances_event([A])["detail"]
    assert events.report_key(record) == record["eventID"]
    assert events.report_key(create_fleet_event([[A]])["detail"]) == "fleet-launch"


def test_a_fleet_an_auto_scaling_group_creates_is_reported_as_auto_scalings(inbox):
    """Auto Scaling makes CreateFleet calls too (a published record,
    aws-samples/siem-on-amazon-opensearch-service#98), under its service-linked role."""
    identity = json.loads((IDENTITIES / "service-linked-autoscaling.json").read_text())
    [instance] = launch_fleet()
    report_only().push(create_fleet_event([[instance]], identity=identity))
    [report] = inbox.emails()
    assert "launched by Auto Scaling through its service-linked role" in report["Message"]


# 4. Omitted responses and re-checks ---------------------------------------------------

def omitted_fleet_event(fleet_id="fleet-0a1b2c3d-4e5f-6789-abcd-ef0123456789"):
    event = create_fleet_event([[A]])
    response = event["detail"]["responseElements"]["CreateFleetResponse"]
    response["fleetInstanceSet"] = {"omitted": True}
    if fleet_id is None:
        del response["fleetId"]
    return event


def test_an_omitted_fleet_response_is_recognised():
    assert omitted.is_omitted(omitted_fleet_event()["detail"])
    whole = create_fleet_event([[A]])
    whole["detail"]["responseElements"] = {"omitted": True}
    assert omitted.is_omitted(whole["detail"])
    assert not omitted.is_omitted(create_fleet_event([[A]])["detail"])


def test_an_omitted_fleet_is_looked_up_by_its_fleet_id_tag_and_alerted(
        inbox, deployed, handed_over, monkeypatch):
    deployed(policy_data())
    ids = launch_fleet(2)
    looked_up = []
    monkeypatch.setattr(omitted, "find", lambda client, by, retry: looked_up.append(by) or ids)

    handler.run(omitted_fleet_event(), None)

    assert looked_up == [{"Name": "tag:aws:ec2:fleet-id",
                          "Values": ["fleet-0a1b2c3d-4e5f-6789-abcd-ef0123456789"]}]
    [forwarded] = handed_over
    assert policy_ids(forwarded) == ids
    [alert] = inbox.emails()
    assert alert["Subject"] == "Broom: a CreateFleet record in us-east-1 lists no instances"
    assert "2 instance(s) by the fleet's id" in alert["Message"]
    assert "Launched by:    KarpenterController-demo" in alert["Message"]


def test_an_omitted_fleet_without_a_fleet_id_is_alerted_and_nothing_acted_on(
        inbox, deployed, handed_over):
    deployed(policy_data())
    handler.run(omitted_fleet_event(fleet_id=None), None)
    assert handed_over == []
    [alert] = inbox.emails()
    assert "the record has no fleet id to look the launch up by" in alert["Message"]


def test_a_recheck_of_a_fleets_instances_names_them_the_way_the_policy_reads():
    event = create_fleet_event([[A, B, C]])
    slim = recheck.slim_event(event, [A, C], "hold#key")

    assert policy_ids(slim) == [A, C]
    assert recheck.hold_key(slim) == "hold#key"
    assert "requestParameters" not in slim["detail"]
    kept = recheck.kept_record(event["detail"], [A, C])
    assert events.launched_instances(kept) == [A, C]
    assert "requestParameters" not in kept
    assert events.untrusted(slim, events.subscriptions(
        [policy_data()["mode"]], CloudWatchEvents.trail_events)) is None
    assert ACCOUNT == slim["account"] and REGION == slim["region"]


# 5. broom replay ------------------------------------------------------------------------

def test_replay_handles_a_dead_lettered_create_fleet_event(inbox, aws, monkeypatch):
    """A CreateFleet event the function could not handle is replayed like a
    RunInstances one: its instances judged, the violator terminated."""
    monkeypatch.setattr(broom.replay, "WAIT_SECONDS", 0)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName="broom-dead-letters")["QueueUrl"]
    [untagged] = launch_fleet()
    [tagged] = launch_fleet(tags={"Code": "LOL"})
    sqs.send_message(QueueUrl=url, MessageBody=json.dumps(
        create_fleet_event([[untagged], [tagged]])))

    result = CliRunner().invoke(cli, [
        "replay", str(REPO / "policies" / "ec2-tags.yml"), "sqs://broom-dead-letters",
        "--execute"], catch_exceptions=False)

    assert result.exit_code == 0, result.output
    assert "CreateFleet" in result.output
    assert "%s  missing  terminated" % untagged in result.output
    assert states([untagged, tagged]) == {untagged: "terminated", tagged: "running"}
