"""A small evaluator of SCP Deny statements with IAM's documented semantics: what
``broom scp`` prints, on sample requests in the tests and on past launches in ``broom
whatif`` (no AWS needed, and moto evaluates only ``StringEquals``).

It knows what Broom's SCP uses, and refuses anything else (an unknown operator raises
KeyError, so a new statement cannot pass untested):

- ``Action`` and ``Resource`` (string or list, ``*``/``?`` wildcards);
- ``StringEquals``/``StringNotEquals``, their ``IgnoreCase`` forms,
  ``ArnLike``/``ArnNotLike``, ``Null``; the ``ForAnyValue:``/``ForAllValues:``
  qualifiers for multivalued keys (``aws:TagKeys``);
- operators of a condition block ANDed, keys of one operator ANDed, values of one key
  ORed (for a negated operator: the condition holds when NO value matches);
- a key absent from the request makes a condition false, except for negated operators
  (``StringNotEquals``, ``ArnNotLike``, ...) where it makes it true; ``ForAnyValue`` on
  an absent key is false, ``ForAllValues`` on an absent key is true; ``Null`` tests
  presence. (IAM User Guide: "IAM JSON policy elements: Condition operators", "Set
  operators for multivalued context keys".)

ArnLike is written here apart from ``c7n_broom.principals`` (with fnmatch, each of
the six ``:``-separated ARN parts on its own) so each checks the other.
"""
import fnmatch

from c7n_broom import events

NEGATED = {"StringNotEquals": "StringEquals",
           "StringNotEqualsIgnoreCase": "StringEqualsIgnoreCase",
           "ArnNotLike": "ArnLike"}


def arn_like(pattern, value):
    """IAM ArnLike: case-sensitive, each ARN part matched on its own."""
    patterns, values = pattern.split(":", 5), value.split(":", 5)
    return len(patterns) == len(values) == 6 and all(
        fnmatch.fnmatchcase(v, p) for p, v in zip(patterns, values, strict=True))


MATCHES = {
    "StringEquals": lambda wanted, value: wanted == value,
    "StringEqualsIgnoreCase": lambda wanted, value: wanted.casefold() == value.casefold(),
    "ArnLike": arn_like,
}


def _listed(value):
    return value if isinstance(value, list) else [value]


def _one(base, value, wanted):
    """A single request value against the policy values (ORed) of one operator."""
    positive = NEGATED.get(base, base)
    hit = any(MATCHES[positive](w, value) for w in wanted)
    return not hit if base in NEGATED else hit


def holds(operator, keys, context):
    """Whether one condition operator holds for a request context (keys ANDed)."""
    qualifier, _, base = operator.rpartition(":")
    if base != "Null" and NEGATED.get(base, base) not in MATCHES:
        raise KeyError("operator %s is not known to this evaluator" % operator)
    for key, wanted in keys.items():
        wanted = _listed(wanted)
        present = key in context and context[key] not in (None, [])
        if base == "Null":
            result = any((w == "true") == (not present) for w in wanted)
        elif qualifier == "ForAnyValue":
            result = present and any(_one(base, v, wanted) for v in _listed(context[key]))
        elif qualifier == "ForAllValues":
            result = not present or all(_one(base, v, wanted) for v in _listed(context[key]))
        elif qualifier:
            raise KeyError("qualifier %s is not known to this evaluator" % qualifier)
        elif not present:
            result = base in NEGATED
        else:
            assert not isinstance(context[key], list), "%s is multivalued: qualify it" % key
            result = _one(base, context[key], wanted)
        if not result:
            return False
    return True


def applies(statement, request):
    """Whether a statement applies to a request: action, resource and every condition."""
    action = any(fnmatch.fnmatchcase(request["action"].lower(), a.lower())
                 for a in _listed(statement["Action"]))
    resource = any(r == "*" or arn_like(r, request["resource"])
                   for r in _listed(statement["Resource"]))
    return action and resource and all(
        holds(operator, keys, request["context"])
        for operator, keys in statement.get("Condition", {}).items())


def denied_by(document, request):
    """The Sids of the Deny statements that refuse a request (empty: the SCP allows it,
    FullAWSAccess being attached beside it as by default)."""
    return [s.get("Sid", "?") for s in document["Statement"]
            if s["Effect"] == "Deny" and applies(s, request)]


def request(action, resource, principal, tags=None, **context):
    """One authorization request: ``principal`` is (aws:PrincipalArn,
    aws:PrincipalAccount); ``tags`` (a dict, or a list of keys for DeleteTags without
    values) fill aws:TagKeys and aws:RequestTag/KEY; None means the request has none."""
    arn, account = principal
    values = dict(context, **{"aws:PrincipalArn": arn, "aws:PrincipalAccount": account})
    if tags is not None:
        values["aws:TagKeys"] = list(tags)
        if isinstance(tags, dict):
            values.update({"aws:RequestTag/%s" % k: v for k, v in tags.items()})
    return {"action": action, "resource": resource, "context": values}


def launch_tags(record, template_tags=None):
    """The request tags IAM sees for each resource type of one launch record, as
    ``launch_requests`` takes them.

    ``RunInstances``: the request's ``tagSpecificationSet``, and with a launch
    template, ``template_tags`` (the template's instance tags, as EC2 reports them
    on the instances) under the request's own. An instant fleet's ``CreateFleet``:
    each of its launches is authorised as the caller's ``ec2:RunInstances``, with
    the fleet request's ``TagSpecification`` as request tags (docs/launch-paths.md);
    a fleet always launches from a template, whose tags count as for RunInstances.
    """
    tags = {kind: events.request_tags(record, kind)
            for kind in ("instance", "volume", "network-interface")}
    fleet = events.field(record, "eventName") == "CreateFleet"
    if template_tags and (fleet or events.get_path(record, "requestParameters",
                                                   "launchTemplate")):
        tags["instance"] = dict(template_tags, **tags["instance"])
    return tags


def launch_requests(region, account, principal, tags_by_type):
    """The authorization requests of one RunInstances call (or of each launch of an
    instant fleet: ``launch_tags``) that an SCP on instances can refuse:
    ``ec2:RunInstances`` on each resource it creates, with the request tags of its
    own type, and, for each type it tags on creation, ``ec2:CreateTags`` with
    ``ec2:CreateAction=RunInstances``. ``tags_by_type`` maps a resource type
    (``instance``, ``volume``, ``network-interface``) to its tags (a dict; a launch
    template's tags count as the request's)."""
    arn = "arn:aws:ec2:%s:%s:" % (region or "*", account or "*")
    found = []
    for kind, ident in (("instance", "i-*"), ("volume", "vol-*"),
                        ("network-interface", "eni-*")):
        tags = tags_by_type.get(kind) or None
        resource = arn + "%s/%s" % (kind, ident)
        found.append(request("ec2:RunInstances", resource, principal, tags))
        if tags:
            found.append(request("ec2:CreateTags", resource, principal, tags,
                                 **{"ec2:CreateAction": "RunInstances"}))
    return found
