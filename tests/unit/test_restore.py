"""`broom restore` (click's CliRunner, mock_aws): an instance the shipped sweep's
quarantine took through stop, snapshots and termination, launched again."""
import boto3
import pytest
from click.testing import CliRunner
from test_quarantine import clock, record_of, run, snapshots_of, sweep  # noqa: F401

from broom import restore
from broom.cli import cli
from c7n_broom import quarantine

from support import IMAGE, REGION, launch, states

ZERO = {"quarantine": {"stop-after": "0s", "terminate-after": "0s"}}


def invoke(*args):
    return CliRunner().invoke(cli, ["restore"] + list(args), catch_exceptions=False)


@pytest.fixture
def terminated(clock, inbox, state_table):  # noqa: F811
    """An instance with settings and tags, taken through the quarantine to its end."""
    ec2 = boto3.client("ec2", region_name=REGION)
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.0.1.0/24")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="build", Description="b",
                                      VpcId=vpc)["GroupId"]
    ec2.create_key_pair(KeyName="ops")
    [made] = ec2.run_instances(
        ImageId=IMAGE, MinCount=1, MaxCount=1, InstanceType="m5.large", SubnetId=subnet,
        SecurityGroupIds=[group], KeyName="ops", TagSpecifications=[{
            "ResourceType": "instance", "Tags": [{"Key": "Name", "Value": "build-host"},
                                                 {"Key": "Code", "Value": "NOPE"}]}])["Instances"]
    instance = made["InstanceId"]
    for _ in range(3):
        run(sweep(**ZERO), inbox)
    assert states([instance]) == {instance: "terminated"}
    return {"instance": instance, "subnet": subnet, "group": group}


def described(instance_id):
    [reservation] = boto3.client("ec2", region_name=REGION).describe_instances(
        InstanceIds=[instance_id])["Reservations"]
    return reservation["Instances"][0]


def test_restore_launches_the_instance_again_from_its_snapshots(terminated):
    instance = terminated["instance"]
    [snapshot] = snapshots_of(instance)

    result = invoke(instance, "--region", REGION, "--code", "LOL")

    assert result.exit_code == 0, result.output
    new_id = result.output.strip().splitlines()[-1].split()[1].rstrip(",")
    assert result.output.strip().endswith("Launched %s, restoring %s." % (new_id, instance))
    assert "%s (/dev/sda1, root)" % snapshot["SnapshotId"] in result.output
    new = described(new_id)
    assert new["State"]["Name"] == "running"
    assert new["InstanceType"] == "m5.large"
    assert new["SubnetId"] == terminated["subnet"]
    assert [g["GroupId"] for g in new["SecurityGroups"]] == [terminated["group"]]
    assert new["KeyName"] == "ops"
    assert {t["Key"]: t["Value"] for t in new["Tags"]} == {
        "Name": "build-host", "Code": "LOL", "broom:restored-from": instance}
    [image] = boto3.client("ec2", region_name=REGION).describe_images(
        ImageIds=[new["ImageId"]])["Images"]
    assert image["Name"].startswith("broom-restore-%s-" % instance)


def test_a_dry_run_prints_the_plan_and_launches_nothing(terminated):
    ec2 = boto3.client("ec2", region_name=REGION)
    before = {i["InstanceId"] for r in ec2.describe_instances()["Reservations"]
              for i in r["Instances"]}

    result = invoke(terminated["instance"], "--code", "GGG", "--dry-run")

    assert result.exit_code == 0, result.output
    assert "instance:  m5.large in %s, security groups %s" % (
        terminated["subnet"], terminated["group"]) in result.output
    assert "Code=GGG" in result.output
    assert result.output.strip().endswith("Dry run: nothing registered or launched.")
    after = {i["InstanceId"] for r in ec2.describe_instances()["Reservations"]
             for i in r["Instances"]}
    assert after == before
    assert ec2.describe_images(Owners=["self"])["Images"] == []


@pytest.mark.parametrize("args, says", [
    ((), "pass --code: %s had Code=NOPE, and the replacement needs an allowed code "
         "(allowed: LOL, GGG, BRB, YLO)"),
    (("--code", "NOPE2"), "--code NOPE2 is not an allowed code (allowed: LOL, GGG, BRB, "
                          "YLO)"),
])
def test_the_code_must_be_allowed(terminated, args, says):
    result = invoke(terminated["instance"], *args)
    assert result.exit_code == 1
    assert result.output.strip() == "broom restore: " + says.replace("%s", terminated["instance"])


