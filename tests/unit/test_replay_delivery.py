"""`broom replay` delivers what is owed: a message stays in the dead-letter queue until
its event was handled, whatever the run left for later (mock_aws, error injection)."""
import json
import time

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from click.testing import CliRunner

import broom.replay
from broom.cli import cli
from c7n_broom import recheck

from support import (
    ACCOUNT,
    REGION,
    REPO,
    launch,
    load_policy,
    policy_file,
    run_instances_event,
    states,
)

POLICY = str(REPO / "policies" / "ec2-tags.yml")
QUEUE = "broom-dead-letters"
FUNCTION_ARN = "arn:aws:lambda:%s:%s:function:custodian-broom-ec2-require-code-tag" % (
    REGION, ACCOUNT)


@pytest.fixture
def queue(aws, monkeypatch):
    monkeypatch.setattr(broom.replay, "WAIT_SECONDS", 0)
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]

    class Queue:
        def send(self, event):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))

        def bodies(self):
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                           VisibilityTimeout=0).get("Messages", [])
            return [m["Body"] for m in messages]

        def visible(self):
            return int(sqs.get_queue_attributes(
                QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
                "Attributes"]["ApproximateNumberOfMessages"])
    return Queue()


@pytest.fixture
def refuse(monkeypatch):
    """``refuse[operation] = code``: that AWS call fails with ``code``, every time."""
    original = BaseClient._make_api_call
    refused = {}

    def make_api_call(client, operation, params):
        if operation in refused:
            raise ClientError({"Error": {"Code": refused[operation], "Message": "injected"}},
                              operation)
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return refused


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_a_message_whose_run_left_a_termination_owed_stays_in_the_queue(
        inbox, queue, refuse, fake_clock):
    """Before: a throttled termination was noted for a retry only Lambda makes; the
    drain counted the event handled and deleted its message."""
    [bad] = launch(tags={"Code": "NOPE"})
    queue.send(run_instances_event([bad]))
    refuse["TerminateInstances"] = "RequestLimitExceeded"
    result = invoke("replay", POLICY, "sqs://" + QUEUE, "--execute")
    assert result.exit_code == 1, result.output
    assert "RetryLater" in result.output and "TerminateInstances" in result.output
    assert states([bad]) == {bad: "running"}
    assert len(queue.bodies()) == 1
    del refuse["TerminateInstances"]
    result = invoke("replay", POLICY, "sqs://" + QUEUE, "--execute")
    assert result.exit_code == 0, result.output
    assert states([bad]) == {bad: "terminated"}
    assert queue.bodies() == []


def test_a_dead_lettered_re_check_stays_a_re_check(inbox, queue, state_table, monkeypatch):
    """Before: the drain kept only the record and wrapped it anew, dropping Broom's
    re-check marker: the held instances were held again instead of re-checked."""
    monkeypatch.setattr(recheck.Target, "function_arn", FUNCTION_ARN)
    boto3.client("scheduler", region_name=REGION).create_schedule_group(
        Name=recheck.SCHEDULE_GROUP)
    ids = launch(count=21, tags={"Code": "NOPE"})
    [data] = policy_file("ec2-tags.yml")["policies"]
    load_policy(data).push(run_instances_event(ids))  # over the cap: held, re-check due
    assert set(states(ids).values()) == {"running"}
    scheduler = boto3.client("scheduler", region_name=REGION)
    [schedule] = scheduler.list_schedules()["Schedules"]
    payload = json.loads(scheduler.get_schedule(
        Name=schedule["Name"], GroupName=schedule["GroupName"])["Target"]["Input"])
    start = time.time()
    monkeypatch.setattr(recheck, "now", lambda: start + 3600)  # the hold is due

    queue.send(payload)
    result = invoke("replay", POLICY, "sqs://" + QUEUE, "--execute")

    assert result.exit_code == 0, result.output
    assert set(states(ids).values()) == {"terminated"}
    assert queue.bodies() == []


def test_a_bare_record_is_still_wrapped_and_replayed(inbox, queue):
    [bad] = launch(tags={"Code": "NOPE"})
    queue.send(run_instances_event([bad])["detail"])
    result = invoke("replay", POLICY, "sqs://" + QUEUE, "--execute")
    assert result.exit_code == 0, result.output
    assert states([bad]) == {bad: "terminated"}
    assert queue.bodies() == []


def test_an_envelope_whose_record_names_another_account_is_refused_and_kept(
        inbox, queue):
    [bad] = launch(tags={"Code": "NOPE"})
    forged = run_instances_event([bad])
    forged["account"] = "999999999999"
    queue.send(forged)
    result = invoke("replay", POLICY, "sqs://" + QUEUE, "--execute")
    assert result.exit_code == 1, result.output
    assert "differs from the record's" in result.output
    assert states([bad]) == {bad: "running"}
    assert len(queue.bodies()) == 1


def test_another_accounts_event_stays_in_the_queue_and_fails_the_drain(inbox, queue):
    """Before: it was skipped, its message deleted and the drain exited 0: a hub's
    dead-letter queue emptied of events nobody handled."""
    [bad] = launch(tags={"Code": "NOPE"})
    foreign = run_instances_event([bad], account="999999999999")
    queue.send(foreign)
    result = invoke("replay", POLICY, "sqs://" + QUEUE, "--execute")
    assert result.exit_code == 1, result.output
    assert "1 message(s) left in the queue" in result.output
    assert states([bad]) == {bad: "running"}
    assert len(queue.bodies()) == 1


def test_a_message_that_is_not_an_event_is_kept_and_fails_the_drain(inbox, queue):
    queue.send({"hello": "world"})
    result = invoke("replay", POLICY, "sqs://" + QUEUE, "--execute")
    assert result.exit_code == 1, result.output
    assert "1 message(s) left in the queue" in result.output
    assert len(queue.bodies()) == 1


def test_after_ctrl_c_every_message_received_is_visible_again_at_once(
        inbox, queue, monkeypatch):
    """Before: only the message being handled was; the rest of the batch stayed
    hidden for VISIBILITY_SECONDS."""
    for instance_id in launch(count=3, tags={"Code": "NOPE"}):
        queue.send(run_instances_event([instance_id]))

    def interrupted(*args):
        raise KeyboardInterrupt
    monkeypatch.setattr(broom.replay, "run_policy", interrupted)
    result = CliRunner().invoke(cli, ["replay", POLICY, "sqs://" + QUEUE, "--execute"])
    assert result.exit_code != 0
    assert queue.visible() == 3
