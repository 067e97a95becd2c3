"""The ``creator-report`` action: tell a person who launched a violating instance."""
import hashlib
import itertools
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
    decisions,
    fleets,
    formats,
    instances,
    invocation,
    launch,
    lookup,
    metrics,
    owed,
    report,
    state,
    sweep,
    terminate,
)
from c7n_broom.lambda_check import check_lambda_packaging
from c7n_broom.mailer import REPORTED
from c7n_broom.validation import check_schema, check_state_table, check_topics

log = logging.getLogger("custodian.broom.actions")

TERMINATING_ACTIONS = ("terminate", "safe-terminate")
DEFAULT_MAX_MESSAGES = 20
DEFAULT_FLEET_PERIOD = 3600
PUBLISH_BATCH = 10  # messages per SNS PublishBatch call
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
    listed instance takes more than 200 bytes, so no more than BUDGET / 200 are tried.

    Each try renders the whole message, so the search first guesses where the limit
    falls from the sizes at the ends of the range (listed instances take about as much
    room each) and tries that count and its neighbour; after INTERPOLATED guesses it
    halves the range as a binary search does. The answer is the binary search's, in a
    few renders instead of about ten."""
    built, sizes = {}, {}

    def fits(listed):
        built[listed] = build(listed)
        sizes[listed] = built[listed].size(https_chatbot=True)
        return sizes[listed] <= formats.BUDGET

    high = min(count, formats.BUDGET // 200)
    if fits(high):
        return built[high]
    low = 0  # the answer is in [low, high): high is over the limit
    fits(low)
    for guesses in itertools.count():
        if high - low <= 1:
            return built[low]
        guess = (low + high) // 2
        if guesses < INTERPOLATED and sizes[high] > sizes[low]:
            guess = low + int((formats.BUDGET - sizes[low]) * (high - low)
                              / (sizes[high] - sizes[low]))
            guess = min(max(guess, low + 1), high - 1)
        if fits(guess):
            low = guess
            if guesses < INTERPOLATED and guess + 1 < high:  # its neighbour is likely over
                low, high = (guess + 1, high) if fits(guess + 1) else (low, guess + 1)
        else:
            high = guess
            if guesses < INTERPOLATED and guess - 1 > low:
                low, high = (guess - 1, high) if fits(guess - 1) else (low, guess - 1)


#: Guesses ``fit`` makes from the sizes it has seen before it bisects.
INTERPOLATED = 3


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


def publish_batches(messages, https_chatbot=False):
    """The messages in PublishBatch calls: at most 10 a call, 256 KB in all."""
    batch, size = [], 0
    for message in messages:
        length = message.size(https_chatbot)
        if batch and (len(batch) == PUBLISH_BATCH or size + length > report.SNS_LIMIT):
            yield batch
            batch, size = [], 0
        batch.append(message)
        size += length
    if batch:
        yield batch


class FleetSlots:
    """The state table's fleet report slots for ``fleets.one_per_fleet``; a fleet's
    instances it does not report again (reported within the period) are settled
    with the event's reports (``throttled``)."""

    def __init__(self, table, throttled):
        self.table = table
        self.throttled = throttled

    def claim_fleet(self, policy, fleet, period):
        return self.table.claim_fleet(policy, fleet, period)

    def settle_reports(self, policy, event_id, instance_ids):
        self.throttled.extend(instance_ids)


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
        record = launch.of(event)  # the event's record, read once by the handler
        event_id = record.key
        table = state.for_element(self, clock=self.clock)
        obligation = owed.for_run(self, event_id, table)
        try:
            if obligation is not None and obligation.busy:
                return []
            return self.report_event(resources, record, event_id, table, obligation)
        finally:
            owed.end_run(self, event_id)

    def report_event(self, resources, record, event_id, table, obligation):
        """Report what the event owes: each instance of this run, and those an earlier
        attempt recorded and did not report, whether or not EC2 still shows them.
        Without the state table (``obligation`` None) every instance found is reported,
        except those gone before this event arrived (a repeated delivery)."""
        creator, config = record.principal, self.manager.config
        if obligation is None:
            live = [r for r in resources if not self.gone_before(r)]
            missing = []
        else:
            fresh = {r["InstanceId"]: owed.stored_finding(
                report.finding(r, record.record, config.region, config.account_id),
                decisions.Decision(False, report.Outcome(report.REPORTED)))
                for r in resources if not obligation.recorded(r["InstanceId"])
                and not self.gone_before(r)}
            if fresh:  # no safe-terminate before this action recorded them
                obligation.owe(fresh)
            deferred = {r["InstanceId"] for r in resources if r.get(terminate.DEFERRED)}
            live = [r for r in resources if obligation.owes_report(r["InstanceId"])
                    and r["InstanceId"] not in deferred]
            named = {r["InstanceId"] for r in resources}
            missing = sorted(i for i in obligation.reports
                             if i not in named and i not in deferred)
            invocation.accounted_for(missing)
        if not live and not missing:
            if obligation is not None:
                obligation.settle(release=True)
            return []
        outcomes = terminate.outcomes(self.manager, live, self.terminates())
        metrics.outcomes(self.policy_name, [o.status for o in outcomes.values()])
        persistent = fleets.persistent_spot_requests(self.manager, live)
        items = []
        prices, now = self.price_book(), datetime.now(timezone.utc)
        for r in live:
            outcome = outcomes[r["InstanceId"]]
            if obligation is not None:  # an earlier attempt's decision
                earlier = owed.reported_outcome(
                    obligation.findings.get(r["InstanceId"], {}), outcome.gone)
                outcome = earlier if earlier and outcome.status in (
                    report.GONE, report.TERMINATED) else outcome
            fleet = fleets.fleet_of(r, persistent)
            found = report.finding(r, record.record, config.region, config.account_id,
                                   fleets.notes(fleet), prices and prices.cost_of(r, now))
            items.append((found, outcome, fleet))
            r[REPORTED] = formats.instance(found, outcome)  # notify-creator
        for instance_id in missing:  # EC2 no longer shows them: what was stored
            stored = obligation.findings.get(instance_id, {})
            outcome = owed.reported_outcome(stored, True) or report.Outcome(
                report.GONE, "EC2 no longer shows it")
            items.append((owed.finding_of(stored, instance_id, config.region,
                                          config.account_id), outcome, None))
        throttled = []
        groups = fleets.one_per_fleet(
            items, FleetSlots(table, throttled), self.policy_name, event_id,
            self.data.get("fleet-report-period", DEFAULT_FLEET_PERIOD))
        actor = ACTORS.get(record.event_name, "Launched by")
        return self.publish(compose_messages(
            groups, creator, actor, self.data.get("max-messages", DEFAULT_MAX_MESSAGES),
            self.policy_name), table, event_id, obligation, throttled)

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

    def publish(self, messages, table, event_id="", obligation=None, throttled=()):
        """Publish the messages, 10 to a PublishBatch call (within SNS's 256 KB); raise
        after all were tried if any failed, so the invocation shows as an error (and
        is retried). Reports SNS accepted are settled in the event's obligation (with
        the fleets' ``throttled`` instances, reported within their period), in one
        call; a failed one stays owed, and gives its fleet report slot back."""
        client = self.sns(self.topic)
        chatbot_https = self.data.get("https-format") == "chatbot"
        sent, failed, settled = [], [], list(throttled)
        for batch in publish_batches(messages, chatbot_https):
            entries = [dict(Id=str(n), Subject=m.subject, Message=m.envelope(chatbot_https),
                            MessageStructure="json", MessageAttributes=m.attributes,
                            **fifo_ids(self.topic, self.policy_name, event_id, m))
                       for n, m in enumerate(batch)]
            try:
                response = invocation.retry(client.publish_batch, TopicArn=self.topic,
                                            PublishBatchRequestEntries=entries)
            except ClientError as e:
                response = {"Failed": [{"Id": entry["Id"], "Code": e.response["Error"]["Code"],
                                        "Message": str(e)} for entry in entries]}
            accepted = {s["Id"]: s["MessageId"] for s in response.get("Successful", ())}
            refused = {f["Id"]: f for f in response.get("Failed", ())}
            for n, message in enumerate(batch):
                if str(n) not in accepted:
                    why = refused.get(str(n), {"Code": "no answer"})
                    log.error("report for %s NOT published to %s: %s %s", message.key,
                              self.topic, why.get("Code"), why.get("Message", ""))
                    failed.append((message.key, why.get("Code")))
                    for fleet, when in message.fleets:
                        table.release_fleet(self.policy_name, fleet, when)
                    continue
                sent.append({"Report": message.key, "MessageId": accepted[str(n)]})
                settled.extend(message.instances)
        if obligation is not None:
            obligation.settle(reports=settled, release=True)
        for message in messages:
            if message.key in {s["Report"] for s in sent}:
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
            invocation.retry(self.sns(topic).publish, TopicArn=topic, Message=card,
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
