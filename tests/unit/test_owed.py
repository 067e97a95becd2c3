"""What Broom owes survives failures: reports and re-checks recorded before acting and
settled only when done (c7n_broom.owed), retries bounded by the invocation's time, and
nothing dropped silently (mock_aws, botocore error injection)."""
import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from c7n_broom import handler, invocation, owed, recheck, state
from c7n_broom.actions import ReportDeliveryError

from support import (
    ACCOUNT,
    REGION,
    launch,
    load_policy,
    policy_file,
    run_instances_event,
    states,
)

POLICY = "broom-ec2-require-code-tag"
FUNCTION = "arn:aws:lambda:%s:%s:function:broom" % (REGION, ACCOUNT)


class Killed(BaseException):
    """Lambda stopping an invocation at its timeout: no ``except`` nor ``finally`` of
    Broom's sees it (it is not an Exception)."""


class Context:
    """Lambda's context: ``remaining`` seconds left."""

    def __init__(self, remaining=60.0):
        self.remaining = remaining
        self.invoked_function_arn = FUNCTION

    def get_remaining_time_in_millis(self):
        return int(self.remaining * 1000)


@pytest.fixture
def faults(monkeypatch):
    """Make AWS calls fail: ``faults.add(operation, error, times)``; ``error`` is an
    error code (a ClientError) or an exception to raise. ``faults.calls`` lists every
    operation made."""
    original = BaseClient._make_api_call

    class Faults:
        calls = []
        armed = {}

        def add(self, operation, error, times=1):
            self.armed[operation] = [error, times]

    found = Faults()
    found.calls, found.armed = [], {}

    def make_api_call(client, operation, params):
        found.calls.append(operation)
        armed = found.armed.get(operation)
        if armed and armed[1] > 0:
            armed[1] -= 1
            if isinstance(armed[0], str):
                raise ClientError({"Error": {"Code": armed[0], "Message": "injected"}},
                                  operation)
            raise armed[0]
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return found


def main_policy(variables=None, **options):
    [data] = policy_file("ec2-tags.yml")["policies"]
    [terminate] = [a for a in data["actions"] if a["type"] == "safe-terminate"]
    terminate.update(options)
    return load_policy(data, variables=variables)


def owed_items():
    return {i["pk"]["S"]: i for i in boto3.client("dynamodb", region_name=REGION).scan(
        TableName="broom-state")["Items"] if i["pk"]["S"].startswith("owe#")}


def outcomes(inbox):
    return {m["MessageAttributes"]["broom.instance_id"]["Value"]:
            m["MessageAttributes"]["broom.outcome"]["Value"] for m in inbox.emails()}


# -- 1. what Broom owes, it records before it acts, and settles only when done --------

def test_a_report_whose_publish_failed_after_terminating_is_sent_by_the_retry(
        inbox, state_table, faults):
    """Before: the retry found the instance already terminated and published nothing,
    and "succeeded"."""
    [instance] = launch()
    event = run_instances_event([instance])
    faults.add("PublishBatch", "InternalError", times=10)
    faults.add("Publish", "InternalError", times=10)
    with pytest.raises(ReportDeliveryError):
        main_policy().push(event)
    assert states([instance]) == {instance: "terminated"}
    assert inbox.emails() == []
    [item] = owed_items().values()
    assert item["reports"]["SS"] == [instance]  # owed, and visible to broom doctor

    faults.armed.clear()
    main_policy().push(event)  # Lambda's retry of the failed invocation

    assert outcomes(inbox) == {instance: "terminated"}
    [item] = owed_items().values()
    assert "reports" not in item  # settled once SNS accepted it


def test_an_invocation_killed_after_terminating_is_finished_by_its_retry(
        inbox, state_table, faults):
    """Killed at its timeout between the termination and the publish: no ``finally``
    ran, and its lease lapses with its deadline, so Lambda's retry a minute later
    reports the terminated instance."""
    ids = launch(count=2)
    event = run_instances_event(ids)
    faults.add("PublishBatch", Killed())
    faults.add("Publish", Killed())
    invocation.start(Context(remaining=0))  # its deadline passes as it is killed
    with pytest.raises(Killed):
        main_policy().push(event)
    assert set(states(ids).values()) == {"terminated"}

    invocation.start(Context())
    main_policy().push(event)

    assert outcomes(inbox) == {i: "terminated" for i in ids}


