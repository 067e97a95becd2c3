"""``broom replay``: run recorded CloudTrail events through a cloudtrail-mode policy.

For what Custodian lacks: checking a policy against a real past event, or catching up
after an outage (a Lambda that was down, a region that was not deployed) from the
CloudTrail log files in S3. Reads bare records, EventBridge envelopes and CloudTrail
log files (``{"Records": [...]}``, gzipped or not), and drains the function's
dead-letter queue (``sqs://NAME`` or a queue URL), deleting a message only once its
event was handled. An EventBridge event is replayed as it was delivered, with every
marker Broom put in it (a re-check stays a re-check); a bare record is wrapped in the
envelope EventBridge would have given it. By default nothing is changed: it shows
which instances each event names, which break the rule and why, and who launched
them. ``execute=True`` runs the policy's actions, as the Lambda would.
"""
import gzip
import json
import logging
import re
from collections import namedtuple
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from c7n_broom import events, instances, invocation, report
from c7n_broom.codes import ANNOTATION
from c7n_broom.identity import creator_from_record
from c7n_broom.terminate import OUTCOME

log = logging.getLogger("custodian.broom.replay")


class ReplayError(RuntimeError):
    """An input file or policy cannot be replayed; the message says why."""


def read_records(path):
    """CloudTrail records in a file, in order."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    except (OSError, ValueError) as e:
        raise ReplayError("%s: not a readable JSON file (%s)" % (path, e))
    return records_in(data, path)


def records_in(data, where):
    """The events of a decoded file or message: a record, an EventBridge event, a list
    of them or a log file's ``{"Records": [...]}``. An EventBridge event is kept whole
    (its envelope and Broom's markers), a record as it is (``replay_record`` wraps it)."""
    if isinstance(data, dict) and isinstance(data.get("Records"), list):
        candidates = data["Records"]
    elif isinstance(data, list):
        candidates = data
    else:
        candidates = [data]
    found = [c for c in candidates if events.cloudtrail_record(c) is not None]
    if not found:
        raise ReplayError("%s holds no CloudTrail record (expected a record, an "
                          "EventBridge event or a log file with Records)" % where)
    return found


@dataclass
class Input:
    """One file or queue message: its records, or why it was skipped. ``done`` deletes
    the message (queues with ``execute`` only)."""

    label: str
    records: list = field(default_factory=list)
    problem: str = ""
    done: object = None
    queued: bool = False  # a queue message: it stays in the queue unless ``done``


def file_input(path):
    try:
        return Input(str(path), read_records(path))
    except ReplayError as e:
        return Input(str(path), problem=str(e))


def is_queue(source):
    return source.startswith("sqs://") or re.match(r"https?://", source) is not None


#: Seconds a received message stays hidden while the drain runs; a crash leaves it in
#: the queue, visible again after that.
VISIBILITY_SECONDS = 300
WAIT_SECONDS = 2  # long polling: an empty answer means the queue is empty


class Queue:
    """A dead-letter queue: each message body is the event Lambda could not handle.

    Messages are received hidden for VISIBILITY_SECONDS and deleted only when
    ``done`` is called (after their event was handled, with ``execute``); the others
    are made visible again by ``close()``, so a dry run or a failure leaves them.
    """

    def __init__(self, session, source, region):
        self.source = source
        self.kept = []  # receipt handles of messages received and not deleted
        if source.startswith("sqs://"):
            self.client = session.client("sqs", region_name=region)
            self.url = self.client.get_queue_url(QueueName=source[len("sqs://"):])["QueueUrl"]
            return
        parts = urlsplit(source)
        host = re.fullmatch(r"sqs\.([a-z0-9-]+)\.amazonaws\.com", parts.hostname or "")
        if host:
            self.client = session.client("sqs", region_name=host.group(1))
        else:  # moto's server or another endpoint: ask it, not AWS
            self.client = session.client("sqs", region_name=region,
                                         endpoint_url="%s://%s" % (parts.scheme, parts.netloc))
        self.url = source

    def inputs(self, execute):
        while True:
            messages = self.client.receive_message(
                QueueUrl=self.url, MaxNumberOfMessages=10, WaitTimeSeconds=WAIT_SECONDS,
                VisibilityTimeout=VISIBILITY_SECONDS).get("Messages", [])
            if not messages:
                return
            # All of them, at once: after Ctrl-C, close() shows again those not reached.
            self.kept.extend(m["ReceiptHandle"] for m in messages)
            for message in messages:
                yield self.message_input(message, execute)

    def message_input(self, message, execute):
        label = "%s message %s" % (self.source, message["MessageId"])
        handle = message["ReceiptHandle"]

        def done():
            self.client.delete_message(QueueUrl=self.url, ReceiptHandle=handle)
            self.kept.remove(handle)
        try:
            records = records_in(json.loads(message.get("Body") or ""), label)
        except ValueError as e:  # ReplayError is a RuntimeError: caught apart
            return Input(label, problem="%s: not JSON (%s)" % (label, e), queued=True)
        except ReplayError as e:
            return Input(label, problem=str(e), queued=True)
        return Input(label, records, done=done if execute else None, queued=True)

    def close(self):
        """Show again the messages received and not deleted (dry run, failures)."""
        for handle in self.kept:
            self.client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=handle, VisibilityTimeout=0)
        self.kept = []


Instance = namedtuple("Instance", "instance_id verdict outcome")


