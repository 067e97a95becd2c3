"""Check again, later, the instances the termination cap held back.

The cap (``safe-terminate``'s ``max-terminations``) stops one event, or one principal
within a period, from terminating many instances whose Code is set but not allowed:
that is what a bad code list looks like. Held instances are not forgotten:

1. Broom records a *hold* in its state table (which only Broom's roles write): the
   held instances, each with its launch marker (``instances.launch_marker``: the
   root volume's or primary network interface's attach time, which a stop and start
   does not change), the record of the launch or tag change they came from, and
   when they are due;
2. it creates a one-time EventBridge Scheduler schedule, in Broom's own schedule
   group, that invokes the function itself ``recheck-after`` seconds later. Its
   payload carries the hold's key and the instance ids c7n needs to describe them,
   nothing Broom trusts;
3. the re-check acts only on a recorded, due, unsettled hold (``verified``): on
   the instances it holds whose launch marker is unchanged, judged as they are by
   then, with the record Broom stored (who launched them, when). Those that still
   break the rule are terminated, unless the account was switched to report-only
   in the meantime; then the hold is settled. A payload naming anything else acts
   on nothing.
"""
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

import boto3
from botocore.exceptions import ClientError

from c7n_broom import events, instances, invocation, items, launch, state
from c7n_broom.decisions import REPORT_ONLY

log = logging.getLogger("custodian.broom.recheck")

MARKER = "broom-recheck"
#: EventBridge Scheduler accepts at most 8,192 characters of target input.
INPUT_LIMIT = 8192
#: The record fields a hold keeps: who launched, when, where (and nothing else:
#: no source IP, user agent or request parameters).
RECORD_FIELDS = ("eventVersion", "eventID", "eventTime", "eventName", "eventSource",
                 "awsRegion", "recipientAccountId", "userIdentity")
#: What a schedule's payload carries of the record: where to look (c7n needs it to
#: pick the account, region and policy), never who or when.
ROUTING_FIELDS = ("eventName", "eventSource", "awsRegion", "recipientAccountId")
DEFAULT_DELAY = 3600
SCHEDULER_ROLE = "broom-scheduler"
#: Broom's own schedule group: the scheduler role trusts schedules of this group only.
SCHEDULE_GROUP = "broom"
HELD, SETTLED = items.HOLD_STATUSES
#: A schedule may fire this early (clock skew) and still find its hold due.
EARLY = 60
#: The longest key a hold can have, for sizing payloads.
KEY_ROOM = 256


def now():
    """Epoch seconds (tests move time here)."""
    return time.time()


class Target:
    """The function being run, set by Broom's Lambda handler from its context:
    without one (``custodian run`` in pull mode, ``broom replay``) nothing is scheduled."""

    function_arn = None


@dataclass(frozen=True)
class Hold:
    """A hold as Broom recorded it."""

    key: str
    status: str
    due: float
    record: dict
    instances: dict  # instance id -> launch marker
    expires: float

    def item(self):
        return {state.KEY: {"S": self.key}, "status": {"S": self.status},
                "due": {"N": "%d" % self.due},
                "record": {"S": json.dumps(self.record, sort_keys=True)},
                "instances": {"M": {i: {"S": m} for i, m in self.instances.items()}},
                state.TTL_ATTRIBUTE: {"N": "%d" % self.expires}}

    @classmethod
    def from_item(cls, item):
        """The Hold of an item that ``items.problem`` accepts."""
        return cls(key=items.string(item, state.KEY), status=items.string(item, "status"),
                   due=float(items.number(item, "due")),
                   record=items.json_object(item, "record"),
                   instances={i: m["S"] for i, m in item["instances"]["M"].items()},
                   expires=float(items.number(item, state.TTL_ATTRIBUTE)))


def hold_key(event):
    """The hold a re-check event names (None for any other event)."""
    marker = event.get(MARKER) if isinstance(event, dict) else None
    key = marker.get("hold") if isinstance(marker, dict) else None
    return key if isinstance(key, str) and key.startswith("hold#") else None


def is_recheck(event):
    """True for an event that claims to be a re-check (verified or not)."""
    return isinstance(event, dict) and MARKER in event


def new_key(policy, account, region, event_id, index):
    """A hold's key: unique to the policy, account, region, event and batch, so a
    repeated delivery of the event finds it taken."""
    digest = hashlib.sha256(str(event_id).encode("utf-8", "replace")).hexdigest()[:32]
    return "hold#%s#%s#%s#%s-%d" % (policy, account, region, digest, index)


def kept_record(record, instance_ids):
    """The record a hold keeps: identity and timing, naming only the held instances
    (and for a tag change, which tag keys it touched)."""
    kept = {key: record[key] for key in RECORD_FIELDS if key in record}
    kept.update(naming(record, instance_ids))
    if not events.is_launch(record):
        tag_set = events.get_path(record, "requestParameters", "tagSet", "items")
        kept["requestParameters"]["tagSet"] = {"items": [
            {"key": t.get("key")} for t in tag_set or () if isinstance(t, dict)]}
    return kept


