"""``broom restore INSTANCE_ID``: bring back an instance Broom's quarantine terminated.

Before terminating an instance with history, the quarantine (c7n_broom/quarantine.py)
snapshots every EBS volume and records, in Broom's state table, what the instance
was: type, subnet, security groups, instance profile, key pair, tags and block
devices, each with its snapshot. Restoring registers an image from those snapshots
(the original block device mapping, root device included) and launches one
replacement with the original settings and tags, its Code set to an allowed code.

The record is the source (only Broom's role writes the table); each snapshot must
still exist and carry Broom's ``broom:instance-id`` tag naming the instance. No
replacement is launched beside the instance itself or an earlier replacement.
"""
from dataclasses import dataclass
from datetime import datetime, timezone

from botocore.exceptions import BotoCoreError, ClientError

from c7n_broom import quarantine, snapshots, state


class RestoreError(Exception):
    """Nothing can be restored, or the restore failed: one line saying why."""


@dataclass(frozen=True)
class Plan:
    """What ``broom restore`` registers and launches."""

    record: quarantine.Record
    code_key: str
    code: str
    image: dict  # RegisterImage's parameters
    launch: dict  # RunInstances' parameters, ImageId left out

    def lines(self):
        settings = self.record.instance
        devices = self.image["BlockDeviceMappings"]
        return [
            "Instance %s: terminated by Broom at %s after its quarantine (started %s)." % (
                self.record.instance_id, quarantine.moment(self.record.step_at),
                quarantine.moment(self.record.first)),
            "  image:     %s from %s" % (self.image["Name"], ", ".join(
                "%s (%s%s)" % (d["Ebs"]["SnapshotId"], d["DeviceName"],
                               ", root" if d["DeviceName"] == self.image["RootDeviceName"]
                               else "") for d in devices)),
            "  instance:  %s in %s, security groups %s, instance profile %s, key pair %s" % (
                settings.get("InstanceType"), settings.get("SubnetId") or "the default subnet",
                ", ".join(settings.get("SecurityGroupIds") or ()) or "(default)",
                settings.get("IamInstanceProfile") or "(none)",
                settings.get("KeyName") or "(none)"),
            "  tags:      %s" % ", ".join("%s=%s" % (t["Key"], t["Value"]) for t in
                                          self.launch["TagSpecifications"][0]["Tags"]),
        ]


def load(session, region, account_id, instance_id, table=state.DEFAULT_TABLE, now=None):
    """The quarantine Record of ``instance_id``, or None."""
    client = session.client("dynamodb", region_name=region)
    try:
        response = client.get_item(TableName=table, ConsistentRead=True, Key={
            state.KEY: {"S": quarantine.record_key(account_id, region, instance_id)}})
    except (BotoCoreError, ClientError) as e:
        raise RestoreError("cannot read Broom's state table %s in %s: %s" % (
            table, region, e))
    item = response.get("Item")
    now = now if now is not None else datetime.now(timezone.utc).timestamp()
    return quarantine.Record.from_item(item, now) if item else None


def tagged_snapshots(ec2, instance_id):
    """Snapshot ids tagged by Broom as taken of ``instance_id``."""
    pages = ec2.get_paginator("describe_snapshots").paginate(OwnerIds=["self"], Filters=[
        {"Name": "tag:%s" % snapshots.TAG_INSTANCE, "Values": [instance_id]}])
    return sorted(s["SnapshotId"] for page in pages for s in page["Snapshots"])


def plan(record, code=None, now=None):
    """The Plan for a Record; RestoreError when it cannot be restored."""
    settings = record.instance
    if record.step not in (quarantine.TERMINATED, quarantine.SNAPSHOTTED) or not (
            record.snapshots and settings.get("Devices")):
        raise RestoreError(
            "nothing to restore for %s: Broom has not snapshotted it (its quarantine is "
            "at step %r%s)" % (record.instance_id, record.step, "" if record.step not in (
                quarantine.TERMINATED,) else ", terminated without snapshots"))
    tags = [dict(t) for t in settings.get("Tags") or ()]
    key = "Code"
    original = next((t["Value"] for t in tags if t["Key"] == key), None)
    allowed = record.allowed
    if code is None:
        if original is None or (allowed and original not in allowed):
            raise RestoreError(
                "pass --code: %s had %s, and the replacement needs an allowed code "
                "(allowed: %s)" % (record.instance_id, "no Code tag" if original is None
                                   else "Code=%s" % original, ", ".join(allowed) or "?"))
        code = original
    elif allowed and code not in allowed:
        raise RestoreError("--code %s is not an allowed code (allowed: %s)" % (
            code, ", ".join(allowed)))
    tags = [t for t in tags if t["Key"] != key] + [{"Key": key, "Value": code},
                                                  {"Key": "broom:restored-from",
                                                   "Value": record.instance_id}]
    devices = []
    for device in settings["Devices"]:
        ebs = {"SnapshotId": device["SnapshotId"],
               "DeleteOnTermination": bool(device.get("DeleteOnTermination", True))}
        for field in ("VolumeSize", "VolumeType", "Iops", "Throughput"):
            if device.get(field) and not (field == "Iops" and device.get("VolumeType") in (
                    "gp2", "standard", "st1", "sc1")) and not (
                    field == "Throughput" and device.get("VolumeType") != "gp3"):
                ebs[field] = device[field]
        devices.append({"DeviceName": device["DeviceName"], "Ebs": ebs})
    stamp = int(now if now is not None else datetime.now(timezone.utc).timestamp())
    image = {"Name": "broom-restore-%s-%d" % (record.instance_id, stamp),
             "Description": "Broom: %s from its quarantine snapshots" % record.instance_id,
             "RootDeviceName": settings.get("RootDeviceName") or devices[0]["DeviceName"],
             "BlockDeviceMappings": devices,
             "VirtualizationType": settings.get("VirtualizationType") or "hvm"}
    if settings.get("Architecture"):
        image["Architecture"] = settings["Architecture"]
    if settings.get("EnaSupport") is not None:
        image["EnaSupport"] = bool(settings["EnaSupport"])
    launch = {"InstanceType": settings["InstanceType"], "MinCount": 1, "MaxCount": 1,
              "TagSpecifications": [{"ResourceType": "instance", "Tags": tags}]}
    if settings.get("SubnetId"):
        launch["SubnetId"] = settings["SubnetId"]
    if settings.get("SecurityGroupIds"):
        launch["SecurityGroupIds"] = list(settings["SecurityGroupIds"])
    if settings.get("IamInstanceProfile"):
        launch["IamInstanceProfile"] = {"Arn": settings["IamInstanceProfile"]}
    if settings.get("KeyName"):
        launch["KeyName"] = settings["KeyName"]
    return Plan(record, key, code, image, launch)


