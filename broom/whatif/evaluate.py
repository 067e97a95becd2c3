"""Judge one past launch as Broom's Lambda and its SCP would have.

A launch is a RunInstances record or an instant fleet's CreateFleet record (the
instances come from ``events.launched_instances``, the request tags from
``events.request_tags``, the creator from ``identity.creator_from_record``: the
Lambda's own helpers). The verdict comes from the policy's own ``allowed-codes``
filter (its ``violation()``, the code the Lambda runs: codes, overrides,
``ignore-case``), fed what the Lambda would have seen: the tags EC2 reports on each
instance in a RunInstances response (launch templates tag there; for a fleet, the
RunInstances records EC2 Fleet made for it), the ``aws:ec2:fleet-id`` tag EC2 puts on
an instant fleet's instances and the request's tags, as changed by the
``CreateTags``/``DeleteTags`` calls on it within ``grace-seconds`` (EC2's tags win: the
request's stand in only for an instance EC2 shows no tag on). What Broom would have
done comes from ``c7n_broom.decisions.plan`` with the policy's ``safe-terminate``
settings (exemptions, fleets, report-only, the cap counted per principal over
``cap-period`` as Broom's state table counts it). The SCP answer comes from
``broom.scp_eval`` on the document ``broom scp`` prints for the same policy (for an
instant fleet: its caller's RunInstances with the fleet's instance tags). No AWS call
anywhere.
"""
import dataclasses
from datetime import timezone

from broom import policyfile, scp, scp_eval
from c7n_broom import codes, decisions, events, principals, report, state
from c7n_broom.filters import DEFAULT_KEY
from c7n_broom.fleets import fleet_of
from c7n_broom.identity import creator_from_record
from c7n_broom.omitted import fleet_id

COMPLIANT = "compliant"
VIOLATION = "violation"

TERMINATE = "terminate"
REPORT_ONLY = "report-only"
EXEMPT = "exempt"
HELD = "held-by-cap"
FLEET = "left-to-fleet"
NONE = "none"
#: What Broom would have done, as the summary words it.
ACTIONS = {TERMINATE: "terminate", REPORT_ONLY: "report only", EXEMPT: "exempt",
           HELD: "held by the cap", FLEET: "left to its fleet", NONE: "nothing"}

SCP_CACHE = 10_000
#: Principals SCPs never apply to: service-linked roles (path aws-service-role/).
SERVICE_LINKED = "role/aws-service-role/"


def service_linked(principal_arn):
    """True for the ARN of a service-linked role: an IAM role whose path starts with
    /aws-service-role/ (a path that only contains it, e.g. "/x:role/aws-service-role/",
    is an ordinary role's)."""
    parts = principal_arn.split(":", 5)
    return (len(parts) == 6 and parts[0] == "arn" and parts[2] == "iam"
            and parts[5].startswith(SERVICE_LINKED))


class WhatifError(ValueError):
    """The policy cannot be simulated; the message says what to change."""


@dataclasses.dataclass
class Rule:
    """What the simulation needs from a loaded policy."""

    policy: object  # c7n Policy
    check: object  # its allowed-codes filter
    terminator: object  # its safe-terminate action, or None
    settings: decisions.Settings | None  # None: the policy terminates nothing
    grace: int
    cap_period: int
    recheck_after: int
    scp: dict  # the SCP document broom scp prints for this policy
    #: The launch calls (events.LAUNCH_CALLS) the policy subscribes to: a policy
    #: deployed without CreateFleet never sees an instant fleet's record.
    launch_calls: frozenset = frozenset(events.LAUNCH_CALLS)


#: The account and region vars are filled with when none is given: they only place
#: ARNs (the report topic, the role), which the simulation does not use.
VARS_ACCOUNT, VARS_REGION = "000000000000", "us-east-1"