class FakeTime:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_a_live_lease_leaves_the_event_to_the_invocation_holding_it(
        state_table, monkeypatch):
    """A concurrent delivery of the same event does nothing while the first one works;
    the first one's retry takes over once its deadline passed (the lease is the
    invocation's own deadline, not a fixed time that could outlive it)."""
    clock = FakeTime(1_800_000_000)
    monkeypatch.setattr(invocation, "clock", clock)
    table = state.StateTable(None, REGION, clock=clock)
    table._client = boto3.client("dynamodb", region_name=REGION)
    invocation.start(Context(remaining=30))
    first = owed.begin(table, POLICY, "event-1")
    first.owe({"i-1": {"decision": owed.TERMINATE}})
    assert not first.busy
    clock.now += 10
    assert owed.begin(table, POLICY, "event-1").busy
    clock.now += 60  # Lambda retries about a minute later: the lease has lapsed
    invocation.start(Context(remaining=30))
    retry = owed.begin(table, POLICY, "event-1")
    assert not retry.busy and retry.reports == {"i-1"}
    assert retry.decision("i-1") == owed.TERMINATE


def test_a_repeated_delivery_after_the_report_publishes_nothing(inbox, state_table):
    [instance] = launch()
    event = run_instances_event([instance])
    main_policy().push(event)
    main_policy().push(event)  # EventBridge delivers at least once
    assert len(inbox.emails()) == 1


def test_the_cap_counts_an_event_once_however_often_it_is_delivered(
        inbox, state_table, faults):
    """Before: an invocation killed after counting and before terminating was counted
    again by its retry, and 4 + 4 > 5 held the instances."""
    ids = launch(count=4, tags={"Code": "NOPE"})
    event = run_instances_event(ids)
    faults.add("TerminateInstances", Killed())
    invocation.start(Context(remaining=0))
    with pytest.raises(Killed):
        main_policy(**{"max-terminations": 5}).push(event)
    assert set(states(ids).values()) == {"running"}

    invocation.start(Context())
    main_policy(**{"max-terminations": 5}).push(event)

    assert set(states(ids).values()) == {"terminated"}
    assert set(outcomes(inbox).values()) == {"terminated"}


def test_without_the_state_table_a_failed_publish_still_fails_the_invocation(inbox, faults):
    [instance] = launch()
    faults.add("PublishBatch", "InternalError", times=10)
    faults.add("Publish", "InternalError", times=10)
    with pytest.raises(ReportDeliveryError):
        main_policy().push(run_instances_event([instance]))


# -- 2. nothing is dropped silently ----------------------------------------------------

@pytest.fixture
def function(deployed):
    [data] = policy_file("ec2-tags.yml")["policies"]
    deployed(data)
    return data


def test_an_id_ec2_does_not_show_fails_a_fresh_invocation_so_lambda_retries(
        inbox, state_table, function, fake_clock):
    """Before: the handler returned success, having done nothing about the id."""
    unknown = "i-0123456789abcdef0"
    with pytest.raises(invocation.RetryLater, match=unknown):
        handler.run(run_instances_event([unknown]), Context())
    assert inbox.emails() == []


def test_an_id_ec2_does_not_show_in_an_old_event_is_reported(
        inbox, state_table, function, fake_clock):
    unknown = "i-0123456789abcdef0"
    old = (datetime.now(timezone.utc) - timedelta(minutes=4)).strftime("%Y-%m-%dT%H:%M:%SZ")
    handler.run(run_instances_event([unknown], event_time=old), Context())
    [alert] = inbox.messages()
    assert alert["MessageAttributes"]["broom.outcome"]["Value"] == "instances-not-seen"
    assert unknown in alert["Message"]


