"""The periodic sweep: who launched each violator, what is new, and one digest per run.

``policies/ec2-tags-sweep.yml`` runs in Custodian's periodic mode and finds the
violators the event path never saw (launched before Broom, during an outage, in a
region not deployed yet, events lost). Without an event, who launched each instance
comes from CloudTrail (``c7n_broom.lookup``), through the ``lookup-creators`` action,
which annotates each instance with its :class:`~c7n_broom.lookup.Attribution`;
``safe-terminate`` then decides with each instance's own creator (``creators``), and
``creator-report`` sends one digest for the run instead of a message per instance,
telling the violators first reported now from those still open: its e-mail text is
``digest``, its JSON document and Chatbot card ``formats.sweep_document`` and
``formats.chatbot_sweep``, all in one publish (``actions.sweep_message``).

What a sweep remembers lives in Broom's state table (``c7n_broom.state``), one
``sweep#`` item per policy and instance: the creator once settled (it never changes),
and when the instance was first reported. Never in tags: whoever Broom polices can
write those. Without the table, every creator is looked up again and every violator
is reported as new.
"""
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from c7n.actions import BaseAction
from c7n.utils import local_session, type_schema

from c7n_broom import lookup, report, state
from c7n_broom.lambda_check import check_lambda_packaging
from c7n_broom.report import describe_creator, describe_outcome, describe_value
from c7n_broom.text import clip, readable
from c7n_broom.validation import check_schedule, check_schema, check_state_table

log = logging.getLogger("custodian.broom.sweep")

ATTRIBUTION = "c7n:broom-creator"
#: {"reported": when an earlier sweep first reported it, "expires": its item's expiry}
SWEEP_STATE = "c7n:broom-sweep"
#: A settled creator stays cached this long after it was last written, and is written
#: again once less than REFRESH is left (an instance lives longer than a cache entry).
CACHE_TTL = 30 * 24 * 3600
REFRESH = 15 * 24 * 3600
#: [{"kind", "id", "event", Attribution fields}]: who last set up what relaunches it.
FLEET_OWNERS = "c7n:broom-fleet-owners"
#: A fleet's owner may change (anyone may update a group): cached for a day only.
FLEET_TTL = 24 * 3600
#: What the report says about instances the cap holds in a sweep.
NEXT_SWEEP = "The next sweep checks them again"