def load_rule(path, variables=None, account_id=None, region=None):
    """The Rule of the first policy in ``path`` that judges RunInstances with an
    ``allowed-codes`` filter, loaded and validated as ``broom scp`` and ``custodian
    validate`` load it; with ``variables``, filled in as c7n-org fills an account's
    vars (``account_id`` and ``region`` for the built-in ones) and validated again.
    WhatifError (one line) on any problem."""
    from c7n.config import Config

    from c7n_broom.filters import AllowedCodes
    from c7n_broom.terminate import DEFAULT_CAP_PERIOD, SafeTerminate

    try:
        loaded = policyfile.load_checked(path)
        if variables:
            loaded = policyfile.load(path, Config.empty(
                dryrun=True, account_id=account_id or VARS_ACCOUNT,
                region=region or VARS_REGION))
    except policyfile.PolicyFileError as e:
        raise WhatifError(str(e))
    for policy in loaded:
        if not _judges_launches(policy):
            continue
        if variables:
            policy = _expanded(path, policy, variables)
        check = next(f for f in policy.resource_manager.filters if isinstance(f, AllowedCodes))
        others = [f.type for f in policy.resource_manager.filters if f is not check]
        if others:
            raise WhatifError("%s: policy %s has filters whatif cannot judge from CloudTrail "
                              "(%s): simulate a policy whose only filter is allowed-codes"
                              % (path, policy.name, ", ".join(sorted(others))))
        if "value_from" in check.data and codes.is_unset(check.data.get("codes-override")):
            raise WhatifError("%s: policy %s reads its codes with value_from when it runs: "
                              "give them with --var (its codes-override var)" % (
                                  path, policy.name))
        terminator = next((a for a in policy.resource_manager.actions
                           if isinstance(a, SafeTerminate)), None)
        if terminator is not None:
            settings = terminator.settings()
        elif any(a.type == "terminate" for a in policy.resource_manager.actions):
            settings = decisions.Settings(cap=float("inf"))  # c7n's terminate: no brake
        else:
            settings = None
        try:
            rule = scp.rule_of(policy)
            document = scp.guarded(scp.code_tag_scp(rule.codes, rule.key,
                                                    rule.exempt_principals, rule.ignore_case),
                                   rule.exempt_principals)
        except scp.ScpError as e:
            raise WhatifError("%s: %s" % (path, e))
        data = terminator.data if terminator is not None else {}
        return Rule(policy, check, terminator, settings, check.data.get("grace-seconds", 0),
                    data.get("cap-period", DEFAULT_CAP_PERIOD),
                    data.get("recheck-after", 3600), document,
                    frozenset(_subscribed(policy) & set(events.LAUNCH_CALLS)))
    raise WhatifError("%s: no policy in it judges RunInstances with an allowed-codes filter "
                      "(mode: cloudtrail, events: RunInstances)" % path)


def _subscribed(policy):
    """The event names of a policy's ``mode.events``."""
    mode = policy.data.get("mode") or {}
    return {e if isinstance(e, str) else e.get("event") for e in mode.get("events") or ()
            if isinstance(e, (str, dict))}


def _judges_launches(policy):
    from c7n_broom.filters import AllowedCodes

    return "RunInstances" in _subscribed(policy) and any(
        isinstance(f, AllowedCodes) for f in policy.resource_manager.filters)


def _expanded(path, policy, variables):
    """The policy with c7n-org's vars filled in, validated again."""
    from c7n.exceptions import PolicyValidationError

    try:
        policy.conditions.env_vars["account"] = {"vars": dict(variables)}
        policy.expand_variables(policy.get_variables(dict(variables)))
        policy.validate()
    except (PolicyValidationError, ValueError, KeyError) as e:
        raise WhatifError("%s: with the vars given: %s" % (path, policyfile.one_line(e)))
    return policy


