"""Pure formatting of Broom's report: one human-readable SNS message per instance.

Everything that comes from an event, a tag or EC2 is untrusted and kept as it is until
a message is rendered here: every value a person reads goes through
:func:`c7n_broom.text.readable` (one line, no live markup, length-capped), every message
attribute through :func:`c7n_broom.text.attribute` (the true value, as SNS can carry it).
"""
from dataclasses import dataclass, field

from c7n_broom import codes, events
from c7n_broom.cost import Cost, total
from c7n_broom.text import attribute, clip, readable

SUBJECT_LIMIT = 100

#: Outcome details are Broom's own sentences (why held, when re-checked): longer than a field.
DETAIL_LIMIT = 1024

TERMINATED = "terminated"
FAILED = "termination-failed"
WOULD_TERMINATE = "would-terminate"  # the outcome of decisions.REPORT_ONLY mode
EXEMPT = "exempt"
HELD = "held-by-cap"
GONE = "already-gone"
REPORTED = "reported"
ANOMALY = "anomaly"  # the event does not describe this instance: never terminated
UNRESOLVED = "creator-unresolved"  # a sweep could not look its creator up yet
# safe-terminate's quarantine (c7n_broom.quarantine): instances with history
QUARANTINED = "quarantined"  # noticed: stopped and terminated later unless fixed
STOPPED = "stopped"
STOP_FAILED = "stop-failed"
NEEDS_PERSON = "needs-a-person"  # protected: Broom never clears it there
RESOLVED = "left-quarantine"  # fixed in the meantime


#: What a report's first line says was done, per status.
HEADLINES = {
    TERMINATED: "terminated",
    FAILED: "could NOT terminate",
    WOULD_TERMINATE: "would terminate",
    EXEMPT: "found (exempt)",
    HELD: "held back from terminating",
    GONE: "found already gone",
    REPORTED: "found",
    ANOMALY: "found an anomaly with",
    UNRESOLVED: "left alone until its creator is known",
    QUARANTINED: "quarantined",
    STOPPED: "stopped",
    STOP_FAILED: "could NOT stop",
    NEEDS_PERSON: "needs a person for",
    RESOLVED: "released from quarantine",
}


@dataclass(frozen=True)
class Outcome:
    """What really happened to an instance: ``status`` is one of the constants above."""

    status: str
    detail: str = ""

    @property
    def headline(self):
        return HEADLINES.get(self.status, self.status)

    @property
    def gone(self):
        """True when the instance is no longer there: terminated, or gone before."""
        return self.status in (TERMINATED, GONE)


@dataclass(frozen=True)
class Finding:
    """Everything a report says about one violating instance."""

    instance_id: str
    region: str
    account_id: str
    image_id: str = ""
    instance_type: str = ""
    launch_time: str = ""
    code_key: str = "Code"
    code_value: str | None = None
    reason: str = codes.MISSING
    allowed: tuple = ()
    event_name: str = ""
    event_time: str = ""
    event_id: str = ""
    extra: dict = field(default_factory=dict)
    platform: str = ""  # EC2's PlatformDetails ("Linux/UNIX", "Windows", ...)
    cost: Cost | None = None  # None: the policy does not report costs

    @property
    def suggestion(self):
        """The allowed code an invalid value equals up to case ("lol" -> "LOL"), or ""."""
        if self.reason != codes.INVALID:
            return ""
        return codes.case_suggestion(self.code_value, self.allowed)


