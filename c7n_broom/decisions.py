"""Pure logic of what Broom does to each violating instance, before any AWS call.

``decide`` turns the instances a policy matched, who launched them and the policy's
safety settings into one Decision per instance: terminate it, or leave it and say why
(report-only mode, an exemption, a fleet left to its owner, the per-invocation cap,
already gone). Broom terminates machines: every branch here that is not "terminate"
is a reason a person reads in the report.
"""
import fnmatch
from dataclasses import dataclass

from c7n_broom import report

ENFORCE = "enforce"
REPORT_ONLY = "report-only"
ENFORCEMENT_MODES = (ENFORCE, REPORT_ONLY)
DEFAULT_CAP = 20
LIVE_STATES = ("pending", "running", "stopping", "stopped")

FLEET_TAGS = (
    ("aws:autoscaling:groupName", "Auto Scaling group"),
    ("aws:ec2spot:fleet-request-id", "Spot Fleet request"),
    ("aws:ec2:fleet-id", "EC2 Fleet"),
)


@dataclass(frozen=True)
class Settings:
    enforcement: str = ENFORCE
    cap: int = DEFAULT_CAP
    fleet_instances: str = ENFORCE
    exempt_principals: tuple = ()
    exempt_accounts: tuple = ()


@dataclass(frozen=True)
class Decision:
    terminate: bool
    outcome: report.Outcome | None = None  # set when the instance is left alone


def fleet_of(resource):
    """(kind, id) of the Auto Scaling group, Spot Fleet or EC2 Fleet an instance
    belongs to, from the tags AWS puts on its instances; None otherwise."""
    tags = {t.get("Key"): t.get("Value") for t in resource.get("Tags") or ()
            if isinstance(t, dict)}
    for key, kind in FLEET_TAGS:
        if tags.get(key):
            return kind, tags[key]
    if resource.get("SpotInstanceRequestId") and resource.get("InstanceLifecycle") == "spot":
        return "spot request", resource["SpotInstanceRequestId"]
    return None


def exempt_principal(creator, patterns):
    """The pattern that exempts this creator (matched on its ARN and role), or None."""
    candidates = [value for value in (creator.arn, creator.role) if value]
    for pattern in patterns:
        if any(fnmatch.fnmatchcase(value, pattern) for value in candidates):
            return pattern
    return None


def decide(resources, creator, account_id, settings):
    """One Decision per instance id. Pure: no AWS calls."""
    decisions = {}
    candidates = []
    principal = exempt_principal(creator, settings.exempt_principals)
    for r in resources:
        instance_id = r["InstanceId"]
        state = (r.get("State") or {}).get("Name")
        fleet = fleet_of(r)
        if state not in LIVE_STATES:
            leave = report.Outcome(report.GONE, "EC2 shows it %s" % state)
        elif account_id in settings.exempt_accounts:
            leave = report.Outcome(report.EXEMPT, "account %s is exempt" % account_id)
        elif principal:
            leave = report.Outcome(report.EXEMPT, "launched by an exempt principal (%s)" %
                                   principal)
        elif settings.enforcement != ENFORCE:  # fail safe: only "enforce" terminates
            leave = report.Outcome(report.REPORT_ONLY, "report-only mode")
        elif fleet and settings.fleet_instances == REPORT_ONLY:
            leave = report.Outcome(report.REPORT_ONLY,
                                   "fleet instances are only reported (%s %s)" % fleet)
        else:
            candidates.append(instance_id)
            continue
        decisions[instance_id] = Decision(False, leave)
    if len(candidates) > settings.cap:
        held = report.Outcome(report.HELD, (
            "%d instances to terminate in one event exceed the cap of %d; Broom "
            "terminated none of them: check for a misconfiguration" % (
                len(candidates), settings.cap)))
        decisions.update({instance_id: Decision(False, held) for instance_id in candidates})
    else:
        decisions.update({instance_id: Decision(True) for instance_id in candidates})
    return decisions
