"""What Broom reads about EC2 instances besides c7n's describe, and the names it reads.

The state names and AWS error codes Broom acts on are defined here once: which
instances still exist, which are on their way out, which ids EC2 does not know, and
which refusals mean Broom's role lacks a permission. The reads are the current state
of instances (``creator-report`` reports what EC2 shows after the earlier actions) and
their tags by DescribeTags (``allowed-codes`` re-reads a Code tag that DescribeInstances
does not show yet, or that a tool sets in a separate call just after launch).
"""
import logging
import time
from datetime import timezone

from botocore.exceptions import ClientError
from c7n.utils import chunks, local_session

from c7n_broom import invocation
from c7n_broom.events import get_path, parse_time

log = logging.getLogger("custodian.broom.instances")

#: States of an instance that still exists.
LIVE_STATES = ("pending", "running", "stopping", "stopped")
#: States of an instance on its way out: what a confirmed termination shows.
GONE_STATES = ("shutting-down", "terminated")

NOT_FOUND = "InvalidInstanceID.NotFound"
MALFORMED = "InvalidInstanceID.Malformed"
#: EC2 does not know the id: not visible yet after launch, long gone, or no id at all.
UNKNOWN_ID_ERRORS = (NOT_FOUND, MALFORMED)
#: Broom's role may not make the call: EC2 answers UnauthorizedOperation, DynamoDB
#: AccessDeniedException, most other services AccessDenied.
DENIED = ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException")

#: Seconds before the first tag re-read while ``grace-seconds`` lasts (each next
#: pause is twice as long).
GRACE_INTERVAL = 2
#: Without an event, DescribeInstances shows the tags of an instance launched longer
#: ago than this: only younger ones have their tags re-read.
SETTLED_AFTER = 300


def state(resource):
    """An instance's state name as c7n described it; None when not shown."""
    return get_path(resource, "State", "Name")


def just_launched(resource, now, seconds=SETTLED_AFTER):
    """True when an instance started less than ``seconds`` before ``now`` (or EC2
    shows no launch time): its tags may not show in DescribeInstances yet."""
    launched = parse_time(resource.get("LaunchTime"))
    return launched is None or (now - launched).total_seconds() < seconds


def launch_marker(resource):
    """What tells an instance's launch apart and survives a stop and start (which
    gives it a new ``LaunchTime``): the attach time of its root EBS volume, else of
    its primary network interface (device 0), else its launch time; as
    ``YYYY-MM-DDTHH:MM:SSZ``, or "none" when EC2 shows none of them."""
    times = [get_path(m, "Ebs", "AttachTime") for m in resource.get("BlockDeviceMappings") or ()
             if isinstance(m, dict) and m.get("DeviceName") == resource.get("RootDeviceName")]
    times += [get_path(eni, "Attachment", "AttachTime")
              for eni in resource.get("NetworkInterfaces") or ()
              if get_path(eni, "Attachment", "DeviceIndex") == 0]
    for value in times + [resource.get("LaunchTime")]:
        parsed = parse_time(value)
        if parsed is not None:
            return parsed.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return "none"


def current_states(manager, instance_ids):
    """{instance id: state name} as EC2 shows them now; ids EC2 does not know are
    left out."""
    return {i: instance["State"]["Name"]
            for i, instance in described(manager, instance_ids).items()}


def described(manager, instance_ids):
    """{instance id: DescribeInstances' instance} as EC2 shows them now; ids EC2 does
    not know are left out."""
    client = local_session(manager.session_factory).client("ec2")
    found = {}
    for batch in chunks(instance_ids, 100):
        try:
            response = invocation.retry(client.describe_instances, InstanceIds=batch)
        except ClientError as e:
            if e.response["Error"]["Code"] != NOT_FOUND:
                raise
            if len(batch) > 1:  # one unknown id fails the call: ask one by one
                for instance_id in batch:
                    found.update(described(manager, [instance_id]))
            continue
        for reservation in response.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                found[instance["InstanceId"]] = instance
    return found


def late_tags(manager, client, instance_ids, key):
    """{instance id: {key: value}} for the ``key`` tags DescribeTags shows on these
    instances (every tag when ``key`` is None). Without ec2:DescribeTags a warning says
    to add it, and what was read so far is returned."""
    found = {}
    for batch in chunks(instance_ids, 100):
        try:
            pages = invocation.retry(  # back-off within the invocation's time
                client.describe_tags,
                Filters=[{"Name": "resource-id", "Values": batch}] + (
                    [{"Name": "key", "Values": [key]}] if key is not None else []))
        except ClientError as e:
            if e.response["Error"]["Code"] in DENIED:
                log.warning("cannot re-read tags (%s): add ec2:DescribeTags to the "
                            "execution role", e.response["Error"]["Code"])
                return found
            raise
        for tag in pages.get("Tags", []):
            found.setdefault(tag["ResourceId"], {})[tag["Key"]] = tag.get("Value", "")
    return found


def wait_for_tags(manager, client, key, resources, grace,
                  clock=time.monotonic, sleep=time.sleep):
    """{instance id: {key: value}}: the ``key`` tags DescribeTags shows on
    ``resources``, waiting up to ``grace`` seconds for live instances to get one.

    Tools that tag in a separate CreateTags call just after RunInstances race the
    check; only instances with no tag at all should be given here, so compliant
    launches and wrong values cost nothing. The tags are read after widening pauses
    (GRACE_INTERVAL seconds, then twice as long each time) and a last time when
    ``grace`` ends, stopping once each live instance has one: a violation costs a
    few calls, not one every GRACE_INTERVAL. They are read at least once, at once
    when there is nothing to wait for (no live instance: a repeated event) or the
    invocation cannot afford the wait (``invocation.affords``).
    """
    live = {r["InstanceId"] for r in resources if state(r) in LIVE_STATES}
    asked = [r["InstanceId"] for r in resources]
    deadline = clock() + grace
    found, pause, read = {}, GRACE_INTERVAL, False
    while asked:
        left = deadline - clock()
        step = min(pause, max(0.0, left))
        waits = left > 0 and not live.isdisjoint(asked)
        if waits and not invocation.affords(step):  # the margin to report is worth more
            log.info("invocation near its deadline: no longer waiting for %s tags", key)
            waits = False
        if read and not waits:
            break
        if waits:
            sleep(step)
            pause *= 2
        found.update(late_tags(manager, client, asked, key))
        read = True
        asked = [i for i in asked if i not in found and i in live]
    if asked:
        log.info("%d instance(s) still without a %s tag after %ss", len(asked), key, grace)
    return found
