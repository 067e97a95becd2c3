"""Pure logic of what Broom does to each violating instance, before any AWS call.

``decide`` turns the instances a policy matched, who launched them and the policy's
safety settings into one Decision per instance: terminate it, or leave it and say why
(report-only mode, an exemption, a fleet left to its owner, the per-invocation cap,
already gone). Broom terminates machines: every branch here that is not "terminate"
is a reason a person reads in the report.
"""
from dataclasses import dataclass

from c7n_broom import codes, principals, report

ENFORCE = "enforce"
REPORT_ONLY = "report-only"
ENFORCEMENT_MODES = (ENFORCE, REPORT_ONLY)
DEFAULT_CAP = 20
LIVE_STATES = ("pending", "running", "stopping", "stopped")

# Tags AWS puts on the instances a fleet launches. Users cannot set ``aws:`` tags, so
# these are the only tags Broom trusts to say an instance belongs to a fleet.
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
    #: Capped terminations of the same principal earlier in the period (None: unknown).
    prior_terminations: int | None = 0


@dataclass(frozen=True)
class Decision:
    terminate: bool
    outcome: report.Outcome | None = None  # set when the instance is left alone


def fleet_of(resource, persistent_spot_requests=frozenset()):
    """(kind, id) of the Auto Scaling group, Spot Fleet or EC2 Fleet an instance
    belongs to, from the ``aws:`` tags AWS puts on its instances; or of its spot
    request if that request is in ``persistent_spot_requests`` (ids EC2 describes as
    persistent: ``fleets.persistent_spot_requests``); None otherwise.

    A one-time spot instance is a plain instance: it is not relaunched, and nothing
    its launcher can set (tags, on the instance or the request) makes it a fleet.
    """
    tags = {t.get("Key"): t.get("Value") for t in resource.get("Tags") or ()
            if isinstance(t, dict)}
    for key, kind in FLEET_TAGS:
        if tags.get(key):
            return kind, tags[key]
    request = resource.get("SpotInstanceRequestId")
    if request and resource.get("InstanceLifecycle") == "spot" and (
            request in persistent_spot_requests):
        return "spot request", request  # fleets.SPOT_REQUEST
    return None


def decide(resources, creator, account_id, settings, anomalies=None, uncapped=()):
    """One Decision per instance id. Pure: no AWS calls.

    ``anomalies`` maps instance ids to why the event cannot be about them (see
    ``events.launch_mismatch``): such instances are never terminated. The cap
    (``settings.cap``, counting ``settings.prior_terminations`` of the same principal
    in the period) holds the other candidates, except those in ``uncapped``: see
    ``cap_free``, and instances held once and now re-checked.
    """
    anomalies = anomalies or {}
    uncapped = set(uncapped)
    decisions = {}
    candidates = []
    principal = principals.exempting(creator, settings.exempt_principals)
    for r in resources:
        instance_id = r["InstanceId"]
        state = (r.get("State") or {}).get("Name")
        fleet = fleet_of(r)
        if state not in LIVE_STATES:
            leave = report.Outcome(report.GONE, "EC2 shows it %s" % state)
        elif instance_id in anomalies:
            leave = report.Outcome(report.ANOMALY, anomalies[instance_id])
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
    capped = [i for i in candidates if i not in uncapped]
    decisions.update({i: Decision(True) for i in candidates if i in uncapped})
    prior = settings.prior_terminations or 0
    if len(capped) > settings.cap or (capped and prior + len(capped) > settings.cap):
        held = report.Outcome(report.HELD, held_because(len(capped), prior, settings.cap))
        decisions.update({instance_id: Decision(False, held) for instance_id in capped})
    else:
        decisions.update({instance_id: Decision(True) for instance_id in capped})
    return decisions


def cap_free(resource, event_name):
    """True when the cap does not apply to a violator: a launch without a Code, or with
    an empty one, is the launcher's own doing; a bad code list cannot cause it. Codes
    that are set but not allowed, and every violation a tag change causes, are capped."""
    reason = (resource.get(codes.ANNOTATION) or {}).get("reason")
    return event_name == "RunInstances" and reason in (codes.MISSING, codes.EMPTY)


def held_because(count, prior, cap):
    """Why the cap held ``count`` instances, for the report."""
    if count > cap:
        why = "%d instances to terminate in one event exceed the cap of %d" % (count, cap)
    else:
        why = ("with %d already terminated for the same principal in this period, %d more "
               "would exceed the cap of %d" % (prior, count, cap))
    return "%s: Broom terminated none of them yet (a bad code list looks like this)" % why
