"""Pure formatting of Broom's report: one human-readable SNS message per instance.

Everything that comes from an event or a tag is untrusted: ``clean`` escapes control
characters (newlines included) so such a value cannot change the message layout.
"""
import unicodedata
from dataclasses import dataclass, field

MAX_FIELD = 256
SUBJECT_LIMIT = 100

TERMINATED = "terminated"
FAILED = "termination-failed"
REPORT_ONLY = "would-terminate"
EXEMPT = "exempt"
HELD = "held-by-cap"
GONE = "already-gone"
REPORTED = "reported"
ANOMALY = "anomaly"  # the event does not describe this instance: never terminated


@dataclass(frozen=True)
class Outcome:
    """What really happened to an instance: ``status`` is one of the constants above."""

    status: str
    detail: str = ""

    @property
    def headline(self):
        return {
            TERMINATED: "terminated",
            FAILED: "could NOT terminate",
            REPORT_ONLY: "would terminate",
            EXEMPT: "found (exempt)",
            HELD: "held back from terminating",
            GONE: "found already gone",
            REPORTED: "found",
            ANOMALY: "found an anomaly with",
        }.get(self.status, self.status)


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
    reason: str = "missing"
    allowed: tuple = ()
    event_name: str = ""
    event_time: str = ""
    event_id: str = ""
    extra: dict = field(default_factory=dict)


