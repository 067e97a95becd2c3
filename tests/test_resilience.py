"""Real-world faults: tags not yet visible, unknown ids, failed calls (mock_aws)."""
import boto3
import pytest
from botocore.client import BaseClient

from c7n_broom import handler
from conftest import launch, load_policy, policy_file, run_instances_event, states


def main_policy():
    [data] = policy_file("ec2-tags.yml")["policies"]
    return load_policy(data)


@pytest.fixture
def describe_omits_tags(monkeypatch):
    """DescribeInstances just after launch can return instances without their tags."""
    original = BaseClient._make_api_call

    def make_api_call(client, operation, params):
        response = original(client, operation, params)
        if operation == "DescribeInstances":
            for reservation in response.get("Reservations", []):
                for instance in reservation["Instances"]:
                    instance.pop("Tags", None)
        return response
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)


def test_tag_missing_from_describe_but_in_the_request_is_compliant(inbox, describe_omits_tags):
    [tagged] = launch(tags={"Code": "LOL"})
    main_policy().push(run_instances_event([tagged], tags={"Code": "LOL"}))
    assert states([tagged]) == {tagged: "running"}
    assert inbox.messages() == []


def test_tag_missing_from_describe_is_read_back_with_describe_tags(inbox, describe_omits_tags):
    [tagged] = launch(tags={"Code": "GGG"})
    main_policy().push(run_instances_event([tagged]))  # a 2016 record: no tagSpecificationSet
    assert states([tagged]) == {tagged: "running"}
    assert inbox.messages() == []


def test_wrong_code_is_still_caught_when_describe_omits_tags(inbox, describe_omits_tags):
    [wrong] = launch(tags={"Code": "NOPE"})
    main_policy().push(run_instances_event([wrong]))
    assert states([wrong]) == {wrong: "terminated"}
    [message] = inbox.messages()
    assert '"NOPE" is not an allowed code' in message["Message"]


def test_instance_tagged_by_a_separate_create_tags_call_survives(inbox, fake_clock,
                                                                  monkeypatch):
    """A tool tags 3 s after RunInstances: the grace period re-reads and finds it."""
    [late] = launch()
    [never] = launch()

    def tool_tags_while_broom_waits(seconds):
        fake_clock.sleep(seconds)
        if fake_clock.now - 1000.0 >= 3:
            boto3.client("ec2", region_name="us-east-1").create_tags(
                Resources=[late], Tags=[{"Key": "Code", "Value": "BRB"}])
    from c7n_broom.filters import AllowedCodes
    monkeypatch.setattr(AllowedCodes, "sleep", staticmethod(tool_tags_while_broom_waits))
    main_policy().push(run_instances_event([late, never]))
    assert states([late, never]) == {late: "running", never: "terminated"}
    assert sum(fake_clock.sleeps) <= 10


def test_grace_period_is_bounded_and_only_for_untagged_instances(inbox, fake_clock):
    [untagged] = launch()
    main_policy().push(run_instances_event([untagged]))
    assert sum(fake_clock.sleeps) == 10
    assert all(s <= 2 for s in fake_clock.sleeps)
    fake_clock.sleeps.clear()
    [wrong] = launch(tags={"Code": "NOPE"})
    main_policy().push(run_instances_event([wrong]))
    assert fake_clock.sleeps == []


def test_repeated_event_does_not_wait_for_tags_of_terminated_instances(inbox, fake_clock):
    [untagged] = launch()
    event = run_instances_event([untagged])
    main_policy().push(event)
    fake_clock.sleeps.clear()
    main_policy().push(event)
    assert fake_clock.sleeps == []


def test_unknown_instance_id_does_not_hide_the_others(inbox, fake_clock):
    """c7n drops the whole event on InvalidInstanceID.NotFound; Broom resolves the rest."""
    ids = launch(count=2)
    unknown = "i-0123456789abcdef0"
    main_policy().push(run_instances_event([unknown] + ids))
    assert states(ids) == {i: "terminated" for i in ids}
    assert sorted(m["MessageAttributes"]["broom.instance_id"]["Value"]
                  for m in inbox.messages()) == sorted(ids)
    assert fake_clock.sleeps[:3] == [1, 2, 4]  # the unknown id was retried, briefly


def test_stock_describe_would_have_dropped_the_whole_event(inbox):
    """The bug Broom's source works around, shown on c7n's own describe."""
    ids = launch(count=2)
    [data] = policy_file("ec2-tags.yml")["policies"]
    del data["source"]
    load_policy(data).push(run_instances_event(["i-0123456789abcdef0"] + ids))
    assert states(ids) == {i: "running" for i in ids}


@pytest.fixture
def no_dispatch(monkeypatch):
    calls = []
    monkeypatch.setattr(handler.c7n_handler, "dispatch_event",
                        lambda event, context: calls.append(event))
    return calls


def test_failed_run_instances_is_skipped_with_a_log_line(no_dispatch, caplog):
    event = run_instances_event(["i-0123456789abcdef0"])
    event["detail"]["errorCode"] = "Client.UnauthorizedOperation"
    event["detail"]["errorMessage"] = "You are not authorized"
    with caplog.at_level("INFO", logger="custodian.broom.handler"):
        assert handler.run(event, None) is None
    assert no_dispatch == []
    assert "the call failed (Client.UnauthorizedOperation" in caplog.text


@pytest.mark.parametrize("response", [None, {}, {"instancesSet": None},
                                      {"instancesSet": {"items": []}}])
def test_run_instances_without_instances_is_skipped(no_dispatch, caplog, response):
    event = run_instances_event(["i-0123456789abcdef0"])
    event["detail"]["responseElements"] = response
    with caplog.at_level("INFO", logger="custodian.broom.handler"):
        assert handler.run(event, None) is None
    assert no_dispatch == []
    assert "names no launched instance" in caplog.text


def test_good_event_is_handed_to_custodian(no_dispatch):
    event = run_instances_event(["i-0123456789abcdef0"])
    handler.run(event, None)
    assert no_dispatch == [event]


@pytest.fixture
def refuse_first(monkeypatch):
    """Make the first ``times`` calls of an operation fail with an error code."""
    from botocore.exceptions import ClientError
    original = BaseClient._make_api_call
    refused = []

    def arm(operation, code, times):
        def make_api_call(client, name, params):
            if name == operation and len(refused) < times:
                refused.append(name)
                raise ClientError({"Error": {"Code": code, "Message": "slow down"}}, name)
            return original(client, name, params)
        monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
        monkeypatch.setattr("time.sleep", lambda seconds: None)  # c7n's retry back-off
        return refused
    return arm


def test_throttled_report_is_retried(inbox, refuse_first):
    refused = refuse_first("Publish", "Throttled", times=2)
    [untagged] = launch()
    main_policy().push(run_instances_event([untagged]))
    assert len(refused) == 2
    assert len(inbox.messages()) == 1


def test_throttled_termination_is_retried(inbox, refuse_first):
    refused = refuse_first("TerminateInstances", "RequestLimitExceeded", times=1)
    [untagged] = launch()
    main_policy().push(run_instances_event([untagged]))
    assert refused and states([untagged]) == {untagged: "terminated"}