@dataclass
class Replayed:
    """What one event did (or would do) under one policy."""

    policy: str
    event_id: str
    event_name: str
    event_time: str
    region: str
    creator: str
    skipped: str = ""
    instances: list = field(default_factory=list)  # Instance tuples
    error: str = ""
    refused: str = ""  # not acted on, and not handled: its message stays in the queue

    def as_dict(self):
        return dict(policy=self.policy, event_id=self.event_id, event_name=self.event_name,
                    event_time=self.event_time, region=self.region, creator=self.creator,
                    skipped=self.skipped or None, error=self.error or None,
                    refused=self.refused or None,
                    instances=[i._asdict() for i in self.instances])


def trail_events():
    from c7n.cwe import CloudWatchEvents

    return CloudWatchEvents.trail_events


def subscribes(policy, record):
    """True when a cloudtrail-mode policy listens for this record's event."""
    pairs = events.subscriptions([policy.data.get("mode") or {}], trail_events())
    return (events.field(record, "eventSource"), events.field(record, "eventName")) in pairs


def foreign(policy, record):
    """Why a record cannot be acted on with this policy's credentials, or None.

    A log file is only as trustworthy as the bucket it came from: a record of another
    account names instance ids that mean nothing (or something else) here.
    """
    account = policy.options.account_id
    recorded = events.field(record, "recipientAccountId")
    if account and recorded != account:
        return "the record is from account %s, these credentials are for account %s" % (
            recorded or "(none)", account)
    return None


class PolicyCache:
    """Policies of a file loaded per region, the way ``custodian run`` loads them."""

    def __init__(self, policy_path, output_dir, variables=None, account_id=None):
        self.path = str(policy_path)
        self.output_dir = str(output_dir)
        self.variables = dict(variables or {})
        self.account_id = account_id
        self.loaded = {}

    def __call__(self, region):
        if region not in self.loaded:
            self.loaded[region] = self.load(region)
        return self.loaded[region]

    def load(self, region):
        from c7n.config import Config
        from c7n.resources.aws import AWS

        from broom import policyfile

        config = AWS().initialize(Config.empty(region=region, output_dir=self.output_dir,
                                               account_id=self.account_id, cache_period=0))
        try:
            policies = policyfile.load(self.path, config)
        except policyfile.PolicyFileError as e:
            raise ReplayError(str(e))
        for policy in policies:
            policy.expand_variables(policy.get_variables(dict(self.variables)))
            policy.validate()
        return policies


def replay_record(policies, item, execute):
    """Replay one event (an EventBridge event, as delivered) or bare record (wrapped
    as EventBridge would) through the policies that listen for it. A policy that fails
    on it (a report that cannot be published, a refused call) gets its ``error`` set;
    the other policies still run. An event that is not AWS's record for this account
    (``foreign``, ``events.untrusted``) is ``refused``."""
    results = []
    record = events.cloudtrail_record(item)
    event_id = events.field(record, "eventID") or "replay"
    event = events.envelope(record, event_id=event_id) if item is record else item
    creator = creator_from_record(record).name
    age = events.age_seconds(record)
    for policy in policies:
        if not subscribes(policy, record):
            continue
        result = Replayed(policy.name, event_id, events.field(record, "eventName"),
                          events.field(record, "eventTime"),
                          events.field(record, "awsRegion"), creator)
        results.append(result)
        refusal = foreign(policy, record) or (item is not record and events.untrusted(
            event, events.subscriptions([policy.data.get("mode") or {}],
                                        trail_events())))
        if refusal:
            result.refused = refusal
            continue
        skip = events.skip_reason(event)
        if skip:
            result.skipped = skip
            continue
        invocation.start()
        try:
            result.instances = run_policy(policy, record, event, execute, age)
            invocation.check()  # what the run left owed: the message stays for later
        except Exception as e:  # one event's failure must not stop the others
            log.debug("policy %s failed on event %s", policy.name, event_id, exc_info=True)
            result.error = "%s: %s" % (type(e).__name__, e)
    return results


def run_policy(policy, record, event, execute, age):
    """[Instance] for what the policy did (or would do) on the event: its violators,
    then the named instances already gone or unknown to EC2."""
    from c7n.cwe import CloudWatchEvents

    manager = policy.resource_manager
    source = getattr(manager, "source", None)
    if hasattr(source, "for_event_age"):
        source.for_event_age(age)
    named = manager.match_ids(CloudWatchEvents.get_ids(event, policy.data["mode"]) or [])
    if execute:
        resources = policy.push(event) or []
        seen = {r["InstanceId"] for r in resources}
        found = instances.current_states(manager, [i for i in named if i not in seen])
    else:
        resolved = policy.get_execution_mode().resolve_resources(event) or []
        found = {r["InstanceId"]: instances.state(r) for r in resolved}
        live = [r for r in resolved if instances.state(r) not in instances.GONE_STATES]
        resources = manager.filter_resources(live, event)
    shown = []
    for r in resources:
        violation = r.get(ANNOTATION) or {}
        if execute:
            outcome = events.field(r, OUTCOME, "status")
        else:
            anomaly = events.launch_mismatch(record, r.get("LaunchTime"))
            outcome = "dry run" if not anomaly else "%s (%s)" % (report.ANOMALY, anomaly)
        shown.append(Instance(r["InstanceId"], violation.get("reason", "matched"), outcome))
    acted = {i.instance_id for i in shown}
    for instance_id in dict.fromkeys(named):
        if instance_id in acted:
            continue
        if instance_id not in found:
            shown.append(Instance(instance_id, "-", "not found"))
        elif found[instance_id] in instances.GONE_STATES:
            shown.append(Instance(instance_id, "-", "already gone (%s)" % found[instance_id]))
    return shown
