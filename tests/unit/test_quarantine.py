"""Quarantine (safe-terminate's ``quarantine``): the shipped sweep in pull mode against
moto (mock_aws), run after run with the clock moved between runs: a notice, a stop, then
snapshots and a termination; every refusal on the way."""
import json
import time
from datetime import datetime, timezone

import boto3
import pytest
from botocore.stub import Stubber
from c7n.exceptions import PolicyValidationError

from c7n_broom import cost, quarantine, report, snapshots
from c7n_broom.quarantine import Facts, Record
from c7n_broom.terminate import SafeTerminate

from support import (
    ACCOUNT,
    REGION,
    launch,
    load_policy,
    policy_file,
    states,
)

POLICY = "ec2-tags-sweep.yml"
ENFORCE = {"broom_enforcement": "enforce"}
HOUR, DAY = 3600, 86400
START = 1_800_000_000  # the first sweep's time (epoch seconds)


class Clock:
    def __init__(self):
        self.now = START

    def __call__(self):
        return self.now


@pytest.fixture
def clock(monkeypatch):
    moved = Clock()
    monkeypatch.setattr(SafeTerminate, "clock", staticmethod(moved))
    monkeypatch.setattr(quarantine.Quarantine, "sleep", staticmethod(lambda s: None))
    return moved


def sweep(variables=ENFORCE, report_cost=False, **terminate_options):
    """The shipped sweep in pull mode, enforcing, with no CloudTrail lookups (so no
    exemptions: creators stay unknown) and no cost lines."""
    [data] = policy_file(POLICY)["policies"]
    del data["mode"]
    data["filters"] = [f for f in data["filters"] if f.get("type") != "instance-age"]
    for action in data["actions"]:
        if action["type"] == "lookup-creators":
            action["max-lookups"] = 0
        if action["type"] == "safe-terminate":
            action["exempt-principals"] = []
            action.update(terminate_options)
        if action["type"] == "creator-report":
            action["cost"] = report_cost
    return load_policy(data, variables=variables)


def run(policy, inbox):
    """Run the policy; the one digest's text and JSON document (None if no report)."""
    policy.run()
    sent = inbox.emails()
    if not sent:
        return None, None
    [message] = sent
    return message["Message"], message["Document"]


def outcome_of(document, instance_id):
    return {i["instance_id"]: i["outcome"] for i in document["instances"]}[instance_id]


def record_of(instance_id):
    item = boto3.client("dynamodb", region_name=REGION).get_item(
        TableName="broom-state",
        Key={"pk": {"S": quarantine.record_key(ACCOUNT, REGION, instance_id)}}).get("Item")
    return Record.from_item(item) if item else None


def snapshots_of(instance_id):
    return boto3.client("ec2", region_name=REGION).describe_snapshots(
        OwnerIds=["self"], Filters=[{"Name": "tag:broom:instance-id",
                                     "Values": [instance_id]}])["Snapshots"]


def tags_of(instance_id):
    [reservation] = boto3.client("ec2", region_name=REGION).describe_instances(
        InstanceIds=[instance_id])["Reservations"]
    return {t["Key"]: t["Value"] for t in reservation["Instances"][0].get("Tags", ())}


# 1. The timeline -----------------------------------------------------------------------

