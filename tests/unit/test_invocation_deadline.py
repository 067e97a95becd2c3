"""Every back-off of Broom's handler stops before the invocation's deadline, keeping the
margin to record what is owed (fake clock: nothing waits for real)."""
import time

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from c7n_broom import handler, invocation, recheck

from support import launch, load_policy, policy_file, run_instances_event


class Context:
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:broom"

    def __init__(self, clock, remaining):
        self.end = clock.now + remaining
        self.clock = clock

    def get_remaining_time_in_millis(self):
        return int((self.end - self.clock.now) * 1000)


@pytest.fixture
def throttled(monkeypatch, fake_clock):
    """Every DescribeInstances throttled; any sleep, Broom's or c7n's, on the fake clock."""
    original = BaseClient._make_api_call

    def make_api_call(client, operation, params):
        if operation == "DescribeInstances":
            raise ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "x"}},
                              operation)
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    monkeypatch.setattr(time, "sleep", fake_clock.sleep)


def test_the_omitted_launch_lookup_stops_backing_off_before_the_deadline(
        inbox, deployed, throttled, fake_clock, monkeypatch):
    """Before: c7n's retry backed off up to 8 times (minutes) whatever time was left,
    and Lambda killed the invocation before its alert was published."""
    [data] = policy_file("ec2-tags.yml")["policies"]
    deployed(data)
    event = run_instances_event(launch())
    event["detail"]["responseElements"] = {"omitted": True}
    event["detail"]["requestParameters"]["clientToken"] = "c0ffee00-1111"
    context = Context(fake_clock, remaining=30)
    monkeypatch.setattr(recheck.Target, "function_arn", None)  # handler.run sets it
    handler.run(event, context)
    assert context.get_remaining_time_in_millis() / 1000 >= invocation.MARGIN
    [alert] = inbox.emails()
    assert alert["MessageAttributes"]["broom.outcome"]["Value"] == "omitted-record"


def test_the_grace_wait_for_late_tags_leaves_the_margin(inbox, fake_clock):
    """Before: the wait for a late Code tag ran its full grace-seconds even when the
    invocation had less time left, and Lambda killed it before the report."""
    [data] = policy_file("ec2-tags.yml")["policies"]
    [instance] = launch()
    context = Context(fake_clock, remaining=invocation.MARGIN + 4)
    invocation.start(context)
    load_policy(data).push(run_instances_event([instance]))
    assert context.get_remaining_time_in_millis() / 1000 >= invocation.MARGIN
    assert len(inbox.emails()) == 1


def test_a_throttled_late_tag_read_stops_backing_off_before_the_deadline(
        inbox, fake_clock, monkeypatch):
    """Before: DescribeTags in the grace wait used c7n's retry (8 attempts, minutes of
    back-off) whatever time the invocation had left."""
    original = BaseClient._make_api_call

    def make_api_call(client, operation, params):
        if operation == "DescribeTags":
            raise ClientError({"Error": {"Code": "RequestLimitExceeded", "Message": "x"}},
                              operation)
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    monkeypatch.setattr(time, "sleep", fake_clock.sleep)
    [data] = policy_file("ec2-tags.yml")["policies"]
    [instance] = launch()
    context = Context(fake_clock, remaining=60)
    invocation.start(context)
    try:
        load_policy(data).push(run_instances_event([instance]))
    except ClientError:
        pass  # nothing was decided: Lambda's retry judges the instance again
    assert context.get_remaining_time_in_millis() / 1000 >= invocation.MARGIN
