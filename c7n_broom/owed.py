"""What an event owes, recorded before Broom acts and settled only once done.

A report is Broom's whole point to the people involved: once an instance is
terminated, a failed publish, a crash or a timeout must not leave it unreported. So,
before terminating, holding or leaving an instance, Broom records in its state table
(``c7n_broom.state``) one item per policy and event (``owe#POLICY#EVENT``):

- ``reports``: the instances whose report SNS has not accepted yet;
- ``rechecks``: the held instances whose re-check schedule does not exist yet;
- ``findings``: what each report says (the instance, its Code, the decision), so a
  retry reports an instance EC2 no longer shows;
- ``counted``: the principals whose terminations this event already counted (the
  cap counts an event once, however often it is delivered);
- ``lease``: until when one invocation works on the event (its own deadline, so the
  retry of an invocation Lambda killed at its timeout takes over at once).

An obligation is settled (removed from its set) only once SNS accepted the message
or the schedule exists. A retry, a redelivery or a replay that finds an unsettled
obligation fulfils it, whether or not the instance is still there. At least once, not
exactly once: a crash between a publish and its settle repeats that report.

Every call is one UpdateItem: begin (take the lease), owe (record the obligations
and findings), settle (remove what was done, give the lease back).
"""
import dataclasses
import json
import logging
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from c7n_broom import invocation, items, launch, report
from c7n_broom.items import OBLIGATION_TTL
from c7n_broom.state import CHECK_FAILED, KEY, TTL_ATTRIBUTE, _key, _n, _s

log = logging.getLogger("custodian.broom.owed")

#: An unsettled obligation is kept OBLIGATION_TTL (15 days: Lambda retries for up to
#: 6 h, the dead-letter queue keeps messages up to 14 days).
#: What the stored findings of one event may take (DynamoDB items hold 400 KB).
FINDINGS_BUDGET = 300 * 1024
#: The decision recorded for an instance Broom set out to terminate.
TERMINATE = "terminate"
PERMISSIONS = ("dynamodb:UpdateItem",)


@dataclass
class Obligation:
    """One event's obligations under one policy, as this invocation holds them."""

    table: object  # state.StateTable
    policy: str
    event_key: str
    lease: float
    busy: bool = False  # another invocation holds the lease
    reports: set = field(default_factory=set)
    rechecks: set = field(default_factory=set)
    findings: dict = field(default_factory=dict)  # {instance id: stored finding}
    counted: dict = field(default_factory=dict)  # {principal key: terminations counted}

    @property
    def key(self):
        return _key("owe", self.policy, self.event_key)

    def recorded(self, instance_id):
        """True when this event already owed (or reported) ``instance_id``."""
        return instance_id in self.findings

    def owes_report(self, instance_id):
        return instance_id in self.reports

    def decision(self, instance_id):
        """The stored decision ("terminate", or the status left), or ""."""
        return (self.findings.get(instance_id) or {}).get("decision", "")

    def owe(self, findings, rechecks=(), summary=""):
        """Record reports owed for ``findings`` ({instance id: stored finding}: only
        those not recorded yet) and re-checks owed for ``rechecks``; keeps the
        principals counted so far. One UpdateItem, under this invocation's lease."""
        new = {i: f for i, f in findings.items() if i not in self.findings}
        stored = dict(self.findings)
        size = len(json.dumps(stored))
        for instance_id, found in new.items():
            entry = json.dumps(found)
            if size + len(entry) > FINDINGS_BUDGET:  # the id alone: reported from EC2
                found = {"decision": found.get("decision", "")}
                entry = json.dumps(found)
            stored[instance_id] = found
            size += len(entry)
        rechecks = set(rechecks) - self.rechecks
        if not new and not rechecks and not self.counted:
            return True
        now = self.table.clock()
        update = ["#findings = :findings", "#counted = :counted", "#summary = :summary",
                  "#expires = :expires"]
        values = {":findings": _s(json.dumps(stored)), ":counted": _s(json.dumps(self.counted)),
                  ":summary": _s(summary or self.event_key), ":lease": _n(self.lease),
                  ":expires": _n(now + OBLIGATION_TTL)}
        adds = []
        if new:
            adds.append("#reports :reports")
            values[":reports"] = {"SS": sorted(new)}
        if rechecks:
            adds.append("#rechecks :rechecks")
            values[":rechecks"] = {"SS": sorted(rechecks)}
        expression = "SET " + ", ".join(update) + (" ADD " + ", ".join(adds) if adds else "")
        if not self._update(expression, values, condition="#lease = :lease"):
            return False
        self.findings = stored
        self.reports |= set(new)
        self.rechecks |= rechecks
        return True

    def settle(self, reports=(), rechecks=(), release=False):
        """Remove what was done from the obligations (a report SNS accepted, a
        re-check scheduled); ``release`` gives the lease back. One UpdateItem."""
        reports = set(reports) & self.reports
        rechecks = set(rechecks) & self.rechecks
        parts, values = [], {}
        if reports:
            parts.append("#reports :reports")
            values[":reports"] = {"SS": sorted(reports)}
        if rechecks:
            parts.append("#rechecks :rechecks")
            values[":rechecks"] = {"SS": sorted(rechecks)}
        expression = "DELETE " + ", ".join(parts) if parts else ""
        if release:
            expression = "SET #lease = :zero " + expression
            values[":zero"] = _n(0)
        if not expression:
            return True
        if not self._update(expression.strip(), values):
            return False
        self.reports -= reports
        self.rechecks -= rechecks
        return True

    def _update(self, expression, values, condition=None):
        names = {"#%s" % name: name for name in (
            "findings", "counted", "summary", "expires", "reports", "rechecks", "lease")
            if "#%s" % name in expression or "#%s" % name in (condition or "")}
        params = dict(Key={KEY: _s(self.key)}, UpdateExpression=expression,
                      ExpressionAttributeValues=values)
        if names:
            params["ExpressionAttributeNames"] = names
        if condition:
            params["ConditionExpression"] = condition
        try:
            return self.table.call("UpdateItem", **params) is not None
        except ClientError as e:
            if e.response["Error"]["Code"] != CHECK_FAILED:
                raise
            log.warning("event %s: another invocation took over its obligations", self.event_key)
            return False


