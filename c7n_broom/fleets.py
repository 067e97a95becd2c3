"""Fleets relaunch what Broom terminates: name them, and say what to fix there.

An Auto Scaling group, Spot Fleet, EC2 Fleet or persistent spot request without the
Code tag relaunches an untagged instance for every one Broom terminates, forever.
Reports say which fleet to fix, and ``creator-report`` reports such a relaunch loop
at most once a period.

Which fleet an instance belongs to is read only from what its launcher cannot set:
the ``aws:`` tags AWS puts on fleet instances (``FLEET_TAGS``) and the type of its
spot request, from EC2 (only a persistent request relaunches; a one-time spot
instance is a plain instance). When a fleet was last reported is kept in Broom's
state table (``c7n_broom.state``), never in a tag the fleet's owner could set.
"""
import logging

from botocore.exceptions import ClientError
from c7n.utils import chunks, local_session

from c7n_broom import invocation, report
from c7n_broom.instances import DENIED

log = logging.getLogger("custodian.broom.fleets")

ASG = "Auto Scaling group"
SPOT_FLEET = "Spot Fleet request"
EC2_FLEET = "EC2 Fleet"
SPOT_REQUEST = "spot request"

# Tags AWS puts on the instances a fleet launches. Users cannot set ``aws:`` tags, so
# these are the only tags Broom trusts to say an instance belongs to a fleet.
FLEET_TAGS = (
    ("aws:autoscaling:groupName", ASG),
    ("aws:ec2spot:fleet-request-id", SPOT_FLEET),
    ("aws:ec2:fleet-id", EC2_FLEET),
)
FIX = {
    ASG: "add a Code tag with PropagateAtLaunch to the group (or to its launch "
         "template's instance tags); until then it relaunches untagged instances",
    SPOT_FLEET: "add a Code tag to the request's launch specification or "
                "template (TagSpecifications for instances)",
    EC2_FLEET: "add a Code tag to the fleet's launch template (instance tags)",
    SPOT_REQUEST: "a persistent spot request relaunches its instance: cancel it, or "
                  "request again with a Code tag",
}
#: How many other instances of a fleet its report lists ("Also in group"); more are
#: counted.
LISTED_MEMBERS = 20
REQUEST_NOT_FOUND = "InvalidSpotInstanceRequestID.NotFound"


def fleet_of(resource, persistent_spot_requests=frozenset()):
    """(kind, id) of the Auto Scaling group, Spot Fleet or EC2 Fleet an instance
    belongs to, from the ``aws:`` tags AWS puts on its instances; or of its spot
    request if that request is in ``persistent_spot_requests`` (ids EC2 describes as
    persistent: ``persistent_spot_requests``); None otherwise.

    A one-time spot instance is a plain instance: it is not relaunched, and nothing
    its launcher can set (tags, on the instance or the request) makes it a fleet.
    """
    tags = {t.get("Key"): t.get("Value") for t in resource.get("Tags") or ()
            if isinstance(t, dict)}
    for key, kind in FLEET_TAGS:
        if tags.get(key):
            return kind, tags[key]
    request = resource.get("SpotInstanceRequestId")
    if request and resource.get("InstanceLifecycle") == "spot" and (
            request in persistent_spot_requests):
        return SPOT_REQUEST, request
    return None


def notes(fleet):
    """What a report says about an instance's ``fleet`` ((kind, id) or None)."""
    if not fleet:
        return {}
    return {"Managed by": "%s %s (relaunches what is terminated)" % fleet,
            "Fix there": FIX[fleet[0]]}


def one_per_fleet(items, table, policy, event_id, period):
    """One report.Group per instance outside fleets, and per fleet and outcome.

    ``items`` are (Finding, Outcome, fleet) triples. Throttling exists only to keep a
    relaunch loop (each relaunched instance terminated) from flooding the topic: a
    fleet's terminated instances are not reported if the fleet was reported within
    ``period`` seconds (``table.claim_fleet``); their reports for ``event_id`` are
    settled as sent. Its instances left running are always reported.
    """
    by_fleet, groups, slots = {}, [], {}
    for finding, outcome, fleet in items:
        if fleet is None:
            groups.append(report.Group(finding, outcome, [finding.instance_id]))
        else:
            by_fleet.setdefault((fleet, outcome.status), []).append((finding, outcome))
    for (fleet, _), members in by_fleet.items():
        ids = [finding.instance_id for finding, _ in members]
        slot = None
        if all(outcome.gone for _, outcome in members):
            if fleet not in slots:
                fresh, when = table.claim_fleet(policy, fleet, period)
                slots[fleet] = (fleet, when) if fresh else None
            slot = slots[fleet]
            if slot is None:
                log.info("%s %s was reported less than %ss ago and its %d instance(s) "
                         "here were terminated: not reported again", fleet[0], fleet[1],
                         period, len(members))
                table.settle_reports(policy, event_id, ids)
                continue
        finding, outcome = members[0]
        if ids[1:]:
            finding.extra["Also in group"] = "%s%s" % (
                ", ".join(ids[1:LISTED_MEMBERS + 1]),
                " and %d more" % (len(ids) - LISTED_MEMBERS - 1)
                if len(ids) > LISTED_MEMBERS + 1 else "")
        groups.append(report.Group(finding, outcome, ids, slot))
    return groups


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
            response = invocation.retry(  # back-off within the invocation's time
                client.describe_spot_instance_requests, SpotInstanceRequestIds=batch)
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code in DENIED:
                log.warning("cannot read spot requests %s (%s): their instances are "
                            "reported as plain instances; allow "
                            "ec2:DescribeSpotInstanceRequests", ", ".join(batch), code)
                return found
            if code != REQUEST_NOT_FOUND:
                raise
            if len(batch) > 1:  # one unknown id fails the call: ask one by one
                for request_id in batch:
                    found.update(_persistent(manager, client, [request_id]))
            continue
        found.update(request["SpotInstanceRequestId"]
                     for request in response.get("SpotInstanceRequests", ())
                     if request.get("Type") == "persistent")
    return found
