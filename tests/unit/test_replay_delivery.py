"""`broom replay` delivers what is owed: a message stays in the dead-letter queue until
its event was handled, whatever the run left for later (mock_aws, error injection)."""
import json

import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from click.testing import CliRunner

import broom.replay
from broom.cli import cli

from support import REGION, REPO, launch, run_instances_event, states

POLICY = str(REPO / "policies" / "ec2-tags.yml")
QUEUE = "broom-dead-letters"


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
