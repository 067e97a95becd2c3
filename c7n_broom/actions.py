"""The ``creator-report`` action: tell a person who launched a violating instance."""
import hashlib
import logging
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from botocore.exceptions import ClientError
from c7n.actions import EventAction
from c7n.exceptions import PolicyExecutionError
from c7n.utils import local_session, type_schema

from c7n_broom import (
    codes,
    cost,
    events,
    fleets,
    formats,
    instances,
    lookup,
    metrics,
    recheck,
    report,
    state,
    sweep,
    terminate,
)
from c7n_broom.identity import UNKNOWN, creator_from_record
from c7n_broom.lambda_check import check_lambda_packaging
from c7n_broom.mailer import REPORTED
from c7n_broom.validation import check_schema, check_state_table, check_topics

log = logging.getLogger("custodian.broom.actions")

TERMINATING_ACTIONS = ("terminate", "safe-terminate")
DEFAULT_MAX_MESSAGES = 20
DEFAULT_FLEET_PERIOD = 3600
ACTORS = {"RunInstances": "Launched by", "CreateFleet": "Launched by",
          "CreateTags": "Tagged by", "DeleteTags": "Untagged by"}


@dataclass
class Message:
    """One SNS message in every format (``body``: the e-mail text, ``document``: the
    JSON document, ``chatbot``: AWS Chatbot's card; see c7n_broom.formats): the
    ``instances`` it reports (fleet members it stands for included) and the fleet
    report slots it took in the state table (``fleets``: (fleet, time) pairs), both
    given back if it cannot be published."""

    key: str
    subject: str
    body: str
    attributes: dict
    instances: list = field(default_factory=list)
    fleets: list = field(default_factory=list)
    document: dict = field(default_factory=dict)
    chatbot: dict = field(default_factory=dict)

    def envelope(self, https_chatbot=False):
        """The per-protocol ``Message`` (MessageStructure "json")."""
        return formats.envelope(self.body, self.document,
                                self.chatbot if https_chatbot else None)

    def size(self, https_chatbot=False):
        return formats.size(self.subject, self.envelope(https_chatbot), self.attributes)


def compose_messages(groups, creator, actor, max_messages=DEFAULT_MAX_MESSAGES, policy=""):
    """One Message per report.Group, or one digest for them all when there are more
    than ``max_messages``, listing as many instances as fit in one SNS message."""
    if len(groups) > max_messages:
        return [fit_digest(groups, creator, actor, policy)]
    messages = []
    for g in groups:
        subject = report.subject(g.finding, g.outcome)
        body = report.body(g.finding, g.outcome, creator, actor)
        messages.append(Message(
            g.finding.instance_id, subject, body,
            report.attributes(g.finding, g.outcome, creator),
            g.instances, [g.slot] if g.slot else [],
            formats.document([(g.finding, g.outcome)], creator, policy, subject, body),
            formats.chatbot(g.finding, g.outcome, creator, actor, subject)))
    return messages


