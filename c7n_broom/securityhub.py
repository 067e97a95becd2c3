"""The ``security-hub-finding`` action: Broom's violations as AWS Security Hub findings.

One finding per instance and rule, in the AWS Security Finding Format (ASFF
2018-10-08), imported with ``BatchImportFindings`` under the account's own default
product (``arn:PARTITION:securityhub:REGION:ACCOUNT:product/ACCOUNT/default``), in
the account the instance lives in: in a hub, c7n's ``member-role`` session, so
Security Hub's own cross-account aggregation carries it to the administrator.

Its id is the instance's and the rule's (``broom/REGION/ACCOUNT/INSTANCE/code-tag``):
every policy that judges the instance updates the same finding. Its lifecycle
follows what happened (:func:`lifecycle`):

- terminated (or already gone): ``RecordState: ARCHIVED`` and, on the first import,
  ``Workflow.Status: RESOLVED``; Security Hub itself resolves an existing NEW or
  NOTIFIED finding when it is archived;
- the ``Code`` fixed (``compliance: PASSED``, policies/ec2-tags-fixed.yml):
  ``Compliance.Status: PASSED``, which Security Hub resolves the same way;
- held, exempt, report-only, termination failed: active, ``FAILED``, ``NOTIFIED``
  when a report told a person (``creator-report`` ran before), the reason in the
  description and in ``ProductFields`` (``broom/outcome``, ``broom/outcome-detail``).
  ``BatchImportFindings`` cannot change ``Workflow`` or ``Note`` once a finding
  exists; those are the customer's (``BatchUpdateFindings``).

Why not c7n's ``post-finding`` (this action reuses its ``AwsEc2Instance`` resource
details and finding-type check, :class:`c7n.resources.ec2.InstanceFinding`):

- it imports under Custodian's partner product, which each account must first
  enable as an integration; the default product needs nothing;
- its finding id hashes the whole policy (any edit starts new findings) and is kept
  in a ``c7n:FindingId`` tag it writes on the instance: Broom would need
  ``ec2:CreateTags``, and whoever may tag the instance could point Broom's updates
  at another finding;
- its compliance status is one value per policy, not what happened to each instance;
- it raises when Security Hub is disabled or denied; Broom logs one warning line.
"""
import logging
from datetime import datetime, timezone

from botocore.exceptions import ClientError
from c7n.actions import EventAction
from c7n.exceptions import PolicyValidationError
from c7n.resources.ec2 import InstanceFinding
from c7n.resources.securityhub import FindingTypes
from c7n.utils import chunks, get_partition, local_session, type_schema

from c7n_broom import codes, events, instances, launch, report, sweep
from c7n_broom.identity import UNKNOWN
from c7n_broom.lambda_check import check_lambda_packaging
from c7n_broom.mailer import REPORTED
from c7n_broom.text import readable, true_value
from c7n_broom.validation import check_schema, where

log = logging.getLogger("custodian.broom.securityhub")

RULE = "code-tag"
GENERATOR = "broom-code-tag-rule"
DEFAULT_TYPES = ("Software and Configuration Checks/Industry and Regulatory Standards/"
                 "Required tags",)
FAILED, PASSED = "FAILED", "PASSED"
#: Security Hub's answers when it is not enabled here, or Broom may not use it:
#: one warning line, the run goes on (its report is already out).
UNAVAILABLE = ("InvalidAccessException", "AccessDeniedException", "AccessDenied",
               "UnrecognizedClientException")
#: BatchImportFindings takes at most 100 findings; GetFindings at most 20 values a filter.
IMPORT_BATCH, LOOKUP_BATCH = 100, 20
TITLE_LIMIT, DESCRIPTION_LIMIT, RECOMMENDATION_LIMIT = 256, 1024, 512
GONE = (report.TERMINATED, report.GONE)


def product_arn(region, account_id):
    """The account's default product: findings the account imports about itself."""
    return "arn:%s:securityhub:%s:%s:product/%s/default" % (
        get_partition(region), region, account_id, account_id)


