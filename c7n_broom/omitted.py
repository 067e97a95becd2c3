"""Launch records (RunInstances, CreateFleet) that do not list the instances they
launched.

CloudTrail replaces an element that is too large with ``{"omitted": true}``: the
record of a large launch (or of one with many large tags) then names no instance, and
c7n, which reads the ids from ``responseElements``, would see nothing at all. Broom
finds the instances by what the record still carries, hands them to the policy as if
the record had listed them (the launch-time check still applies), and, whatever it
finds, publishes an alert naming the event and who made the call. What it looks them
up by is something the launcher cannot give another launch's instances:

- RunInstances: the request's client token (DescribeInstances filter
  ``client-token``: EC2 ties a token to one request in the account);
- CreateFleet: the fleet id, when the response still has it, through the
  ``aws:ec2:fleet-id`` tag EC2 puts on a fleet's instances (users cannot set
  ``aws:`` tags). Without it, the alert says the launch could not be checked; the
  periodic sweep (policies/ec2-tags-sweep.yml) finds its instances later.
"""
import json
import logging

from botocore.exceptions import ClientError
from c7n.credentials import SessionFactory
from c7n.utils import local_session

from c7n_broom import codes, events, text
from c7n_broom.identity import creator_from_record
from c7n_broom.report import ascii_subject, describe_creator

log = logging.getLogger("custodian.broom.omitted")


#: Where each launch call's response may say that CloudTrail omitted the instances.
OMITTED_AT = {
    "RunInstances": (("omitted",), ("instancesSet", "omitted")),
    "CreateFleet": (("omitted",), ("CreateFleetResponse", "omitted"),
                    ("CreateFleetResponse", "fleetInstanceSet", "omitted")),
}


def is_omitted(record):
    """True for a launch record whose launched instances CloudTrail left out."""
    paths = OMITTED_AT.get(events.field(record, "eventName"))
    if not paths or record.get("errorCode"):
        return False
    response = record.get("responseElements")
    if not isinstance(response, dict) or events.launched_instances(record):
        return False
    return any(events.get_path(response, *path) is True for path in paths)


def client_token(record):
    token = events.get_path(record, "requestParameters", "clientToken")
    return token if isinstance(token, str) and token.strip() else None


def fleet_id(record):
    """The id of the fleet a CreateFleet record created, if its response still says."""
    found = events.get_path(record, "responseElements", "CreateFleetResponse", "fleetId")
    return found if isinstance(found, str) and found.startswith("fleet-") else None


def lookup(record):
    """(DescribeInstances filter, what it is, for the alert) that finds the instances
    of an omitted launch record; (None, why not) when the record carries nothing to
    find them by."""
    if events.field(record, "eventName") == "CreateFleet":
        fleet = fleet_id(record)
        if not fleet:
            return None, "the record has no fleet id to look the launch up by"
        return {"Name": "tag:aws:ec2:fleet-id", "Values": [fleet]}, "the fleet's id"
    token = client_token(record)
    if not token:
        return None, "the record has no client token to look the launch up by"
    return {"Name": "client-token", "Values": [token]}, "the request's client token"


def find(client, lookup_filter, retry):
    """Ids of the instances a DescribeInstances filter (``lookup``) finds."""
    ids = []
    paginator = client.get_paginator("describe_instances")
    pages = retry(lambda: list(paginator.paginate(Filters=[lookup_filter])))
    for page in pages:
        for reservation in page.get("Reservations", []):
            ids.extend(i["InstanceId"] for i in reservation.get("Instances", []))
    return ids


def report_topic(policy_data):
    """The report topic of the first policy with a creator-report action, or None."""
    for policy in policy_data.get("policies") or ():
        for action in policy.get("actions") or ():
            if isinstance(action, dict) and action.get("type") == "creator-report":
                override = action.get("topic-override")
                return action.get("topic") if codes.is_unset(override) else override
    return None


def session_for(event, policy_data):
    """A session acting in the event's account: the member role in a hub."""
    region = event.get("region")
    for policy in policy_data.get("policies") or ():
        member_role = events.get_path(policy, "mode", "member-role")
        if member_role:
            return local_session(SessionFactory(
                region, assume_role=member_role.format(account_id=event.get("account"))))
    return local_session(SessionFactory(region))