class Judge:
    """Judges launches in launch order (the cap counts per principal over time);
    ``__call__(launch)`` returns the launch's result as a dict (see ``output``)."""

    def __init__(self, rule):
        self.rule = rule
        self.counts = {}  # (account, principal) -> {window index: terminations}
        self.scp_cache = {}

    def __call__(self, launch):
        record = launch.record
        creator = creator_from_record(record)
        account = events.field(record, "recipientAccountId")
        region = events.field(record, "awsRegion")
        result = {
            "event_id": events.field(record, "eventID"),
            "event_time": events.field(record, "eventTime"),
            "account": account,
            "region": region,
            "creator": creator.name,
            "principal": creator.principal_arn,
            "identity_type": creator.identity_type,
        }
        if len(launch.records) > 1:
            result["also_recorded_by"] = [events.field(r, "eventID")
                                          for r in launch.records[1:]]
        shown = _shown(launch.records)
        result.update(self.scp_answer(record, creator, region, account,
                                      next(iter(shown.values()), {})))
        if record.get("errorCode"):
            result["error"] = "%s: %s" % (events.field(record, "errorCode"),
                                          events.field(record, "errorMessage")[:200])
            result["instances"] = []
            return result
        if not launch.tag_calls and events.skip_reason(record):
            result["error"] = events.skip_reason(record)  # a fleet that launched nothing
        result["instances"] = self.instances(launch, creator, account, shown)
        return result

    # --- the SCP ---------------------------------------------------------------------

    def scp_answer(self, record, creator, region, account, first_item):
        if creator.identity_type == "AWSService" or service_linked(creator.principal_arn):
            return {"scp": "allow", "scp_note": "SCPs do not apply to AWS services and "
                                                "service-linked roles"}
        principal = (creator.principal_arn, principals.principal_account(creator) or account)
        tags = scp_eval.launch_tags(record, _user_tags(first_item))
        refused = self.refusals(principal, region, account, tuple(
            (kind, tuple(sorted(kind_tags.items()))) for kind, kind_tags in tags.items()))
        if refused:
            return {"scp": "deny", "scp_statements": refused}
        return {"scp": "allow"}

    def refusals(self, principal, region, account, tags):
        """The SCP statements refusing a launch; launches mostly repeat the same
        principals and tags, so answers are kept (up to SCP_CACHE of them)."""
        key = (principal, region, account, tags)
        if key not in self.scp_cache:
            if len(self.scp_cache) >= SCP_CACHE:
                self.scp_cache.clear()
            requests = scp_eval.launch_requests(region, account, principal,
                                                {kind: dict(items) for kind, items in tags})
            self.scp_cache[key] = sorted({sid for request in requests
                                          for sid in scp_eval.denied_by(self.rule.scp,
                                                                        request)})
        return self.scp_cache[key]

    # --- Broom -----------------------------------------------------------------------

    def instances(self, launch, creator, account, shown):
        record, check = launch.record, self.rule.check
        key = check.tag_key
        requested = {}
        for other in reversed(launch.records):  # the judged record's own tags win
            requested.update(events.request_tags(other))
        persistent = _persistent_spot(launch.records)
        # EC2 puts the fleet's id on an instant fleet's instances: the Lambda sees it
        fleets = [fleet for fleet in map(fleet_id, launch.records) if fleet]
        fleet_tags = {"aws:ec2:fleet-id": fleets[0]} if fleets else {}
        resources, found = [], {}
        for instance_id in launch.tag_calls:
            item = shown.get(instance_id, {})
            calls = launch.tag_calls.get(instance_id, ())
            # the tags EC2 shows: those its response lists (the request's, the launch
            # template's; the request's when it lists none) and the fleet's, as changed
            # by the tag calls within the grace period
            at_launch = _tags(item) or _user_set(requested)
            tags, change = _ec2_tags(dict(at_launch, **fleet_tags), calls, key, launch.grace)
            # the request's tags stand in only for an instance EC2 shows no tag on at
            # all, as in the Lambda (AllowedCodes.request_stand_in): once it shows tags,
            # they are the truth
            stand_in = requested if not tags else {}
            if stand_in:  # judged by the request, as before any call
                change = None
            resource = {
                "InstanceId": instance_id,
                "State": {"Name": "pending"},
                "LaunchTime": record.get("eventTime"),
                "Tags": [{"Key": k, "Value": v} for k, v in tags.items()],
                "InstanceType": item.get("instanceType"),
                "ImageId": item.get("imageId"),
            }
            if item.get("spotInstanceRequestId"):
                resource["InstanceLifecycle"] = "spot"
                resource["SpotInstanceRequestId"] = item["spotInstanceRequestId"]
            verdict = check.violation(resource, stand_in)
            seen = "at launch" if change is None else "set by %s %ds after launch" % (
                change[1], change[0])
            late = _late_code(calls, key)
            found[instance_id] = (resource, verdict, seen, late, change, stand_in)
            if verdict is not None:
                resource[codes.ANNOTATION] = verdict.as_dict()
                resources.append(resource)
        plan = self.plan(resources, record, creator, account, launch.when)
        listed = []
        for instance_id, (resource, verdict, seen, late, change, stand_in) in found.items():
            fleet = fleet_of(resource, persistent)
            value = _code(check, resource, stand_in, key)
            entry = {"instance_id": instance_id, "code": value,
                     "fleet": "%s %s" % fleet if fleet else None}
            if verdict is None:
                entry.update(verdict=COMPLIANT, reason="%s %s %s" % (key, value, seen),
                             action=NONE)
            else:
                entry.update(verdict=VIOLATION, reason=_why(verdict, key, late, launch.grace,
                                                            change, check.allowed_codes()))
                entry.update(self.action(plan.get(instance_id)))
            listed.append(entry)
        return listed

    def plan(self, resources, record, creator, account, when):
        if not resources or self.rule.settings is None:
            return {}
        period = self.rule.cap_period

        def count(principal, n):  # as the state table counts (state.counted_windows)
            current, previous = state.counted_windows(when, period)
            windows = self.counts.setdefault((account, principal), {})
            for old in [i for i in windows if i < previous]:
                del windows[old]
            windows[current] = windows.get(current, 0) + n
            return windows[current] + windows.get(previous, 0)

        def recheck(held):
            return ("Broom would check them again %ds later and terminate those still "
                    "breaking the rule" % self.rule.recheck_after)

        return decisions.plan(resources, record, account, self.rule.settings, set(),
                              count, recheck)

    def action(self, decision):
        if self.rule.settings is None:
            return {"action": REPORT_ONLY, "detail": "the policy only reports"}
        if decision.terminate:
            return {"action": TERMINATE, "detail": ""}
        outcome = decision.outcome
        if outcome.status == report.EXEMPT:
            kind = EXEMPT
        elif outcome.status == report.HELD:
            kind = HELD
        elif outcome.status == report.WOULD_TERMINATE and (
                self.rule.settings.enforcement == decisions.ENFORCE):
            kind = FLEET
        elif outcome.status == report.WOULD_TERMINATE:
            kind = REPORT_ONLY
        else:
            kind = NONE
        return {"action": kind, "detail": outcome.detail}