def finding(resource, record, region, account_id, extra=None, price=None):
    """The Finding for an instance as c7n described it (annotated by ``allowed-codes``),
    from the CloudTrail ``record`` that brought it (None without one); ``extra`` adds
    labelled lines (what ``fleets.notes`` says about its fleet); ``price`` is its
    cost.Cost (None when the policy does not report costs)."""
    violation = resource.get(codes.ANNOTATION) or {}
    key = violation.get("key", "tag:Code")
    launch = resource.get("LaunchTime", "")
    return Finding(
        instance_id=resource["InstanceId"],
        region=region,
        account_id=account_id or "",
        image_id=resource.get("ImageId", ""),
        instance_type=resource.get("InstanceType", ""),
        launch_time=launch.isoformat() if hasattr(launch, "isoformat") else str(launch),
        code_key=key.split(":", 1)[1] if key.startswith("tag:") else key,
        code_value=violation.get("value"),
        reason=violation.get("reason", "not checked by allowed-codes"),
        allowed=tuple(violation.get("allowed", ())),
        event_name=events.field(record, "eventName"),
        event_time=events.field(record, "eventTime"),
        event_id=events.field(record, "eventID"),
        extra=dict(extra or {}),
        platform=resource.get("PlatformDetails") or "",
        cost=price,
    )


@dataclass
class Group:
    """What one report stands for: an instance, or a fleet's instances with the same
    outcome (``slot``: the fleet report slot it took in the state table, see
    ``fleets.one_per_fleet``)."""

    finding: Finding
    outcome: Outcome
    instances: list
    slot: tuple | None = None


def quote(value):
    """A readable value in double quotes, so surrounding white space stays visible."""
    return '"%s"' % readable(value).replace('"', '\\"')


def describe_value(finding):
    if finding.reason == codes.MISSING:
        return "(no %s tag)" % readable(finding.code_key)
    if finding.reason == codes.EMPTY:
        return "(empty: %s)" % quote(finding.code_value)
    return quote(finding.code_value)


def describe_reason(finding, name=readable, value=quote):
    """Why the instance breaks the rule, its tag key shown with ``name`` and the
    values with ``value`` (the e-mail text's by default; Chatbot's card passes its
    markdown)."""
    key = name(finding.code_key)
    if finding.reason == codes.MISSING:
        return "the instance has no %s tag" % key
    if finding.reason == codes.EMPTY:
        return "the %s tag is empty" % key
    text = "%s=%s is not an allowed code" % (key, value(finding.code_value))
    if finding.suggestion:
        text += ": did you mean %s? (codes are case-sensitive)" % name(finding.suggestion)
    return text


def money(amount):
    """USD for a person: cents from a dollar up, four decimals below."""
    return "$%.2f" % amount if amount >= 1 else "$%.4f" % amount


def duration(hours):
    minutes = round(hours * 60)
    if minutes < 60:
        return "%d min" % minutes
    if minutes < 48 * 60:
        return "%d h %02d min" % divmod(minutes, 60)
    return "%.1f days" % (hours / 24)


def describe_cost(finding):
    """One line on what the instance cost, "cost unknown (why)" without a price."""
    price = finding.cost
    if not price.known:
        return "cost unknown (%s)" % readable(price.reason)
    return "%s an hour on demand (%s); ran %s: %s so far; %s a month had it kept running" % (
        money(price.hourly), ", ".join(readable(part) for part in (
            finding.instance_type, finding.platform or "Linux/UNIX", finding.region)),
        duration(price.hours), money(price.so_far), money(price.per_month))


def describe_total(costs):
    """The digest's cost line: sums over the instances with a price."""
    so_far, per_month, known, missing = total(costs)
    if not known:
        return "cost unknown"
    text = "%s so far, %s a month had they kept running (on-demand prices)" % (
        money(so_far), money(per_month))
    if missing:
        text += "; cost unknown for %d of %d" % (missing, known + missing)
    return text


def subject(finding, outcome):
    """A short, single-line, ASCII subject (SNS allows 100 characters)."""
    return ascii_subject("Broom %s %s in %s: %s" % (
        readable(outcome.headline), readable(finding.instance_id), readable(finding.region),
        "no Code tag" if finding.reason == codes.MISSING else
        "%s Code tag" % readable(finding.reason)))