def test_an_instance_goes_through_notice_stop_snapshots_and_termination(
        clock, inbox, state_table):
    [instance] = launch(tags={"Name": "build-host", "Team": "data"})
    [kept] = launch(tags={"Code": "LOL"})

    text, document = run(sweep(), inbox)

    assert states([instance, kept]) == {instance: "running", kept: "running"}
    assert outcome_of(document, instance) == {"status": "quarantined", "detail": (
        "quarantined: will be stopped at 2027-01-16T08:00:00Z and terminated at "
        "2027-01-22T08:00:00Z unless its Code tag is set to one of LOL, GGG, BRB, YLO. "
        "To keep it: set the tag (Broom then leaves it alone at its next run), or have "
        "it exempted in the policy")}
    assert "will be stopped at 2027-01-16T08:00:00Z" in text
    assert kept not in text
    # The timeline is Broom's own record, never a tag the owner could edit.
    assert set(tags_of(instance)) == {"Name", "Team"}
    record = record_of(instance)
    assert (record.step, record.first, record.stop_at, record.terminate_at) == (
        quarantine.NOTICE, START, START + DAY, START + 7 * DAY)

    clock.now = START + DAY - 1  # not due yet: nothing changes
    text, document = run(sweep(), inbox)
    assert states([instance]) == {instance: "running"}
    assert outcome_of(document, instance)["status"] == "quarantined"

    clock.now = START + DAY
    text, document = run(sweep(), inbox)
    assert states([instance]) == {instance: "stopped"}
    assert outcome_of(document, instance)["status"] == "stopped"
    # the digest shows the state after Broom's stop, not the running it found
    assert [i["sweep"]["state"] for i in document["instances"]] == ["stopped"]
    assert "stopped at 2027-01-16T08:00:00Z; will be snapshotted and terminated at " \
        "2027-01-22T08:00:00Z" in outcome_of(document, instance)["detail"]
    assert record_of(instance).step == quarantine.STOPPED
    assert snapshots_of(instance) == []

    clock.now = START + 7 * DAY
    text, document = run(sweep(), inbox)
    assert states([instance]) == {instance: "terminated"}
    [snapshot] = snapshots_of(instance)
    tags = {t["Key"]: t["Value"] for t in snapshot["Tags"]}
    assert tags == {
        "Name": "build-host", "Team": "data", "broom:snapshot": "quarantine",
        "broom:instance-id": instance, "broom:quarantine": "%s@%d" % (instance, START),
        "broom:event": "sweep broom-ec2-sweep-code-tag",
        "broom:expires": "2027-02-21T08:00:00Z"}
    found = outcome_of(document, instance)
    assert found["status"] == "terminated"
    assert snapshot["SnapshotId"] in found["detail"]
    assert "broom restore %s" % instance in found["detail"]
    assert snapshot["SnapshotId"] in text
    record = record_of(instance)
    assert record.step == quarantine.TERMINATED
    assert record.snapshots == (snapshot["SnapshotId"],)
    assert record.instance["InstanceType"] == "t3.micro"
    assert record.instance["Devices"][0]["DeviceName"] == "/dev/sda1"


def test_each_run_takes_one_step_so_zero_durations_still_notice_first(clock, inbox,
                                                                    state_table):
    [instance] = launch()
    zero = {"quarantine": {"stop-after": "0s", "terminate-after": "0s"}}

    seen = []
    for _ in range(3):
        _, document = run(sweep(**zero), inbox)
        seen.append((outcome_of(document, instance)["status"], states([instance])[instance]))

    assert seen == [("quarantined", "running"), ("stopped", "stopped"),
                    ("terminated", "terminated")]
    assert len(snapshots_of(instance)) == 1


def test_an_instance_fixed_between_steps_leaves_quarantine_reported_once(
        clock, inbox, state_table):
    [instance] = launch()
    run(sweep(), inbox)
    clock.now = START + DAY
    run(sweep(), inbox)
    assert states([instance]) == {instance: "stopped"}
    boto3.client("ec2", region_name=REGION).create_tags(
        Resources=[instance], Tags=[{"Key": "Code", "Value": "GGG"}])

    clock.now = START + 2 * DAY
    text, document = run(sweep(), inbox)

    assert outcome_of(document, instance) == {"status": "left-quarantine", "detail": (
        "its Code tag is allowed now: it left the quarantine started at "
        "2027-01-15T08:00:00Z. It is stopped: start it again.")}
    assert "released from quarantine" in text
    assert record_of(instance) is None

    clock.now = START + 8 * DAY  # past terminate-after: nothing happens to it
    assert run(sweep(), inbox) == (None, None)
    assert states([instance]) == {instance: "stopped"}
    assert snapshots_of(instance) == []


