"""Fleets relaunch what Broom terminates: name them, and report each at most once a period.

An Auto Scaling group, Spot Fleet or EC2 Fleet without the Code tag relaunches an
untagged instance for every one Broom terminates, forever. Reports say which group
to fix; a marker tag on the group itself (``broom:last-report``, epoch seconds)
keeps a relaunch loop from flooding the topic. The marker lives where the fix is
needed, costs no extra infrastructure, and is visible to the group's owners.
"""
import logging

from botocore.exceptions import ClientError
from c7n.utils import local_session

log = logging.getLogger("custodian.broom.fleets")

MARKER = "broom:last-report"
ASG = "Auto Scaling group"

FIX = {
    ASG: "add a Code tag with PropagateAtLaunch to the group (or to its launch "
         "template's instance tags); until then it relaunches untagged instances",
    "Spot Fleet request": "add a Code tag to the request's launch specification or "
                          "template (TagSpecifications for instances)",
    "EC2 Fleet": "add a Code tag to the fleet's launch template (instance tags)",
    "spot request": "a persistent spot request relaunches its instance: cancel it, or "
                    "request again with a Code tag",
}
DENIED = ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation")


def last_report(session_factory, region, fleet):
    """Epoch seconds of the last report for ``fleet`` ((kind, id)), or None."""
    kind, fleet_id = fleet
    try:
        if kind == ASG:
            client = local_session(session_factory).client("autoscaling", region_name=region)
            tags = client.describe_tags(Filters=[
                {"Name": "auto-scaling-group", "Values": [fleet_id]},
                {"Name": "key", "Values": [MARKER]}]).get("Tags", [])
        else:
            client = local_session(session_factory).client("ec2", region_name=region)
            tags = client.describe_tags(Filters=[
                {"Name": "resource-id", "Values": [fleet_id]},
                {"Name": "key", "Values": [MARKER]}]).get("Tags", [])
    except ClientError as e:
        if e.response["Error"]["Code"] not in DENIED + ("InvalidID", "ValidationError"):
            raise
        log.warning("cannot read %s on %s %s (%s): reporting anyway", MARKER, kind,
                    fleet_id, e.response["Error"]["Code"])
        return None
    for tag in tags:
        try:
            return float(tag.get("Value", ""))
        except ValueError:
            return None
    return None


def mark_reported(session_factory, region, fleet, when):
    """Record on the group that it was reported at ``when`` (epoch seconds)."""
    kind, fleet_id = fleet
    value = "%d" % when
    try:
        if kind == ASG:
            local_session(session_factory).client(
                "autoscaling", region_name=region).create_or_update_tags(Tags=[{
                    "ResourceId": fleet_id, "ResourceType": "auto-scaling-group",
                    "Key": MARKER, "Value": value, "PropagateAtLaunch": False}])
        else:
            local_session(session_factory).client("ec2", region_name=region).create_tags(
                Resources=[fleet_id], Tags=[{"Key": MARKER, "Value": value}])
    except ClientError as e:
        if e.response["Error"]["Code"] not in DENIED + ("InvalidID", "ValidationError"):
            raise
        log.warning("cannot tag %s %s with %s (%s): its next relaunch is reported again",
                    kind, fleet_id, MARKER, e.response["Error"]["Code"])
