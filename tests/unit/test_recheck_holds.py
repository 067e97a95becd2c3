"""A re-check acts only on what Broom held, judged by the launch it came from (mock_aws).

The cap's holds are recorded in the state table (which only Broom's roles write); the
schedule's payload carries the hold's key and nothing Broom trusts. Whoever can invoke
the function, or create schedules, cannot turn the cap off, name other instances, or
blame someone else; a stop and start does not let a held instance escape.
"""
import copy
import json
import time
from datetime import timedelta

import boto3
import pytest
from moto.ec2.models import ec2_backends

from broom.scp_eval import arn_like
from c7n_broom import events, instances, recheck

from cfn_templates import load, resolve, resources, role, role_policy_document, statements
from support import ACCOUNT, REGION, launch, load_policy, policy_file, run_instances_event, states

FUNCTION_ARN = "arn:aws:lambda:%s:%s:function:custodian-broom-ec2-require-code-tag" % (
    REGION, ACCOUNT)


@pytest.fixture
def in_lambda(monkeypatch, state_table):
    monkeypatch.setattr(recheck.Target, "function_arn", FUNCTION_ARN)
    boto3.client("scheduler", region_name=REGION).create_schedule_group(
        Name=recheck.SCHEDULE_GROUP)


def main_policy(**options):
    [data] = policy_file("ec2-tags.yml")["policies"]
    for action in data["actions"]:
        if action["type"] == "safe-terminate":
            action.update(options)
    return load_policy(data)


def later(monkeypatch, seconds=3600):
    start = time.time()
    monkeypatch.setattr(recheck, "now", lambda: start + seconds)


def payloads():
    client = boto3.client("scheduler", region_name=REGION)
    return [json.loads(client.get_schedule(Name=s["Name"], GroupName=s["GroupName"])
                       ["Target"]["Input"]) for s in client.list_schedules()["Schedules"]]


def hold(ids):
    """Launch ``ids`` over the cap of 3 and return the re-check's payload."""
    main_policy(**{"max-terminations": 3}).push(run_instances_event(ids))
    assert set(states(ids).values()) == {"running"}
    [payload] = payloads()
    return payload


def holds():
    return {i["pk"]["S"]: i for i in boto3.client("dynamodb", region_name=REGION).scan(
        TableName="broom-state")["Items"] if i["pk"]["S"].startswith("hold#")}


def test_the_hold_records_the_instances_their_launch_markers_the_record_and_due(
        in_lambda, inbox):
    ids = launch(count=4, tags={"Code": "NOPE"})
    payload = hold(ids)

    [(key, item)] = holds().items()
    assert recheck.hold_key(payload) == key
    found = recheck.Hold.from_item(item)
    assert found.status == recheck.HELD
    described = {r["InstanceId"]: r for r in boto3.client("ec2", region_name=REGION)
                 .describe_instances(InstanceIds=ids)["Reservations"][0]["Instances"]}
    assert found.instances == {i: instances.launch_marker(described[i]) for i in ids}
    assert found.record["userIdentity"] == run_instances_event(ids)["detail"]["userIdentity"]
    assert 3500 < found.due - time.time() < 3700
    # the payload names who launched nothing, and when nothing
    assert "userIdentity" not in payload["detail"] and "eventTime" not in payload["detail"]


def test_a_held_instance_stopped_and_started_is_still_rechecked(in_lambda, inbox, monkeypatch):
    """Before: the stop/start's new LaunchTime made the re-check call it an anomaly,
    and it escaped for good."""
    ids = launch(count=4, tags={"Code": "NOPE"})
    payload = hold(ids)
    restarted = ec2_backends[ACCOUNT][REGION].get_instance(ids[0])
    restarted.launch_time = restarted.launch_time + timedelta(minutes=30)
    later(monkeypatch)

    main_policy(**{"max-terminations": 3}).push(payload)

    assert set(states(ids).values()) == {"terminated"}


def test_a_forged_recheck_acts_on_nothing(in_lambda, inbox, monkeypatch):
    """Before: a payload carrying the re-check marker and any instance ids turned the
    cap off for them."""
    ids = launch(count=4, tags={"Code": "NOPE"})
    event = run_instances_event(ids)
    forged = dict(copy.deepcopy(event), **{recheck.MARKER: {
        "hold": "hold#ec2-require-code-tag#%s#%s#0-0" % (ACCOUNT, REGION),
        "instances": ids}})

    main_policy(**{"max-terminations": 3}).push(forged)

    assert set(states(ids).values()) == {"running"}
    assert inbox.emails() == []


def test_a_recheck_before_its_hold_is_due_acts_on_nothing(in_lambda, inbox, monkeypatch):
    ids = launch(count=4, tags={"Code": "NOPE"})
    payload = hold(ids)
    inbox.emails()
    later(monkeypatch, 600)

    main_policy(**{"max-terminations": 3}).push(payload)

    assert set(states(ids).values()) == {"running"}
    assert inbox.emails() == []


def test_a_recheck_delivered_twice_acts_once(in_lambda, inbox, monkeypatch):
    ids = launch(count=4, tags={"Code": "NOPE"})
    payload = hold(ids)
    inbox.emails()
    later(monkeypatch)
    main_policy(**{"max-terminations": 3}).push(payload)
    assert set(states(ids).values()) == {"terminated"}
    assert inbox.emails()
    [item] = holds().values()
    assert item["status"]["S"] == recheck.SETTLED

    main_policy(**{"max-terminations": 3}).push(payload)

    assert inbox.emails() == []


