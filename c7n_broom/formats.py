"""A report in every format its subscribers read, in one SNS publish.

SNS delivers one message per protocol when it is published with
``MessageStructure="json"``: a JSON object whose keys name protocols and whose values
are the messages (docs/reports.md):

- ``email``: the plain-text report of ``c7n_broom.report`` (what e-mail showed before);
- ``default``: the Broom JSON document (:func:`document`), for every protocol without
  its own key: ``sqs``, ``lambda``, ``http``, ``https`` and ``email-json``;
- ``https``, only when the policy says the topic's HTTPS subscriber is AWS Chatbot
  (``https-format: chatbot``): Chatbot's custom notification (:func:`chatbot`). AWS
  Chatbot subscribes to a topic over HTTPS, so it shares that key with every other
  HTTPS subscriber; a topic with other HTTPS subscribers leaves the key out and sends
  Chatbot its card through a topic of its own (``chatbot-topic``).

The JSON document holds the true values (not escaped: a consumer that renders them
escapes them for its medium); the e-mail text and the Chatbot card hold values made
inert by ``c7n_broom.text``. The document's schema is ``schemas/broom.report-1.json``
in the repository; a digest (many instances) is the same document with ``kind``
"digest" and the instances that fit, and a sweep's digest has ``kind`` "sweep", each
instance's own creator and what the sweep knows of it under ``instances[].sweep``
(:func:`sweep_document`, :func:`chatbot_sweep`). SNS counts the whole envelope (every format,
JSON-escaped once more) plus the subject and attributes against its 256 KB limit:
:func:`size` measures that.

Pure functions on plain data.
"""
import json

from c7n_broom import codes, cost, lookup, report, sweep
from c7n_broom.identity import UNKNOWN, Creator
from c7n_broom.text import markdown, readable, true_value

SCHEMA = "broom.report/1"
CHATBOT_VERSION = "1.0"
#: SNS's limit for one message, the JSON envelope, subject and attributes included.
SNS_LIMIT = 256 * 1024
#: What a message may use of it: room left for what SNS adds and for rounding.
BUDGET = SNS_LIMIT - 8 * 1024
#: The Chatbot card stays short: Slack and Teams cut long cards, and its size adds up.
CHATBOT_TITLE_LIMIT = 250
CHATBOT_DESCRIPTION_LIMIT = 3500
CHATBOT_LISTED = 20
CHATBOT_KEYWORD_LIMIT = 64

FIX = {"Launched by": "Launch again with a %s tag set to one of the allowed codes: %s.",
       "Tagged by": "Set the %s tag back to one of the allowed codes: %s.",
       "Untagged by": "Set the %s tag back to one of the allowed codes: %s."}


# --- the Broom JSON document ---------------------------------------------------------

def _cost(price):
    if price is None:
        return None
    if not price.known:
        return {"known": False, "reason": true_value(price.reason)}
    return {"known": True, "currency": price.currency, "hourly": round(price.hourly, 6),
            "hours": round(price.hours, 4), "so_far": round(price.so_far, 6),
            "per_month": round(price.per_month, 4)}


def instance(finding, outcome):
    """One instance of the JSON document: true values."""
    return {
        "instance_id": true_value(finding.instance_id),
        "image_id": true_value(finding.image_id) or None,
        "instance_type": true_value(finding.instance_type) or None,
        "platform": true_value(finding.platform) or None,
        "launch_time": true_value(finding.launch_time) or None,
        "code": {
            "key": true_value(finding.code_key),
            "value": None if finding.code_value is None else true_value(finding.code_value),
            "reason": finding.reason,
            "allowed": [true_value(code) for code in finding.allowed],
            "suggestion": finding.suggestion or None,
        },
        "outcome": {"status": outcome.status, "detail": true_value(outcome.detail) or None},
        "notes": {true_value(k): true_value(v) for k, v in sorted(finding.extra.items())},
        "cost": _cost(finding.cost),
    }


def _creator(creator):
    return {name: true_value(getattr(creator, name)) for name in (
        "name", "identity_type", "arn", "account_id", "role", "session", "via", "note",
        "principal_arn")}


def document(items, creator, policy, subject, text, digest=False, listed=None):
    """The Broom JSON document for (Finding, Outcome) ``items``: one instance, or a
    digest listing the first ``listed`` of them (all by default)."""
    first = items[0][0]
    listed = len(items) if listed is None else listed
    outcomes = {}
    for _, outcome in items:
        outcomes[outcome.status] = outcomes.get(outcome.status, 0) + 1
    total = None
    if any(f.cost is not None for f, _ in items):
        so_far, per_month, known, unknown = cost.total(f.cost for f, _ in items)
        total = {"currency": "USD", "so_far": round(so_far, 6),
                 "per_month": round(per_month, 4), "known": known, "unknown": unknown}
    return {
        "schema": SCHEMA,
        "kind": "digest" if digest else "instance",
        "policy": true_value(policy),
        "account_id": true_value(first.account_id),
        "region": true_value(first.region),
        "event": {"name": true_value(first.event_name), "time": true_value(first.event_time),
                  "id": true_value(first.event_id) or None} if first.event_name else None,
        "creator": _creator(creator),
        "count": len(items),
        "outcomes": outcomes,
        "cost": total,
        "instances": [instance(f, o) for f, o in items[:listed]],
        "omitted": len(items) - min(listed, len(items)),
        "subject": subject,
        "text": text,
    }