class LookupCreators(BaseAction):
    """Find who launched each instance, from CloudTrail's event history.

    For policies without an event (periodic or pull mode), before ``safe-terminate``
    and ``creator-report``: each instance's ``RunInstances`` record is looked up with
    CloudTrail ``LookupEvents`` (2 requests per second per account and region: Broom
    stays under it), at most ``max-lookups`` calls per run so a large account
    finishes within the function's timeout; the rest are looked up by the next run.
    Creators found are kept in ``state-table`` (default ``broom-state``), so a later
    run looks up only new instances. Instances launched more than 90 days ago, or with
    no record, have an unknown creator, with the reason; a creator that could not be
    looked up (denied, throttled, malformed record, lookups used up) keeps its instance
    from being terminated while ``safe-terminate`` has exemptions.

    :example:

    .. code-block:: yaml

        policies:
          - name: ec2-sweep-code-tag
            resource: aws.ec2
            filters:
              - type: allowed-codes
                codes: [LOL, GGG, BRB, YLO]
            actions:
              - type: lookup-creators
                max-lookups: 200
              - type: creator-report
                topic: arn:aws:sns:{region}:{account_id}:broom-reports
    """

    schema = type_schema(
        "lookup-creators",
        **{
            "max-lookups": {"type": "integer", "minimum": 0, "maximum": 1000},
            "state-table": {"type": "string"},
        },
    )
    permissions = ("cloudtrail:LookupEvents",) + state.SWEEP_PERMISSIONS
    clock = staticmethod(time.time)
    monotonic = staticmethod(time.monotonic)
    sleep = staticmethod(time.sleep)

    def validate(self):
        check_schema(self)
        check_state_table(self)
        check_schedule(self)
        check_lambda_packaging(self.manager, self.type)
        return self

    def process(self, resources):
        now = self.clock()
        table = state.for_element(self, clock=self.clock)
        cached = load(table, self.policy_name, resources)
        missing = []
        for r in resources:
            item = cached.get(r["InstanceId"]) or {}
            found = lookup.Attribution.from_dict(_json(item.get("attribution")))
            r[SWEEP_STATE] = {"reported": _number(item.get("reported")),
                              "expires": _number(item.get(state.TTL_ATTRIBUTE))}
            if found and found.settled:
                r[ATTRIBUTION] = found.as_dict()
            else:
                missing.append(r)
        missing = lookup_order(missing)
        budget = self.data.get("max-lookups", lookup.DEFAULT_BUDGET)
        finder = lookup.Lookup(self.cloudtrail(), budget, clock=self.monotonic, sleep=self.sleep,
                               now=datetime.fromtimestamp(now, timezone.utc))
        settled = []
        for r in missing:
            found = finder.attribute(r["InstanceId"], lookup.first_launch(r))
            r[ATTRIBUTION] = found.as_dict()
            if found.settled:
                settled.append(r)
        save(table, self.policy_name, settled, now)
        self.fleet_owners(table, resources, finder, now)
        unresolved = sum(1 for r in missing if r not in settled)
        log.info("policy:%s creators of %d instances: %d cached, %d looked up with %d "
                 "CloudTrail calls (%d throttled), %d not known yet", self.policy_name,
                 len(resources), len(resources) - len(missing), len(settled),
                 finder.calls, finder.throttled, unresolved)
        return {"cached": len(resources) - len(missing), "looked-up": len(settled),
                "lookup-calls": finder.calls, "unresolved": unresolved}

    def fleet_owners(self, table, resources, finder, now):
        """Annotate fleet instances with who last created or changed their group,
        fleet or launch template (what must be fixed so that it stops launching
        untagged instances), with the lookups left after the instances' own."""
        wanted = {}
        for r in resources:
            for source in lookup.fleet_sources(r):
                wanted.setdefault(source, []).append(r)
        if not wanted:
            return
        keys = {state._key("sweep-fleet", self.policy_name, table.account_id, table.region,
                           *source): source for source in wanted}
        found, fresh = {}, []
        for key, item in table.get_items(list(keys)).items():
            owner = _json(item.get("owner"))
            if lookup.Attribution.from_dict(owner):
                found[keys[key]] = owner
        for key, source in keys.items():
            if source in found:
                continue
            attribution, event_name = finder.fleet_owner(*source)
            found[source] = dict(attribution.as_dict(), event=event_name)
            if attribution.settled:
                fresh.append({state.KEY: state._s(key),
                              "owner": state._s(json.dumps(found[source], sort_keys=True)),
                              state.TTL_ATTRIBUTE: state._n(now + FLEET_TTL)})
        table.put_items(fresh)
        for (kind, fleet_id), members in wanted.items():
            for r in members:
                r.setdefault(FLEET_OWNERS, []).append(
                    dict(found[(kind, fleet_id)], kind=kind, id=fleet_id))

    def cloudtrail(self):
        return local_session(self.manager.session_factory).client(
            "cloudtrail", region_name=self.manager.config.region)

    @property
    def policy_name(self):
        return self.manager.data.get("name", "")


_EPOCH = datetime.fromtimestamp(0, timezone.utc)


def lookup_order(resources):
    """Newest first (their creators are likeliest to be around), then by id."""
    return sorted(resources, key=lambda r: (lookup.first_launch(r) or _EPOCH,
                                            r["InstanceId"]), reverse=True)


def _json(value):
    try:
        return json.loads(value["S"]) if isinstance(value, dict) else None
    except (TypeError, ValueError, KeyError):
        return None


def _number(value):
    try:
        return float(value["N"]) if isinstance(value, dict) else None
    except (TypeError, ValueError, KeyError):
        return None


def item_key(table, policy, instance_id):
    return state._key("sweep", policy, table.account_id, table.region, instance_id)


def load(table, policy, resources):
    """{instance id: state item} of what earlier sweeps recorded about ``resources``."""
    keys = {item_key(table, policy, r["InstanceId"]): r["InstanceId"] for r in resources}
    return {keys[key]: item for key, item in table.get_items(list(keys)).items()}


def save(table, policy, resources, now, reported=False):
    """Record each instance's settled creator and, with ``reported``, that it was
    reported now (unless an earlier sweep did)."""
    items = []
    for r in resources:
        item = {state.KEY: state._s(item_key(table, policy, r["InstanceId"])),
                state.TTL_ATTRIBUTE: state._n(now + CACHE_TTL)}
        found = lookup.Attribution.from_dict(r.get(ATTRIBUTION))
        if found and found.settled:
            item["attribution"] = state._s(json.dumps(found.as_dict(), sort_keys=True))
        first = reported_at(r) or (now if reported else None)
        if first:
            item["reported"] = state._n(first)
        items.append(item)
    table.put_items(items)