def begin(table, policy, event_key):
    """This invocation's hold on what ``event_key`` owes under ``policy``.

    None when nothing can be recorded (no event key, or the table is unavailable:
    then reports go out as before, without repeat suppression). ``busy`` when another
    invocation holds the event's lease (a concurrent delivery of the same event):
    that one fulfils it, or its retry does."""
    if not event_key:
        return None
    now = table.clock()
    lease = int(invocation.lease_until(now))
    obligation = Obligation(table, policy, event_key, lease)
    try:
        response = table.call(
            "UpdateItem", Key={KEY: _s(obligation.key)},
            UpdateExpression=("SET #lease = :lease, #created = if_not_exists(#created, :now), "
                              "#expires = if_not_exists(#expires, :expires) ADD #attempts :one"),
            # a lease no invocation of Broom's takes (too far, not a number) is not
            # Broom's: taken over, like a lapsed one
            ConditionExpression=("attribute_not_exists(#pk) OR #lease <= :now OR "
                                 "#lease > :far OR NOT attribute_type(#lease, :N)"),
            ExpressionAttributeNames={"#pk": KEY, "#lease": "lease", "#created": "created",
                                      "#expires": TTL_ATTRIBUTE, "#attempts": "attempts"},
            ExpressionAttributeValues={":lease": _n(lease), ":now": _n(now), ":one": _n(1),
                                       ":expires": _n(now + OBLIGATION_TTL),
                                       ":far": _n(now + items.LEASE_LIMIT + items.SKEW),
                                       ":N": _s("N")},
            ReturnValues="ALL_NEW")
    except ClientError as e:
        if e.response["Error"]["Code"] != CHECK_FAILED:
            raise
        log.info("event %s is being handled by another invocation: left to it", event_key)
        obligation.busy = True
        return obligation
    if response is None:
        return None
    item = response.get("Attributes") or {}
    if not items.fits(table.name, item, now):  # not Broom's: start the event afresh
        item = {}
        table.call("PutItem", Item={KEY: _s(obligation.key), "lease": _n(lease),
                                    "created": _n(now), "attempts": _n(1),
                                    TTL_ATTRIBUTE: _n(now + OBLIGATION_TTL)})
    obligation.reports = set(item.get("reports", {}).get("SS", ()))
    obligation.rechecks = set(item.get("rechecks", {}).get("SS", ()))
    obligation.findings = items.json_object(item, "findings") or {}
    obligation.counted = items.json_object(item, "counted") or {}
    return obligation


