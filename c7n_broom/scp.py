"""``broom scp``: the preventive half of the rule, as an AWS Organizations SCP.

Broom reacts within seconds; a service control policy can refuse the launch in the
first place. The SCP denies RunInstances unless the request tags the instance with an
allowed Code, and denies setting Code to another value or deleting it later. SCPs do
not apply to service-linked roles (Auto Scaling, Spot Fleet) nor to the management
account, so Broom's reactive policies are still needed. Pure functions: no AWS calls.
"""
import json

import yaml

SCP_LIMIT = 5120  # characters, as AWS Organizations counts them (minified JSON)
INSTANCES = "arn:aws:ec2:*:*:instance/*"


class ScpError(ValueError):
    """The SCP cannot be built as asked; the message says what to change."""


def code_tag_scp(codes, key="Code", exempt_principals=()):
    """The SCP document (a dict) enforcing ``key`` in ``codes`` on EC2 instances."""
    codes = sorted(set(codes))
    if not codes:
        raise ScpError("no allowed codes: every launch would be denied")
    tag_keys = {"ForAnyValue:StringEquals": {"aws:TagKeys": [key]}}
    statements = [
        {"Sid": "BroomDenyLaunchWithoutAllowedCode", "Effect": "Deny",
         "Action": "ec2:RunInstances", "Resource": INSTANCES,
         "Condition": {"StringNotEquals": {"aws:RequestTag/%s" % key: codes}}},
        {"Sid": "BroomDenyCodeOutsideTheList", "Effect": "Deny",
         "Action": "ec2:CreateTags", "Resource": INSTANCES,
         "Condition": dict(tag_keys, StringNotEquals={"aws:RequestTag/%s" % key: codes})},
        {"Sid": "BroomDenyRemovingCode", "Effect": "Deny",
         "Action": "ec2:DeleteTags", "Resource": INSTANCES, "Condition": dict(tag_keys)},
    ]
    if exempt_principals:
        for statement in statements:
            statement["Condition"]["ArnNotLike"] = {
                "aws:PrincipalArn": sorted(exempt_principals)}
    document = {"Version": "2012-10-17", "Statement": statements}
    size = len(render(document, indent=None))
    if size > SCP_LIMIT:
        raise ScpError("the SCP is %d characters, over AWS Organizations' limit of %d: "
                       "use fewer codes or exemptions" % (size, SCP_LIMIT))
    return document


def render(document, indent=2):
    separators = (",", ":") if indent is None else None
    return json.dumps(document, indent=indent, separators=separators)


def from_policy_file(path):
    """(codes, key, exempt principal ARN patterns) of a Broom policy file's first policy."""
    data = yaml.safe_load(open(path))["policies"][0]
    filters = [f for f in data.get("filters", ()) if isinstance(f, dict)
               and f.get("type") == "allowed-codes"]
    if not filters or "codes" not in filters[0]:
        raise ScpError("%s: its first policy has no allowed-codes filter with 'codes'" % path)
    key = filters[0].get("key", "tag:Code")
    if not key.startswith("tag:"):
        raise ScpError("%s: the allowed-codes key %r is not a tag" % (path, key))
    exempt = []
    for action in data.get("actions", ()):
        if isinstance(action, dict) and action.get("type") == "safe-terminate":
            for pattern in action.get("exempt-principals", ()):
                exempt.append(pattern if pattern.startswith("arn:") else
                              "arn:aws:iam::*:role/%s" % pattern)
    return filters[0]["codes"], key.split(":", 1)[1], exempt