def ascii_subject(text):
    """``text``, made of readable() parts, as SNS wants a subject: ASCII, 100 characters.
    Other characters are shown as readable() shows controls (``\\u00e9``): "?" would
    turn the "@" of "josé@x" into one at the start of a word."""
    return clip(text.encode("ascii", "backslashreplace").decode("ascii"), SUBJECT_LIMIT)


def describe_creator(creator):
    """Who, in a few words: name, the service that acted for them, and a note."""
    text = readable(creator.name)
    if creator.via and creator.via != creator.name:
        text += " via %s" % readable(creator.via)
    if creator.note:
        text += " (%s)" % readable(creator.note)
    return text


def body(finding, outcome, creator, actor="Launched by"):
    """The message a person reads. ``creator`` is an identity.Creator; ``actor`` names
    its part ("Launched by", or "Tagged by" for a later tag change)."""
    allowed = ", ".join(readable(code) for code in finding.allowed) or "(none configured)"
    lines = [
        "Broom %s EC2 instance %s in %s (account %s)." % (
            readable(outcome.headline), readable(finding.instance_id),
            readable(finding.region), readable(finding.account_id)),
        "",
        "Why:            %s (allowed codes: %s)" % (describe_reason(finding), allowed),
        "Action taken:   %s" % describe_outcome(outcome),
        "",
        "%-15s %s" % (actor + ":", describe_creator(creator)),
    ]
    if creator.role:
        lines.append("Role:           %s%s" % (readable(creator.role), (
            " (session %s)" % readable(creator.session)) if creator.session else ""))
    lines += [
        "Identity type:  %s" % readable(creator.identity_type),
        "Identity ARN:   %s" % (readable(creator.arn) or "(not recorded)"),
        "Account:        %s" % readable(finding.account_id),
        "Region:         %s" % readable(finding.region),
        "Instance:       %s" % readable(finding.instance_id),
        "Image:          %s" % (readable(finding.image_id) or "(unknown)"),
        "Instance type:  %s" % (readable(finding.instance_type) or "(unknown)"),
        "Launch time:    %s" % (readable(finding.launch_time) or "(unknown)"),
        "Code tag:       %s" % describe_value(finding),
        "Event:          %s" % describe_event(finding),
    ]
    if finding.cost is not None:
        lines.append("Cost:           %s" % describe_cost(finding))
    for label, value in sorted(finding.extra.items()):
        lines.append("%-15s %s" % (readable(label, 40) + ":", readable(value)))
    fix = ("Launch again with that tag." if actor == "Launched by" else
           "Set the %s tag back to an allowed code." % readable(finding.code_key))
    lines += [
        "",
        "What to do: every EC2 instance in this account must carry a %s tag set to one of "
        "the allowed codes (%s). %s" % (readable(finding.code_key), allowed, fix),
    ]
    return "\n".join(lines) + "\n"


def describe_outcome(outcome):
    text = {
        TERMINATED: "terminated",
        FAILED: "termination FAILED, the instance is still there",
        WOULD_TERMINATE: "none: Broom would terminate it, but only reports",
        EXEMPT: "none: exempt",
        HELD: "none: held back by the safety cap",
        GONE: "none, the instance no longer exists",
        REPORTED: "none (this policy only reports)",
        ANOMALY: "none: the event does not match this instance, it was not terminated",
        UNRESOLVED: "none: not terminated until Broom knows who launched it",
        QUARANTINED: "none yet",
        STOPPED: "stopped",
        STOP_FAILED: "stop FAILED, the instance is still running",
        NEEDS_PERSON: "none: it is protected",
        RESOLVED: "none: it was fixed",
    }.get(outcome.status, readable(outcome.status))
    if outcome.detail:
        text += " (%s)" % readable(outcome.detail, DETAIL_LIMIT)
    return text


def describe_event(finding):
    if not finding.event_name:
        return "none (found by a scheduled or manual run)"
    text = "%s at %s" % (readable(finding.event_name), readable(finding.event_time) or "?")
    if finding.event_id:
        text += " (event id %s)" % readable(finding.event_id)
    return text