def test_an_instance_still_violating_after_a_fix_and_unfix_keeps_its_timeline(
        clock, inbox, state_table):
    [instance] = launch()
    run(sweep(), inbox)
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.create_tags(Resources=[instance], Tags=[{"Key": "Code", "Value": "NOPE"}])

    clock.now = START + DAY
    _, document = run(sweep(), inbox)

    assert outcome_of(document, instance)["status"] == "stopped"


def snapshot_item(usage, usd):
    """One PriceList entry of EBS snapshot storage, in GetProducts' documented shape."""
    sku = "SKU" + usage.replace(":", "")
    return json.dumps({
        "product": {"productFamily": "Storage Snapshot", "sku": sku, "attributes": {
            "regionCode": REGION, "usagetype": usage, "storageMedia": "Amazon S3"}},
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": {sku + ".T": {"priceDimensions": {sku + ".T.D": {
            "unit": "GB-Mo", "pricePerUnit": {"USD": usd}, "description": usage}},
            "sku": sku}}}})


def test_with_cost_on_the_report_says_what_the_snapshots_cost(clock, inbox, state_table,
                                                              monkeypatch):
    from test_cost import price_item, products

    client = boto3.client("pricing", region_name="us-east-1")
    stubber = Stubber(client)
    monkeypatch.setattr(cost.PriceBook, "client", lambda self: client)
    cost.PriceBook.forget()
    stubber.add_response("get_products", products(price_item()), {
        "ServiceCode": "AmazonEC2", "MaxResults": 10,
        "Filters": cost.filters("t3.micro", REGION, "Linux/UNIX")})
    stubber.add_response("get_products", products(
        snapshot_item("EBS:SnapshotUsage", "0.0500000000"),
        snapshot_item("EBS:SnapshotArchiveStorage", "0.0125000000")), {
        "ServiceCode": "AmazonEC2", "MaxResults": 100,
        "Filters": cost.snapshot_filters(REGION)})
    [instance] = launch()
    zero = {"quarantine": {"stop-after": "0s", "terminate-after": "0s"}}

    with stubber:
        for _ in range(3):
            _, document = run(sweep(report_cost=True, **zero), inbox)
    cost.PriceBook.forget()

    assert "(8 GiB of volumes: at most $0.4000 a month at $0.0500 per GB-month; a " \
        "snapshot bills only the blocks in use)" in outcome_of(document, instance)["detail"]
    stubber.assert_no_pending_responses()


# 2. Refusals and exceptions --------------------------------------------------------------

def test_a_protected_instance_is_never_cleared_and_needs_a_person_every_run(
        clock, inbox, state_table, monkeypatch):
    [instance] = launch()
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.modify_instance_attribute(InstanceId=instance, DisableApiTermination={"Value": True})
    trail = boto3.client("cloudtrail", region_name=REGION)
    stubber = Stubber(trail)
    monkeypatch.setattr(quarantine.Quarantine, "cloudtrail", lambda self: trail)
    record = {"eventVersion": "1.08", "eventTime": "2026-11-02T10:00:00Z",
              "eventName": "ModifyInstanceAttribute", "eventID": "e-1",
              "userIdentity": {"type": "IAMUser", "userName": "alice",
                               "arn": "arn:aws:iam::%s:user/alice" % ACCOUNT,
                               "accountId": ACCOUNT},
              "requestParameters": {"instanceId": instance,
                                    "disableApiTermination": {"value": True}}}
    for _ in range(2):
        stubber.add_response("lookup_events", {"Events": [{
            "EventName": "ModifyInstanceAttribute",
            "CloudTrailEvent": json.dumps(record)}]})
    stubber.activate()
    run(sweep(), inbox)

    for when in (START + DAY, START + 8 * DAY):
        clock.now = when
        _, document = run(sweep(), inbox)
        found = outcome_of(document, instance)
        assert found["status"] == "needs-a-person"
        assert found["detail"].startswith(
            "termination protection is set on it, and Broom never clears a protection")
        assert "set by alice at 2026-11-02T10:00:00Z (ModifyInstanceAttribute)" in \
            found["detail"]
        assert states([instance]) == {instance: "running"}
    attribute = ec2.describe_instance_attribute(InstanceId=instance,
                                                Attribute="disableApiTermination")
    assert attribute["DisableApiTermination"]["Value"] is True
    assert snapshots_of(instance) == []
    stubber.assert_no_pending_responses()


