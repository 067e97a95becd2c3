"""The ``creator-report`` action: tell a person who launched a violating instance."""
import logging
import re
import time
from dataclasses import dataclass, field

from botocore.exceptions import ClientError
from c7n.actions import EventAction
from c7n.exceptions import PolicyExecutionError, PolicyValidationError
from c7n.utils import chunks, local_session, type_schema

from c7n_broom import codes, decisions, events, fleets, report
from c7n_broom.filters import ANNOTATION
from c7n_broom.identity import UNKNOWN, creator_from_record
from c7n_broom.lambda_check import check_lambda_packaging
from c7n_broom.validation import check_schema, where
from c7n_broom.terminate import OUTCOME

log = logging.getLogger("custodian.broom.actions")

TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
GONE_STATES = ("shutting-down", "terminated")
TERMINATING_ACTIONS = ("terminate", "safe-terminate")
DEFAULT_MAX_MESSAGES = 20
DEFAULT_FLEET_PERIOD = 3600
ACTORS = {"RunInstances": "Launched by", "CreateTags": "Tagged by", "DeleteTags": "Untagged by"}


REPORTED_TAG = "broom:reported-event"


@dataclass
class Message:
    """One SNS message: ``fleet`` it stands for, instances it leaves running
    (``survivors``, marked with the event id once published)."""

    key: str
    subject: str
    body: str
    attributes: dict
    fleet: tuple | None = None
    survivors: list = field(default_factory=list)


def survivors(items):
    """Instance ids of (resource, finding, outcome) items that were not terminated."""
    return [finding.instance_id for _, finding, outcome in items
            if outcome.status not in (report.TERMINATED, report.GONE)]


class ReportDeliveryError(PolicyExecutionError):
    """Raised after all reports were attempted when at least one could not be published."""


