"""The ``creator-report`` action: tell a person who launched a violating instance."""
import logging
import re
import time
from dataclasses import dataclass, field

from botocore.exceptions import ClientError
from c7n.actions import EventAction
from c7n.exceptions import PolicyExecutionError, PolicyValidationError
from c7n.utils import chunks, local_session, type_schema

from c7n_broom import codes, decisions, events, fleets, recheck, report, state
from c7n_broom.filters import ANNOTATION
from c7n_broom.identity import UNKNOWN, creator_from_record
from c7n_broom.lambda_check import check_lambda_packaging
from c7n_broom.validation import check_schema, check_state_table, where
from c7n_broom.terminate import OUTCOME

log = logging.getLogger("custodian.broom.actions")

TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
GONE_STATES = ("shutting-down", "terminated")
TERMINATING_ACTIONS = ("terminate", "safe-terminate")
DEFAULT_MAX_MESSAGES = 20
DEFAULT_FLEET_PERIOD = 3600
ACTORS = {"RunInstances": "Launched by", "CreateTags": "Tagged by", "DeleteTags": "Untagged by"}


@dataclass
class Message:
    """One SNS message: the ``instances`` it reports (fleet members it stands for
    included) and the fleet report slots it took in the state table (``fleets``:
    (fleet, time) pairs), both given back if it cannot be published."""

    key: str
    subject: str
    body: str
    attributes: dict
    instances: list = field(default_factory=list)
    fleets: list = field(default_factory=list)


def running(items):
    """Instance ids of (resource, finding, outcome) items that were not terminated."""
    return [finding.instance_id for _, finding, outcome in items
            if outcome.status not in (report.TERMINATED, report.GONE)]


