"""Broom's snapshots of a quarantined instance: taken, confirmed, tagged, and the
blueprint ``broom restore`` launches again from (c7n_broom.quarantine).

``CreateSnapshots`` snapshots every attached EBS volume of an instance at once
(crash-consistent); EC2 answers with the ids, and ``confirm`` waits (a few seconds at
most) until DescribeSnapshots shows each at least ``pending``. Broom's tags name the
instance, the quarantine, the event and the expiry; the instance's own tags follow, as
many as fit (``aws:`` and ``broom:`` keys excepted: the owner cannot forge Broom's).
"""
import time
from datetime import datetime

from botocore.exceptions import ClientError

#: Broom's tags on its snapshots. ``broom:snapshot`` is what the Recycle Bin rule
#: (templates/account.yml) matches; ``broom:expires`` what ``broom doctor`` lists.
TAG_INSTANCE = "broom:instance-id"
TAG_QUARANTINE = "broom:quarantine"
TAG_EVENT = "broom:event"
TAG_EXPIRES = "broom:expires"
TAG_KIND = "broom:snapshot"
KIND = "quarantine"
#: Snapshots take at most 50 tags: Broom's own, then as many of the instance's.
MAX_TAGS = 50
#: DescribeSnapshots after CreateSnapshots until each shows pending: this often,
#: this many seconds apart.
CONFIRM_ATTEMPTS, CONFIRM_INTERVAL = 5, 2


class SnapshotError(Exception):
    """EC2 did not confirm the snapshots a termination needs."""


def ebs_volumes(resource):
    """{volume id: device name} of an instance's attached EBS volumes."""
    return {m["Ebs"]["VolumeId"]: m.get("DeviceName", "")
            for m in resource.get("BlockDeviceMappings") or ()
            if isinstance(m.get("Ebs"), dict) and m["Ebs"].get("VolumeId")}


def user_tags(resource):
    """The instance's tags a user may set again (not ``aws:``, not Broom's)."""
    return [{"Key": t["Key"], "Value": t.get("Value", "")}
            for t in resource.get("Tags") or ()
            if isinstance(t, dict) and isinstance(t.get("Key"), str)
            and not t["Key"].startswith(("aws:", "broom:"))]


def snapshot_tags(resource, record, expires):
    """Broom's tags, naming the instance, the quarantine, the event and the expiry,
    then the instance's own (as many as fit in EC2's 50)."""
    own = [{"Key": TAG_KIND, "Value": KIND},
           {"Key": TAG_INSTANCE, "Value": record.instance_id},
           {"Key": TAG_QUARANTINE, "Value": record.quarantine_id},
           {"Key": TAG_EVENT, "Value": record.event[:256]},
           {"Key": TAG_EXPIRES, "Value": expires}]
    return own + user_tags(resource)[:MAX_TAGS - len(own)]


def reusable(found, since):
    """[(snapshot id, volume id, state)]: of ``found`` (DescribeSnapshots' entries
    tagged with this quarantine, left by a run that died after CreateSnapshots), the
    newest of each volume started at or after ``since`` (epoch seconds: the record's
    last step, after which a run took them). A tag is no proof: whoever may tag
    snapshots could tag an older one of the volume, taken before the work Broom is
    keeping; such a snapshot is never used in place of Broom's own."""
    newest = {}
    for s in found:
        started = s.get("StartTime")
        if not s.get("SnapshotId") or not isinstance(started, datetime) or \
                started.timestamp() < since:
            continue
        if s.get("VolumeId") not in newest or started > newest[s["VolumeId"]]["StartTime"]:
            newest[s.get("VolumeId")] = s
    return [(s["SnapshotId"], v, s.get("State")) for v, s in sorted(newest.items())]


def confirm(ec2, retry, made, sleep=time.sleep):
    """[(snapshot id, volume id, state)] once DescribeSnapshots shows each of
    ``made`` ((snapshot id, volume id)) at least ``pending``; a few seconds at
    most (``sleep`` is injectable: tests pass their own), then what it shows."""
    ids = [s for s, _ in made if s]
    shown = {}
    for attempt in range(CONFIRM_ATTEMPTS):
        try:
            response = retry(ec2.describe_snapshots, SnapshotIds=ids)
        except ClientError as e:
            if e.response["Error"]["Code"] != "InvalidSnapshot.NotFound":
                raise
            response = {}
        shown = {s["SnapshotId"]: s.get("State") for s in response.get("Snapshots", ())}
        if all(shown.get(i) in ("pending", "completed") for i in ids):
            break
        if attempt + 1 < CONFIRM_ATTEMPTS:
            sleep(CONFIRM_INTERVAL)
    return [(s, v, shown.get(s) if s else None) for s, v in made]


def blueprint(ec2, retry, resource, taken):
    """What ``broom restore`` launches again: the instance's settings and its
    block devices, each with its snapshot."""
    volumes = ebs_volumes(resource)
    by_volume = {v: s for s, v, _ in taken}
    described = {}
    if volumes:
        for volume in retry(ec2.describe_volumes,
                                         VolumeIds=list(volumes)).get("Volumes", ()):
            described[volume["VolumeId"]] = volume
    devices = []
    for mapping in resource.get("BlockDeviceMappings") or ():
        volume_id = (mapping.get("Ebs") or {}).get("VolumeId")
        if volume_id not in by_volume:
            continue
        volume = described.get(volume_id, {})
        devices.append({
            "DeviceName": mapping.get("DeviceName"), "SnapshotId": by_volume[volume_id],
            "VolumeSize": volume.get("Size"), "VolumeType": volume.get("VolumeType"),
            "Iops": volume.get("Iops"), "Throughput": volume.get("Throughput"),
            "DeleteOnTermination": bool((mapping.get("Ebs") or {}).get(
                "DeleteOnTermination", True))})
    return {
        "InstanceType": resource.get("InstanceType"),
        "SubnetId": resource.get("SubnetId"),
        "SecurityGroupIds": [g["GroupId"] for g in resource.get("SecurityGroups") or ()
                             if g.get("GroupId")],
        "IamInstanceProfile": (resource.get("IamInstanceProfile") or {}).get("Arn"),
        "KeyName": resource.get("KeyName"),
        "Tags": user_tags(resource),
        "RootDeviceName": resource.get("RootDeviceName"),
        "Architecture": resource.get("Architecture"),
        "VirtualizationType": resource.get("VirtualizationType"),
        "EnaSupport": resource.get("EnaSupport"),
        "ImageId": resource.get("ImageId"),
        "Devices": devices,
    }