def naming(record, instance_ids):
    """The part of a record of ``record``'s call that names ``instance_ids``, where the
    policies' ``ids`` read them."""
    if events.is_launch(record):  # RunInstances, CreateFleet: in the call's own shape
        return {"responseElements": events.with_instances(record, instance_ids)}
    return {"requestParameters": {  # CreateTags / DeleteTags
        "resourcesSet": {"items": [{"resourceId": i} for i in instance_ids]}}}


def slim_event(event, instance_ids, key):
    """What a schedule delivers: the envelope's account and region, the call's name
    and the instance ids (c7n describes them), and the hold's key. Nothing else:
    the identity, the times and which instances were really held are the hold's."""
    record = event.get("detail") or {}
    detail = {k: record[k] for k in ROUTING_FIELDS if k in record}
    detail.update(naming(record, instance_ids))
    slim = events.envelope(detail, account=event.get("account"), region=event.get("region"),
                           event_id=key[-36:])
    slim[MARKER] = {"hold": key}
    return slim


def batches(event, instance_ids):
    """Lists of ids whose slim events each fit the scheduler's input limit."""
    pending, result = list(instance_ids), []
    room = "hold#" + "x" * KEY_ROOM
    while pending:
        size = len(pending)
        while size > 1 and len(json.dumps(slim_event(event, pending[:size], room))) > INPUT_LIMIT:
            size //= 2
        if len(json.dumps(slim_event(event, pending[:size], room))) > INPUT_LIMIT:
            raise ValueError("the event is too large to re-check even one instance")
        result.append(pending[:size])
        pending = pending[size:]
    return result


#: Every re-check schedule's name starts so (``broom uninstall`` finds them by it).
SCHEDULE_PREFIX = "broom-recheck-"


def schedule_name(key):
    """A schedule name unique to a hold: a repeated delivery finds it taken."""
    return SCHEDULE_PREFIX + hashlib.sha256(key.encode("utf-8")).hexdigest()[:40]


def role_arn(function_arn):
    """The scheduler's role, in the function's own account."""
    parts = function_arn.split(":")
    return "arn:%s:iam::%s:role/%s" % (parts[1], parts[4], SCHEDULER_ROLE)


def record_hold(table, key, record, markers, due):
    """Record a hold before anything is scheduled (its re-check acts only on what is
    recorded). A hold already recorded under ``key`` (a repeated event) is kept.
    Returns False when the state table cannot be written."""
    hold = Hold(key, HELD, due, kept_record(record, list(markers)), dict(markers),
                due + items.HOLD_TTL)
    try:
        response = table.call("PutItem", Item=hold.item(),
                              ConditionExpression="attribute_not_exists(#pk)",
                              ExpressionAttributeNames={"#pk": state.KEY})
    except ClientError as e:
        if e.response["Error"]["Code"] != state.CHECK_FAILED:
            raise
        log.info("hold %s already recorded (repeated event)", key)
        return True
    return response is not None


def schedule(client, key, slim, due, function_arn, retry):
    """Create the one-time schedule of one hold in Broom's schedule group; one already
    there (a repeated event) is kept. Raises ClientError when it cannot be created."""
    name = schedule_name(key)
    try:
        retry(client.create_schedule,
              Name=name, GroupName=SCHEDULE_GROUP,
              ScheduleExpression="at(%s)" % due.strftime("%Y-%m-%dT%H:%M:%S"),
              ScheduleExpressionTimezone="UTC", FlexibleTimeWindow={"Mode": "OFF"},
              ActionAfterCompletion="DELETE",
              Description="Broom: re-check instances held by the termination cap",
              Target={"Arn": function_arn, "RoleArn": role_arn(function_arn),
                      "Input": json.dumps(slim)})
    except ClientError as e:
        if e.response["Error"]["Code"] != "ConflictException":
            raise
        log.info("re-check %s already scheduled (repeated event)", name)
    return name


#: What ``schedule_held`` did: the schedule exists; it could not be created for a
#: reason a retry may not have (throttling, a service error): fail the invocation so
#: its retry creates it; for good (denied, too large); not in Lambda.
SCHEDULED, TRANSIENT, FAILED, LOCAL = "scheduled", "transient", "failed", "local"


