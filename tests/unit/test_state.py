"""Broom's state table (c7n_broom/state.py) on moto's DynamoDB (mock_aws)."""
import logging
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from c7n.credentials import SessionFactory

from c7n_broom import owed, state
from c7n_broom.actions import CreatorReport

from support import ACCOUNT, REGION

POLICY = "broom-ec2-require-code-tag"
EVENT = "6589a9eb-59b7-4895-b7ab-962ed3cc257c"
ASG = ("Auto Scaling group", "web")
ALICE = "arn:aws:iam::123456789012:role/alice"


class Clock:
    def __init__(self, now=1_800_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


@pytest.fixture
def clock():
    return Clock()


def table(clock, name="broom-state"):
    return state.StateTable(SessionFactory(REGION), REGION, name, ACCOUNT, clock=clock)


@pytest.fixture
def broom(state_table, clock):
    return table(clock)


def items():
    return {i["pk"]["S"]: i for i in boto3.client("dynamodb", region_name=REGION).scan(
        TableName="broom-state")["Items"]}


@pytest.fixture
def calls(monkeypatch):
    """DynamoDB operations made during the test."""
    made = []
    original = BaseClient._make_api_call

    def make_api_call(client, operation, params):
        if client.meta.service_model.service_name == "dynamodb":
            made.append(operation)
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return made


# -- what event E owes: c7n_broom.owed, tests/unit/test_owed.py ----------------------

# -- fleet F reported at T: at most once a period -------------------------------------

def test_a_fleet_is_claimed_once_per_period(broom, clock):
    assert broom.claim_fleet(POLICY, ASG, 3600) == (True, clock.now)
    clock.now += 3599
    assert broom.claim_fleet(POLICY, ASG, 3600) == (False, None)
    assert broom.claim_fleet(POLICY, ("EC2 Fleet", "web"), 3600)[0]
    clock.now += 1
    assert broom.claim_fleet(POLICY, ASG, 3600) == (True, clock.now)


def test_a_fleet_key_names_account_and_region(broom):
    broom.claim_fleet(POLICY, ASG, 3600)
    assert list(items()) == [
        "fleet#%s#%s#us-east-1#Auto Scaling group#web" % (POLICY, ACCOUNT)]


def test_releasing_a_fleet_gives_back_only_its_own_slot(broom, clock):
    _, when = broom.claim_fleet(POLICY, ASG, 60)
    broom.release_fleet(POLICY, ASG, when)
    assert broom.claim_fleet(POLICY, ASG, 60)[0]
    clock.now += 61
    assert broom.claim_fleet(POLICY, ASG, 60)[0]
    broom.release_fleet(POLICY, ASG, when)  # a stale release: another run reported it
    assert broom.claim_fleet(POLICY, ASG, 60) == (False, None)


def test_a_zero_period_never_throttles(broom):
    assert broom.claim_fleet(POLICY, ASG, 0)[0]
    assert broom.claim_fleet(POLICY, ASG, 0)[0]


# -- terminations by a principal in a window ------------------------------------------

def test_the_counter_adds_and_reads(broom):
    assert broom.terminations(POLICY, ALICE, 3600) == 0
    assert broom.add_terminations(POLICY, ALICE, 3600, 2) == 2
    assert broom.add_terminations(POLICY, ALICE, 3600, 3) == 5
    assert broom.terminations(POLICY, ALICE, 3600) == 5
    assert broom.terminations(POLICY, "arn:aws:iam::123456789012:role/bob", 3600) == 0
    assert broom.terminations("another-policy", ALICE, 3600) == 0


def test_the_counter_adds_atomically(state_table, clock):
    """Concurrent invocations each get their own total (UpdateItem ADD, no read
    before the write)."""
    def add(_):
        return table(clock).add_terminations(POLICY, ALICE, 3600, 1)
    with ThreadPoolExecutor(8) as pool:
        totals = sorted(pool.map(add, range(16)))
    assert totals == list(range(1, 17))
    assert table(clock).terminations(POLICY, ALICE, 3600) == 16


def test_the_counter_covers_at_least_the_last_window_then_expires(broom, clock):
    clock.now = 3600 * 500_000 + 3000  # 10 minutes before a window ends
    assert broom.add_terminations(POLICY, ALICE, 3600, 4) == 4
    clock.now += 1200  # next window: the last hour still holds the 4
    assert broom.terminations(POLICY, ALICE, 3600) == 4
    assert broom.add_terminations(POLICY, ALICE, 3600, 1) == 5
    clock.now += 3600  # the 4 are more than a window old: gone
    assert broom.terminations(POLICY, ALICE, 3600) == 1
    clock.now += 3600
    assert broom.terminations(POLICY, ALICE, 3600) == 0
    expiries = sorted(int(i["expires"]["N"]) for i in items().values())
    assert expiries == [3600 * 500_002, 3600 * 500_003]  # DynamoDB's TTL removes them


def test_the_counter_makes_one_write_and_one_read(broom, calls):
    broom.add_terminations(POLICY, ALICE, 3600, 1)
    assert calls == ["UpdateItem", "GetItem"]
    assert set("dynamodb:%s" % c for c in calls) <= set(state.COUNTER_PERMISSIONS)


# -- unavailable: never suppresses, counter unknown, one warning ----------------------

def test_a_missing_table_suppresses_nothing_and_warns_once(aws, clock, caplog, calls):
    broom = table(clock)
    with caplog.at_level(logging.WARNING, logger="custodian.broom.state"):
        assert owed.begin(broom, POLICY, EVENT) is None  # nothing recorded: all reported
        assert owed.begin(broom, POLICY, EVENT) is None
        assert broom.claim_fleet(POLICY, ASG, 3600)[0]
        assert broom.claim_fleet(POLICY, ASG, 3600)[0]
        assert broom.add_terminations(POLICY, ALICE, 3600, 1) is None
        assert broom.terminations(POLICY, ALICE, 3600) is None
    [warning] = [r for r in caplog.records if r.name == "custodian.broom.state"]
    assert "broom-state" in warning.getMessage()
    assert "ResourceNotFoundException" in warning.getMessage()
    assert calls == ["UpdateItem"]  # the first failure stops the others


def test_a_missing_table_leaves_the_counter_unknown(aws, clock):
    assert table(clock).add_terminations(POLICY, ALICE, 3600, 1) is None
    assert table(clock).terminations(POLICY, ALICE, 3600) is None


@pytest.fixture
def dynamodb_error(monkeypatch):
    code = []
    original = BaseClient._make_api_call

    def make_api_call(client, operation, params):
        if client.meta.service_model.service_name == "dynamodb" and code:
            raise ClientError({"Error": {"Code": code[0], "Message": "refused"}}, operation)
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return code


def test_a_denied_table_names_the_permission_and_the_table_arn(broom, dynamodb_error,
                                                               caplog):
    dynamodb_error.append("AccessDeniedException")
    with caplog.at_level(logging.WARNING, logger="custodian.broom.state"):
        assert broom.add_terminations(POLICY, ALICE, 3600, 1) is None
    assert ("allow dynamodb:UpdateItem on arn:aws:dynamodb:us-east-1:%s:table/broom-state"
            % ACCOUNT) in caplog.text


def test_an_unexpected_error_is_logged_and_suppresses_nothing(broom, dynamodb_error,
                                                              caplog):
    """Raising would fail the invocation after the terminations, and the retry skips
    terminated instances: their reports would be lost."""
    dynamodb_error.append("ValidationException")
    with caplog.at_level(logging.WARNING, logger="custodian.broom.state"):
        assert owed.begin(broom, POLICY, EVENT) is None
        assert broom.claim_fleet(POLICY, ASG, 3600)[0]
        assert broom.add_terminations(POLICY, ALICE, 3600, 1) is None
    [record] = caplog.records
    assert record.levelname == "ERROR"
    assert "unexpected error on UpdateItem" in record.getMessage()
    assert "ValidationException" in record.getMessage()


# -- what creator-report declares -----------------------------------------------------

def test_report_permissions_cover_the_table_calls_a_report_makes(broom, calls):
    obligation = owed.begin(broom, POLICY, EVENT)
    obligation.owe({"i-1": {"decision": owed.TERMINATE}})
    obligation.settle(reports=["i-1"], release=True)
    _, when = broom.claim_fleet(POLICY, ASG, 60)
    broom.release_fleet(POLICY, ASG, when)
    assert {"dynamodb:%s" % c for c in calls} <= set(state.REPORT_PERMISSIONS)
    assert set(state.REPORT_PERMISSIONS) <= set(CreatorReport.permissions)
    assert not {"ec2:CreateTags", "autoscaling:DescribeTags",
                "autoscaling:CreateOrUpdateTags"} & set(CreatorReport.permissions)