def test_a_fleet_member_is_not_stopped_but_snapshotted_and_terminated_later(
        clock, inbox, state_table):
    [instance] = launch(tags={"aws:autoscaling:groupName": "web"})
    run(sweep(), inbox)

    clock.now = START + DAY
    _, document = run(sweep(), inbox)
    found = outcome_of(document, instance)
    assert states([instance]) == {instance: "running"}
    assert found["status"] == "quarantined"
    assert found["detail"].startswith(
        "not stopped: a member of Auto Scaling group web, which would replace it if "
        "stopped: add a Code tag with PropagateAtLaunch to the group")

    clock.now = START + 7 * DAY
    _, document = run(sweep(), inbox)
    assert states([instance]) == {instance: "terminated"}
    assert len(snapshots_of(instance)) == 1
    assert "not stopped: a member of Auto Scaling group web" in outcome_of(
        document, instance)["detail"]


def test_an_instance_that_cannot_be_stopped_goes_to_termination_with_a_note(
        clock, inbox, state_table, monkeypatch):
    [instance] = launch()
    monkeypatch.setattr(quarantine, "unstoppable", lambda r: (
        "its root device is an instance store" if r["InstanceId"] == instance else ""))
    run(sweep(), inbox)

    clock.now = START + DAY
    _, document = run(sweep(), inbox)
    assert states([instance]) == {instance: "running"}
    assert "not stopped: EC2 cannot stop it: its root device is an instance store" in \
        outcome_of(document, instance)["detail"]

    clock.now = START + 7 * DAY
    _, document = run(sweep(), inbox)
    assert states([instance]) == {instance: "terminated"}


def test_the_cap_applies_to_stops_and_terminations_separately(clock, inbox, state_table):
    first = launch(count=2)
    run(sweep(**{"max-terminations": 2}), inbox)
    clock.now = START + HOUR
    later = launch(count=2)
    _, document = run(sweep(**{"max-terminations": 2}), inbox)
    assert {outcome_of(document, i)["status"] for i in later} == {"quarantined"}

    clock.now = START + DAY + HOUR  # four stops due: none made
    _, document = run(sweep(**{"max-terminations": 2}), inbox)
    assert set(states(first + later).values()) == {"running"}
    held = outcome_of(document, first[0])
    assert held["status"] == "held-by-cap"
    assert held["detail"].startswith("4 stops due in one run exceed the cap of 2")

    _, document = run(sweep(**{"max-terminations": 4}), inbox)
    assert set(states(first + later).values()) == {"stopped"}


def test_switching_to_report_only_ends_the_quarantine_and_enforcing_again_starts_over(
        clock, inbox, state_table):
    [instance] = launch()
    run(sweep(), inbox)

    clock.now = START + 3 * DAY  # stop-after passed, but the account is report-only
    _, document = run(sweep(variables={}), inbox)
    assert outcome_of(document, instance) == {"status": "would-terminate", "detail": (
        "report-only mode; its quarantine ended; if Broom enforces on it again, a new "
        "notice comes first")}
    assert record_of(instance) is None

    clock.now = START + 10 * DAY  # enforced again: a notice, never a stop at once
    _, document = run(sweep(), inbox)
    assert outcome_of(document, instance)["status"] == "quarantined"
    assert states([instance]) == {instance: "running"}
    assert record_of(instance).first == START + 10 * DAY