def test_a_deleted_snapshot_is_named_with_where_to_look(terminated):
    [snapshot] = snapshots_of(terminated["instance"])
    boto3.client("ec2", region_name=REGION).delete_snapshot(SnapshotId=snapshot["SnapshotId"])

    result = invoke(terminated["instance"], "--code", "LOL")

    assert result.exit_code == 1
    assert "snapshot(s) %s of %s are gone or not Broom's" % (
        snapshot["SnapshotId"], terminated["instance"]) in result.output
    assert "Recycle Bin" in result.output


def test_nothing_to_restore_is_one_clear_line(aws, state_table):
    result = invoke("i-0123456789abcdef0")
    assert result.exit_code == 1
    assert result.output == ("broom restore: nothing to restore: Broom took no snapshots "
                             "of i-0123456789abcdef0 in us-east-1 (account 123456789012)\n")


def test_an_instance_still_in_quarantine_has_nothing_to_restore(clock, inbox,  # noqa: F811
                                                               state_table):
    [instance] = launch()
    run(sweep(), inbox)
    assert record_of(instance).step == quarantine.NOTICE

    result = invoke(instance, "--code", "LOL")

    assert result.exit_code == 1
    assert "nothing to restore for %s: Broom has not snapshotted it (its quarantine is at " \
        "step 'notice')" % instance in result.output


def test_plan_keeps_the_block_device_mapping():
    record = quarantine.Record(
        "i-1", 0, 0, 0, quarantine.TERMINATED, 10, snapshots=("snap-1", "snap-2"),
        allowed=("LOL",), instance={
            "InstanceType": "t3.micro", "RootDeviceName": "/dev/xvda",
            "Tags": [{"Key": "Code", "Value": "LOL"}],
            "Devices": [
                {"DeviceName": "/dev/xvda", "SnapshotId": "snap-1", "VolumeSize": 8,
                 "VolumeType": "gp3", "Iops": 3000, "Throughput": 125,
                 "DeleteOnTermination": True},
                {"DeviceName": "/dev/sdf", "SnapshotId": "snap-2", "VolumeSize": 100,
                 "VolumeType": "gp2", "Iops": 300, "DeleteOnTermination": False}]})

    found = restore.plan(record, now=20)

    assert found.code == "LOL"
    assert found.image["RootDeviceName"] == "/dev/xvda"
    assert found.image["BlockDeviceMappings"] == [
        {"DeviceName": "/dev/xvda", "Ebs": {"SnapshotId": "snap-1", "DeleteOnTermination": True,
                                            "VolumeSize": 8, "VolumeType": "gp3",
                                            "Iops": 3000, "Throughput": 125}},
        {"DeviceName": "/dev/sdf", "Ebs": {"SnapshotId": "snap-2", "DeleteOnTermination": False,
                                           "VolumeSize": 100, "VolumeType": "gp2"}}]


def test_doctor_lists_the_quarantine_snapshots_and_warns_about_expired_ones(aws):
    from broom import doctor

    ec2 = boto3.client("ec2", region_name=REGION)
    volume = ec2.create_volume(AvailabilityZone="us-east-1a", Size=8)["VolumeId"]
    made = {}
    for instance, expires in (("i-old", "2027-01-01T00:00:00Z"),
                              ("i-new", "2027-03-01T00:00:00Z")):
        made[instance] = ec2.create_snapshot(VolumeId=volume, TagSpecifications=[{
            "ResourceType": "snapshot", "Tags": [
                {"Key": "broom:snapshot", "Value": "quarantine"},
                {"Key": "broom:instance-id", "Value": instance},
                {"Key": "broom:expires", "Value": expires}]}])["SnapshotId"]
    ec2.create_snapshot(VolumeId=volume)  # not Broom's
    session = boto3.Session(region_name=REGION)

    check = doctor.check_snapshots(session, now="2027-02-01T00:00:00Z")

    assert check.line() == (
        "warn quarantine snapshots: 1 past their broom:expires date, still billed until "
        "deleted (broom restore first if they are wanted; then aws ec2 delete-snapshot): "
        "2, 16 GiB: %s of i-old (8 GiB, expires 2027-01-01T00:00:00Z), %s of i-new "
        "(8 GiB, expires 2027-03-01T00:00:00Z)" % (made["i-old"], made["i-new"]))
    assert doctor.check_snapshots(session, now="2026-12-01T00:00:00Z").status == doctor.OK


