"""Pure logic of what Broom does to each violating instance, before any AWS call.

``decide`` turns the instances a policy matched, who launched them and the policy's
safety settings into one Decision per instance: terminate it, or leave it and say why
(report-only mode, an exemption, a fleet left to its owner, the per-invocation cap,
already gone, a creator not known yet). Broom terminates machines: every branch here
that is not "terminate" is a reason a person reads in the report. ``plan`` feeds
``decide`` from an event, and is given the two calls it needs (count terminations,
schedule a re-check) as functions.

The event path knows one creator for all the instances of an event; a sweep
(``c7n_broom.sweep``) knows one per instance, looked up in CloudTrail. Both go through
the same ``plan`` and ``decide``: ``creators`` maps instance ids to their own creator,
and ``unresolved`` names the instances whose creator could not be looked up (a fault,
or a lookup still pending), which are never terminated while exemptions are configured:
they may be an exempt principal's.
"""
import dataclasses
import logging
from dataclasses import dataclass

from c7n_broom import codes, events, launch, principals, report
from c7n_broom.fleets import fleet_of
from c7n_broom.identity import UNKNOWN
from c7n_broom.instances import LIVE_STATES, state

log = logging.getLogger("custodian.broom.decisions")

ENFORCE = "enforce"
REPORT_ONLY = "report-only"
ENFORCEMENT_MODES = (ENFORCE, REPORT_ONLY)
DEFAULT_CAP = 20


@dataclass(frozen=True)
class Settings:
    enforcement: str = ENFORCE
    cap: int = DEFAULT_CAP
    fleet_instances: str = ENFORCE
    exempt_principals: tuple = ()
    exempt_accounts: tuple = ()
    #: Capped terminations of the same principal earlier in the period (None: unknown).
    prior_terminations: int | None = 0
    #: What the cap counts at once, for the report: "one event", or "one sweep".
    unit: str = "one event"
    #: ``report-only``: instances whose creator is known to be unknowable (launched
    #: before CloudTrail's 90 days of history, or no record) are only reported.
    unknown_creators: str = ENFORCE


@dataclass(frozen=True)
class Decision:
    terminate: bool
    outcome: report.Outcome | None = None  # set when the instance is left alone


def decide(resources, creator, account_id, settings, anomalies=None, uncapped=(),
           creators=None, unresolved=None, priors=None):
    """One Decision per instance id. Pure: no AWS calls.

    ``anomalies`` maps instance ids to why the event cannot be about them (see
    ``events.launch_mismatch``): such instances are never terminated. The cap
    (``settings.cap``, counting ``settings.prior_terminations`` of the same principal
    in the period) holds the other candidates, except those in ``uncapped``: see
    ``cap_free``, and instances held once and now re-checked.

    ``creators`` maps instance ids to their own creator (default: ``creator`` for
    all); ``unresolved`` maps ids to why their creator could not be looked up: with
    exemptions configured they are left alone. ``priors`` maps ``principal_key``s to
    their earlier terminations in the period (default: ``settings.prior_terminations``);
    each principal's instances are held together when its count would pass the cap,
    and all of them when more than the cap would go at once.
    """
    anomalies = anomalies or {}
    uncapped = set(uncapped)
    creators = creators or {}
    unresolved = unresolved or {}
    priors = priors or {}
    decisions = {}
    candidates = []
    exempting = {}
    for r in resources:
        instance_id = r["InstanceId"]
        fleet = fleet_of(r)
        own = creators.get(instance_id, creator)
        if own not in exempting:
            exempting[own] = principals.exempting(own, settings.exempt_principals)
        principal = exempting[own]
        if state(r) not in LIVE_STATES:
            leave = report.Outcome(report.GONE, "EC2 shows it %s" % state(r))
        elif instance_id in anomalies:
            leave = report.Outcome(report.ANOMALY, anomalies[instance_id])
        elif account_id in settings.exempt_accounts:
            leave = report.Outcome(report.EXEMPT, "account %s is exempt" % account_id)
        elif principal:
            leave = report.Outcome(report.EXEMPT, "launched by an exempt principal (%s)" %
                                   principal)
        elif instance_id in unresolved and settings.exempt_principals:
            leave = report.Outcome(report.UNRESOLVED, (
                "who launched it is not known yet (%s), and it may be an exempt "
                "principal's" % unresolved[instance_id]))
        elif settings.enforcement != ENFORCE:  # fail safe: only ENFORCE terminates
            leave = report.Outcome(report.WOULD_TERMINATE, "%s mode" % REPORT_ONLY)
        elif fleet and settings.fleet_instances == REPORT_ONLY:
            leave = report.Outcome(report.WOULD_TERMINATE,
                                   "fleet instances are only reported (%s %s)" % fleet)
        elif (instance_id in creators and instance_id not in unresolved
              and own.identity_type == UNKNOWN.identity_type
              and settings.unknown_creators == REPORT_ONLY):
            leave = report.Outcome(report.WOULD_TERMINATE, (
                "who launched it is unknown, and such instances are only reported"))
        else:
            candidates.append(instance_id)
            continue
        decisions[instance_id] = Decision(False, leave)
    capped = [i for i in candidates if i not in uncapped]
    decisions.update({i: Decision(True) for i in candidates if i in uncapped})
    if len(capped) > settings.cap:
        held = report.Outcome(report.HELD, held_because(
            len(capped), 0, settings.cap, settings.unit))
        decisions.update({instance_id: Decision(False, held) for instance_id in capped})
        return decisions
    for key, group in by_principal(capped, creators, creator).items():
        prior = priors.get(key, settings.prior_terminations) or 0
        if prior + len(group) > settings.cap:
            held = report.Outcome(report.HELD, held_because(
                len(group), prior, settings.cap, settings.unit))
            decisions.update({instance_id: Decision(False, held) for instance_id in group})
        else:
            decisions.update({instance_id: Decision(True) for instance_id in group})
    return decisions