def schedule_held(event, markers, delay, retry, table, policy):
    """Record the holds of held instances (``markers``: instance id -> launch marker)
    and schedule their re-check ``delay`` seconds from now, with the function's own
    credentials (in a hub the policy's session acts in the member account, where the
    hold is recorded, but the schedule belongs beside the function). Returns (what the
    report says: when they are checked again, or why they are not; SCHEDULED,
    TRANSIENT, FAILED or LOCAL)."""
    if not Target.function_arn:
        return ("They are not re-checked automatically (not running in Lambda): "
                "check them again with broom replay --execute"), LOCAL
    ids = list(markers)
    due = datetime.fromtimestamp(int(now()) + delay, timezone.utc)
    found = launch.of(event)  # the event's record, read once by the handler
    record = found.record or {}
    region = Target.function_arn.split(":")[3]
    client = boto3.Session().client("scheduler", region_name=region)
    try:
        for index, batch in enumerate(batches(event, ids)):
            key = new_key(policy, table.account_id, table.region,
                          found.event_id or event.get("id"), index)
            if not record_hold(table, key, record, {i: markers[i] for i in batch},
                               due.timestamp()):
                raise ValueError("the state table %s cannot record the hold" % table.name)
            schedule(client, key, slim_event(event, batch, key), due,
                     Target.function_arn, retry)
    except ClientError as e:
        code = e.response["Error"]["Code"]
        log.error("re-check of %s NOT scheduled: %s", ", ".join(ids), e)
        if code in invocation.TRANSIENT:
            return ("Broom could not schedule their re-check yet (%s): it tries again "
                    "within minutes" % code), TRANSIENT
        return ("Broom could NOT schedule a re-check (%s): check them by hand, or "
                "allow scheduler:CreateSchedule on Broom's schedule group %s and "
                "iam:PassRole on %s to Broom's role" % (
                    code, SCHEDULE_GROUP, role_arn(Target.function_arn))), FAILED
    except ValueError as e:
        log.error("re-check of %s NOT scheduled: %s", ", ".join(ids), e)
        return "Broom could NOT schedule a re-check (%s): check them by hand" % e, FAILED
    return ("Broom checks them again at %s and terminates those that still break the "
            "rule: switch the account to %s (c7n-org var broom_enforcement: %s) or fix "
            "the code list before then to keep them" % (
                due.strftime("%Y-%m-%dT%H:%M:%SZ"), REPORT_ONLY, REPORT_ONLY)), SCHEDULED


def verified(table, event, at=None):
    """The hold a re-check event names, when it is Broom's: recorded in the state
    table, in Broom's shape, not settled, due, and for the event's account and
    region. None otherwise, with one warning line: the re-check then acts on
    nothing."""
    key, at = hold_key(event), now() if at is None else at
    item = table.get_item(key) if key else None
    why = None
    if not key:
        why = "it names no hold"
    elif item is None:
        why = "no hold %s is recorded in %s" % (key[:200], table.name)
    elif not items.fits(table.name, item, at):
        why = "hold %s is not one Broom recorded" % key[:200]
    else:
        hold = Hold.from_item(item)
        where = (events.field(hold.record, "recipientAccountId"),
                 events.field(hold.record, "awsRegion"))
        if hold.status != HELD:
            why = "hold %s was already re-checked" % key
        elif hold.due > at + EARLY:
            why = "hold %s is not due before %s" % (key, datetime.fromtimestamp(
                hold.due, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"))
        elif where != (events.text(event.get("account")), events.text(event.get("region"))):
            why = "hold %s is for account %s region %s" % ((key,) + where)
        else:
            return hold
    log.warning("re-check acting on nothing: %s (%s)", why, launch.of(event).summary)
    return None


def held_resources(hold, resources):
    """The resources the hold holds whose launch marker is unchanged; the others are
    left alone, with a warning each."""
    kept = []
    for r in resources:
        recorded = hold.instances.get(r["InstanceId"])
        if recorded is None:
            log.warning("re-check: instance %s is not in hold %s: left alone",
                        r["InstanceId"], hold.key)
        elif instances.launch_marker(r) != recorded:
            log.warning("re-check: instance %s is not the one held (launch marker %s, "
                        "held %s): left alone", r["InstanceId"], instances.launch_marker(r),
                        recorded)
        else:
            kept.append(r)
    return kept


def policy_table(manager):
    """The state table of a policy: the one its actions name (``state-table``)."""
    for action in manager.actions:
        if "state-table" in action.schema.get("properties", {}):
            return state.for_element(action)
    return state.StateTable(manager.session_factory, manager.config.region,
                            account_id=manager.config.account_id or "")


def settle(table, hold):
    """Record the hold as re-checked: a repeated delivery acts on nothing."""
    try:
        table.call("UpdateItem", Key={state.KEY: {"S": hold.key}},
                   UpdateExpression="SET #status = :settled",
                   ConditionExpression="#status = :held",
                   ExpressionAttributeNames={"#status": "status"},
                   ExpressionAttributeValues={":settled": {"S": SETTLED},
                                              ":held": {"S": HELD}})
    except ClientError as e:
        if e.response["Error"]["Code"] != state.CHECK_FAILED:
            raise