def finding_id(region, account_id, instance_id, rule=RULE):
    """Stable: the same instance and rule always give the same finding."""
    return "broom/%s/%s/%s/%s" % (region, account_id, instance_id, rule)


def lifecycle(status, notified):
    """(Compliance.Status, RecordState, Workflow.Status) of a violation whose outcome
    is ``status`` (a report.* constant); ``notified``: a report told a person."""
    if status in GONE:
        return FAILED, "ARCHIVED", "RESOLVED"
    return FAILED, "ACTIVE", "NOTIFIED" if notified else "NEW"


def title(instance_id, code):
    """What a person reads first; ``code`` is the report's ``code`` entry (None: fixed)."""
    if code is None:
        return readable("EC2 instance %s now has an allowed Code tag" % instance_id,
                        TITLE_LIMIT)
    if code.get("reason") == codes.MISSING:
        what = "has no %s tag" % code.get("key", "Code")
    elif code.get("reason") == codes.EMPTY:
        what = "has an empty %s tag" % code.get("key", "Code")
    else:
        what = "has a %s tag that is not an allowed code" % code.get("key", "Code")
    return readable("EC2 instance %s %s" % (instance_id, what), TITLE_LIMIT)


def description(code, outcome, creator, actor):
    """Why, what Broom did, who did it: plain sentences, at most 1024 characters."""
    if code is None:
        return readable("Its Code tag is now one of the allowed codes. %s %s." % (
            actor, report.describe_creator(creator)), DESCRIPTION_LIMIT)
    why = report.describe_reason(report.Finding(
        instance_id="", region="", account_id="", code_key=code.get("key", "Code"),
        code_value=code.get("value"), reason=code.get("reason", codes.MISSING),
        allowed=tuple(code.get("allowed") or ())))
    done = report.describe_outcome(report.Outcome(
        outcome.get("status", ""), outcome.get("detail") or ""))
    text = "%s%s. Broom's action: %s. %s %s." % (
        why[0].upper(), why[1:], done, actor, report.describe_creator(creator))
    return readable(text, DESCRIPTION_LIMIT)


def recommendation(code, fixed):
    allowed = ", ".join(code.get("allowed") or ()) if code else ""
    if fixed:
        return "Nothing to do: the instance carries an allowed Code tag."
    return readable("Tag the instance %s with one of the allowed codes (%s), or launch it "
                    "again with that tag; ask the team that owns the rule to add a code."
                    % (code.get("key", "Code"), allowed or "none configured"),
                    RECOMMENDATION_LIMIT)


def product_fields(policy, code, outcome, creator, record):
    """Broom's own keys (string values, empty ones left out)."""
    values = {
        "ProviderName": "Broom",
        "broom/policy": policy,
        "broom/rule": RULE,
        "broom/outcome": outcome.get("status"),
        "broom/outcome-detail": outcome.get("detail"),
        "broom/code-reason": code.get("reason") if code else "allowed",
        "broom/code-value": (code or {}).get("value"),
        "broom/creator": creator.name,
        "broom/creator-type": creator.identity_type,
        "broom/creator-arn": creator.arn,
        "broom/event-name": events.field(record, "eventName"),
        "broom/event-id": events.field(record, "eventID"),
        "broom/event-time": events.field(record, "eventTime"),
    }
    return {k: true_value(v, 2048) for k, v in values.items() if v not in (None, "")}