def _items(record):
    items = events.get_path(record, "responseElements", "instancesSet", "items")
    return [i for i in items if isinstance(i, dict)] if isinstance(items, list) else []


def _shown(records):
    """{instance id: its item in a RunInstances response} over a launch's records
    (a CreateFleet response reports no tags; the RunInstances EC2 Fleet made do)."""
    found = {}
    for record in records:
        if events.field(record, "eventName") == "RunInstances":
            for item in _items(record):
                found.setdefault(item.get("instanceId"), item)
    return found


def _tags(item):
    """{key: value} EC2 reports on an instance in the RunInstances response."""
    items = events.get_path(item, "tagSet", "items")
    found = {}
    for tag in items if isinstance(items, list) else ():
        if isinstance(tag, dict) and isinstance(tag.get("key"), str):
            value = tag.get("value")
            found[tag["key"]] = value if isinstance(value, str) else ""
    return found


def _user_tags(item):
    return {k: v for k, v in _tags(item).items() if not k.startswith("aws:")}


def _persistent_spot(records):
    """Spot request ids of the launch records that asked for persistent spot
    instances."""
    return frozenset(i["spotInstanceRequestId"] for record in records
                     if events.get_path(record, "requestParameters", "instanceMarketOptions",
                                        "spotOptions", "spotInstanceType") == "persistent"
                     for i in _items(record)
                     if isinstance(i.get("spotInstanceRequestId"), str))