#: The document's run-wide creator in a sweep: each instance has its own.
PER_INSTANCE = Creator(name="(per instance)", identity_type="",
                       note="a sweep names each instance's creator under "
                            "instances[].sweep.creator")


def _attribution(attribution):
    creator = attribution.creator if attribution.creator.name else UNKNOWN
    return {"status": attribution.status, "reason": true_value(attribution.reason) or None,
            "creator": _creator(creator)}


def sweep_instance(row):
    """One instance of a sweep's document: the instance, then what the sweep knows."""
    entry = instance(row.finding, row.outcome)
    entry["sweep"] = {
        "new": row.new,
        "state": true_value(row.state) or None,
        "age_seconds": None if row.age_seconds is None else max(round(row.age_seconds), 0),
        "creator": _attribution(row.attribution),
        "fleet": {"kind": true_value(row.fleet[0]), "id": true_value(row.fleet[1])}
        if row.fleet else None,
        "fleet_owners": [dict(_attribution(attribution), kind=true_value(kind),
                              id=true_value(fleet_id), event=true_value(event) or None)
                         for kind, fleet_id, attribution, event in row.owners],
    }
    return entry


def sweep_document(rows, policy, subject, text, listed=None):
    """The Broom JSON document of a sweep (``kind`` "sweep"): the first ``listed``
    violators in ``sweep.ordered`` order (new ones first), each with its own creator."""
    rows = sweep.ordered(rows)
    listed = len(rows) if listed is None else min(listed, len(rows))
    found = document([(row.finding, row.outcome) for row in rows], PER_INSTANCE, policy,
                     subject, text, digest=True, listed=0)
    summary = sweep.counts(rows)
    found.update(kind="sweep", instances=[sweep_instance(row) for row in rows[:listed]],
                 omitted=len(rows) - listed,
                 sweep={"new": summary.new, "still_open": summary.still_open,
                        "creators": {"found": summary.found, "unknown": summary.unknown,
                                     "pending": summary.pending}})
    return found


# --- AWS Chatbot custom notification -------------------------------------------------

def _codes(allowed):
    return ", ".join(markdown(code, 40) for code in allowed) or "(none configured)"


def _card(title, lines, next_steps, keywords, summary, resources, context):
    description = "\n".join(lines)
    if len(description) > CHATBOT_DESCRIPTION_LIMIT:
        description = description[:CHATBOT_DESCRIPTION_LIMIT].rpartition("\n")[0]
        description += "\n_(cut: the e-mail report has it all)_"
    return {
        "version": CHATBOT_VERSION,
        "source": "custom",
        "content": {
            "textType": "client-markdown",
            "title": title[:CHATBOT_TITLE_LIMIT],
            "description": description,
            "nextSteps": next_steps,
            "keywords": [readable(k, CHATBOT_KEYWORD_LIMIT).replace("`", "\uff40")
                         for k in keywords if k],
        },
        "metadata": {
            "summary": summary,
            "eventType": "BroomReport",
            "relatedResources": resources,
            "additionalContext": context,
        },
    }


def _reason(finding):
    return report.describe_reason(finding, markdown, markdown)


def _outcome(outcome):
    text = report.describe_outcome(report.Outcome(outcome.status))
    return text + (" (%s)" % markdown(outcome.detail, report.DETAIL_LIMIT)
                   if outcome.detail else "")


def _event(finding):
    if not finding.event_name:
        return "none (found by a scheduled or manual run)"
    return "%s at %s" % (markdown(finding.event_name), markdown(finding.event_time))


def _who(creator, actor):
    line = "*%s* %s (%s)" % (actor, markdown(creator.name), markdown(creator.identity_type))
    if creator.arn:
        line += " %s" % markdown(creator.arn)
    return line


def chatbot(finding, outcome, creator, actor, subject):
    """AWS Chatbot's custom notification for one instance (markdown made inert)."""
    lines = [
        "*Why:* %s" % _reason(finding),
        "*Action taken:* %s" % _outcome(outcome),
        _who(creator, actor),
        "*Instance:* %s %s in %s, account %s" % (
            markdown(finding.instance_id), markdown(finding.instance_type),
            markdown(finding.region), markdown(finding.account_id)),
        "*Code tag:* %s" % ("(none)" if finding.reason == codes.MISSING
                            else markdown(finding.code_value)),
    ]
    if finding.cost is not None:
        lines.append("*Cost:* %s" % report.describe_cost(finding))
    lines.append("*Event:* %s" % _event(finding))
    fix = FIX.get(actor, FIX["Launched by"]) % (markdown(finding.code_key), _codes(
        finding.allowed))
    return _card(":broom: " + subject, lines, [fix],
                 [finding.account_id, finding.region, creator.name, outcome.status],
                 subject, [finding.instance_id], {
                     "account_id": finding.account_id, "region": finding.region,
                     "outcome": outcome.status, "reason": finding.reason})