def test_a_report_only_account_records_no_quarantine(clock, inbox, state_table):
    [instance] = launch()

    _, document = run(sweep(variables={}), inbox)

    assert outcome_of(document, instance)["status"] == "would-terminate"
    assert record_of(instance) is None


@pytest.mark.parametrize("option, message", [
    ({"stop-after": "1 day", "terminate-after": "7d"},
     "'quarantine': '1 day' is not a duration: write a whole number and s, m, h or d"),
    ({"stop-after": "7d", "terminate-after": "24h"},
     "terminate-after (24h) must not be earlier than stop-after (7d)"),
    ({"stop-after": "24h"}, "'terminate-after' is a required property"),
])
def test_bad_quarantine_options_are_refused(option, message):
    with pytest.raises(PolicyValidationError, match=None) as refused:
        sweep(quarantine=option)
    assert message in str(refused.value)


def test_force_is_refused_beside_quarantine():
    with pytest.raises(PolicyValidationError) as refused:
        sweep(force=True)
    assert "'force': true is refused with 'quarantine'" in str(refused.value)


def test_force_is_refused_in_a_periodic_sweep_even_without_quarantine():
    [data] = policy_file(POLICY)["policies"]
    [action] = [a for a in data["actions"] if a["type"] == "safe-terminate"]
    del action["quarantine"]
    action["force"] = True
    with pytest.raises(PolicyValidationError) as refused:
        load_policy(data)
    assert "'force': true is refused in a periodic policy (a sweep)" in str(refused.value)


# 3. Pure decisions -------------------------------------------------------------------------

def timeline(step=quarantine.NOTICE):
    return Record("i-1", START, START + DAY, START + 7 * DAY, step)


@pytest.mark.parametrize("record, now, facts, expected", [
    (None, START, Facts(), quarantine.START),
    (timeline(), START + DAY - 1, Facts(protection="stop protection"), quarantine.WAIT),
    (timeline(), START + DAY, Facts(), quarantine.STOP),
    (timeline(), START + DAY, Facts(protection="stop protection"), quarantine.NEEDS_PERSON),
    (timeline(), START + DAY, Facts(fleet=("EC2 Fleet", "fleet-1")), quarantine.SKIP_STOP),
    (timeline(), START + DAY, Facts(unstoppable="spot"), quarantine.SKIP_STOP),
    (timeline(quarantine.STOPPED), START + 7 * DAY - 1, Facts(), quarantine.WAIT),
    (timeline(quarantine.STOPPED), START + 7 * DAY, Facts(), quarantine.TERMINATE),
    (timeline(quarantine.STOP_SKIPPED), START + 7 * DAY, Facts(), quarantine.TERMINATE),
    (timeline(quarantine.SNAPSHOTTED), START + 7 * DAY,
     Facts(protection="termination protection"), quarantine.NEEDS_PERSON),
])
def test_step(record, now, facts, expected):
    assert quarantine.step(record, now, facts)[0] == expected


@pytest.mark.parametrize("text, seconds", [("0s", 0), ("15m", 900), ("24h", 86400),
                                           ("7d", 604800)])
def test_durations(text, seconds):
    assert quarantine.parse_duration(text) == seconds


def test_a_record_that_does_not_parse_is_ignored():
    assert Record.from_item({"pk": {"S": "quarantine#x"}, "record": {"S": "{"}}) is None
    assert Record.from_item({"pk": {"S": "quarantine#x"}, "record": {"S": json.dumps({
        "instance_id": "i-1", "first": 1, "stop_at": 2, "terminate_at": 3,
        "step": "explode"})}}) is None


def test_snapshot_tags_keep_brooms_own_and_drop_what_the_owner_forged():
    resource = {"Tags": [{"Key": "broom:instance-id", "Value": "i-other"},
                         {"Key": "aws:cloudformation:stack-name", "Value": "s"}]
                + [{"Key": "k%d" % n, "Value": "v"} for n in range(60)]}
    tags = snapshots.snapshot_tags(resource, timeline(), "2027-02-21T08:00:00Z")
    assert len(tags) == 50
    assert [t["Value"] for t in tags if t["Key"] == "broom:instance-id"] == ["i-1"]
    assert not any(t["Key"].startswith("aws:") for t in tags)


