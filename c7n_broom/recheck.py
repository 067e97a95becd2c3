"""Check again, later, the instances the termination cap held back.

The cap (``safe-terminate``'s ``max-terminations``) stops one event, or one principal
within a period, from terminating many instances whose Code is set but not allowed:
that is what a bad code list looks like. Held instances are not forgotten: Broom
creates a one-time EventBridge Scheduler schedule that invokes the function itself,
``recheck-after`` seconds later, with a slim copy of the event naming only the held
instances. The filter then judges them again as they are by then, and those that
still break the rule are terminated, unless the account was switched to report-only
in the meantime. The only state is the schedule, which only Broom's role creates.

Anyone who may invoke Broom's function directly could forge such an event; that
right is Broom's own administrators' (docs/security.md).
"""
import hashlib
import json
import logging
from datetime import datetime, timedelta, timezone

import boto3
from botocore.exceptions import ClientError

from c7n_broom import events, invocation
from c7n_broom.decisions import REPORT_ONLY

log = logging.getLogger("custodian.broom.recheck")

MARKER = "broom-recheck"
#: EventBridge Scheduler accepts at most 8,192 characters of target input.
INPUT_LIMIT = 8192
#: The record fields a re-check needs: who launched, when, where (and nothing else:
#: no source IP, user agent or request parameters).
RECORD_FIELDS = ("eventVersion", "eventID", "eventTime", "eventName", "eventSource",
                 "awsRegion", "recipientAccountId", "userIdentity")
DEFAULT_DELAY = 3600
SCHEDULER_ROLE = "broom-scheduler"


class Target:
    """The function being run, set by Broom's Lambda handler from its context:
    without one (``custodian run`` in pull mode, ``broom replay``) nothing is scheduled."""

    function_arn = None


def held_ids(event):
    """The instance ids a re-check event asks about (empty for any other event)."""
    marker = event.get(MARKER) if isinstance(event, dict) else None
    ids = marker.get("instances") if isinstance(marker, dict) else None
    return {i for i in ids if isinstance(i, str)} if isinstance(ids, list) else set()


def slim_event(event, instance_ids, due):
    """The event a schedule delivers: the envelope (the original's account, region and
    id), the record's identity and timing, the held instance ids, and the marker."""
    record = event.get("detail") or {}
    detail = {key: record[key] for key in RECORD_FIELDS if key in record}
    if events.is_launch(record):  # RunInstances, CreateFleet: in the call's own shape
        detail["responseElements"] = events.with_instances(record, instance_ids)
    else:  # CreateTags / DeleteTags: the resources, and which tag keys the call touched
        tag_set = events.get_path(record, "requestParameters", "tagSet", "items")
        detail["requestParameters"] = {
            "resourcesSet": {"items": [{"resourceId": i} for i in instance_ids]},
            "tagSet": {"items": [{"key": t.get("key")} for t in tag_set or ()
                                 if isinstance(t, dict)]}}
    slim = events.envelope(detail, account=event.get("account"), region=event.get("region"),
                           event_id=event.get("id"))
    slim[MARKER] = {"instances": list(instance_ids), "due": due.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return slim


def batches(event, instance_ids, due):
    """Slim events, each within the scheduler's input limit, covering every id."""
    pending, result = list(instance_ids), []
    while pending:
        size = len(pending)
        while size > 1 and len(json.dumps(slim_event(event, pending[:size], due))) > INPUT_LIMIT:
            size //= 2
        slim = slim_event(event, pending[:size], due)
        if len(json.dumps(slim)) > INPUT_LIMIT:
            raise ValueError("the event is too large to re-check even one instance")
        result.append(slim)
        pending = pending[size:]
    return result


def schedule_name(event_id, index):
    """A schedule name unique to the event: a repeated delivery finds it taken."""
    digest = hashlib.sha256(str(event_id).encode("utf-8", "replace")).hexdigest()[:32]
    return "broom-recheck-%s-%d" % (digest, index)


def role_arn(function_arn):
    """The scheduler's role, in the function's own account."""
    parts = function_arn.split(":")
    return "arn:%s:iam::%s:role/%s" % (parts[1], parts[4], SCHEDULER_ROLE)


def schedule(client, event, instance_ids, due, function_arn, retry):
    """Create the one-time schedules; a schedule already there (a repeated event) is
    kept. Returns the schedule names. Raises ClientError when one cannot be created,
    ValueError when the event cannot be carried by a schedule."""
    names = []
    for index, slim in enumerate(batches(event, instance_ids, due)):
        name = schedule_name(events.field(event, "detail", "eventID") or event.get("id"), index)
        try:
            retry(client.create_schedule,
                  Name=name, ScheduleExpression="at(%s)" % due.strftime("%Y-%m-%dT%H:%M:%S"),
                  ScheduleExpressionTimezone="UTC", FlexibleTimeWindow={"Mode": "OFF"},
                  ActionAfterCompletion="DELETE",
                  Description="Broom: re-check instances held by the termination cap",
                  Target={"Arn": function_arn, "RoleArn": role_arn(function_arn),
                          "Input": json.dumps(slim)})
        except ClientError as e:
            if e.response["Error"]["Code"] != "ConflictException":
                raise
            log.info("re-check %s already scheduled (repeated event)", name)
        names.append(name)
    return names


#: What ``schedule_held`` did: the schedule exists; it could not be created for a
#: reason a retry may not have (throttling, a service error): fail the invocation so
#: its retry creates it; for good (denied, too large); not in Lambda.
SCHEDULED, TRANSIENT, FAILED, LOCAL = "scheduled", "transient", "failed", "local"


def schedule_held(event, instance_ids, delay, retry):
    """Schedule the re-check of held instances ``delay`` seconds from now, with the
    function's own credentials (in a hub the policy's session acts in the member
    account, but the schedule belongs beside the function). Returns (what the report
    says: when they are checked again, or why they are not; SCHEDULED, TRANSIENT,
    FAILED or LOCAL)."""
    if not Target.function_arn:
        return ("They are not re-checked automatically (not running in Lambda): "
                "check them again with broom replay --execute"), LOCAL
    due = datetime.now(timezone.utc) + timedelta(seconds=delay)
    region = Target.function_arn.split(":")[3]
    client = boto3.Session().client("scheduler", region_name=region)
    try:
        schedule(client, event, instance_ids, due, Target.function_arn, retry)
    except ClientError as e:
        code = e.response["Error"]["Code"]
        log.error("re-check of %s NOT scheduled: %s", ", ".join(instance_ids), e)
        if code in invocation.TRANSIENT:
            return ("Broom could not schedule their re-check yet (%s): it tries again "
                    "within minutes" % code), TRANSIENT
        return ("Broom could NOT schedule a re-check (%s): check them by hand, or "
                "allow scheduler:CreateSchedule and iam:PassRole on %s to Broom's role"
                % (code, role_arn(Target.function_arn))), FAILED
    except ValueError as e:
        log.error("re-check of %s NOT scheduled: %s", ", ".join(instance_ids), e)
        return "Broom could NOT schedule a re-check (%s): check them by hand" % e, FAILED
    return ("Broom checks them again at %s and terminates those that still break the "
            "rule: switch the account to %s (c7n-org var broom_enforcement: %s) or fix "
            "the code list before then to keep them" % (
                due.strftime("%Y-%m-%dT%H:%M:%SZ"), REPORT_ONLY, REPORT_ONLY)), SCHEDULED
