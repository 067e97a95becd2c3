"""The ``creator-report`` action: tell a person who launched a violating instance."""
import logging
import re

from botocore.exceptions import ClientError
from c7n.actions import EventAction
from c7n.exceptions import PolicyExecutionError, PolicyValidationError
from c7n.utils import chunks, local_session, type_schema

from c7n_broom import codes, events, report
from c7n_broom.filters import ANNOTATION
from c7n_broom.identity import UNKNOWN, creator_from_record
from c7n_broom.lambda_check import check_lambda_packaging
from c7n_broom.terminate import OUTCOME

log = logging.getLogger("custodian.broom.actions")

TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_-]{1,256}$")
GONE_STATES = ("shutting-down", "terminated")
TERMINATING_ACTIONS = ("terminate", "safe-terminate")
ACTORS = {"RunInstances": "Launched by", "CreateTags": "Tagged by", "DeleteTags": "Untagged by"}


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

    Put it after ``terminate`` so it can report the outcome. Without an event (pull or
    periodic mode) the creator is reported as unknown. The topic may live in another
    region; ``topic-override`` replaces ``topic`` when a c7n-org variable sets it.
    Machine-readable fields are sent as SNS message attributes (``broom.*``).

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
    """

    schema = type_schema(
        "creator-report",
        required=["topic"],
        topic={"type": "string"},
        **{"topic-override": {"type": "string"}},
    )
    permissions = ("sns:Publish", "ec2:DescribeInstances")

    def validate(self):
        for option in ("topic", "topic-override"):
            value = self.data.get(option)
            if option == "topic-override" and codes.is_unset(value):
                continue
            if "{" in value:
                continue  # expanded later, at run time (custodian run, c7n-org)
            if not TOPIC_ARN.match(value):
                raise PolicyValidationError(
                    "policy:%s action:%s: '%s' must be an SNS topic ARN like "
                    "arn:aws:sns:us-east-1:123456789012:broom-reports, got %r" % (
                        self.manager.data.get("name", "?"), self.type, option, value))
        check_lambda_packaging(self.manager, self.type)
        return self

    @property
    def topic(self):
        override = self.data.get("topic-override")
        return self.data["topic"] if codes.is_unset(override) else override

    def process(self, resources, event=None):
        record = events.cloudtrail_record(event)
        creator = creator_from_record(record) if record else UNKNOWN
        live = []
        for r in resources:
            if r.get("State", {}).get("Name") in GONE_STATES:
                log.info("instance %s was already %s when this event was handled: "
                         "not reported again", r["InstanceId"], r["State"]["Name"])
            else:
                live.append(r)
        if not live:
            return []
        outcomes = self.outcomes(live)
        actor = ACTORS.get(events.field(record, "eventName"), "Launched by")
        client = self.sns_client()
        sent, failed = [], []
        for r in live:
            finding = self.finding(r, record)
            outcome = outcomes[r["InstanceId"]]
            try:
                response = self.manager.retry(
                    client.publish,
                    TopicArn=self.topic,
                    Subject=report.subject(finding, outcome),
                    Message=report.body(finding, outcome, creator, actor),
                    MessageAttributes=report.attributes(finding, outcome, creator))
            except ClientError as e:
                log.error("report for instance %s NOT published to %s: %s",
                          r["InstanceId"], self.topic, e)
                failed.append((r["InstanceId"], e.response["Error"]["Code"]))
                continue
            sent.append({"InstanceId": r["InstanceId"], "MessageId": response["MessageId"],
                         "Outcome": outcome.status})
        if failed:
            raise ReportDeliveryError(
                "%d of %d reports could not be published to %s: %s" % (
                    len(failed), len(live), self.topic,
                    ", ".join("%s (%s)" % f for f in failed)))
        return sent

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
        )