def test_a_recheck_naming_other_instances_acts_only_on_the_held_ones(
        in_lambda, inbox, monkeypatch):
    held = launch(count=4, tags={"Code": "NOPE"})
    bystander = launch(count=1, tags={"Code": "NOPE"})
    payload = hold(held)
    tampered = copy.deepcopy(payload)
    tampered["detail"]["responseElements"] = events.with_instances(
        tampered["detail"], held + bystander)
    later(monkeypatch)

    main_policy(**{"max-terminations": 3}).push(tampered)

    assert set(states(held).values()) == {"terminated"}
    assert states(bystander) == {bystander[0]: "running"}


def test_a_recheck_reports_the_launcher_broom_recorded_not_the_payloads(
        in_lambda, inbox, monkeypatch):
    ids = launch(count=4, tags={"Code": "NOPE"})
    payload = hold(ids)
    inbox.emails()
    blamed = copy.deepcopy(payload)
    blamed["detail"]["userIdentity"] = {"type": "IAMUser", "userName": "colleague",
                                        "arn": "arn:aws:iam::%s:user/colleague" % ACCOUNT}
    later(monkeypatch)

    main_policy(**{"max-terminations": 3}).push(blamed)

    messages = [m["Message"] for m in inbox.emails()]
    assert len(messages) == 4
    assert all("c7nbot" in m and "colleague" not in m for m in messages)


def test_an_instance_whose_launch_marker_changed_is_not_the_one_held(
        in_lambda, inbox, monkeypatch):
    ids = launch(count=4, tags={"Code": "NOPE"})
    payload = hold(ids)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    [(key, item)] = holds().items()
    item["instances"]["M"][ids[0]] = {"S": "2001-01-01T00:00:00Z"}
    dynamodb.put_item(TableName="broom-state", Item=item)
    later(monkeypatch)

    main_policy(**{"max-terminations": 3}).push(payload)

    assert states(ids) == dict({i: "terminated" for i in ids[1:]}, **{ids[0]: "running"})


def test_without_the_state_table_nothing_is_scheduled_and_the_report_says_so(
        inbox, monkeypatch):
    monkeypatch.setattr(recheck.Target, "function_arn", FUNCTION_ARN)
    ids = launch(count=4, tags={"Code": "NOPE"})

    main_policy(**{"max-terminations": 3}).push(run_instances_event(ids))

    assert set(states(ids).values()) == {"running"}
    assert payloads() == []
    assert "Broom could NOT schedule a re-check (the state table broom-state cannot " \
           "record the hold)" in inbox.emails()[0]["Message"]


def test_the_launch_marker_survives_a_stop_and_start():
    instance = {"InstanceId": "i-0123456789abcdef0", "RootDeviceName": "/dev/xvda",
                "LaunchTime": "2026-01-02T00:00:00Z",
                "BlockDeviceMappings": [
                    {"DeviceName": "/dev/xvdb", "Ebs": {"AttachTime": "2026-01-01T09:00:00Z"}},
                    {"DeviceName": "/dev/xvda", "Ebs": {"AttachTime": "2026-01-01T08:00:00Z"}}],
                "NetworkInterfaces": [{"Attachment": {"DeviceIndex": 0,
                                                      "AttachTime": "2026-01-01T08:00:01Z"}}]}
    assert instances.launch_marker(instance) == "2026-01-01T08:00:00Z"
    instance_store = dict(instance, BlockDeviceMappings=[])
    assert instances.launch_marker(instance_store) == "2026-01-01T08:00:01Z"
    assert instances.launch_marker({"InstanceId": "i-1"}) == "none"


# -- who may run a re-check: Broom's schedule group only --------------------------------

@pytest.mark.parametrize("template", ["account.yml", "hub.yml"])
def test_the_scheduler_role_trusts_only_schedules_of_brooms_own_group(template):
    refs = {"AWS::Partition": "aws", "AWS::AccountId": ACCOUNT}
    document = load(template)
    [group] = resources(document, "AWS::Scheduler::ScheduleGroup").values()
    assert group["Properties"]["Name"] == recheck.SCHEDULE_GROUP
    scheduler = role(document, recheck.SCHEDULER_ROLE)["Properties"]
    [trust] = scheduler["AssumeRolePolicyDocument"]["Statement"]
    condition = resolve(trust["Condition"], refs)

    assert condition["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    [pattern] = condition["ArnLike"].values()
    mine = "arn:aws:scheduler:eu-west-1:%s:schedule-group/%s" % (ACCOUNT, recheck.SCHEDULE_GROUP)
    assert arn_like(pattern, mine)
    for other in (mine.replace("/broom", "/default"), mine.replace("/broom", "/broom-dev"),
                  mine.replace(ACCOUNT, "999999999999")):
        assert not arn_like(pattern, other), other
    # Broom's function creates its schedules in that group only
    [create] = [s for s in statements(role_policy_document(document, "broom-lambda"))
                if "scheduler:CreateSchedule" in s["Action"]]
    assert resolve(create["Resource"], refs) == (
        "arn:aws:scheduler:*:%s:schedule/%s/broom-recheck-*" % (ACCOUNT, recheck.SCHEDULE_GROUP))
    assert arn_like(resolve(create["Resource"], refs), "arn:aws:scheduler:eu-west-1:%s:schedule/"
                    "broom/%s" % (ACCOUNT, recheck.schedule_name("hold#x")))
