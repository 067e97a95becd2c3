"""Only Broom's roles write Broom's state table: the table's resource policy in the
templates, its twin in ``broom scp``, and ``broom doctor``'s check of it.

moto stores a DynamoDB resource policy but does not enforce it, so the documents are
evaluated with broom/scp_eval.py (IAM's documented semantics); in the same account an
explicit Deny in a resource policy overrides any identity-policy Allow.
"""
import json

import boto3
import pytest
from click.testing import CliRunner

from broom import doctor, guards
from broom.cli import cli
from broom.scp_eval import denied_by, request

from cfn_templates import load, resolve, resources
from support import REGION

ACCOUNT = "111122223333"
TABLE = "arn:aws:dynamodb:eu-west-1:%s:table/broom-state" % ACCOUNT
DEVELOPER = ("arn:aws:iam::%s:role/developer" % ACCOUNT, ACCOUNT)
REFS = {"AWS::Partition": "aws", "AWS::Region": "eu-west-1", "AWS::AccountId": ACCOUNT}
#: What a transaction (TransactWriteItems) or a batch is authorised as: its item actions.
TRANSACTION_ITEM_ACTIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")


def table_policy(template):
    [table] = resources(load(template), "AWS::DynamoDB::Table").values()
    return resolve(table["Properties"]["ResourcePolicy"]["PolicyDocument"], REFS)


@pytest.mark.parametrize("template, writer", [("account.yml", "broom-lambda"),
                                              ("member.yml", "broom-member")])
def test_the_templates_table_policy_lets_only_broom_write(template, writer):
    document = table_policy(template)
    broom = ("arn:aws:iam::%s:role/%s" % (ACCOUNT, writer), ACCOUNT)

    assert document == guards.table_policy(TABLE, [broom[0]])
    for action in guards.ITEM_WRITES + TRANSACTION_ITEM_ACTIONS:
        assert denied_by(document, request(action, TABLE, DEVELOPER)), action
        assert not denied_by(document, request(action, TABLE, broom)), action
    # a role of Broom's name under another path is someone else's
    impostor = ("arn:aws:iam::%s:role/dev/%s" % (ACCOUNT, writer), ACCOUNT)
    assert denied_by(document, request("dynamodb:PutItem", TABLE, impostor))
    # reading stays with IAM
    assert not denied_by(document, request("dynamodb:GetItem", TABLE, DEVELOPER))


def scp(*args):
    result = CliRunner().invoke(cli, ["scp", *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_broom_scp_guards_the_state_table_in_every_account_by_default():
    document = scp()
    other = "arn:aws:dynamodb:us-west-2:444455556666:table/broom-state"

    for action in TRANSACTION_ITEM_ACTIONS + ("dynamodb:BatchWriteItem",):
        assert denied_by(document, request(action, other, DEVELOPER)) == [
            "BroomDenyStateWrites"]
    for writer in guards.WRITERS:
        member = ("arn:aws:iam::444455556666:role/%s" % writer, "444455556666")
        assert denied_by(document, request("dynamodb:PutItem", other, member)) == []
    assert denied_by(document, request("dynamodb:PutItem", other.replace(
        "broom-state", "team-table"), DEVELOPER)) == []
    # without --admin nobody is named who deploys the table: table changes stay IAM's
    assert denied_by(document, request("dynamodb:DeleteResourcePolicy", other, DEVELOPER)) == []


def test_broom_scp_reserves_table_changes_to_the_admins_it_names():
    document = scp("--admin", "arn:aws:iam::*:role/platform-admin")
    admin = ("arn:aws:iam::%s:role/platform-admin" % ACCOUNT, ACCOUNT)

    assert denied_by(document, request("dynamodb:DeleteResourcePolicy", TABLE, DEVELOPER)) == [
        "BroomDenyStateChanges"]
    assert denied_by(document, request("dynamodb:DeleteResourcePolicy", TABLE, admin)) == []


def test_broom_scp_can_leave_the_state_guard_out():
    document = scp("--no-state-guard")
    assert not [s for s in document["Statement"] if "dynamodb" in json.dumps(s["Action"])]


def test_broom_scp_refuses_an_admin_that_is_not_an_arn_pattern():
    result = CliRunner().invoke(cli, ["scp", "--admin", "platform-admin"])
    assert result.exit_code == 1
    assert "--admin 'platform-admin' is not an IAM ARN pattern" in result.stderr


# -- broom doctor -------------------------------------------------------------------------

def doctor_check(writers):
    return doctor.check_table(boto3.Session(region_name=REGION), "broom-state",
                              "123456789012", writers)


def test_doctor_accepts_the_table_policy_broom_deploys(state_table):
    check = doctor_check(["arn:aws:iam::123456789012:role/broom-lambda"])
    assert check.status == doctor.OK, check.detail
    assert "only Broom's roles write items" in check.detail


def test_doctor_fails_a_table_without_its_resource_policy(aws):
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(TableName="broom-state", BillingMode="PAY_PER_REQUEST",
                          KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                          AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}])
    dynamodb.update_time_to_live(TableName="broom-state", TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "expires"})

    check = doctor_check(["arn:aws:iam::123456789012:role/broom-lambda"])

    assert check.status == doctor.FAIL
    assert "no resource policy: any principal allowed dynamodb:PutItem" in check.detail


def test_doctor_fails_a_table_policy_that_leaves_writes_open_or_blocks_broom(state_table):
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    arn = dynamodb.describe_table(TableName="broom-state")["Table"]["TableArn"]
    document = guards.table_policy(arn, ["arn:aws:iam::123456789012:role/broom-lambda"])
    document["Statement"][0]["Action"] = ["dynamodb:DeleteItem"]
    dynamodb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(document))

    check = doctor_check(["arn:aws:iam::123456789012:role/broom-lambda"])
    assert check.status == doctor.FAIL
    assert "lets other principals call dynamodb:PutItem, dynamodb:UpdateItem" in check.detail

    dynamodb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(guards.table_policy(
        arn, ["arn:aws:iam::123456789012:role/broom-lambda"])))
    check = doctor_check(["arn:aws:iam::123456789012:role/broom-member"])
    assert check.status == doctor.FAIL
    assert "denies Broom's role arn:aws:iam::123456789012:role/broom-member" in check.detail
