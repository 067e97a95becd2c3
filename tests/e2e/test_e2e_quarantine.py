"""End to end: the sweep's quarantine on moto's server. The stock `custodian run`
deploys the shipped sweep with quarantine durations of 0s; three scheduled runs of the
published archive (run the way Lambda runs a schedule's invocation) take an old
untagged instance through the notice, the stop, and the snapshots and termination;
then the installed `broom restore` launches it again from its snapshots.

With 0s durations no time has to pass: each run takes one step (a person always gets
a report between two steps), so the three runs are the whole timeline.
"""

import pytest
from test_e2e_sweep import deploy_copy, run_deployed

from broom.local.aws import create_lambda_role, create_state_table

from e2e_support import server_inbox, stock
from support import IMAGE, REGION, states

ZERO = {"stop-after": "0s", "terminate-after": "0s", "snapshot": True,
        "keep-snapshots": "30d"}


@pytest.fixture
def aws(fresh_aws):
    create_lambda_role(fresh_aws)
    create_state_table(fresh_aws.client("dynamodb"))
    return fresh_aws


def outcomes(inbox):
    """{instance id: outcome} of the run's one digest (its JSON document)."""
    [message] = inbox.emails()
    return {i["instance_id"]: i["outcome"] for i in message["Document"]["instances"]}


def test_three_sweeps_stop_snapshot_and_terminate_and_broom_restore_brings_it_back(
        aws, tmp_path):
    ec2 = aws.client("ec2")
    [made] = ec2.run_instances(
        ImageId=IMAGE, MinCount=1, MaxCount=1, InstanceType="t3.small",
        TagSpecifications=[{"ResourceType": "instance",
                            "Tags": [{"Key": "Name", "Value": "old-build-host"}]}])["Instances"]
    instance = made["InstanceId"]
    [kept] = [i["InstanceId"] for i in ec2.run_instances(
        ImageId=IMAGE, MinCount=1, MaxCount=1, InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": "Code", "Value": "LOL"}]}])["Instances"]]
    inbox = server_inbox(aws)
    # CloudTrail lookups fail on moto: no exemptions, so unknown creators do not hold.
    name = deploy_copy(aws, tmp_path, **{"safe-terminate": {
        "enforcement": "enforce", "exempt-principals": [], "quarantine": ZERO}})

    seen = []
    for _ in range(3):
        result = run_deployed(aws, name)
        assert result.ok, result.logs[-4000:]
        found = outcomes(inbox)
        assert set(found) == {instance}
        seen.append((found[instance]["status"], states([instance], ec2)[instance]))
    assert seen == [("quarantined", "running"), ("stopped", "stopped"),
                    ("terminated", "terminated")]
    assert states([kept], ec2) == {kept: "running"}
    [snapshot] = ec2.describe_snapshots(OwnerIds=["self"], Filters=[
        {"Name": "tag:broom:instance-id", "Values": [instance]}])["Snapshots"]
    assert snapshot["SnapshotId"] in found[instance]["detail"]
    assert {"Key": "Name", "Value": "old-build-host"} in snapshot["Tags"]

    restored = stock("broom", ["restore", instance, "--region", REGION, "--code", "GGG"],
                     aws.env())

    assert restored.returncode == 0, restored.output
    new_id = restored.stdout.strip().splitlines()[-1].split()[1].rstrip(",")
    [reservation] = ec2.describe_instances(InstanceIds=[new_id])["Reservations"]
    [new] = reservation["Instances"]
    assert new["State"]["Name"] == "running" and new["InstanceType"] == "t3.small"
    assert {t["Key"]: t["Value"] for t in new["Tags"]} == {
        "Name": "old-build-host", "Code": "GGG", "broom:restored-from": instance}
    [image] = ec2.describe_images(ImageIds=[new["ImageId"]])["Images"]
    assert image["Name"].startswith("broom-restore-%s-" % instance)
    # The replacement carries an allowed Code: the next sweep leaves it alone.
    run_deployed(aws, name)
    assert inbox.emails() == []
    assert states([new_id], ec2) == {new_id: "running"}
