"""RunInstances records that do not list the instances they launched.

CloudTrail replaces an element that is too large with ``{"omitted": true}``: the
record of a large launch (or of one with many large tags) then names no instance, and
c7n, which reads the ids from ``responseElements``, would see nothing at all. Broom
finds the instances by what the record still carries, the request's client token
(DescribeInstances filter ``client-token``: EC2 ties a token to one request in the
account, so nobody else's launch can share it), hands them to the policy as if the
record had listed them (the launch-time check still applies), and, whatever it finds,
publishes an alert naming the event and who made the call.
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


def is_omitted(record):
    """True for a RunInstances record whose launched instances CloudTrail left out."""
    if events.field(record, "eventName") != "RunInstances" or record.get("errorCode"):
        return False
    response = record.get("responseElements")
    if not isinstance(response, dict) or events.launched_instances(record):
        return False
    return (response.get("omitted") is True
            or events.get_path(response, "instancesSet", "omitted") is True)


def client_token(record):
    token = events.get_path(record, "requestParameters", "clientToken")
    return token if isinstance(token, str) and token.strip() else None


def find(client, token, retry):
    """Ids of the instances a request with this client token launched."""
    ids = []
    paginator = client.get_paginator("describe_instances")
    pages = retry(lambda: list(paginator.paginate(
        Filters=[{"Name": "client-token", "Values": [token]}])))
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
    subject = "Broom: a RunInstances record in %s lists no instances" % text.readable(
        events.field(record, "awsRegion"), 30)
    lines = [
        "CloudTrail left the launched instances out of a RunInstances record (an "
        "element too large to record is replaced with {\"omitted\": true}).",
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
    token = client_token(record)
    session = session_for(event, policy_data)
    found, why = [], "nothing: the record has no client token to look the launch up by"
    if token:
        try:
            found = find(session.client("ec2", region_name=event.get("region")), token, retry)
            why = ("%d instance(s) by the request's client token" % len(found) if found else
                   "nothing: no instance carries the request's client token")
        except ClientError as e:
            log.error("cannot look up the instances of event %s: %s",
                      events.field(record, "eventID"), e)
            why = "nothing: DescribeInstances failed (%s)" % e.response["Error"]["Code"]
    log.warning("RunInstances event %s lists no instances (omitted by CloudTrail): found %s",
                events.field(record, "eventID"), why)
    publish_alert(session, policy_data, record, found, why, retry)
    if not found:
        return None
    detail = json.loads(json.dumps(record))
    detail["responseElements"] = {"instancesSet": {"items": [
        {"instanceId": instance_id} for instance_id in found]}}
    return dict(event, detail=detail)


def publish_alert(session, policy_data, record, found, why, retry):
    topic = report_topic(policy_data)
    if not topic:
        log.error("no creator-report topic in this function's policies: the alert for "
                  "event %s is only in this log", events.field(record, "eventID"))
        return
    subject, body = alert(record, found, why)
    client = session.client("sns", region_name=topic.split(":")[3])
    retry(client.publish, TopicArn=topic, Subject=subject, Message=body, MessageAttributes={
        "broom.event_id": {"DataType": "String",
                           "StringValue": text.attribute(events.field(record, "eventID"))
                           or "-"},
        "broom.outcome": {"DataType": "String", "StringValue": "omitted-record"}})