def by_principal(instance_ids, creators, creator):
    """{principal_key: [instance ids]}, in the order given."""
    groups = {}
    for instance_id in instance_ids:
        key = principal_key(creators.get(instance_id, creator))
        groups.setdefault(key, []).append(instance_id)
    return groups


def cap_free(resource, event_name):
    """True when the cap does not apply to a violator: a launch without a Code, or with
    an empty one, is the launcher's own doing; a bad code list cannot cause it. That
    holds for every call that launches (RunInstances, an instant CreateFleet: the same
    request, for many instance types at once). Codes that are set but not allowed, and
    every violation a tag change causes, are capped."""
    reason = events.get_path(resource, codes.ANNOTATION, "reason")
    return event_name in events.LAUNCH_CALLS and reason in (codes.MISSING, codes.EMPTY)


def held_because(count, prior, cap, unit="one event"):
    """Why the cap held ``count`` instances, for the report."""
    if count > cap:
        why = "%d instances to terminate in %s exceed the cap of %d" % (count, unit, cap)
    else:
        why = ("with %d already terminated for the same principal in this period, %d more "
               "would exceed the cap of %d" % (prior, count, cap))
    return "%s: Broom terminated none of them yet (a bad code list looks like this)" % why


def principal_key(creator):
    """Who the per-principal cap counts: the IAM principal, not the session name."""
    return creator.principal_arn or creator.arn or creator.name


def plan(resources, event, account_id, settings, rechecked, count, recheck,
         creators=None, unresolved=None):
    """``decide`` for the instances of an event, with what it needs from the event:
    the launch-time check, who launched them, and the principal's terminations in the
    period. ``rechecked`` are the ids of a hold Broom recorded, re-checked now with
    their launch marker unchanged: not capped again, and not judged by ``LaunchTime``
    (a stop and start changes it).

    ``count(principal, n)`` adds ``n`` terminations to ``principal_key(creator)``'s
    count and returns the total in the period (None when unknown): concurrent
    invocations each see their own total. ``recheck(instance_ids)`` schedules the
    re-check of what the cap holds and returns what the report says about it (None:
    the caller schedules it and completes the held outcomes itself).

    A sweep has no event: it gives each instance's own creator in ``creators`` and
    the ids whose creator is not known yet in ``unresolved`` (see ``decide``); each
    principal is counted once, for its own instances.
    """
    record = launch.of(event)  # the event's record, read once by the handler
    creator = record.principal
    creators = creators or {}
    anomalies = {}
    for r in resources if record.has_record else ():
        if r["InstanceId"] in rechecked:  # a hold's launch marker vouched for it
            continue
        reason = events.launch_mismatch(record.record, r.get("LaunchTime"))
        if reason:
            log.warning("instance %s: not terminated, %s (%s)", r["InstanceId"], reason,
                        record.summary)
            anomalies[r["InstanceId"]] = reason
    event_name = record.event_name
    uncapped = {r["InstanceId"] for r in resources
                if cap_free(r, event_name) or r["InstanceId"] in rechecked}
    found = decide(resources, creator, account_id, settings, anomalies, uncapped,
                   creators, unresolved)
    capped = [i for i, d in found.items() if i not in uncapped and (
        d.terminate or d.outcome.status == report.HELD)]
    priors = {}
    for key, group in by_principal(capped, creators, creator).items():
        # count them first: concurrent invocations each see their own total
        total = count(key, len(group))
        priors[key] = None if total is None else total - len(group)
    if priors:
        found = decide(resources, creator, account_id,
                       dataclasses.replace(settings, prior_terminations=None),
                       anomalies, uncapped, creators, unresolved, priors)
    holding = [i for i, d in found.items() if d.outcome and d.outcome.status == report.HELD]
    if holding and recheck:
        note = recheck(holding)
        for instance_id in holding:
            found[instance_id] = Decision(False, report.Outcome(
                report.HELD, "%s. %s" % (found[instance_id].outcome.detail, note)))
    return found