def asff(resource_entry, region, account_id, instance_id, policy, code, outcome, creator,
         record, now, notified=False, types=DEFAULT_TYPES, severity="MEDIUM",
         created_at=None, actor="Launched by"):
    """The finding for one instance. Pure: ``resource_entry`` is its ASFF ``Resources``
    entry, ``code`` the report's ``code`` entry (None: the Code was fixed)."""
    fixed = code is None
    if fixed:
        compliance, record_state, workflow = PASSED, "ACTIVE", "RESOLVED"
    else:
        compliance, record_state, workflow = lifecycle(outcome.get("status"), notified)
    observed = events.field(record, "eventTime") or now
    finding = {
        "SchemaVersion": InstanceFinding.FindingVersion,
        "Id": finding_id(region, account_id, instance_id),
        "ProductArn": product_arn(region, account_id),
        "GeneratorId": GENERATOR,
        "AwsAccountId": account_id,
        "Types": list(types),
        "CreatedAt": created_at or observed,
        "UpdatedAt": now,
        "FirstObservedAt": created_at or observed,
        "LastObservedAt": observed,
        "Severity": {"Label": "INFORMATIONAL" if fixed else severity},
        "FindingProviderFields": {"Severity": {"Label": "INFORMATIONAL" if fixed
                                               else severity}, "Types": list(types)},
        "Title": title(instance_id, code),
        "Description": description(code, outcome, creator, actor),
        "Remediation": {"Recommendation": {"Text": recommendation(code, fixed)}},
        "ProductFields": product_fields(policy, code, outcome, creator, record),
        "Resources": [resource_entry],
        "Compliance": {"Status": compliance},
        "RecordState": record_state,
        "Workflow": {"Status": workflow},
    }
    if not fixed and outcome.get("detail"):
        finding["Note"] = {"Text": readable(outcome["detail"], 512), "UpdatedBy": "broom",
                           "UpdatedAt": now}
    return finding