def fit(build, count):
    """The Message ``build(listed)`` gives for the largest ``listed`` (0 to ``count``)
    that keeps every format of it (Chatbot's card included) under SNS's limit. Each
    listed instance takes more than 200 bytes, so no more than BUDGET / 200 are tried."""
    low, high = 0, min(count, formats.BUDGET // 200)
    while low < high:  # the largest count that fits
        middle = (low + high + 1) // 2
        if build(middle).size(https_chatbot=True) <= formats.BUDGET:
            low = middle
        else:
            high = middle - 1
    return build(low)


def fit_digest(groups, creator, actor, policy=""):
    """The digest Message listing the most instances that fit (see ``fit``)."""
    items = [(g.finding, g.outcome) for g in groups]

    def build(listed):
        subject, body, attributes = report.digest(items, creator, actor, limit=listed)
        return Message(
            "%d instances" % len(groups), subject, body, attributes,
            [i for g in groups for i in g.instances], [g.slot for g in groups if g.slot],
            formats.document(items, creator, policy, subject, body, True, listed),
            formats.chatbot_digest(items, creator, actor, subject))

    return fit(build, len(items))


def sweep_message(rows, region, account_id, policy=""):
    """A sweep's one Message (``sweep.Row`` rows) in every format, listing the most
    violators that fit (see ``fit``)."""
    rows = sweep.ordered(rows)

    def build(listed):
        subject, body, attributes = sweep.digest(rows, region, account_id, limit=listed)
        return Message(
            "sweep of %d instances" % len(rows), subject, body, attributes,
            [row.finding.instance_id for row in rows], [],
            formats.sweep_document(rows, policy, subject, body, listed),
            formats.chatbot_sweep(rows, subject))

    return fit(build, len(rows))


class ReportDeliveryError(PolicyExecutionError):
    """Raised after all reports were attempted when at least one could not be published."""


class CreatorReport(EventAction):
    """Publish a human-readable report per violating instance to an SNS topic.

    A report names who launched the instance (from the CloudTrail event's
    ``userIdentity``; unknown without an event), the instance, the Code tag found and
    why it breaks the rule (from ``allowed-codes``), and what happened to it: put this
    action after ``safe-terminate`` or ``terminate``. An instance is called terminated
    only when EC2 shows it shutting down or terminated. The topic may live in another
    region; ``topic-override`` replaces ``topic`` when a c7n-org var sets it. SNS
    message attributes (``broom.*``) carry the machine-readable fields.

    One publish serves every subscriber (docs/reports.md): e-mail gets the text
    report, SQS, Lambda and HTTP(S) the versioned JSON document
    (``schemas/broom.report-1.json``). ``https-format: chatbot`` gives the topic's
    HTTPS subscribers AWS Chatbot's custom notification instead (when Chatbot is the
    only one); ``chatbot-topic`` publishes that card to a topic of its own. A FIFO
    topic (``.fifo``) gets a message group and a deduplication id from the event, so
    SNS drops a repeated event's report. ``cost: true`` adds what the instance cost
    (on-demand price from the Price List API, ``pricing:GetProducts``): "cost
    unknown" without it.

    More than ``max-messages`` reports (default 20) in one run go as one digest, kept
    under SNS's 256 KB. An Auto Scaling group, Spot Fleet, EC2 Fleet or persistent
    spot request is reported once per run, naming what to fix there; one whose
    instances were all terminated, at most once per ``fleet-report-period`` seconds
    (default 3600), so a relaunch loop cannot flood the topic. An instance is
    reported once per event, however often EventBridge delivers it, and an EC2
    Fleet's instance once per launch (an instant fleet's CreateFleet and the
    RunInstances EC2 Fleet makes for it are one launch). Both records
    live in Broom's DynamoDB table ``state-table`` (default ``broom-state``, see
    ``c7n_broom.state``), never in tags; without the table, reports are sent anyway,
    repeats included.

    After ``lookup-creators`` (a sweep: periodic or pull mode), the run is reported
    in one digest, in the same formats (the JSON document's ``kind`` is "sweep"):
    counts, then each violator with who launched it, its age, type, state after
    Broom's actions and, with ``cost``, what it cost, new ones apart from those an
    earlier sweep reported (still open).

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
                https-format: chatbot
                cost: true
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
            "https-format": {"enum": ["json", "chatbot"]},
            "chatbot-topic": {"type": "string"},
            "cost": {"type": "boolean"},
        },
    )
    permissions = ("sns:Publish", "ec2:DescribeInstances",
                   "ec2:DescribeSpotInstanceRequests") + state.REPORT_PERMISSIONS

    clock = staticmethod(time.time)

    def validate(self):
        check_topics(self)
        check_schema(self)  # the rest
        check_state_table(self)
        check_lambda_packaging(self.manager, self.type)
        return self

    @property
    def topic(self):
        override = self.data.get("topic-override")
        return self.data["topic"] if codes.is_unset(override) else override

    @property
    def policy_name(self):
        return self.manager.data.get("name", "")

    def get_permissions(self):
        """What it reads and writes; with ``cost``, the Price List API; a sweep also
        records what it reported."""
        extra = cost.PERMISSIONS if self.data.get("cost") else ()
        if self.manager and self.sweeping():
            extra += state.SWEEP_PERMISSIONS
        return tuple(self.permissions) + tuple(extra)

    def process(self, resources, event=None):
        if self.sweeping():
            return self.sweep_report(resources)
        record = events.cloudtrail_record(event)
        creator = creator_from_record(record) if record else UNKNOWN
        event_id = events.report_key(record)  # per event; per launch for EC2 Fleets
        if event_id and recheck.hold_key(event):  # the re-check reports what it does
            event_id += "#recheck"
        table = state.for_element(self, clock=self.clock)
        live = [r for r in resources if not self.gone_before(r)
                and table.claim_report(self.policy_name, event_id, r["InstanceId"])]
        if not live:
            return []
        outcomes = terminate.outcomes(self.manager, live, self.terminates())
        metrics.outcomes(self.policy_name, [o.status for o in outcomes.values()])
        persistent = fleets.persistent_spot_requests(self.manager, live)
        config, items = self.manager.config, []
        prices, now = self.price_book(), datetime.now(timezone.utc)
        for r in live:
            fleet = fleets.fleet_of(r, persistent)
            found = report.finding(r, record, config.region, config.account_id,
                                   fleets.notes(fleet), prices and prices.cost_of(r, now))
            items.append((found, outcomes[r["InstanceId"]], fleet))
            r[REPORTED] = formats.instance(found, outcomes[r["InstanceId"]])  # notify-creator
        groups = fleets.one_per_fleet(
            items, table, self.policy_name, event_id,
            self.data.get("fleet-report-period", DEFAULT_FLEET_PERIOD))
        actor = ACTORS.get(events.field(record, "eventName"), "Launched by")
        return self.publish(compose_messages(
            groups, creator, actor, self.data.get("max-messages", DEFAULT_MAX_MESSAGES),
            self.policy_name), table, event_id)

    def price_book(self):
        """Prices for the report's cost lines, or None when ``cost`` is off."""
        return cost.PriceBook(self.manager.session_factory) if self.data.get("cost") else None

    def sweeping(self):
        """True when ``lookup-creators`` runs before this action: a sweep."""
        for action in self.manager.actions:
            if action is self:
                return False
            if action.type == "lookup-creators":
                return True
        return False

    def sweep_report(self, resources):
        """One digest for the sweep's violators, in every format; once published, the
        new ones are recorded as reported, so the next sweep lists them as still open."""
        now = self.clock()
        table = state.for_element(self, clock=self.clock)
        outcomes = terminate.outcomes(self.manager, resources, self.terminates())
        metrics.outcomes(self.policy_name, [o.status for o in outcomes.values()])
        persistent = fleets.persistent_spot_requests(self.manager, resources)
        found = sweep.attributions(resources)
        # What EC2 shows now of the instances Broom tried to terminate: the digest
        # gives each row's state after Broom's actions, not before.
        tried = [r["InstanceId"] for r in resources if outcomes[r["InstanceId"]].status
                 in (report.TERMINATED, report.FAILED, report.STOPPED)]
        after = instances.current_states(self.manager, tried) if tried else {}
        prices, when = self.price_book(), datetime.fromtimestamp(now, timezone.utc)
        config, rows = self.manager.config, []
        for r in resources:
            launched = lookup.first_launch(r)
            outcome = outcomes[r["InstanceId"]]
            rows.append(sweep.Row(
                finding=report.finding(r, None, config.region, config.account_id,
                                       price=prices and prices.cost_of(r, when)),
                outcome=outcome,
                attribution=found.get(r["InstanceId"]) or lookup.Attribution(
                    lookup.FAULT, reason="not looked up"),
                age_seconds=None if launched is None else now - launched.timestamp(),
                state=sweep.state_after(outcome, instances.state(r), after, r["InstanceId"]),
                new=not sweep.reported_at(r),
                fleet=fleets.fleet_of(r, persistent),
                owners=tuple(sweep.fleet_owners(r))))
            r[REPORTED] = formats.instance(rows[-1].finding, outcome)  # security-hub-finding
        sent = self.publish([sweep_message(rows, config.region, config.account_id or "",
                                           self.policy_name)], table)
        sweep.record_reported(table, self.policy_name, resources, now)
        return sent

    def gone_before(self, resource):
        """True for an instance gone before this event arrived (EventBridge delivers
        at least once: a repeat finds what the first delivery terminated)."""
        status = instances.state(resource)
        if status in instances.GONE_STATES:
            log.info("instance %s was already %s when this event was handled: "
                     "not reported again", resource["InstanceId"], status)
        return status in instances.GONE_STATES

    def terminates(self):
        """True when an action before this one terminates the instances."""
        for action in self.manager.actions:
            if action is self:
                return False
            if action.type in TERMINATING_ACTIONS:
                return True
        return False

    def publish(self, messages, table, event_id=""):
        """Publish the messages; raise after all were tried if any failed, so the
        invocation shows as an error. A published message settles its claims in the
        state table; a failed one gives them back, so a retry reports it."""
        client = self.sns(self.topic)
        chatbot_https = self.data.get("https-format") == "chatbot"
        sent, failed = [], []
        for message in messages:
            try:
                response = self.manager.retry(
                    client.publish, TopicArn=self.topic, Subject=message.subject,
                    Message=message.envelope(chatbot_https), MessageStructure="json",
                    MessageAttributes=message.attributes,
                    **fifo_ids(self.topic, self.policy_name, event_id, message))
            except ClientError as e:
                log.error("report for %s NOT published to %s: %s", message.key, self.topic, e)
                failed.append((message.key, e.response["Error"]["Code"]))
                for fleet, when in message.fleets:
                    table.release_fleet(self.policy_name, fleet, when)
                table.release_reports(self.policy_name, event_id, message.instances)
                continue
            sent.append({"Report": message.key, "MessageId": response["MessageId"]})
            table.settle_reports(self.policy_name, event_id, message.instances)
            failed += self.publish_chatbot(message, event_id)
        if failed:
            metrics.count(self.policy_name, metrics.REPORT_FAILURES, len(failed))
            raise ReportDeliveryError(
                "%d of %d reports could not be published to %s: %s" % (
                    len(failed), len(messages), self.topic,
                    ", ".join("%s (%s)" % f for f in failed)))
        return sent

    def sns(self, topic):
        return local_session(self.manager.session_factory).client(
            "sns", region_name=topic.split(":")[3])

    def publish_chatbot(self, message, event_id):
        """Publish the Chatbot card to ``chatbot-topic``, if set; [(key, error code)]
        if that failed (the report itself was delivered: its claims stay settled)."""
        topic = self.data.get("chatbot-topic")
        if codes.is_unset(topic):
            return []
        card = formats.dumps(message.chatbot)
        try:
            self.manager.retry(self.sns(topic).publish, TopicArn=topic, Message=card,
                               **fifo_ids(topic, self.policy_name, event_id, message))
        except ClientError as e:
            log.error("Chatbot card for %s NOT published to %s: %s", message.key, topic, e)
            return [(message.key + " (Chatbot card)", e.response["Error"]["Code"])]
        return []


#: What SNS accepts in a message group or deduplication id: ASCII letters, digits and
#: punctuation, at most 128 characters.
_FIFO_ID = re.compile(r"[^!-~]")


def fifo_ids(topic, policy, event_id, message):
    """MessageGroupId and MessageDeduplicationId for a FIFO topic, {} for a standard one.

    The group is the event (reports of one event stay in order); the deduplication
    id is a hash of policy, event id and what the message reports, so a repeated
    event (EventBridge delivers at least once) is dropped by SNS itself for five
    minutes. A run without an event deduplicates on the message's content.
    """
    if not topic.endswith(".fifo"):
        return {}
    group = _FIFO_ID.sub("", str(event_id or ""))[:128] or "broom-" + _FIFO_ID.sub(
        "", policy)[:100]
    seed = "\n".join((policy, event_id, message.key)) if event_id else message.envelope()
    return {"MessageGroupId": group,
            "MessageDeduplicationId": hashlib.sha256(seed.encode("utf-8")).hexdigest()}