def check_snapshots(ec2, record):
    """RestoreError unless each snapshot of the record is there, tagged by Broom as
    taken of this instance."""
    try:
        found = ec2.describe_snapshots(SnapshotIds=list(record.snapshots))["Snapshots"]
    except ClientError as e:
        if e.response["Error"]["Code"] != "InvalidSnapshot.NotFound":
            raise RestoreError("cannot read the snapshots %s: %s" % (
                ", ".join(record.snapshots), e))
        found = []
    ok = {s["SnapshotId"] for s in found
          if {t["Key"]: t["Value"] for t in s.get("Tags") or ()}.get(
              snapshots.TAG_INSTANCE) == record.instance_id}
    missing = [s for s in record.snapshots if s not in ok]
    if missing:
        raise RestoreError(
            "snapshot(s) %s of %s are gone or not Broom's: deleted ones may still be in "
            "the Recycle Bin (aws rbin list-rules; aws ec2 list-snapshots-in-recycle-bin, "
            "then restore-snapshot-from-recycle-bin) for as long as its rule keeps them" % (
                ", ".join(missing), record.instance_id))


#: States of an instance that is still there (not to be restored beside itself).
LIVE_STATES = ("pending", "running", "stopping", "stopped")


def check_not_there(ec2, record):
    """RestoreError when the instance itself is still there (its termination failed or
    was refused: start it instead), or was restored already (a second run would
    launch a second replacement)."""
    def live(filters):
        pages = ec2.get_paginator("describe_instances").paginate(Filters=filters + [{
            "Name": "instance-state-name", "Values": list(LIVE_STATES)}])
        return sorted((i["InstanceId"], i["State"]["Name"]) for page in pages
                      for r in page["Reservations"] for i in r["Instances"])

    try:
        itself = live([{"Name": "instance-id", "Values": [record.instance_id]}])
        restored = live([{"Name": "tag:broom:restored-from",
                          "Values": [record.instance_id]}])
    except (BotoCoreError, ClientError) as e:
        raise RestoreError("cannot check whether %s is still there: %s" % (
            record.instance_id, e))
    if itself:
        raise RestoreError(
            "%s is still there (%s): Broom did not terminate it, so there is nothing to "
            "restore; start it and set its Code tag to keep it" % (
                record.instance_id, itself[0][1]))
    if restored:
        raise RestoreError(
            "%s was restored already as %s: terminate %s first to restore it again" % (
                record.instance_id, ", ".join("%s (%s)" % r for r in restored),
                "it" if len(restored) == 1 else "them"))


def restore(session, region, account_id, instance_id, code=None, dry_run=False,
            table=state.DEFAULT_TABLE, echo=print):
    """Restore ``instance_id``; returns the new instance id (None on a dry run)."""
    ec2 = session.client("ec2", region_name=region)
    record = load(session, region, account_id, instance_id, table)
    if record is None:
        try:
            left = tagged_snapshots(ec2, instance_id)
        except (BotoCoreError, ClientError) as e:
            raise RestoreError("no quarantine record of %s in %s, and its snapshots "
                               "cannot be listed: %s" % (instance_id, table, e))
        if left:
            raise RestoreError(
                "no quarantine record of %s in Broom's state table %s (%s) any more, but "
                "Broom's snapshots %s are there: register an image from them by hand "
                "(aws ec2 register-image)" % (instance_id, table, region, ", ".join(left)))
        raise RestoreError("nothing to restore: Broom took no snapshots of %s in %s "
                           "(account %s)" % (instance_id, region, account_id))
    found = plan(record, code)
    check_not_there(ec2, record)
    check_snapshots(ec2, record)
    for line in found.lines():
        echo(line)
    if dry_run:
        echo("Dry run: nothing registered or launched.")
        return None
    try:
        image_id = ec2.register_image(**found.image)["ImageId"]
    except (BotoCoreError, ClientError) as e:
        raise RestoreError("RegisterImage failed: %s" % e)
    echo("Registered image %s." % image_id)
    try:
        [launched] = ec2.run_instances(ImageId=image_id, **found.launch)["Instances"]
    except (BotoCoreError, ClientError) as e:
        raise RestoreError("RunInstances failed (image %s is registered: launch it by "
                           "hand with the settings above): %s" % (image_id, e))
    echo("Launched %s, restoring %s." % (launched["InstanceId"], instance_id))
    return launched["InstanceId"]