def alert(record, found, why):
    """(subject, body) of the alert for an omitted record."""
    creator = creator_from_record(record)
    call = events.field(record, "eventName")
    subject = "Broom: a %s record in %s lists no instances" % (
        call, text.readable(events.field(record, "awsRegion"), 30))
    lines = [
        "CloudTrail left the launched instances out of a %s record (an element too "
        "large to record is replaced with {\"omitted\": true})." % call,
        "",
        "Event:          %s at %s" % (text.readable(events.field(record, "eventID")),
                                      text.readable(events.field(record, "eventTime"))),
        "Launched by:    %s" % describe_creator(creator),
        "Identity ARN:   %s" % (text.readable(creator.arn) or "(not recorded)"),
        "Account:        %s" % text.readable(events.field(record, "recipientAccountId")),
        "Region:         %s" % text.readable(events.field(record, "awsRegion")),
        "Found:          %s" % why,
    ]
    if found:
        lines.append("Instances:      %s" % text.readable(", ".join(found), 4000))
        lines += ["", "Broom checks these instances like any other launch; its reports "
                  "on them follow."]
    else:
        lines += ["", "Broom could not check this launch: look for instances launched by "
                  "this principal around that time and check their Code tags by hand."]
    return ascii_subject(subject), "\n".join(lines) + "\n"


def resolve(event, policy_data, retry):
    """The event with the instances found listed in its record, or None when none was
    found; publishes the alert either way."""
    record = event["detail"]
    lookup_filter, by = lookup(record)
    session = session_for(event, policy_data)
    found, why = [], "nothing: %s" % by
    if lookup_filter:
        try:
            found = find(session.client("ec2", region_name=event.get("region")),
                         lookup_filter, retry)
            why = ("%d instance(s) by %s" % (len(found), by) if found else
                   "nothing: no instance carries %s" % by)
        except ClientError as e:
            log.error("cannot look up the instances of event %s: %s",
                      events.field(record, "eventID"), e)
            why = "nothing: DescribeInstances failed (%s)" % e.response["Error"]["Code"]
    log.warning("%s event %s lists no instances (omitted by CloudTrail): found %s",
                events.field(record, "eventName"), events.field(record, "eventID"), why)
    publish_alert(session, policy_data, record, found, why, retry)
    if not found:
        return None
    detail = json.loads(json.dumps(record))
    detail["responseElements"] = events.with_instances(record, found)
    return dict(event, detail=detail)


def publish_alert(session, policy_data, record, found, why, retry,
                  composed=None, outcome="omitted-record"):
    """Publish an alert about ``record`` to the report topic: the omitted record's
    (``alert``), or ``composed`` (subject, body)."""
    topic = report_topic(policy_data)
    if not topic:
        log.error("no creator-report topic in this function's policies: the alert for "
                  "event %s is only in this log", events.field(record, "eventID"))
        return
    subject, body = composed or alert(record, found, why)
    client = session.client("sns", region_name=topic.split(":")[3])
    retry(client.publish, TopicArn=topic, Subject=subject, Message=body, MessageAttributes={
        "broom.event_id": {"DataType": "String",
                           "StringValue": text.attribute(events.field(record, "eventID"))
                           or "-"},
        "broom.outcome": {"DataType": "String", "StringValue": outcome}})


UNSEEN = "instances-not-seen"


def unseen_alert(record, instance_ids):
    """(subject, body) of the alert for instances a record names and EC2 does not show."""
    creator = creator_from_record(record)
    call = events.field(record, "eventName") or "?"
    subject = "Broom: %d instance(s) of a %s record in %s could not be seen" % (
        len(instance_ids), call, text.readable(events.field(record, "awsRegion"), 30))
    lines = [
        "EC2 does not show instances this %s record names, after Broom retried for "
        "minutes: Broom could not check them." % call,
        "",
        "Event:          %s at %s" % (text.readable(events.field(record, "eventID")),
                                      text.readable(events.field(record, "eventTime"))),
        "By:             %s" % describe_creator(creator),
        "Identity ARN:   %s" % (text.readable(creator.arn) or "(not recorded)"),
        "Account:        %s" % text.readable(events.field(record, "recipientAccountId")),
        "Region:         %s" % text.readable(events.field(record, "awsRegion")),
        "Instances:      %s" % text.readable(", ".join(instance_ids), 4000),
        "",
        "They may have been terminated and forgotten by EC2 already, or the record may "
        "not be this account's: look them up and check their Code tags by hand.",
    ]
    return ascii_subject(subject), "\n".join(lines) + "\n"


def alert_unseen(event, policy_data, instance_ids, retry):
    """Publish the alert naming instances the event's record names and EC2 does not
    show (``unseen_alert``)."""
    record = events.cloudtrail_record(event)
    log.warning("event %s: EC2 does not show %s: alert published",
                events.field(record, "eventID"), ", ".join(instance_ids))
    publish_alert(session_for(event, policy_data), policy_data, record, instance_ids, "",
                  retry, unseen_alert(record, instance_ids), UNSEEN)