def test_doctor_says_none_without_quarantine_snapshots(aws):
    from broom import doctor

    check = doctor.check_snapshots(boto3.Session(region_name=REGION))
    assert check.line() == "ok   quarantine snapshots: none"


def test_a_second_restore_is_refused_naming_the_first_replacement(terminated):
    first = invoke(terminated["instance"], "--code", "LOL")
    assert first.exit_code == 0, first.output
    new_id = first.output.strip().splitlines()[-1].split()[1].rstrip(",")

    again = invoke(terminated["instance"], "--code", "LOL")

    assert again.exit_code == 1
    assert again.output == ("broom restore: %s was restored already as %s (running): "
                            "terminate it first to restore it again\n" % (
                                terminated["instance"], new_id))
    boto3.client("ec2", region_name=REGION).terminate_instances(InstanceIds=[new_id])
    assert invoke(terminated["instance"], "--code", "LOL").exit_code == 0


def test_an_instance_broom_snapshotted_but_could_not_terminate_is_not_restored_beside_it(
        clock, inbox, state_table, monkeypatch):  # noqa: F811
    from test_quarantine import refusing

    [instance] = launch()
    for _ in range(2):
        run(sweep(**ZERO), inbox)
    with monkeypatch.context() as patched:
        refusing(patched, "TerminateInstances", "OperationNotPermitted")
        run(sweep(**ZERO), inbox)
    assert record_of(instance).step == quarantine.SNAPSHOTTED
    assert states([instance]) == {instance: "stopped"}

    result = invoke(instance, "--code", "LOL", "--dry-run")

    assert result.exit_code == 1
    assert result.output == (
        "broom restore: %s is still there (stopped): Broom did not terminate it, so there "
        "is nothing to restore; start it and set its Code tag to keep it\n" % instance)


def test_restore_brings_back_data_volumes_and_the_instance_profile(
        clock, inbox, state_table, monkeypatch):  # noqa: F811
    iam = boto3.client("iam", region_name=REGION)
    profile = iam.create_instance_profile(InstanceProfileName="builder")["InstanceProfile"]
    ec2 = boto3.client("ec2", region_name=REGION)
    [made] = ec2.run_instances(
        ImageId=IMAGE, MinCount=1, MaxCount=1, InstanceType="t3.small",
        IamInstanceProfile={"Arn": profile["Arn"]})["Instances"]
    instance = made["InstanceId"]
    data = ec2.create_volume(AvailabilityZone=made["Placement"]["AvailabilityZone"],
                             Size=50, VolumeType="gp3")["VolumeId"]
    ec2.attach_volume(VolumeId=data, InstanceId=instance, Device="/dev/sdf")
    volumes = {m["DeviceName"]: m["Ebs"]["VolumeId"]
               for m in described(instance)["BlockDeviceMappings"]}
    assert set(volumes) == {made["RootDeviceName"], "/dev/sdf"}
    for _ in range(3):
        run(sweep(**ZERO), inbox)
    assert states([instance]) == {instance: "terminated"}
    by_volume = {s["VolumeId"]: s["SnapshotId"] for s in snapshots_of(instance)}
    assert set(by_volume) == set(volumes.values())

    # moto registers an image without its block device mapping: what Broom asks
    # RegisterImage for is what is checked
    from botocore.client import BaseClient
    original, registered = BaseClient._make_api_call, []

    def recording(client, name, params):
        if name == "RegisterImage":
            registered.append(params)
        return original(client, name, params)

    monkeypatch.setattr(BaseClient, "_make_api_call", recording)

    result = invoke(instance, "--code", "BRB")

    assert result.exit_code == 0, result.output
    new = described(result.output.strip().splitlines()[-1].split()[1].rstrip(","))
    assert new["IamInstanceProfile"]["Arn"] == profile["Arn"]
    [image] = registered
    mapped = {m["DeviceName"]: m["Ebs"] for m in image["BlockDeviceMappings"]}
    assert {d: e["SnapshotId"] for d, e in mapped.items()} == {
        device: by_volume[volume] for device, volume in volumes.items()}
    assert image["RootDeviceName"] == made["RootDeviceName"]
    assert (mapped["/dev/sdf"]["VolumeSize"], mapped["/dev/sdf"]["VolumeType"]) == (50, "gp3")