class SecurityHubFinding(InstanceFinding, EventAction):
    """Import each instance Broom reported as an AWS Security Hub finding (ASFF).

    Put it after ``creator-report``: the finding carries the report's outcome (what
    ``safe-terminate`` did and why not), the Code tag and who launched or re-tagged the
    instance. One finding per instance and rule: later runs update it, and its
    workflow follows the outcome (terminated: archived and resolved; held, exempt,
    report-only: open, with the reason). ``compliance: PASSED`` is for a policy whose
    instances comply now (policies/ec2-tags-fixed.yml): it marks the open findings of
    those instances passed, which resolves them, and creates none.

    A Security Hub that is disabled, or that the role may not use, costs one warning
    line: the report is already published. See ``c7n_broom.securityhub`` for why this
    is not c7n's ``post-finding`` (whose instance details it reuses).

    :example:

    .. code-block:: yaml

        policies:
          - name: ec2-require-code-tag
            resource: aws.ec2
            filters:
              - type: allowed-codes
                codes: [LOL, GGG, BRB, YLO]
            actions:
              - type: safe-terminate
              - type: creator-report
                topic: arn:aws:sns:{region}:{account_id}:broom-reports
              - type: security-hub-finding
                severity: MEDIUM
    """

    schema_alias = False
    schema = type_schema(
        "security-hub-finding",
        severity={"enum": ["INFORMATIONAL", "LOW", "MEDIUM", "HIGH", "CRITICAL"]},
        types={"type": "array", "items": {"type": "string"}},
        compliance={"enum": [FAILED, PASSED]},
    )
    permissions = ("securityhub:BatchImportFindings",)

    def get_permissions(self):
        """GetFindings too where it reads open findings: ``compliance: PASSED``, and a
        sweep (periodic or pull mode), which settles the findings it can."""
        sweeping = (self.manager.data.get("mode") or {}).get("type", "pull") in (
            "periodic", "pull")
        if self.data.get("compliance") == PASSED or sweeping:
            return self.permissions + ("securityhub:GetFindings",)
        return self.permissions

    def validate(self):
        check_schema(self)
        if not self.data.get("types", DEFAULT_TYPES):
            raise PolicyValidationError("%s: 'types' needs at least one finding type"
                                        % where(self))
        for finding_type in self.data.get("types", DEFAULT_TYPES):
            if finding_type.count("/") > 2 or finding_type.split("/")[0] not in FindingTypes:
                raise PolicyValidationError(
                    "%s: finding type %r must be 'namespace/category/classifier' with a "
                    "namespace of: %s" % (where(self), finding_type, ", ".join(FindingTypes)))
        if self.data.get("compliance", FAILED) == FAILED and not self.after_report():
            raise PolicyValidationError(
                "%s: put it after creator-report (it posts the outcome creator-report "
                "reported), or set compliance: PASSED for instances that comply"
                % where(self))
        check_lambda_packaging(self.manager, self.type)
        return self

    def after_report(self):
        for action in self.manager.actions:
            if action is self:
                return False
            if action.type == "creator-report":
                return True
        return False

    def process(self, resources, event=None):
        config = self.manager.config
        region, account_id = config.region, config.account_id
        record = launch.of(event)  # the event's record, read once by the handler
        now = datetime.now(timezone.utc).isoformat()
        client = local_session(self.manager.session_factory).client(
            "securityhub", region_name=region)
        policy = self.manager.data.get("name", "")
        options = {"types": self.data.get("types", DEFAULT_TYPES),
                   "severity": self.data.get("severity", "MEDIUM")}
        if self.data.get("compliance") == PASSED:
            created = self.open_findings(client, region, account_id, resources)
            if created is None:
                return []
            creator = record.principal
            findings = [asff(
                self.format_resource(r), region, account_id, r["InstanceId"], policy, None,
                {"status": "compliant"}, creator, record.record, now,
                created_at=created[r["InstanceId"]], actor="Fixed by", **options)
                for r in resources if r["InstanceId"] in created]
        else:
            attributed = sweep.attributions(resources)
            event_creator = record.principal
            actor = {"CreateTags": "Tagged by", "DeleteTags": "Untagged by"}.get(
                record.event_name, "Launched by")
            findings = []
            for r in resources:
                reported = r.get(REPORTED)
                if not reported:  # not reported in this run: a repeat, or gone before
                    continue
                attribution = attributed.get(r["InstanceId"])
                creator = attribution.creator if attribution and \
                    attribution.creator.name else event_creator
                findings.append(asff(
                    self.format_resource(r), region, account_id, r["InstanceId"], policy,
                    reported["code"], reported["outcome"], creator, record.record,
                    now, notified=True, actor=actor, **options))
            if not record.has_record:  # a sweep: it judged every instance, so it settles the rest
                # Its violators first: a Security Hub that is off refuses this import,
                # which is then the run's one warning, and nothing is read.
                imported = self.import_findings(client, findings)
                if imported is None:
                    return []
                settled = self.settle(client, region, account_id, resources, now, policy,
                                      options, imported=bool(findings))
                return imported + (self.import_findings(client, settled) or [])
        return self.import_findings(client, findings) or []

    def settle(self, client, region, account_id, violators, now, policy, options,
               imported=False):
        """A sweep's findings for Broom's open findings on instances it did not find in
        violation: archived (so resolved) when the instance is gone, PASSED when its
        Code is allowed now. An instance the sweep did not judge (too young, by its
        filters) and that still breaks the rule is left as it is. ``imported``: this run
        has just imported its violators' findings."""
        judged = {r["InstanceId"] for r in violators}
        try:
            pages = client.get_paginator("get_findings").paginate(Filters={
                "ProductArn": [{"Value": product_arn(region, account_id),
                                "Comparison": "EQUALS"}],
                "GeneratorId": [{"Value": GENERATOR, "Comparison": "EQUALS"}],
                "RecordState": [{"Value": "ACTIVE", "Comparison": "EQUALS"}],
                "ComplianceStatus": [{"Value": FAILED, "Comparison": "EQUALS"}]})
            listed = [f for page in pages for f in page["Findings"]]
        except ClientError as e:
            if e.response["Error"]["Code"] not in UNAVAILABLE:
                raise
            if e.response["Error"]["Code"] == "InvalidAccessException" or not imported:
                self.unavailable(e, account_id, region)  # not enabled, or nothing tried
                return []
            # The import just worked: the role may import but not read (an older role).
            log.warning("Security Hub: Broom's open findings in account %s %s not read "
                        "(%s): the sweep settles none; grant the role "
                        "securityhub:GetFindings", account_id, region,
                        e.response["Error"]["Code"])
            return []
        open_ = {}
        for f in listed:  # filtered here too: the filter is Security Hub's promise
            parts = str(f.get("Id", "")).split("/")
            if (len(parts) == 5 and parts[:3] == ["broom", region, account_id]
                    and f.get("RecordState") == "ACTIVE"
                    and (f.get("Compliance") or {}).get("Status") == FAILED
                    and parts[3] not in judged):
                open_[parts[3]] = f
        if not open_:
            return []
        found = instances.described(self.manager, sorted(open_))
        check = next((f for f in self.manager.filters if f.type == "allowed-codes"), None)
        settled = []
        for instance_id, old in sorted(open_.items()):
            instance = found.get(instance_id)
            if instance is None or instances.state(instance) in instances.GONE_STATES:
                old = dict(old, UpdatedAt=now, RecordState="ARCHIVED")
                old["ProductFields"] = dict(old.get("ProductFields") or {}, **{
                    "broom/policy": policy, "broom/outcome": report.GONE})
                settled.append(old)
            elif check is not None and check.violation(instance) is None:
                settled.append(asff(
                    self.format_resource(instance), region, account_id, instance_id,
                    policy, None, {"status": "compliant"}, UNKNOWN, None, now,
                    created_at=old.get("CreatedAt"),
                    actor="Found compliant by the sweep; fixed by", **options))
        return settled

    def open_findings(self, client, region, account_id, resources):
        """{instance id: CreatedAt} of Broom's findings on ``resources`` that are not
        passed yet; None when Security Hub cannot be read."""
        ids = {finding_id(region, account_id, r["InstanceId"]): r["InstanceId"]
               for r in resources}
        found = {}
        for part in chunks(sorted(ids), LOOKUP_BATCH):
            filters = {"Id": [{"Value": i, "Comparison": "EQUALS"} for i in part],
                       "ProductArn": [{"Value": product_arn(region, account_id),
                                       "Comparison": "EQUALS"}]}
            try:
                pages = client.get_paginator("get_findings").paginate(Filters=filters)
                listed = [f for page in pages for f in page["Findings"]]
            except ClientError as e:
                if e.response["Error"]["Code"] not in UNAVAILABLE:
                    raise
                self.unavailable(e, account_id, region)
                return None
            for f in listed:  # filtered here too: the filter is Security Hub's promise
                if f.get("Id") in ids and (f.get("Compliance") or {}).get(
                        "Status") != PASSED and f.get("RecordState") == "ACTIVE":
                    found[ids[f["Id"]]] = f.get("CreatedAt")
        return found

    def import_findings(self, client, findings):
        """Import the findings; returns their ids. Disabled or denied: one warning line,
        and None."""
        imported = []
        for part in chunks(findings, IMPORT_BATCH):
            try:
                response = self.manager.retry(client.batch_import_findings, Findings=part)
            except ClientError as e:
                if e.response["Error"]["Code"] not in UNAVAILABLE:
                    raise
                self.unavailable(e, self.manager.config.account_id, self.manager.config.region)
                return None
            failed = {f.get("Id") for f in response.get("FailedFindings") or ()}
            if failed:
                first = response["FailedFindings"][0]
                log.warning("Security Hub refused %d of %d findings (%s: %s)", len(failed),
                            len(part), first.get("ErrorCode"), first.get("ErrorMessage"))
            imported += [f["Id"] for f in part if f["Id"] not in failed]
        if imported:
            log.info("%d finding(s) imported into Security Hub", len(imported))
        return imported

    def unavailable(self, error, account_id, region):
        log.warning("Security Hub not used in account %s %s (%s): no finding imported; "
                    "enable Security Hub there, or grant the role securityhub:"
                    "BatchImportFindings", account_id, region, error.response["Error"]["Code"])