def event_key(event):
    """What an event's obligations (and its reports' FIFO deduplication) are keyed
    on: the record's event id; for an EC2 Fleet's launch (``events.report_key``), the
    launch itself, named by the smallest instance id its record names (an instance is
    launched once: both records of one launch share it, two launches never do);
    apart for the re-check of held instances; "" without a record."""
    return launch.of(event).key  # read once, with the event (c7n_broom.launch)


#: The Finding fields stored with an obligation (all but its cost and extra lines).
_STORED = tuple(f.name for f in dataclasses.fields(report.Finding)
                if f.name not in ("extra", "cost"))


def stored_finding(finding, decision):
    """What an obligation keeps of a report: the Finding, and the decision taken
    (``TERMINATE``, or the Outcome the instance was left with)."""
    kept = {name: getattr(finding, name) for name in _STORED}
    kept["allowed"] = list(finding.allowed)
    if decision.terminate:
        return dict(kept, decision=TERMINATE)
    return dict(kept, decision=decision.outcome.status, detail=decision.outcome.detail)


def reported_outcome(stored, now_gone):
    """The Outcome a retry reports for an instance an earlier attempt decided on:
    one it set out to terminate and EC2 shows gone (or no longer shows) was
    terminated; one it left keeps the outcome it was left with."""
    decision = stored.get("decision", "")
    if decision == TERMINATE:
        if now_gone:
            return report.Outcome(report.TERMINATED)
        return None  # still there: this attempt's own outcome stands
    if decision:
        return report.Outcome(decision, stored.get("detail", ""))
    return None


def finding_of(stored, instance_id, region, account_id):
    """The Finding an obligation stored (the instance id alone when it had no room)."""
    kept = {name: stored[name] for name in _STORED if name in stored}
    kept.update(instance_id=instance_id, allowed=tuple(kept.get("allowed", ())))
    kept.setdefault("region", region)
    kept.setdefault("account_id", account_id or "")
    return report.Finding(**kept)


#: Per policy run: {(table name, event key): Obligation}, so the actions of one run share one hold.
RUN_ATTRIBUTE = "_broom_obligations"


def for_run(element, event_key, table):
    """The Obligation of ``event_key`` for the policy ``element`` belongs to, begun once
    per run (``safe-terminate`` begins it, ``creator-report`` finds it)."""
    held = getattr(element.manager, RUN_ATTRIBUTE, None)
    if held is None:
        held = {}
        setattr(element.manager, RUN_ATTRIBUTE, held)
    if (table.name, event_key) not in held:
        held[table.name, event_key] = begin(table, element.manager.data.get("name", ""),
                                            event_key)
    return held[table.name, event_key]


def end_run(element, event_key):
    """Forget the run's holds (the next event, or the next delivery, begins anew)."""
    held = getattr(element.manager, RUN_ATTRIBUTE, {})
    for key in [k for k in held if k[1] == event_key]:
        del held[key]


def unsettled(client, table_name, older_than, now):
    """[(pk, item)] of obligations with reports or re-checks still owed, created
    before ``now - older_than`` (a Scan of the state table, for ``broom doctor``)."""
    found, params = [], dict(
        TableName=table_name,
        FilterExpression=("begins_with(#pk, :owe) AND #created < :cutoff AND "
                          "(attribute_exists(#reports) OR attribute_exists(#rechecks))"),
        ExpressionAttributeNames={"#pk": KEY, "#created": "created", "#reports": "reports",
                                  "#rechecks": "rechecks"},
        ExpressionAttributeValues={":owe": _s("owe#"), ":cutoff": _n(now - older_than)})
    while True:
        response = client.scan(**params)
        found.extend((i[KEY]["S"], i) for i in response.get("Items", ()))
        if not response.get("LastEvaluatedKey"):
            return found
        params["ExclusiveStartKey"] = response["LastEvaluatedKey"]