@dataclass
class Group:
    """What one report stands for: an instance, or a fleet's instances with the same
    outcome (``slot``: the fleet report slot it took in the state table)."""

    finding: report.Finding
    outcome: report.Outcome
    instances: list
    slot: tuple | None = None


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
    Scaling group, Spot Fleet, EC2 Fleet or persistent spot request are reported
    once per group, naming the group to fix. So that a relaunch loop cannot flood
    the topic, a group whose reported instances were all terminated is reported at
    most once per ``fleet-report-period`` seconds (default 3600); an instance left
    running is always reported.

    EventBridge delivers at least once: an instance is reported once per event.
    Both records live in Broom's DynamoDB table ``state-table`` (default
    ``broom-state``, see ``c7n_broom.state``), never in tags the launcher could
    set. Without the table, reports are sent anyway, repeats included.

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
                state-table: broom-state
    """

    schema = type_schema(
        "creator-report",
        required=["topic"],
        topic={"type": "string"},
        **{
            "topic-override": {"type": "string"},
            "max-messages": {"type": "integer", "minimum": 1},
            "fleet-report-period": {"type": "integer", "minimum": 0},
            "state-table": {"type": "string"},
        },
    )
    permissions = ("sns:Publish", "ec2:DescribeInstances",
                   "ec2:DescribeSpotInstanceRequests") + state.REPORT_PERMISSIONS
    clock = staticmethod(time.time)

    def validate(self):
        for option in ("topic", "topic-override"):
            value = self.data.get(option)
            if option == "topic-override":
                # A var's value is used as it is: no braces, not even {region}.
                problem = codes.var_error(option, value, codes.policy_vars(self), fix=(
                    "write the topic ARN out in full"))
                if problem:
                    raise PolicyValidationError("%s: %s" % (where(self), problem))
                if codes.is_unset(value):
                    continue
            if isinstance(value, str) and "{" in value:
                continue  # expanded later, at run time (custodian run, c7n-org)
            if not isinstance(value, str) or not TOPIC_ARN.match(value):
                raise PolicyValidationError(
                    "%s: '%s' must be an SNS topic ARN like "
                    "arn:aws:sns:us-east-1:123456789012:broom-reports, got %r" % (
                        where(self), option, value))
        check_schema(self)  # the rest
        check_state_table(self)
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
        if event_id and recheck.held_ids(event):  # the re-check reports what it does
            event_id += "#recheck"
        table = self.state_table()
        live = [r for r in resources
                if self.needs_report(r) and self.claim(table, event_id, r["InstanceId"])]
        if not live:
            return []
        outcomes = self.outcomes(live)
        persistent = fleets.persistent_spot_requests(self.manager, live)
        actor = ACTORS.get(events.field(record, "eventName"), "Launched by")
        items = [(r, self.finding(r, record, persistent), outcomes[r["InstanceId"]])
                 for r in live]
        groups = self.one_per_fleet(items, persistent, table, event_id)
        if len(groups) > self.data.get("max-messages", DEFAULT_MAX_MESSAGES):
            subject, body, attributes = report.digest(
                [(g.finding, g.outcome) for g in groups], creator, actor)
            messages = [Message("%d instances" % len(groups), subject, body, attributes,
                                [i for g in groups for i in g.instances],
                                [g.slot for g in groups if g.slot])]
        else:
            messages = [Message(g.finding.instance_id,
                                report.subject(g.finding, g.outcome),
                                report.body(g.finding, g.outcome, creator, actor),
                                report.attributes(g.finding, g.outcome, creator),
                                g.instances, [g.slot] if g.slot else [])
                        for g in groups]
        return self.publish(messages, table, event_id)

    def state_table(self):
        return state.for_element(self, clock=self.clock)

    def needs_report(self, resource):
        """False for an instance gone before this event arrived (EventBridge delivers
        at least once: a repeat finds what the first delivery terminated)."""
        status = resource.get("State", {}).get("Name")
        if status in GONE_STATES:
            log.info("instance %s was already %s when this event was handled: "
                     "not reported again", resource["InstanceId"], status)
            return False
        return True

    def claim(self, table, event_id, instance_id):
        """False if ``instance_id`` was already reported for this event (a repeated
        delivery), as recorded in the state table; True otherwise, and always
        without an event or a usable table."""
        if not event_id or table.claim_report(self.policy_name, event_id, instance_id):
            return True
        log.info("instance %s was already reported for event %s", instance_id, event_id)
        return False

    @property
    def policy_name(self):
        return self.manager.data.get("name", "")

    def publish(self, messages, table, event_id=""):
        """Publish the messages; raise after all were tried if any failed, so the
        invocation shows as an error. A published message settles its claims in the
        state table; a failed one gives them back, so a retry reports it."""
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
                for fleet, when in message.fleets:
                    table.release_fleet(self.policy_name, fleet, when)
                if event_id:
                    table.release_reports(self.policy_name, event_id, message.instances)
                continue
            sent.append({"Report": message.key, "MessageId": response["MessageId"]})
            if event_id:
                table.settle_reports(self.policy_name, event_id, message.instances)
        if failed:
            raise ReportDeliveryError(
                "%d of %d reports could not be published to %s: %s" % (
                    len(failed), len(messages), self.topic,
                    ", ".join("%s (%s)" % f for f in failed)))
        return sent

    def one_per_fleet(self, items, persistent, table, event_id):
        """One Group per instance outside fleets, and per fleet and outcome.

        Throttling exists only to keep a relaunch loop (each relaunched instance
        terminated) from flooding the topic: a fleet's terminated instances are not
        reported if the fleet was reported within ``fleet-report-period``. Its
        instances left running are always reported.
        """
        period = self.data.get("fleet-report-period", DEFAULT_FLEET_PERIOD)
        by_fleet, groups, slots = {}, [], {}
        for item in items:
            fleet = decisions.fleet_of(item[0], persistent)
            if fleet is None:
                groups.append(Group(item[1], item[2], [item[1].instance_id]))
            else:
                by_fleet.setdefault((fleet, item[2].status), []).append(item)
        for (fleet, _), members in by_fleet.items():
            ids = [m[1].instance_id for m in members]
            slot = None
            if not running(members):
                if fleet not in slots:
                    fresh, when = table.claim_fleet(self.policy_name, fleet, period)
                    slots[fleet] = (fleet, when) if fresh else None
                slot = slots[fleet]
                if slot is None:
                    log.info("%s %s was reported less than %ss ago and its %d instance(s) "
                             "here were terminated: not reported again", fleet[0],
                             fleet[1], period, len(members))
                    if event_id:
                        table.settle_reports(self.policy_name, event_id, ids)
                    continue
            _, finding, outcome = members[0]
            if ids[1:]:
                finding.extra["Also in group"] = "%s%s" % (
                    ", ".join(ids[1:21]), " and %d more" % (len(ids) - 21)
                    if len(ids) > 21 else "")
            groups.append(Group(finding, outcome, ids, slot))
        return groups

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

    def finding(self, resource, record, persistent=frozenset()):
        violation = resource.get(ANNOTATION) or {}
        extra = {}
        fleet = decisions.fleet_of(resource, persistent)
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
