"""``broom scp``: the preventive half of the rule, as an AWS Organizations SCP.

Broom reacts within seconds; a service control policy can refuse the launch in the
first place. The SCP denies RunInstances unless the request tags the instance with an
allowed Code, and denies setting Code to another value or deleting it later (deleting
every tag at once included). An instant EC2 Fleet (CreateFleet, as Karpenter uses) is
held to it too: each of its launches is authorised as the caller's ec2:RunInstances,
with the fleet request's instance tags as request tags, and a denied one comes back in
the fleet's errors. SCPs do not apply to service-linked roles (Auto Scaling groups,
Spot Fleets, EC2 Fleets of type request or maintain, persistent spot requests launch
through them) nor to the management account, so Broom's reactive policies are still
needed (docs/launch-paths.md).

The codes, the tag key and the exemptions come from the policy as c7n loads and
validates it (variables left unexpanded, so overrides fall back to the policy's
defaults), and the exemptions go through :mod:`c7n_broom.principals`, the grammar
``safe-terminate`` matches with: Broom and the SCP exempt the same principals.
No AWS calls.
"""
import json
from dataclasses import dataclass

from broom import guards, policyfile
from c7n_broom import codes as code_lists
from c7n_broom import principals

SCP_LIMIT = 5120  # characters, as AWS Organizations counts them: whitespace included
INSTANCES = "arn:aws:ec2:*:*:instance/*"


class ScpError(ValueError):
    """The SCP cannot be built as asked; the message says what to change."""


@dataclass(frozen=True)
class Rule:
    """What a Broom policy enforces, as the SCP needs it."""

    codes: tuple | None  # None when the policy reads them at run time (value_from)
    key: str = "Code"
    exempt_principals: tuple = ()
    ignore_case: bool = False


def code_tag_scp(codes, key="Code", exempt_principals=(), ignore_case=False):
    """The SCP document (a dict) enforcing ``key`` in ``codes`` on EC2 instances, for
    every principal but those ``exempt_principals`` name (principals' grammar)."""
    codes = sorted(set(codes))
    if not codes:
        raise ScpError("no allowed codes: every launch would be denied")
    try:
        exempt = principals.scp_conditions(exempt_principals)
    except ValueError as e:
        raise ScpError("'exempt-principals' %s" % e)
    not_allowed = {"StringNotEqualsIgnoreCase" if ignore_case else "StringNotEquals": {
        "aws:RequestTag/%s" % key: codes}}
    sets_code = {"ForAnyValue:StringEquals": {"aws:TagKeys": [key]}}
    statements = [
        deny("BroomDenyLaunchWithoutAllowedCode", "ec2:RunInstances", not_allowed, exempt),
        deny("BroomDenyCodeOutsideTheList", "ec2:CreateTags", dict(sets_code, **not_allowed),
             exempt),
        deny("BroomDenyRemovingCode", "ec2:DeleteTags", sets_code, exempt),
        # DeleteTags without Tags deletes every tag, Code included; IAM then sees no
        # aws:TagKeys at all, and ForAnyValue on an absent key is false.
        deny("BroomDenyRemovingEveryTag", "ec2:DeleteTags", {"Null": {"aws:TagKeys": "true"}},
             exempt),
    ]
    return {"Version": "2012-10-17", "Statement": statements}


def deny(sid, action, conditions, exempt):
    """A Deny statement on instances; the exemption conditions are ANDed in."""
    merged = {operator: dict(keys) for operator, keys in conditions.items()}
    for operator, keys in exempt.items():
        merged.setdefault(operator, {}).update(keys)
    return {"Sid": sid, "Effect": "Deny", "Action": action, "Resource": INSTANCES,
            "Condition": merged}


