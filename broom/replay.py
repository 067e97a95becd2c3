"""``broom replay``: run recorded CloudTrail events through a cloudtrail-mode policy.

For what Custodian lacks: checking a policy against a real past event, or catching up
after an outage (a Lambda that was down, a region that was not deployed) from the
CloudTrail log files in S3. Reads bare records, EventBridge envelopes and CloudTrail
log files (``{"Records": [...]}``, gzipped or not). By default nothing is changed: it
shows which instances each event names, which break the rule and why, and who
launched them. ``execute=True`` runs the policy's actions, as the Lambda would.
"""
import gzip
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from c7n_broom import events, report
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
    if isinstance(data, dict) and isinstance(data.get("Records"), list):
        candidates = data["Records"]
    elif isinstance(data, list):
        candidates = data
    else:
        candidates = [data]
    records = [events.cloudtrail_record(c) for c in candidates]
    found = [r for r in records if r is not None]
    if not found:
        raise ReplayError("%s holds no CloudTrail record (expected a record, an "
                          "EventBridge event or a log file with Records)" % path)
    return found


@dataclass
class Replayed:
    """What one event did (or would do) under one policy."""

    policy: str
    event_name: str
    event_time: str
    region: str
    creator: str
    skipped: str = ""
    instances: list = field(default_factory=list)  # (instance id, verdict, outcome)


def subscribes(policy, record):
    """True when a cloudtrail-mode policy listens for this record's event."""
    from c7n.cwe import CloudWatchEvents

    pairs = events.subscriptions([policy.data.get("mode") or {}],
                                 CloudWatchEvents.trail_events)
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

    def __init__(self, policy_path, output_dir, variables=None):
        self.path = str(policy_path)
        self.output_dir = str(output_dir)
        self.variables = dict(variables or {})
        self.loaded = {}

    def __call__(self, region):
        if region not in self.loaded:
            self.loaded[region] = self.load(region)
        return self.loaded[region]

    def load(self, region):
        from c7n.config import Config
        from c7n.exceptions import PolicyValidationError
        from c7n.policy import load
        from c7n.resources.aws import AWS

        config = AWS().initialize(Config.empty(region=region, output_dir=self.output_dir,
                                               cache_period=0))
        try:
            collection = load(config, self.path)
        except (PolicyValidationError, OSError, ValueError) as e:
            raise ReplayError("%s: %s" % (self.path, e))
        policies = list(collection or ())
        for policy in policies:
            policy.expand_variables(policy.get_variables(dict(self.variables)))
            policy.validate()
        return policies


def replay_record(policies, record, execute):
    """Replay one record through the policies that listen for it."""
    results = []
    event = events.envelope(record, event_id=events.field(record, "eventID") or "replay")
    creator = creator_from_record(record).name
    for policy in policies:
        if not subscribes(policy, record):
            continue
        result = Replayed(policy.name, events.field(record, "eventName"),
                          events.field(record, "eventTime"),
                          events.field(record, "awsRegion"), creator)
        results.append(result)
        skip = events.skip_reason(event) or foreign(policy, record)
        if skip:
            result.skipped = skip
            continue
        if execute:
            resources = policy.push(event) or []
        else:
            mode = policy.get_execution_mode()
            resources = mode.resolve_resources(event) or []
            resources = policy.resource_manager.filter_resources(resources, event)
        for r in resources:
            violation = r.get(ANNOTATION) or {}
            if execute:
                outcome = events.field(r, OUTCOME, "status")
            else:
                anomaly = events.launch_mismatch(record, r.get("LaunchTime"))
                outcome = "dry run" if not anomaly else "%s (%s)" % (report.ANOMALY, anomaly)
            result.instances.append((r["InstanceId"], violation.get("reason", "matched"),
                                     outcome))
    return results
