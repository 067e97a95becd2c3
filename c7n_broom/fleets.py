"""Fleets relaunch what Broom terminates: name them, and say what to fix there.

An Auto Scaling group, Spot Fleet, EC2 Fleet or persistent spot request without the
Code tag relaunches an untagged instance for every one Broom terminates, forever.
Reports say which fleet to fix, and ``creator-report`` reports such a relaunch loop
at most once a period.

Which fleet an instance belongs to is read only from what its launcher cannot set:
the ``aws:`` tags AWS puts on fleet instances (``decisions.FLEET_TAGS``) and the type
of its spot request, from EC2 (only a persistent request relaunches; a one-time spot
instance is a plain instance). When a fleet was last reported is kept in Broom's
state table (``c7n_broom.state``), never in a tag the fleet's owner could set.
"""
import logging

from botocore.exceptions import ClientError
from c7n.utils import chunks, local_session

log = logging.getLogger("custodian.broom.fleets")

ASG = "Auto Scaling group"
SPOT_REQUEST = "spot request"

FIX = {
    ASG: "add a Code tag with PropagateAtLaunch to the group (or to its launch "
         "template's instance tags); until then it relaunches untagged instances",
    "Spot Fleet request": "add a Code tag to the request's launch specification or "
                          "template (TagSpecifications for instances)",
    "EC2 Fleet": "add a Code tag to the fleet's launch template (instance tags)",
    SPOT_REQUEST: "a persistent spot request relaunches its instance: cancel it, or "
                  "request again with a Code tag",
}
DENIED = ("UnauthorizedOperation",)
NOT_FOUND = "InvalidSpotInstanceRequestID.NotFound"


def persistent_spot_requests(manager, resources):
    """Ids of the persistent spot requests that launched ``resources``, as EC2
    describes them (DescribeSpotInstanceRequests: ``Type``). Requests EC2 does not
    know, or cannot be read, count as one-time: their instances are plain instances,
    reported one by one and never throttled."""
    ids = sorted({r["SpotInstanceRequestId"] for r in resources
                  if r.get("InstanceLifecycle") == "spot" and r.get("SpotInstanceRequestId")})
    if not ids:
        return frozenset()
    client = local_session(manager.session_factory).client("ec2")
    return frozenset(_persistent(manager, client, ids))


def _persistent(manager, client, ids):
    found = set()
    for batch in chunks(ids, 100):
        try:
            response = manager.retry(client.describe_spot_instance_requests,
                                     SpotInstanceRequestIds=batch)
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code in DENIED:
                log.warning("cannot read spot requests %s (%s): their instances are "
                            "reported as plain instances; allow "
                            "ec2:DescribeSpotInstanceRequests", ", ".join(batch), code)
                return found
            if code != NOT_FOUND:
                raise
            if len(batch) > 1:  # one unknown id fails the call: ask one by one
                for request_id in batch:
                    found.update(_persistent(manager, client, [request_id]))
            continue
        found.update(request["SpotInstanceRequestId"]
                     for request in response.get("SpotInstanceRequests", ())
                     if request.get("Type") == "persistent")
    return found
