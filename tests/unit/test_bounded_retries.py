"""The spot-request read and the mailer's send back off only while the invocation
affords it, like the rest of the handler (fake clock: nothing waits for real)."""
import time

import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError
from c7n.exceptions import PolicyExecutionError
from test_mailer import SSO, event_by, mailer_queue
from test_mailer import policy as mailer_policy

from c7n_broom import fleets, invocation

from support import launch, load_policy, policy_file


class Context:
    def __init__(self, clock, remaining):
        self.end = clock.now + remaining
        self.clock = clock

    def get_remaining_time_in_millis(self):
        return int((self.end - self.clock.now) * 1000)


def inject(monkeypatch, fake_clock, operation, failures):
    """``operation`` throttled ``failures`` times (None: always); every sleep, Broom's
    or c7n's, on the fake clock. Returns the list of attempts made."""
    original = BaseClient._make_api_call
    attempts = []

    def make_api_call(client, name, params):
        if name == operation:
            attempts.append(fake_clock.now)
            if failures is None or len(attempts) <= failures:
                raise ClientError({"Error": {"Code": "RequestLimitExceeded",
                                             "Message": "Rate exceeded"}}, name)
        return original(client, name, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    monkeypatch.setattr(time, "sleep", fake_clock.sleep)
    return attempts


def spot_instance(request_id="sir-0123abcd"):
    return {"InstanceId": "i-0123456789abcdef0", "InstanceLifecycle": "spot",
            "SpotInstanceRequestId": request_id}


def ec2_manager():
    [data] = policy_file("ec2-tags.yml")["policies"]
    return load_policy(data).resource_manager


def test_a_throttled_spot_request_read_stops_backing_off_before_the_deadline(
        aws, fake_clock, monkeypatch):
    """Before: c7n's retry backed off up to 8 times (minutes) whatever time the
    invocation had left, and Lambda killed it before the report."""
    attempts = inject(monkeypatch, fake_clock, "DescribeSpotInstanceRequests", None)
    context = Context(fake_clock, remaining=30)
    invocation.start(context)
    with pytest.raises(ClientError, match="RequestLimitExceeded"):
        fleets.persistent_spot_requests(ec2_manager(), [spot_instance()])
    assert context.get_remaining_time_in_millis() / 1000 >= invocation.MARGIN
    assert 1 < len(attempts) <= 5


def test_a_spot_request_read_throttled_once_is_retried(aws, fake_clock, monkeypatch):
    attempts = inject(monkeypatch, fake_clock, "DescribeSpotInstanceRequests", 1)
    invocation.start(Context(fake_clock, remaining=60))
    # moto does not know the request: a one-time request, read after one back-off
    assert fleets.persistent_spot_requests(ec2_manager(), [spot_instance()]) == frozenset()
    assert len(attempts) == 2


def test_a_throttled_mailer_send_stops_backing_off_before_the_deadline(
        inbox, fake_clock, monkeypatch):
    """Before: SendMessage to c7n-mailer's queue used c7n's retry whatever time was
    left; now the send fails in time, naming the queue (the invocation is retried)."""
    sqs, url = mailer_queue()
    [untagged] = launch()
    attempts = inject(monkeypatch, fake_clock, "SendMessage", None)
    context = Context(fake_clock, remaining=30)
    invocation.start(context)
    with pytest.raises(PolicyExecutionError, match="could not send to c7n-mailer's queue"):
        mailer_policy(url).push(event_by(SSO, [untagged]))
    assert context.get_remaining_time_in_millis() / 1000 >= invocation.MARGIN
    assert 1 < len(attempts) <= 5


def test_a_mailer_send_throttled_once_is_delivered(inbox, fake_clock, monkeypatch):
    sqs, url = mailer_queue()
    [untagged] = launch()
    attempts = inject(monkeypatch, fake_clock, "SendMessage", 1)
    invocation.start(Context(fake_clock, remaining=60))
    mailer_policy(url).push(event_by(SSO, [untagged]))
    assert len(attempts) == 2
    assert sqs.receive_message(QueueUrl=url).get("Messages")
