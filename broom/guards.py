"""What keeps everyone but Broom from writing Broom's state: the state table's
resource policy (templates/account.yml and member.yml carry the same document) and
its organisation-level twin in ``broom scp``. No AWS calls.

In the same account, an explicit Deny in a DynamoDB resource policy overrides any
Allow an identity policy grants (``dynamodb:*`` on ``*`` included). Transactions and
batches are authorised as the item actions they carry (``TransactWriteItems`` as
``PutItem``, ``UpdateItem``, ``DeleteItem``, ``ConditionCheckItem``), so denying those
item actions covers them; ``BatchWriteItem`` and the PartiQL writes are named too.
"""
#: The item writes no one but Broom's roles may make on Broom's table.
ITEM_WRITES = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
               "dynamodb:BatchWriteItem", "dynamodb:PartiQLInsert",
               "dynamodb:PartiQLUpdate", "dynamodb:PartiQLDelete")
#: Table changes that would undo the guard (or the table): for administrators only,
#: at the organisation level (a resource policy cannot name the stack's deployer).
TABLE_CHANGES = ("dynamodb:DeleteTable", "dynamodb:DeleteResourcePolicy",
                 "dynamodb:PutResourcePolicy", "dynamodb:UpdateTimeToLive")
#: Broom's roles that write the table: broom-lambda (account.yml, a hub's function
#: acting in its own account) and broom-member (member.yml).
WRITERS = ("broom-lambda", "broom-member")
TABLE = "broom-state"
SID = "OnlyBroomWritesItsState"


def role_arn(name, account="*", partition="aws"):
    return "arn:%s:iam::%s:role/%s" % (partition, account, name)


def table_policy(table_arn, writers):
    """The state table's resource policy: every item write denied to every principal
    whose ``aws:PrincipalArn`` (an assumed role's IAM role ARN) is not in ``writers``."""
    return {"Version": "2012-10-17", "Statement": [{
        "Sid": SID, "Effect": "Deny", "Principal": "*", "Action": list(ITEM_WRITES),
        "Resource": table_arn,
        "Condition": {"ArnNotLike": {"aws:PrincipalArn": list(writers)}}}]}


def scp_statements(admins=(), table=TABLE):
    """The SCP statements guarding Broom's state table in every account: item writes
    by Broom's roles only; with ``admins`` (ARN patterns), table changes (deleting it,
    its resource policy or its TTL) by them only. Without admins nobody is named who
    deploys the table, so table changes are left to IAM."""
    writers = [role_arn(name) for name in WRITERS]
    resource = "arn:aws:dynamodb:*:*:table/%s" % table
    statements = [{
        "Sid": "BroomDenyStateWrites", "Effect": "Deny", "Action": list(ITEM_WRITES),
        "Resource": resource,
        "Condition": {"ArnNotLike": {"aws:PrincipalArn": writers}}}]
    if admins:
        statements.append({
            "Sid": "BroomDenyStateChanges", "Effect": "Deny", "Action": list(TABLE_CHANGES),
            "Resource": resource,
            "Condition": {"ArnNotLike": {"aws:PrincipalArn": list(admins)}}})
    return statements


#: What makes a role (or user) an exempt principal, or lets it act as one: creating
#: it, changing who may assume it, and changing what it may do.
ROLE_MINTING = ("iam:CreateRole", "iam:UpdateAssumeRolePolicy", "iam:PutRolePolicy",
                "iam:AttachRolePolicy", "iam:PutRolePermissionsBoundary",
                "iam:DeleteRolePermissionsBoundary")
USER_MINTING = ("iam:CreateUser", "iam:CreateAccessKey", "iam:CreateLoginProfile",
                "iam:UpdateLoginProfile", "iam:PutUserPolicy", "iam:AttachUserPolicy",
                "iam:AddUserToGroup", "iam:PutUserPermissionsBoundary",
                "iam:DeleteUserPermissionsBoundary")


def minting_statements(exempt_principals, admins=()):
    """SCP statements that keep anyone but ``admins`` (ARN patterns) from creating,
    re-trusting or granting to a role or user an exemption pattern names: without
    them a developer allowed ``iam:CreateRole`` creates ``/dev/broom-break-glass``
    and launches untagged. Whole-account exemptions name no IAM principal. Without
    admins nobody in the organisation's member accounts may (the management account
    is never bound by SCPs)."""
    from c7n_broom import principals

    roles, users = set(), set()
    for pattern in exempt_principals:
        for arn in principals.parse(pattern).arns:
            (users if ":user/" in arn else roles).add(arn)
    found = []
    for sid, actions, resources in (("BroomDenyMintingExemptRoles", ROLE_MINTING, roles),
                                    ("BroomDenyMintingExemptUsers", USER_MINTING, users)):
        if not resources:
            continue
        statement = {"Sid": sid, "Effect": "Deny", "Action": list(actions),
                     "Resource": sorted(resources)}
        if admins:
            statement["Condition"] = {"ArnNotLike": {"aws:PrincipalArn": list(admins)}}
        found.append(statement)
    return found