@pytest.fixture
def scheduler_refuses(monkeypatch):
    refused = []

    def refuse(client, event, instance_ids, due, function_arn, retry):
        code = refused[0]
        raise ClientError({"Error": {"Code": code, "Message": "injected"}}, "CreateSchedule")
    monkeypatch.setattr(recheck, "schedule", refuse)
    monkeypatch.setattr(recheck.Target, "function_arn", FUNCTION)
    return refused


def test_a_throttled_re_check_schedule_fails_the_invocation_and_stays_owed(
        inbox, state_table, function, scheduler_refuses, monkeypatch, fake_clock):
    """Before: the held instances' re-check was silently never scheduled."""
    scheduler_refuses.append("ThrottlingException")
    ids = launch(count=21, tags={"Code": "NOPE"})
    event = run_instances_event(ids)
    with pytest.raises(invocation.RetryLater, match="re-check"):
        handler.run(event, Context())
    [item] = owed_items().values()
    assert sorted(item["rechecks"]["SS"]) == sorted(ids)
    assert set(states(ids).values()) == {"running"}

    monkeypatch.setattr(recheck, "schedule", lambda *args: ["broom-recheck-x-0"])
    handler.run(event, Context())  # the retry creates it
    [item] = owed_items().values()
    assert "rechecks" not in item
    assert len(inbox.emails()) == 1  # the digest, not twice


def test_a_denied_re_check_schedule_is_reported_and_stays_owed(
        inbox, state_table, function, scheduler_refuses, fake_clock):
    scheduler_refuses.append("AccessDeniedException")
    ids = launch(count=21, tags={"Code": "NOPE"})
    handler.run(run_instances_event(ids), Context())
    [digest] = inbox.emails()
    assert "could NOT schedule a re-check (AccessDeniedException)" in digest["Message"]
    [item] = owed_items().values()
    assert sorted(item["rechecks"]["SS"]) == sorted(ids)  # listed by broom doctor
    assert "reports" not in item


def test_a_throttled_termination_is_not_split_up_and_fails_the_invocation(
        inbox, state_table, faults, fake_clock):
    """Before: a throttled batch was retried instance by instance, multiplying calls
    under throttling, and the report said "could NOT terminate"."""
    ids = launch(count=3)
    faults.add("TerminateInstances", "RequestLimitExceeded", times=100)
    invocation.start(Context(remaining=60))
    main_policy().push(run_instances_event(ids))
    with pytest.raises(invocation.RetryLater, match="TerminateInstances"):
        invocation.check()
    terminations = [c for c in faults.calls if c == "TerminateInstances"]
    assert len(terminations) <= 5
    assert inbox.emails() == []  # reported by the retry that terminates them
    [item] = owed_items().values()
    assert sorted(item["reports"]["SS"]) == sorted(ids)


def test_back_off_never_runs_past_the_invocation_deadline(inbox, state_table, faults,
                                                          fake_clock, monkeypatch):
    slept = []
    monkeypatch.setattr("time.sleep", slept.append)  # c7n's own back-off, if used
    faults.add("PublishBatch", "Throttled", times=100)
    faults.add("Publish", "Throttled", times=100)
    [instance] = launch(tags={"Code": "NOPE"})  # no grace period for tags
    invocation.start(Context(remaining=invocation.MARGIN + 5))
    with pytest.raises(ReportDeliveryError):
        main_policy().push(run_instances_event([instance]))
    assert sum(slept) + sum(fake_clock.sleeps) < 5


# -- 4. proportionate traffic: one publish call per 10 reports ------------------------

def test_twenty_reports_take_two_publish_calls(inbox, state_table, faults):
    ids = launch(count=20)
    main_policy().push(run_instances_event(ids))
    assert len(inbox.emails()) == 20
    assert faults.calls.count("PublishBatch") == 2
    assert faults.calls.count("Publish") == 0


def test_obligations_of_an_event_take_a_few_table_calls(inbox, state_table, faults):
    ids = launch(count=20)
    main_policy().push(run_instances_event(ids))
    table_calls = [c for c in faults.calls if c in (
        "PutItem", "UpdateItem", "DeleteItem", "GetItem", "TransactWriteItems")]
    assert len(table_calls) <= 5
    assert json.loads(next(iter(owed_items().values()))["findings"]["S"]).keys() == set(ids)
