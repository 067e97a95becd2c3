"""``broom permissions``: the IAM policy of Broom's roles, from the policies themselves.

One source of truth for least privilege: what each policy's resource manager and
elements declare (c7n's ``Policy.get_permissions()``, the union of the
``get_permissions()`` of the resource manager, every filter and every action), plus
what Lambda itself does with an execution role (its logs, the dead-letter queue).
:data:`SCOPES` narrows each action to the resources (and conditions) IAM allows for
it. The CloudFormation templates in ``templates/`` carry the same statements;
tests/unit/test_templates.py holds them equal, so a permission added to an element
fails a test until the templates grant it.

Three roles (docs/templates.md):

- ``account``: ``broom-lambda``, the execution role of the per-account functions;
- ``member``: ``broom-member``, the role a hub's function assumes in each member
  account (c7n's ``mode.member-role``): the policies' own calls, reporting to the
  hub's topic;
- ``hub``: the hub's ``broom-lambda``: it assumes ``broom-member`` and makes only the
  calls Broom makes with the function's own credentials (the re-check schedule).

No AWS calls.
"""
import copy
import json
from dataclasses import dataclass
from pathlib import Path

ROLES = ("account", "member", "hub")
VERSION = "2012-10-17"

#: What the Lambda service does with the execution role, whatever the policy: write
#: the function's logs, and send a failed asynchronous event to the dead-letter
#: queue the policies name in ``mode.dead_letter_config``.
LAMBDA_SERVICE = ("logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents",
                  "sqs:SendMessage")
#: Calls Broom makes with the function's own credentials even when c7n acts through
#: ``member-role``: the re-check of held instances is scheduled beside the function
#: (c7n_broom/recheck.py), so in a hub these belong to the hub's role.
FUNCTION_OWN = ("scheduler:CreateSchedule", "iam:PassRole")
#: How a hub's function acts in a member account (c7n's ``member-role``).
ASSUME_MEMBER = ("sts:AssumeRole",)


@dataclass(frozen=True)
class Scope:
    """Where IAM lets an action be narrowed: one statement ``sid`` per scope."""

    sid: str
    resources: tuple
    condition: dict | None = None


INSTANCES = "arn:{partition}:ec2:*:{account}:instance/*"

# Placeholders: {partition}, {account} (the role's account), {topic_account} (the
# report topic's: the hub's for broom-member). Region parts are "*": the roles are
# account-wide and the functions run in several regions.
_DESCRIBE = Scope("BroomDescribe", ("*",))  # EC2's Describe* calls take no resource ARN
_TERMINATE = Scope("BroomTerminate", (INSTANCES,))
# c7n's force clears exactly these two attributes (ModifyInstanceAttribute with
# Attribute=...): the condition keeps the role from changing user data, security
# groups or the instance type.
_CLEAR_PROTECTION = Scope("BroomClearProtection", (INSTANCES,), {
    "StringEquals": {"ec2:Attribute": ["disableApiTermination", "disableApiStop"]}})
_REPORT = Scope("BroomReport", ("arn:{partition}:sns:*:{topic_account}:broom-reports",))
# LookupEvents takes no resource ARN (IAM: resource "*").
_LOOKUP = Scope("BroomLookupCreators", ("*",))
_STATE = Scope("BroomState", ("arn:{partition}:dynamodb:*:{account}:table/broom-state",))
_RECHECK = Scope("BroomRecheck", (
    "arn:{partition}:scheduler:*:{account}:schedule/broom/broom-recheck-*",))