def attributes(finding, outcome, creator):
    """SNS message attributes for subscribers that filter or parse (at most 10): the
    true values, not escaped (see c7n_broom.text.attribute); empty ones are left out."""
    values = {
        "broom.instance_id": finding.instance_id,
        "broom.account_id": finding.account_id,
        "broom.region": finding.region,
        "broom.reason": finding.reason,
        "broom.outcome": outcome.status,
        "broom.code": finding.code_value if finding.code_value is not None else "",
        "broom.creator": creator.name,
        "broom.creator_type": creator.identity_type,
        "broom.creator_arn": creator.arn,
        "broom.event_id": finding.event_id,
    }
    return string_attributes(values)


def string_attributes(values):
    """SNS String attributes from ``{name: value}``, leaving out those with no value."""
    carried = {name: attribute(value) for name, value in values.items()}
    return {name: {"DataType": "String", "StringValue": value}
            for name, value in carried.items() if value}


SNS_LIMIT = 256 * 1024
DIGEST_BUDGET = 200 * 1024  # body bytes, leaving room for subject and attributes


def digest(items, creator, actor="Launched by", limit=None):
    """One message for many instances: (subject, body, attributes).

    ``items`` is a list of (Finding, Outcome). Used when one event brings more
    instances than it is reasonable to mail one by one; the body stays under SNS's
    256 KB limit by listing as many instances as fit (at most ``limit``) and counting
    the rest.
    """
    first = items[0][0]
    statuses = sorted({outcome.status for _, outcome in items})
    counts = {}
    for _, outcome in items:
        counts[outcome.headline] = counts.get(outcome.headline, 0) + 1
    summary = ", ".join("%s: %d" % (readable(headline), n)
                        for headline, n in sorted(counts.items()))
    head = [
        "Broom found %d EC2 instances in %s (account %s) that break the Code tag rule."
        % (len(items), readable(first.region), readable(first.account_id)),
        "",
        "Outcome:        %s" % summary,
        "%-15s %s" % (actor + ":", describe_creator(creator)),
        "Identity type:  %s" % readable(creator.identity_type),
        "Identity ARN:   %s" % (readable(creator.arn) or "(not recorded)"),
        "Event:          %s" % describe_event(first),
    ]
    details = {outcome.detail for _, outcome in items if outcome.detail}
    if len(details) == 1:
        head.append("Why not:        %s" % readable(details.pop(), DETAIL_LIMIT))
    if any(finding.cost is not None for finding, _ in items):
        head.append("Cost:           %s" % describe_total(f.cost for f, _ in items))
    head += ["", "Instance             Type         Code tag        Action taken"]
    lines, size = [], len("\n".join(head).encode("utf-8"))
    for index, (finding, outcome) in enumerate(items):
        line = "%-20s %-12s %-15s %s" % (
            readable(finding.instance_id, 20), readable(finding.instance_type, 12),
            clip(describe_value(finding), 15), clip(describe_outcome(outcome), 120))
        size += len(line.encode("utf-8")) + 1
        if size > DIGEST_BUDGET or (limit is not None and index >= limit):
            lines.append("... and %d more instances (not listed: message size limit)" % (
                len(items) - index))
            break
        lines.append(line)
    allowed = ", ".join(readable(code) for code in first.allowed) or "(none configured)"
    tail = ["", "What to do: every EC2 instance in this account must carry a %s tag set to "
            "one of the allowed codes (%s)." % (readable(first.code_key), allowed)]
    body = "\n".join(head + lines + tail) + "\n"
    subject_text = "Broom: %d instances without an allowed Code in %s" % (
        len(items), readable(first.region))
    attrs = {"broom.count": {"DataType": "Number", "StringValue": str(len(items))}}
    attrs.update(string_attributes({
        "broom.account_id": first.account_id,
        "broom.region": first.region,
        "broom.outcome": statuses[0] if len(statuses) == 1 else "mixed",
        "broom.creator": creator.name,
    }))
    return ascii_subject(subject_text), body, attrs