def render(document, compact=False):
    """The document as printed (indented, or minified with ``compact``), refused with
    ScpError when over AWS Organizations' limit."""
    text = _json(document, compact)
    if len(text) <= SCP_LIMIT:
        return text
    minified = len(_json(document, True))
    if compact or minified > SCP_LIMIT:
        raise ScpError("the SCP is %d characters minified, over AWS Organizations' limit "
                       "of %d: use fewer codes or exemptions" % (minified, SCP_LIMIT))
    raise ScpError("the SCP is %d characters as printed, over AWS Organizations' limit of "
                   "%d (whitespace counts): use --compact (%d characters) or fewer codes "
                   "or exemptions" % (len(text), SCP_LIMIT, minified))


def _json(document, compact):
    if compact:
        return json.dumps(document, separators=(",", ":"))
    return json.dumps(document, indent=2)


def policy_scp(path, codes=None, state_guard=True, admins=()):
    """The SCP document for a Broom policy file; ``codes`` replaces the policy's.

    It denies creating, re-trusting or granting to the roles and users the policy's
    exemptions name, to everyone but ``admins`` (ARN patterns). With ``state_guard``
    (the default) it also denies writing items of Broom's state table to every
    principal but Broom's roles, in every account, and with ``admins`` reserves
    changes to the table to them (``broom.guards``)."""
    rule = from_policy_file(path)
    if codes is None and rule.codes is None:
        raise ScpError("%s: its allowed-codes filter reads the codes with value_from when "
                       "it runs: pass them with --codes" % path)
    for pattern in admins:
        if not pattern.startswith("arn:") or len(pattern.split(":", 5)) != 6:
            raise ScpError("--admin %r is not an IAM ARN pattern (arn:aws:iam::*:role/"
                           "NAME)" % pattern)
    return guarded(code_tag_scp(rule.codes if codes is None else codes, rule.key,
                                rule.exempt_principals, rule.ignore_case),
                   rule.exempt_principals, state_guard, admins)


def guarded(document, exempt_principals, state_guard=True, admins=()):
    """``document`` (``code_tag_scp``'s) with the statements that guard Broom itself
    (``broom.guards``): no minting of exempt principals, and with ``state_guard`` no
    writes to Broom's state table but Broom's roles'."""
    document["Statement"].extend(guards.minting_statements(exempt_principals, admins))
    if state_guard:
        document["Statement"].extend(guards.scp_statements(admins))
    return document


def from_policy_file(path):
    """The :class:`Rule` of a Broom policy file: its first policy with an
    ``allowed-codes`` filter, loaded and validated as ``custodian validate`` does."""
    for policy in load_policies(path):
        rule = rule_of(policy)
        if rule:
            return rule
    raise ScpError("%s: no policy in it has an allowed-codes filter" % path)


def rule_of(policy):
    """The Rule of a loaded c7n policy, or None without an ``allowed-codes`` filter."""
    from c7n_broom.filters import AllowedCodes
    from c7n_broom.terminate import SafeTerminate

    found = [f for f in policy.resource_manager.filters if isinstance(f, AllowedCodes)]
    if not found:
        return None
    check = found[0]
    if check.tag_key is None:
        raise ScpError("policy %s: the allowed-codes key %r is not a tag" % (
            policy.name, check.data.get("key")))
    if "value_from" in check.data and code_lists.is_unset(check.data.get("codes-override")):
        allowed = None  # read at run time: only --codes can say
    else:
        allowed = tuple(check.allowed_codes())
    exempt = []
    for action in policy.resource_manager.actions:
        if isinstance(action, SafeTerminate):
            exempt.extend(action.data.get("exempt-principals", ()))
    for pattern in exempt:
        if principals.unexpanded(pattern):
            raise ScpError("policy %s: 'exempt-principals' pattern %r holds the variable %s, "
                           "which an SCP cannot fill: write the value out" % (
                               policy.name, pattern, principals.unexpanded(pattern)))
    return Rule(allowed, check.tag_key, tuple(exempt), bool(check.data.get("ignore-case")))


def load_policies(path):
    """The policies of a file, loaded and validated by c7n with variables left
    unexpanded. ScpError on any problem, in one line."""
    try:
        return policyfile.load_checked(path)
    except policyfile.PolicyFileError as e:
        raise ScpError(str(e))