def test_report_outcomes_read_well():
    assert report.describe_outcome(report.Outcome(report.NEEDS_PERSON)) == \
        "none: it is protected"


def test_when_protection_cannot_be_read_a_person_decides(clock, inbox, state_table,
                                                         monkeypatch):
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

    original = BaseClient._make_api_call

    def denied(client, operation, params):
        if operation == "DescribeInstanceAttribute":
            raise ClientError({"Error": {"Code": "UnauthorizedOperation",
                                         "Message": "no"}}, operation)
        return original(client, operation, params)

    [instance] = launch()
    run(sweep(), inbox)
    monkeypatch.setattr(BaseClient, "_make_api_call", denied)
    monkeypatch.setattr(quarantine.Quarantine, "protected_by",
                        lambda self, instance_id: "not looked up")
    clock.now = START + DAY

    _, document = run(sweep(), inbox)

    found = outcome_of(document, instance)
    assert found["status"] == "needs-a-person"
    assert found["detail"].startswith(
        "whether termination protection is set is unknown (UnauthorizedOperation); "
        "whether stop protection is set is unknown (UnauthorizedOperation), and Broom "
        "never clears a protection")
    assert states([instance]) == {instance: "running"}


def refusing(monkeypatch, operation, code, when=lambda params: True):
    """EC2 answers ``operation`` with the error ``code`` (while ``when`` its params);
    returns the list of the calls made of ``operation``."""
    from botocore.client import BaseClient
    from botocore.exceptions import ClientError

    original, calls = BaseClient._make_api_call, []

    def answer(client, name, params):
        if name == operation:
            calls.append(params)
            if when(params):
                raise ClientError({"Error": {"Code": code, "Message": "refused"}}, name)
        return original(client, name, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", answer)
    return calls


def test_a_stop_ec2_refuses_is_reported_and_tried_again_next_run(
        clock, inbox, state_table, monkeypatch):
    [instance] = launch()
    run(sweep(), inbox)
    clock.now = START + DAY
    with monkeypatch.context() as patched:
        refusing(patched, "StopInstances", "IncorrectInstanceState")
        _, document = run(sweep(), inbox)

    assert outcome_of(document, instance) == {"status": "stop-failed", "detail": (
        "IncorrectInstanceState: refused")}
    assert states([instance]) == {instance: "running"}
    assert record_of(instance).step == quarantine.NOTICE

    clock.now = START + DAY + HOUR
    _, document = run(sweep(), inbox)
    assert outcome_of(document, instance)["status"] == "stopped"
    assert states([instance]) == {instance: "stopped"}


def test_an_instance_ec2_refuses_to_stop_goes_on_to_termination_with_a_note(
        clock, inbox, state_table, monkeypatch):
    [instance] = launch()
    run(sweep(), inbox)
    clock.now = START + DAY
    with monkeypatch.context() as patched:
        refusing(patched, "StopInstances", "UnsupportedOperation")
        _, document = run(sweep(), inbox)

    found = outcome_of(document, instance)
    assert found["status"] == "quarantined"
    assert found["detail"].startswith(
        "not stopped: EC2 refused to stop it (UnsupportedOperation). It will be "
        "snapshotted (what can be) and terminated at 2027-01-22T08:00:00Z")
    assert record_of(instance).step == quarantine.STOP_SKIPPED

    clock.now = START + 7 * DAY
    _, document = run(sweep(), inbox)
    assert states([instance]) == {instance: "terminated"}
    found = outcome_of(document, instance)
    assert found["detail"].startswith(
        "after quarantine (not stopped: EC2 refused to stop it (UnsupportedOperation)); "
        "snapshots snap-")
    assert len(snapshots_of(instance)) == 1


def test_snapshots_ec2_does_not_confirm_keep_the_instance_and_are_used_next_run(
        clock, inbox, state_table, monkeypatch):
    """No termination without confirmed snapshots; the next run finds the snapshots
    the failed one took (by their broom:quarantine tag) and takes none twice."""
    from botocore.client import BaseClient

    # EC2 (moto) dates the snapshots by the real clock: the runs use it too
    clock.now = int(time.time()) - 1
    [instance] = launch()
    zero = {"quarantine": {"stop-after": "0s", "terminate-after": "0s"}}
    run(sweep(**zero), inbox)
    run(sweep(**zero), inbox)
    assert states([instance]) == {instance: "stopped"}
    original, created = BaseClient._make_api_call, []

    def failing(client, name, params):
        response = original(client, name, params)
        if name == "CreateSnapshots":
            created.append(params)
        if name == "DescribeSnapshots" and "SnapshotIds" in params:
            for snapshot in response["Snapshots"]:
                snapshot["State"] = "error"
        return response

    with monkeypatch.context() as patched:
        patched.setattr(BaseClient, "_make_api_call", failing)
        _, document = run(sweep(**zero), inbox)

    assert outcome_of(document, instance) == {"status": "termination-failed", "detail": (
        "EC2 did not confirm a snapshot of every EBS volume (%s: error), so Broom "
        "did not terminate it" % snapshots_of(instance)[0]["VolumeId"])}
    assert states([instance]) == {instance: "stopped"}
    assert record_of(instance).step == quarantine.STOPPED
    assert len(created) == 1

    monkeypatch.setattr(BaseClient, "_make_api_call", failing)
    monkeypatch.setattr(snapshots, "confirm", lambda *a, **k: pytest.fail("confirmed again"))
    _, document = run(sweep(**zero), inbox)

    assert states([instance]) == {instance: "terminated"}
    assert len(created) == 1
    [snapshot] = snapshots_of(instance)
    assert record_of(instance).snapshots == (snapshot["SnapshotId"],)
    assert snapshot["SnapshotId"] in outcome_of(document, instance)["detail"]


def test_without_snapshots_the_instance_is_terminated_and_the_report_says_so(
        clock, inbox, state_table):
    [instance] = launch()
    option = {"quarantine": {"stop-after": "0s", "terminate-after": "0s",
                             "snapshot": False}}
    for _ in range(3):
        _, document = run(sweep(**option), inbox)

    assert states([instance]) == {instance: "terminated"}
    assert outcome_of(document, instance) == {"status": "terminated", "detail": (
        "after quarantine; no snapshots (snapshot: false)")}
    assert snapshots_of(instance) == []


def test_the_sweep_takes_on_a_quarantine_the_tag_change_policy_started(
        clock, inbox, state_table):
    from support import delete_tags

    [instance] = launch(tags={"Code": "LOL"})
    [data] = policy_file("ec2-tags-changed.yml")["policies"]
    changed = load_policy(data, variables={"broom_tag_change_enforcement": "enforce"})
    changed.push(delete_tags([instance], {"Code": None}))
    [message] = inbox.emails()
    assert message["MessageAttributes"]["broom.outcome"]["Value"] == "quarantined"
    assert record_of(instance).policy == data["name"]
    assert states([instance]) == {instance: "running"}

    clock.now = START + DAY
    _, document = run(sweep(), inbox)

    assert outcome_of(document, instance)["status"] == "stopped"
    assert states([instance]) == {instance: "stopped"}
    assert record_of(instance).first == START


def test_an_older_snapshot_tagged_as_the_quarantine_s_is_not_used_in_place_of_broom_s(
        clock, inbox, state_table, monkeypatch):
    """Whoever may tag snapshots could tag an old one of the volume (taken before the
    work Broom keeps) with the quarantine's tag: Broom takes its own all the same."""
    [instance] = launch()
    clock.now = int(time.time()) + HOUR  # the notice and the stop come after the forgery
    zero = {"quarantine": {"stop-after": "0s", "terminate-after": "0s"}}
    run(sweep(**zero), inbox)
    ec2 = boto3.client("ec2", region_name=REGION)
    [volume] = [m["Ebs"]["VolumeId"] for r in ec2.describe_instances(
        InstanceIds=[instance])["Reservations"] for i in r["Instances"]
        for m in i["BlockDeviceMappings"]]
    forged = ec2.create_snapshot(VolumeId=volume, TagSpecifications=[{
        "ResourceType": "snapshot", "Tags": [
            {"Key": "broom:quarantine", "Value": record_of(instance).quarantine_id},
            {"Key": "broom:instance-id", "Value": instance}]}])["SnapshotId"]
    run(sweep(**zero), inbox)
    created = refusing(monkeypatch, "CreateSnapshots", "-", when=lambda params: False)

    _, document = run(sweep(**zero), inbox)

    assert states([instance]) == {instance: "terminated"}
    assert len(created) == 1
    [own] = record_of(instance).snapshots
    assert own != forged
    assert own in outcome_of(document, instance)["detail"]
    assert forged not in outcome_of(document, instance)["detail"]


def test_reusable_keeps_the_newest_of_each_volume_started_since_the_last_step():
    def at(second):
        return datetime.fromtimestamp(START + second, timezone.utc)

    found = [
        {"SnapshotId": "snap-old", "VolumeId": "vol-1", "State": "completed",
         "StartTime": at(-1)},
        {"SnapshotId": "snap-1", "VolumeId": "vol-1", "State": "pending",
         "StartTime": at(5)},
        {"SnapshotId": "snap-1b", "VolumeId": "vol-1", "State": "pending",
         "StartTime": at(3)},
        {"SnapshotId": "snap-2", "VolumeId": "vol-2", "State": "completed",
         "StartTime": at(0)},
        {"SnapshotId": "snap-x", "VolumeId": "vol-3", "State": "completed"},
    ]

    assert snapshots.reusable(found, START) == [
        ("snap-1", "vol-1", "pending"), ("snap-2", "vol-2", "completed")]


def test_snapshots_of_a_failed_termination_are_taken_again_once_the_instance_ran_since(
        clock, inbox, state_table, monkeypatch):
    """Broom snapshotted it, EC2 refused the termination (protected meanwhile); a
    person started it and worked on, then lifted the protection: the termination
    that follows keeps today's volumes, not those of the first attempt."""
    [instance] = launch()
    zero = {"quarantine": {"stop-after": "0s", "terminate-after": "0s"}}
    run(sweep(**zero), inbox)
    run(sweep(**zero), inbox)
    with monkeypatch.context() as patched:
        refusing(patched, "TerminateInstances", "OperationNotPermitted")
        _, document = run(sweep(**zero), inbox)
    assert outcome_of(document, instance)["status"] == "needs-a-person"
    [first] = record_of(instance).snapshots
    boto3.client("ec2", region_name=REGION).start_instances(InstanceIds=[instance])

    clock.now = START + DAY
    _, document = run(sweep(**zero), inbox)

    assert states([instance]) == {instance: "terminated"}
    [second] = record_of(instance).snapshots
    assert second != first
    assert second in outcome_of(document, instance)["detail"]
    assert len(snapshots_of(instance)) == 2


@pytest.mark.parametrize("state, launched, unchanged", [
    ("stopped", START - 10, True),
    ("stopped", START, True),
    ("stopped", START + 10, False),  # started and stopped again since
    ("running", START - 10, False),
    ("stopped", None, False),
])
def test_unchanged_since(state, launched, unchanged):
    resource = {"State": {"Name": state}}
    if launched is not None:
        resource["LaunchTime"] = datetime.fromtimestamp(launched, timezone.utc)
    assert quarantine.unchanged_since(resource, START) is unchanged