def chatbot_digest(items, creator, actor, subject):
    """AWS Chatbot's custom notification for a digest: totals and the first instances."""
    first = items[0][0]
    counts = {}
    for _, outcome in items:
        counts[outcome.headline] = counts.get(outcome.headline, 0) + 1
    lines = ["*Outcome:* %s" % ", ".join("%s: %d" % (h, n) for h, n in sorted(counts.items())),
             _who(creator, actor)]
    if any(f.cost is not None for f, _ in items):
        lines.append("*Cost:* %s" % report.describe_total(f.cost for f, _ in items))
    lines.append("*Event:* %s" % _event(first))
    for finding, outcome in items[:CHATBOT_LISTED]:
        lines.append("• %s %s: %s" % (markdown(finding.instance_id, 20),
                                      markdown(finding.instance_type, 20),
                                      readable(outcome.headline)))
    if len(items) > CHATBOT_LISTED:
        lines.append("… and %d more (see the e-mail report)" % (len(items) - CHATBOT_LISTED))
    fix = FIX.get(actor, FIX["Launched by"]) % (markdown(first.code_key), _codes(first.allowed))
    statuses = sorted({o.status for _, o in items})
    outcome = statuses[0] if len(statuses) == 1 else "mixed"
    return _card(":broom: " + subject, lines, [fix],
                 [first.account_id, first.region, creator.name, outcome], subject,
                 [f.instance_id for f, _ in items[:CHATBOT_LISTED]], {
                     "account_id": first.account_id, "region": first.region,
                     "outcome": outcome, "count": str(len(items))})


def _creator_line(attribution):
    if attribution.status == lookup.FOUND:
        return markdown(attribution.creator.name, 80)
    return "%s (%s)" % ("unknown" if attribution.status == lookup.UNKNOWN_FOR_GOOD
                        else "not known yet", markdown(attribution.reason, 120))


def chatbot_sweep(rows, subject):
    """AWS Chatbot's custom notification for a sweep: counts and the first violators."""
    rows = sweep.ordered(rows)
    summary, first = sweep.counts(rows), rows[0].finding
    lines = [
        "*New:* %d  *Still open:* %d" % (summary.new, summary.still_open),
        "*Outcome:* %s" % ", ".join("%s: %d" % (h, n)
                                    for h, n in sorted(summary.outcomes.items())),
        "*Creators:* %d found, %d unknown, %d still being looked up" % (
            summary.found, summary.unknown, summary.pending),
    ]
    if sweep.priced(rows):
        lines.append("*Cost:* %s" % report.describe_total(row.finding.cost for row in rows))
    for row in rows[:CHATBOT_LISTED]:
        lines.append("• %s %s %s, %s%s: %s, launched by %s" % (
            markdown(row.finding.instance_id, 20), markdown(row.finding.instance_type, 20),
            markdown(row.state or "?", 20), sweep.age(row.age_seconds),
            "" if row.new else " (still open)", readable(row.outcome.headline),
            _creator_line(row.attribution)))
    if len(rows) > CHATBOT_LISTED:
        lines.append("… and %d more (see the e-mail report)" % (len(rows) - CHATBOT_LISTED))
    fix = ("Tag each with a %s tag set to one of the allowed codes (%s), or terminate it."
           % (markdown(first.code_key), _codes(first.allowed)))
    return _card(":broom: " + subject, lines, [fix],
                 [first.account_id, first.region, "sweep", summary.outcome], subject,
                 [row.finding.instance_id for row in rows[:CHATBOT_LISTED]], {
                     "account_id": first.account_id, "region": first.region,
                     "outcome": summary.outcome, "count": str(len(rows)),
                     "new": str(summary.new)})


# --- the SNS envelope ---------------------------------------------------------------

def dumps(value):
    """Compact JSON, UTF-8 characters kept as they are (smaller than \\u escapes)."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), sort_keys=True)


def envelope(text, document, chatbot=None):
    """The ``Message`` for ``MessageStructure="json"``: e-mail text, the JSON document
    for every other protocol, and the Chatbot card under ``https`` when given."""
    messages = {"default": dumps(document), "email": text}
    if chatbot is not None:
        messages["https"] = dumps(chatbot)
    return dumps(messages)


def size(subject, message, attributes):
    """Bytes SNS counts against its limit: message, subject and attributes."""
    total = len(message.encode("utf-8")) + len(subject.encode("utf-8"))
    for name, value in attributes.items():
        total += len(name.encode("utf-8")) + len(value["DataType"].encode("utf-8"))
        total += len(value["StringValue"].encode("utf-8"))
    return total