def clean(value, limit=MAX_FIELD):
    """One line of printable text: control and format characters escaped, length capped."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    out = []
    for ch in text:
        if unicodedata.category(ch)[0] == "C" or ch in "\u2028\u2029":
            code = ord(ch)
            out.append("\\x%02x" % code if code < 0x100 else "\\u%04x" % code
                       if code < 0x10000 else "\\U%08x" % code)
        else:
            out.append(ch)
    text = "".join(out)
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return text


def quote(value):
    """A cleaned value in double quotes, so surrounding white space stays visible."""
    return '"%s"' % clean(value).replace('"', '\\"')


def describe_value(finding):
    if finding.reason == "missing":
        return "(no %s tag)" % clean(finding.code_key)
    if finding.reason == "empty":
        return "(empty: %s)" % quote(finding.code_value)
    return quote(finding.code_value)


def describe_reason(finding):
    key = clean(finding.code_key)
    if finding.reason == "missing":
        return "the instance has no %s tag" % key
    if finding.reason == "empty":
        return "the %s tag is empty" % key
    return "%s=%s is not an allowed code" % (key, quote(finding.code_value))


def subject(finding, outcome):
    """A short, single-line, ASCII subject (SNS allows 100 characters)."""
    text = "Broom %s %s in %s: %s" % (
        outcome.headline, finding.instance_id, finding.region,
        "no Code tag" if finding.reason == "missing" else "%s Code tag" % finding.reason)
    text = clean(text).encode("ascii", "replace").decode("ascii")
    return text[:SUBJECT_LIMIT]


def describe_creator(creator):
    """Who, in a few words: name, the service that acted for them, and a note."""
    text = clean(creator.name)
    if creator.via and creator.via != creator.name:
        text += " via %s" % clean(creator.via)
    if creator.note:
        text += " (%s)" % clean(creator.note)
    return text


def body(finding, outcome, creator, actor="Launched by"):
    """The message a person reads. ``creator`` is an identity.Creator; ``actor`` names
    its part ("Launched by", or "Tagged by" for a later tag change)."""
    allowed = ", ".join(clean(code) for code in finding.allowed) or "(none configured)"
    lines = [
        "Broom %s EC2 instance %s in %s (account %s)." % (
            outcome.headline, clean(finding.instance_id), clean(finding.region),
            clean(finding.account_id)),
        "",
        "Why:            %s (allowed codes: %s)" % (describe_reason(finding), allowed),
        "Action taken:   %s" % describe_outcome(outcome),
        "",
        "%-15s %s" % (actor + ":", describe_creator(creator)),
    ]
    if creator.role:
        lines.append("Role:           %s%s" % (clean(creator.role), (
            " (session %s)" % clean(creator.session)) if creator.session else ""))
    lines += [
        "Identity type:  %s" % clean(creator.identity_type),
        "Identity ARN:   %s" % (clean(creator.arn) or "(not recorded)"),
        "Account:        %s" % clean(finding.account_id),
        "Region:         %s" % clean(finding.region),
        "Instance:       %s" % clean(finding.instance_id),
        "Image:          %s" % (clean(finding.image_id) or "(unknown)"),
        "Instance type:  %s" % (clean(finding.instance_type) or "(unknown)"),
        "Launch time:    %s" % (clean(finding.launch_time) or "(unknown)"),
        "Code tag:       %s" % describe_value(finding),
        "Event:          %s" % describe_event(finding),
    ]
    for label, value in sorted(finding.extra.items()):
        lines.append("%-15s %s" % (clean(label, 40) + ":", clean(value)))
    fix = ("Launch again with that tag." if actor == "Launched by" else
           "Set the %s tag back to an allowed code." % clean(finding.code_key))
    lines += [
        "",
        "What to do: every EC2 instance in this account must carry a %s tag set to one of "
        "the allowed codes (%s). %s" % (clean(finding.code_key), allowed, fix),
    ]
    return "\n".join(lines) + "\n"


def describe_outcome(outcome):
    text = {
        TERMINATED: "terminated",
        FAILED: "termination FAILED, the instance is still there",
        REPORT_ONLY: "none: Broom would terminate it, but only reports",
        EXEMPT: "none: exempt",
        HELD: "none: held back by the safety cap",
        GONE: "none, the instance no longer exists",
        REPORTED: "none (this policy only reports)",
        ANOMALY: "none: the event does not match this instance, it was not terminated",
    }.get(outcome.status, clean(outcome.status))
    if outcome.detail:
        text += " (%s)" % clean(outcome.detail)
    return text


def describe_event(finding):
    if not finding.event_name:
        return "none (found by a scheduled or manual run)"
    text = "%s at %s" % (clean(finding.event_name), clean(finding.event_time) or "?")
    if finding.event_id:
        text += " (event id %s)" % clean(finding.event_id)
    return text


def attributes(finding, outcome, creator):
    """SNS message attributes for subscribers that filter or parse (at most 10)."""
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
    return {
        name: {"DataType": "String", "StringValue": clean(value)}
        for name, value in values.items() if clean(value)
    }


SNS_LIMIT = 256 * 1024
DIGEST_BUDGET = 200 * 1024  # body bytes, leaving room for subject and attributes


def digest(items, creator, actor="Launched by"):
    """One message for many instances: (subject, body, attributes).

    ``items`` is a list of (Finding, Outcome). Used when one event brings more
    instances than it is reasonable to mail one by one; the body stays under SNS's
    256 KB limit by listing as many instances as fit and counting the rest.
    """
    first = items[0][0]
    statuses = sorted({outcome.status for _, outcome in items})
    counts = {}
    for _, outcome in items:
        counts[outcome.headline] = counts.get(outcome.headline, 0) + 1
    summary = ", ".join("%s: %d" % (headline, n) for headline, n in sorted(counts.items()))
    head = [
        "Broom found %d EC2 instances in %s (account %s) that break the Code tag rule."
        % (len(items), clean(first.region), clean(first.account_id)),
        "",
        "Outcome:        %s" % summary,
        "%-15s %s" % (actor + ":", describe_creator(creator)),
        "Identity type:  %s" % clean(creator.identity_type),
        "Identity ARN:   %s" % (clean(creator.arn) or "(not recorded)"),
        "Event:          %s" % describe_event(first),
    ]
    details = {outcome.detail for _, outcome in items if outcome.detail}
    if len(details) == 1:
        head.append("Why not:        %s" % clean(details.pop()))
    head += ["", "Instance             Type         Code tag        Action taken"]
    lines, size = [], len("\n".join(head).encode("utf-8"))
    for index, (finding, outcome) in enumerate(items):
        line = "%-20s %-12s %-15s %s" % (
            clean(finding.instance_id, 20), clean(finding.instance_type, 12),
            describe_value(finding)[:15], describe_outcome(outcome)[:120])
        size += len(line.encode("utf-8")) + 1
        if size > DIGEST_BUDGET:
            lines.append("... and %d more instances (not listed: message size limit)" % (
                len(items) - index))
            break
        lines.append(line)
    allowed = ", ".join(clean(code) for code in first.allowed) or "(none configured)"
    tail = ["", "What to do: every EC2 instance in this account must carry a %s tag set to "
            "one of the allowed codes (%s)." % (clean(first.code_key), allowed)]
    body = "\n".join(head + lines + tail) + "\n"
    subject_text = "Broom: %d instances without an allowed Code in %s" % (
        len(items), first.region)
    attrs = {
        "broom.count": {"DataType": "Number", "StringValue": str(len(items))},
        "broom.account_id": {"DataType": "String", "StringValue": clean(first.account_id)},
        "broom.region": {"DataType": "String", "StringValue": clean(first.region)},
        "broom.outcome": {"DataType": "String",
                          "StringValue": statuses[0] if len(statuses) == 1 else "mixed"},
        "broom.creator": {"DataType": "String", "StringValue": clean(creator.name)},
    }
    return (clean(subject_text).encode("ascii", "replace").decode("ascii")[:SUBJECT_LIMIT],
            body, {k: v for k, v in attrs.items() if v["StringValue"]})