def record_reported(table, policy, resources, now):
    """After the digest was published: mark new violators reported (and rewrite the
    items of old ones once their expiry is near)."""
    save(table, policy, [r for r in resources if not reported_at(r)
                         or (_sweep_state(r).get("expires") or 0) - now < REFRESH], now,
         reported=True)


def _sweep_state(resource):
    found = resource.get(SWEEP_STATE)
    return found if isinstance(found, dict) else {}


def reported_at(resource):
    """When an earlier sweep first reported this instance (epoch seconds), or None."""
    return _sweep_state(resource).get("reported")


def attributions(resources):
    """{instance id: Attribution} of the instances ``lookup-creators`` annotated."""
    found = {}
    for r in resources:
        attribution = lookup.Attribution.from_dict(r.get(ATTRIBUTION))
        if attribution:
            found[r["InstanceId"]] = attribution
    return found


def fleet_owners(resource):
    """[(kind, id, Attribution, event name)] ``lookup-creators`` annotated."""
    owners = []
    for owner in resource.get(FLEET_OWNERS) or ():
        attribution = lookup.Attribution.from_dict(owner)
        if attribution:
            owners.append((owner.get("kind", ""), owner.get("id", ""), attribution,
                           owner.get("event", "")))
    return owners


def creators(resources):
    """(creators, unresolved) for ``decisions.plan``: each annotated instance's
    creator, and why the creator of those not settled is not known yet."""
    found = attributions(resources)
    return ({i: a.creator for i, a in found.items()},
            {i: a.reason for i, a in found.items() if not a.settled})


# -- the digest ----------------------------------------------------------------------

@dataclass(frozen=True)
class Row:
    """One violator in a sweep's digest: its Finding (``finding.cost`` is its cost,
    None when the policy reports no cost), its Outcome, who launched it, its age,
    its state once Broom acted (``state``), and whether an earlier sweep reported it
    (``new`` False: still open)."""

    finding: report.Finding
    outcome: report.Outcome
    attribution: lookup.Attribution
    age_seconds: float | None = None
    state: str = ""
    new: bool = True
    fleet: tuple | None = None
    owners: tuple = ()  # (kind, id, Attribution, event name): see ``fleet_owners``


def state_after(outcome, described, now_states, instance_id):
    """The state a digest shows: what EC2 shows after Broom's actions (``now_states``,
    read again for the instances Broom tried to terminate), else what it showed when
    the policy listed it (``described``). A terminated instance is never "running"."""
    if instance_id in now_states:
        return now_states[instance_id]
    if outcome.gone:
        return "terminated"
    return described or ""


def ordered(rows):
    """New violators first, then those still open: the order every form lists them."""
    return [row for row in rows if row.new] + [row for row in rows if not row.new]


@dataclass(frozen=True)
class Counts:
    """What a sweep's digest counts, in every format."""

    total: int
    new: int
    still_open: int
    outcomes: dict  # headline -> count
    statuses: dict  # outcome status -> count
    found: int
    unknown: int
    pending: int  # not known yet: lookups used up, denied, throttled, malformed

    @property
    def outcome(self):
        """The one outcome status of every row, or "mixed"."""
        return next(iter(self.statuses)) if len(self.statuses) == 1 else "mixed"


def counts(rows):
    outcomes, statuses, creators_ = {}, {}, {}
    for row in rows:
        outcomes[row.outcome.headline] = outcomes.get(row.outcome.headline, 0) + 1
        statuses[row.outcome.status] = statuses.get(row.outcome.status, 0) + 1
        creators_[row.attribution.status] = creators_.get(row.attribution.status, 0) + 1
    new = sum(1 for row in rows if row.new)
    return Counts(len(rows), new, len(rows) - new, outcomes, statuses,
                  creators_.get(lookup.FOUND, 0), creators_.get(lookup.UNKNOWN_FOR_GOOD, 0),
                  creators_.get(lookup.PENDING, 0) + creators_.get(lookup.FAULT, 0))


def subject(rows, region):
    return report.ascii_subject("Broom sweep: %d instances without an allowed Code in "
                                "%s (%d new)" % (len(rows), readable(region),
                                                 sum(1 for row in rows if row.new)))


def priced(rows):
    """True when the policy reports costs (every row then has one, maybe unknown)."""
    return any(row.finding.cost is not None for row in rows)