_PASS_SCHEDULER_ROLE = Scope(
    "BroomPassSchedulerRole", ("arn:{partition}:iam::{account}:role/broom-scheduler",),
    {"StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}})
_LOGS = Scope("BroomLogs", (
    "arn:{partition}:logs:*:{account}:log-group:/aws/lambda/custodian-broom-*",))
_DEAD_LETTERS = Scope("BroomDeadLetters", (
    "arn:{partition}:sqs:*:{account}:broom-dead-letters",))
_MEMBER_ROLE = Scope("BroomAssumeMemberRole", ("arn:{partition}:iam::*:role/broom-member",))
# security-hub-finding: the account's own default product (BatchImportFindings) and
# its hub (GetFindings), in the role's own account: a member's findings stay there.
_FINDINGS = Scope("BroomFindings", (
    "arn:{partition}:securityhub:*:{account}:product/{account}/default",
    "arn:{partition}:securityhub:*:{account}:hub/default"))
# The Price List API has no resources to name (creator-report's cost line).
_PRICES = Scope("BroomPrices", ("*",))
# safe-terminate's quarantine (c7n_broom/quarantine.py): stop an instance, snapshot its
# volumes (CreateSnapshots is authorised on the instance, its volumes and the new
# snapshots, whose ARNs name no account), and tag those snapshots as they are created
# (so the one scope of ec2:CreateTags is new snapshots: a policy of yours that tags
# instances needs a statement of its own).
_STOP = Scope("BroomQuarantineStop", (INSTANCES,))
_SNAPSHOT = Scope("BroomQuarantineSnapshot", (
    INSTANCES, "arn:{partition}:ec2:*:{account}:volume/*", "arn:{partition}:ec2:*::snapshot/*"))
_TAG_SNAPSHOTS = Scope("BroomQuarantineTagSnapshots", ("arn:{partition}:ec2:*::snapshot/*",), {
    "StringEquals": {"ec2:CreateAction": "CreateSnapshots"}})

#: action -> Scope. An action missing here is granted on "*" in a statement of its
#: own (``UNSCOPED``), and ``broom permissions`` says so.
SCOPES = {
    "ec2:DescribeInstances": _DESCRIBE,
    "ec2:DescribeSpotInstanceRequests": _DESCRIBE,
    "ec2:DescribeTags": _DESCRIBE,
    "ec2:TerminateInstances": _TERMINATE,
    "ec2:ModifyInstanceAttribute": _CLEAR_PROTECTION,
    "sns:Publish": _REPORT,
    "dynamodb:GetItem": _STATE,
    "dynamodb:PutItem": _STATE,
    "dynamodb:UpdateItem": _STATE,
    "dynamodb:DeleteItem": _STATE,
    "dynamodb:BatchGetItem": _STATE,
    "dynamodb:BatchWriteItem": _STATE,
    "cloudtrail:LookupEvents": _LOOKUP,
    "scheduler:CreateSchedule": _RECHECK,
    "iam:PassRole": _PASS_SCHEDULER_ROLE,
    "logs:CreateLogGroup": _LOGS,
    "logs:CreateLogStream": _LOGS,
    "logs:PutLogEvents": _LOGS,
    "sqs:SendMessage": _DEAD_LETTERS,
    "sts:AssumeRole": _MEMBER_ROLE,
    "pricing:GetProducts": _PRICES,
    "securityhub:BatchImportFindings": _FINDINGS,
    "securityhub:GetFindings": _FINDINGS,
    "ec2:DescribeInstanceAttribute": _DESCRIBE,
    "ec2:DescribeSnapshots": _DESCRIBE,
    "ec2:DescribeVolumes": _DESCRIBE,
    "ec2:StopInstances": _STOP,
    "ec2:CreateSnapshots": _SNAPSHOT,
    "ec2:CreateTags": _TAG_SNAPSHOTS,
}
UNSCOPED = "BroomUnscoped"


class PermissionsError(ValueError):
    """The permissions cannot be worked out; the message says what to change."""


def shipped_policies():
    """The policy files shipped with Broom (packaged copy, or the source tree's)."""
    from broom.demo import PACKAGE_POLICIES, SOURCE_POLICIES

    for folder in (PACKAGE_POLICIES, SOURCE_POLICIES):
        found = sorted(Path(folder).glob("*.yml"))
        if found:
            return found
    raise PermissionsError("no policies/*.yml next to the broom package: reinstall Broom")


def policy_permissions(paths):
    """The union of c7n's ``get_permissions()`` over every policy in ``paths``, each
    file loaded and validated as ``custodian validate`` does (variables unexpanded)."""
    from broom import policyfile

    actions = set()
    for path in paths:
        try:
            policies = policyfile.load_checked(path)
        except policyfile.PolicyFileError as e:
            raise PermissionsError(str(e))
        if not policies:
            raise PermissionsError("%s: no policy in it" % path)
        for policy in policies:
            actions.update(policy.get_permissions())
    return actions


def role_actions(role, permissions):
    """The actions ``role`` needs to run policies needing ``permissions``."""
    permissions = set(permissions)
    if role == "account":
        return permissions | set(LAMBDA_SERVICE)
    if role == "member":
        return permissions - set(FUNCTION_OWN)
    if role == "hub":
        return (permissions & set(FUNCTION_OWN)) | set(ASSUME_MEMBER) | set(LAMBDA_SERVICE)
    raise PermissionsError("unknown role %r: one of %s" % (role, ", ".join(ROLES)))


def statements(actions, account="ACCOUNT", topic_account=None, partition="aws"):
    """IAM statements granting ``actions``, one per scope, in SCOPES' order; actions
    without a known scope last, on "*"."""
    values = {"account": account, "topic_account": topic_account or account,
              "partition": partition}
    scopes = {scope.sid: scope for scope in SCOPES.values()}
    grouped = {}
    for action in sorted(actions):
        scope = SCOPES.get(action)
        grouped.setdefault(scope.sid if scope else UNSCOPED, []).append(action)
    result = []
    for sid in list(scopes) + [UNSCOPED]:
        if sid not in grouped:
            continue
        statement = {"Sid": sid, "Effect": "Allow", "Action": grouped[sid]}
        scope = scopes.get(sid)
        if scope is None:
            statement["Resource"] = "*"
        else:
            resources = [r.format(**values) for r in scope.resources]
            statement["Resource"] = resources[0] if len(resources) == 1 else resources
            if scope.condition:
                statement["Condition"] = copy.deepcopy(scope.condition)
        result.append(statement)
    return result


def unscoped(actions):
    """The actions :data:`SCOPES` does not know (granted on "*")."""
    return sorted(set(actions) - set(SCOPES))


def document(statement_list):
    return {"Version": VERSION, "Statement": statement_list}


def role_policy(role="account", paths=None, account="ACCOUNT", hub_account=None):
    """The IAM policy document of ``role`` for the policy files ``paths`` (default: the
    shipped policies), and the actions granted on "*" for want of a known scope."""
    actions = role_actions(role, policy_permissions(paths or shipped_policies()))
    topic_account = (hub_account or "HUB_ACCOUNT") if role == "member" else account
    return document(statements(actions, account, topic_account)), unscoped(actions)


def render(policy_document):
    return json.dumps(policy_document, indent=2)