def _user_set(tags):
    """The tags a request can set: EC2 refuses keys starting with aws:."""
    return {k: v for k, v in tags.items() if not k.startswith("aws:")}


def _ec2_tags(tags, calls, key, grace):
    """The tags EC2 shows on an instance once the tag calls within ``grace`` seconds
    of its launch are applied to ``tags`` (what it got at launch), as EC2 applies
    them: CreateTags sets; DeleteTags removes a key given without a value, a key
    given with its current value, or, given no tag, every tag but ``aws:`` ones.
    Returns (tags, change): change is (seconds, call) of the last call that set or
    removed ``key``, or None."""
    tags, change = dict(tags), None
    for after, call, changed in sorted(calls, key=lambda c: c[0]):
        if after > grace:
            break
        before = tags.get(key)
        if call == "CreateTags":
            tags.update((k, "" if v is None else v) for k, v in (changed or {}).items()
                        if not k.startswith("aws:"))
        elif changed is None:
            tags = {k: v for k, v in tags.items() if k.startswith("aws:")}
        else:
            for k, v in changed.items():
                if k in tags and not k.startswith("aws:") and v in (None, tags[k]):
                    del tags[k]
        if key is not None and (tags.get(key) != before or (
                call == "CreateTags" and changed and key in changed)):
            change = (int(after), call)
    return tags, change


def _late_code(calls, key):
    """(seconds after launch, value) of the first CreateTags that set ``key``."""
    for after, call, changed in calls:
        if call == "CreateTags" and changed and key in changed:
            return int(after), changed[key] if changed[key] is not None else ""
    return None


def _code(check, resource, stand_in, key):
    value = check.get_resource_value(check.data.get("key", DEFAULT_KEY), resource)
    if value is None:
        value = stand_in.get(key)
    return value


def _why(verdict, key, late, grace, change=None, allowed=()):
    if verdict.reason == codes.MISSING:
        why = "no %s tag" % key
        if change is not None and change[1] == "DeleteTags":
            why += " (DeleteTags removed it %ds after launch)" % change[0]
        elif late and late[0] > grace:
            why += " within grace-seconds (%d): CreateTags set it %ds after launch" % (
                grace, late[0])
        return why
    if verdict.reason == codes.EMPTY:
        why = "%s tag is empty" % key
    else:
        why = "%s %r is not an allowed code" % (key, verdict.value)
        close = codes.case_suggestion(verdict.value, allowed)  # as Broom's reports hint
        if close:
            why += ": did you mean %s? (codes are case-sensitive)" % close
    if change is not None:
        why += " (set by %s %ds after launch)" % (change[1], change[0])
    return why


def hour_of(result):
    """The UTC hour of a launch, as the summary counts them ("2026-10-01 14:00")."""
    when = events.parse_time(result.get("event_time"))
    if when is None:
        return "unknown"
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:00")


def parse_when(value, option):
    """A --since/--until value (a date or an ISO 8601 time, UTC unless it says)."""
    parsed = events.parse_time(value)
    if parsed is None:
        raise WhatifError("%s %r: expected a date or time such as 2026-10-01 or "
                          "2026-10-01T12:00:00Z" % (option, value))
    return parsed