def age(seconds):
    """``3 d 4 h``, ``5 h 2 min``, ``12 min``; "?" when unknown."""
    if seconds is None or seconds < 0:
        return "?"
    minutes = int(seconds // 60)
    days, hours, minutes = minutes // 1440, minutes // 60 % 24, minutes % 60
    if days:
        return "%d d %d h" % (days, hours)
    if hours:
        return "%d h %d min" % (hours, minutes)
    return "%d min" % minutes


def describe_attribution(attribution):
    if attribution.status == lookup.FOUND:
        return describe_creator(attribution.creator)
    if attribution.status == lookup.UNKNOWN_FOR_GOOD:
        return "unknown (%s)" % readable(attribution.reason)
    return "not known yet (%s)" % readable(attribution.reason)


def row_lines(row):
    finding = row.finding
    lines = ["  %s  %s  %s  age %s  Code tag %s" % (
        readable(finding.instance_id, 20), readable(finding.instance_type, 20) or "?",
        readable(row.state, 20) or "?", age(row.age_seconds),
        clip(describe_value(finding), 60))]
    lines.append("      Launched by:  %s" % describe_attribution(row.attribution))
    lines.append("      Action taken: %s" % clip(describe_outcome(row.outcome), 300))
    if row.fleet:
        lines.append("      Managed by:   %s %s" % (readable(row.fleet[0]),
                                                  readable(row.fleet[1])))
    for kind, fleet_id, attribution, event_name in row.owners:
        lines.append("      %s %s last set up by %s%s" % (
            readable(kind), readable(fleet_id, 80), describe_attribution(attribution),
            " (%s)" % readable(event_name) if event_name else ""))
    if row.finding.cost is not None:
        lines.append("      Cost:         %s" % report.describe_cost(row.finding))
    return lines


def digest(rows, region, account_id, limit=None):
    """(subject, body, attributes) of a sweep's e-mail text: counts, then each
    violator, new ones first (``ordered``), at most ``limit`` of them and no more
    than report.DIGEST_BUDGET bytes, the rest counted. ``formats.sweep_document`` and
    ``formats.chatbot_sweep`` are its other forms; ``actions.fit`` picks ``limit`` so
    that all of them fit in one SNS message."""
    summary = counts(rows)
    head = [
        "Broom's sweep found %d EC2 instances in %s (account %s) that break the Code "
        "tag rule." % (len(rows), readable(region), readable(account_id)),
        "",
        "New:            %d (not reported by an earlier sweep)" % summary.new,
        "Still open:     %d (reported by an earlier sweep, still there)" % summary.still_open,
        "Outcome:        %s" % ", ".join("%s: %d" % (readable(h), n)
                                         for h, n in sorted(summary.outcomes.items())),
        "Creators:       %d found, %d unknown, %d still being looked up" % (
            summary.found, summary.unknown, summary.pending),
    ]
    if summary.pending:
        head.append("                (the next sweep looks them up again)")
    if priced(rows):
        head.append("Cost:           %s" % report.describe_total(
            row.finding.cost for row in rows))
    allowed = ", ".join(readable(code) for code in rows[0].finding.allowed) or "(none)"
    key = readable(rows[0].finding.code_key)
    tail = ["", "What to do: every EC2 instance in this account must carry a %s tag set to "
            "one of the allowed codes (%s). Tag it, or terminate it." % (key, allowed)]
    lines, size = [], len("\n".join(head + tail).encode("utf-8"))
    listed, full = 0, False
    for title, group in (("New", [r for r in rows if r.new]),
                         ("Still open", [r for r in rows if not r.new])):
        if not group:
            continue
        if full or (limit is not None and listed >= limit):
            break
        section = ["", "%s (%d):" % (title, len(group))]
        size += len("\n".join(section).encode("utf-8")) + 1
        lines += section
        for row in group:
            block = row_lines(row)
            size += len("\n".join(block).encode("utf-8")) + 1
            if size > report.DIGEST_BUDGET or (limit is not None and listed >= limit):
                full = True
                break
            lines += block
            listed += 1
    if listed < len(rows):
        lines.append("  ... and %d more instances (not listed: message size limit)" % (
            len(rows) - listed))
    body = "\n".join(head + lines + tail) + "\n"
    attributes = {
        "broom.count": {"DataType": "Number", "StringValue": str(len(rows))},
        "broom.new": {"DataType": "Number", "StringValue": str(summary.new)},
        "broom.creators_pending": {"DataType": "Number", "StringValue": str(summary.pending)},
    }
    attributes.update(report.string_attributes({
        "broom.kind": "sweep",
        "broom.account_id": account_id,
        "broom.region": region,
        "broom.outcome": summary.outcome,
    }))
    return subject(rows, region), body, attributes