class CreatorReport(EventAction):
    """Publish a human-readable report per violating instance to an SNS topic.

    The message names who launched the instance (resolved from the CloudTrail
    event's ``userIdentity``), the account, region, instance id, image, type, launch
    and event times, the Code tag found and why it breaks the rule (from the
    ``allowed-codes`` filter), and what happened to the instance. The outcome is read
    back from EC2 after the actions before this one ran: a report says an instance
    was terminated only when EC2 shows it shutting down or terminated.

    Put it after ``safe-terminate`` (or ``terminate``) so it can report the outcome.
    Without an event (pull or periodic mode) the creator is reported as unknown. The
    topic may live in another region; ``topic-override`` replaces ``topic`` when a
    c7n-org variable sets it. Machine-readable fields are sent as SNS message
    attributes (``broom.*``).

    More than ``max-messages`` instances (default 20) in one run are sent as one
    digest message instead, kept under SNS's 256 KB limit. Instances of an Auto
    Scaling group, Spot Fleet or EC2 Fleet are reported once per group, naming the
    group to fix, and a group is reported at most once per ``fleet-report-period``
    seconds (default 3600; recorded in a ``broom:last-report`` tag on the group), so
    a relaunch loop cannot flood the topic.

    :example:

    .. code-block:: yaml

        policies:
          - name: ec2-require-code-tag
            resource: aws.ec2
            filters:
              - type: allowed-codes
                codes: [LOL, GGG, BRB, YLO]
            actions:
              - type: terminate
                force: true
              - type: creator-report
                topic: arn:aws:sns:{region}:{account_id}:broom-reports
                topic-override: "{broom_topic}"
                max-messages: 20
                fleet-report-period: 3600
    """

    schema = type_schema(
        "creator-report",
        required=["topic"],
        topic={"type": "string"},
        **{
            "topic-override": {"type": "string"},
            "max-messages": {"type": "integer", "minimum": 1},
            "fleet-report-period": {"type": "integer", "minimum": 0},
        },
    )
    permissions = ("sns:Publish", "ec2:DescribeInstances", "ec2:DescribeTags",
                   "ec2:CreateTags", "autoscaling:DescribeTags",
                   "autoscaling:CreateOrUpdateTags")
    clock = staticmethod(time.time)

    def validate(self):
        for option in ("topic", "topic-override"):
            value = self.data.get(option)
            if option == "topic-override" and codes.is_unset(value):
                continue
            if isinstance(value, str) and "{" in value:
                continue  # expanded later, at run time (custodian run, c7n-org)
            if not isinstance(value, str) or not TOPIC_ARN.match(value):
                raise PolicyValidationError(
                    "%s: '%s' must be an SNS topic ARN like "
                    "arn:aws:sns:us-east-1:123456789012:broom-reports, got %r" % (
                        where(self), option, value))
        check_schema(self)  # the rest
        check_lambda_packaging(self.manager, self.type)
        return self

    @property
    def topic(self):
        override = self.data.get("topic-override")
        return self.data["topic"] if codes.is_unset(override) else override

    def process(self, resources, event=None):
        record = events.cloudtrail_record(event)
        creator = creator_from_record(record) if record else UNKNOWN
        event_id = events.field(record, "eventID")
        live = [r for r in resources if self.needs_report(r, event_id)]
        if not live:
            return []
        outcomes = self.outcomes(live)
        actor = ACTORS.get(events.field(record, "eventName"), "Launched by")
        items = [(r, self.finding(r, record), outcomes[r["InstanceId"]]) for r in live]
        items, group_of = self.one_per_fleet(items)
        if len(items) > self.data.get("max-messages", DEFAULT_MAX_MESSAGES):
            subject, body, attributes = report.digest(
                [(finding, outcome) for _, finding, outcome in items], creator, actor)
            messages = [Message("%d instances" % len(items), subject, body, attributes,
                                survivors=survivors(items))]
        else:
            messages = [Message(finding.instance_id, report.subject(finding, outcome),
                                report.body(finding, outcome, creator, actor),
                                report.attributes(finding, outcome, creator),
                                fleet=group_of.get(finding.instance_id),
                                survivors=survivors([(r, finding, outcome)]))
                        for r, finding, outcome in items]
        return self.publish(messages, event_id)

    def needs_report(self, resource, event_id):
        """False for instances this event was already handled for: gone before it
        arrived, or marked as reported for it (EventBridge delivers at least once)."""
        state = resource.get("State", {}).get("Name")
        if state in GONE_STATES:
            log.info("instance %s was already %s when this event was handled: "
                     "not reported again", resource["InstanceId"], state)
            return False
        tags = {t.get("Key"): t.get("Value") for t in resource.get("Tags") or ()}
        if event_id and tags.get(REPORTED_TAG) == event_id:
            log.info("instance %s was already reported for event %s", resource["InstanceId"],
                     event_id)
            return False
        return True

    def publish(self, messages, event_id=""):
        """Publish the messages; raise after all were tried if any failed, so the
        invocation shows as an error."""
        client = self.sns_client()
        sent, failed = [], []
        for message in messages:
            try:
                response = self.manager.retry(
                    client.publish, TopicArn=self.topic, Subject=message.subject,
                    Message=message.body, MessageAttributes=message.attributes)
            except ClientError as e:
                log.error("report for %s NOT published to %s: %s", message.key, self.topic, e)
                failed.append((message.key, e.response["Error"]["Code"]))
                continue
            sent.append({"Report": message.key, "MessageId": response["MessageId"]})
            if message.fleet:
                fleets.mark_reported(self.manager.session_factory,
                                     self.manager.config.region, message.fleet, self.clock())
            if event_id and message.survivors:
                self.mark_reported(message.survivors, event_id)
        if failed:
            raise ReportDeliveryError(
                "%d of %d reports could not be published to %s: %s" % (
                    len(failed), len(messages), self.topic,
                    ", ".join("%s (%s)" % f for f in failed)))
        return sent

    def mark_reported(self, instance_ids, event_id):
        """Tag instances left running with the event they were reported for."""
        client = local_session(self.manager.session_factory).client("ec2")
        for batch in chunks(instance_ids, 100):
            try:
                self.manager.retry(client.create_tags, Resources=batch,
                                   Tags=[{"Key": REPORTED_TAG, "Value": event_id}])
            except ClientError as e:
                log.warning("cannot tag %s with %s (%s): a repeated delivery of event %s "
                            "would report them again", ", ".join(batch), REPORTED_TAG,
                            e.response["Error"]["Code"], event_id)

    def one_per_fleet(self, items):
        """Keep one report per fleet, none for a fleet reported within the period.

        Returns the kept items and {instance_id: fleet} for those that stand for a
        fleet (their publication is recorded on the fleet).
        """
        period = self.data.get("fleet-report-period", DEFAULT_FLEET_PERIOD)
        by_fleet, kept, stands_for = {}, [], {}
        for item in items:
            fleet = decisions.fleet_of(item[0])
            if fleet is None:
                kept.append(item)
            else:
                by_fleet.setdefault(fleet, []).append(item)
        for fleet, members in by_fleet.items():
            last = fleets.last_report(self.manager.session_factory,
                                      self.manager.config.region, fleet)
            if last is not None and self.clock() - last < period:
                log.info("%s %s was reported less than %ss ago: %d report(s) not sent",
                         fleet[0], fleet[1], period, len(members))
                continue
            resource, finding, outcome = members[0]
            others = [m[1].instance_id for m in members[1:]]
            if others:
                finding.extra["Also in group"] = "%s%s" % (
                    ", ".join(others[:20]), " and %d more" % (len(others) - 20)
                    if len(others) > 20 else "")
            kept.append((resource, finding, outcome))
            stands_for[finding.instance_id] = fleet
        return kept, stands_for

    def sns_client(self):
        region = self.topic.split(":")[3]
        return local_session(self.manager.session_factory).client("sns", region_name=region)

    def terminates(self):
        """True when an action before this one terminates the instances."""
        for action in self.manager.actions:
            if action is self:
                return False
            if action.type in TERMINATING_ACTIONS:
                return True
        return False

    def outcomes(self, resources):
        """What happened to each instance: as recorded by safe-terminate, else as EC2
        shows it after the earlier actions."""
        result = {r["InstanceId"]: report.Outcome(**r[OUTCOME])
                  for r in resources if isinstance(r.get(OUTCOME), dict)}
        resources = [r for r in resources if r["InstanceId"] not in result]
        if not resources:
            return result
        if not self.terminates():
            result.update({r["InstanceId"]: report.Outcome(report.REPORTED) for r in resources})
            return result
        states = self.current_states([r["InstanceId"] for r in resources])
        for r in resources:
            state = states.get(r["InstanceId"])
            if state is None:
                result[r["InstanceId"]] = report.Outcome(report.GONE)
            elif state in GONE_STATES:
                result[r["InstanceId"]] = report.Outcome(report.TERMINATED)
            else:
                result[r["InstanceId"]] = report.Outcome(
                    report.FAILED, "EC2 shows it %s" % state)
        return result

    def current_states(self, instance_ids):
        client = local_session(self.manager.session_factory).client("ec2")
        states = {}
        for batch in chunks(instance_ids, 100):
            try:
                response = self.manager.retry(client.describe_instances, InstanceIds=batch)
            except ClientError as e:
                if e.response["Error"]["Code"] != "InvalidInstanceID.NotFound":
                    raise
                if len(batch) > 1:  # one unknown id fails the call: ask one by one
                    for instance_id in batch:
                        states.update(self.current_states([instance_id]))
                continue
            for reservation in response.get("Reservations", []):
                for instance in reservation.get("Instances", []):
                    states[instance["InstanceId"]] = instance["State"]["Name"]
        return states

    def finding(self, resource, record):
        violation = resource.get(ANNOTATION) or {}
        extra = {}
        fleet = decisions.fleet_of(resource)
        if fleet:
            extra["Managed by"] = "%s %s (relaunches what is terminated)" % fleet
            extra["Fix there"] = fleets.FIX[fleet[0]]
        key = violation.get("key", "tag:Code")
        launch = resource.get("LaunchTime", "")
        return report.Finding(
            instance_id=resource["InstanceId"],
            region=self.manager.config.region,
            account_id=self.manager.config.account_id or "",
            image_id=resource.get("ImageId", ""),
            instance_type=resource.get("InstanceType", ""),
            launch_time=launch.isoformat() if hasattr(launch, "isoformat") else str(launch),
            code_key=key.split(":", 1)[1] if key.startswith("tag:") else key,
            code_value=violation.get("value"),
            reason=violation.get("reason", "not checked by allowed-codes"),
            allowed=tuple(violation.get("allowed", ())),
            event_name=events.field(record, "eventName"),
            event_time=events.field(record, "eventTime"),
            event_id=events.field(record, "eventID"),
            extra=extra,
        )
