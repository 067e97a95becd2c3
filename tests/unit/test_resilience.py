"""Real-world faults: tags not yet visible, unknown ids, failed calls (mock_aws)."""
import boto3
import pytest
from botocore.client import BaseClient

from c7n_broom import handler

from support import launch, load_policy, policy_file, run_instances_event, states


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
    assert inbox.emails() == []


def test_tag_missing_from_describe_is_read_back_with_describe_tags(inbox, describe_omits_tags):
    [tagged] = launch(tags={"Code": "GGG"})
    main_policy().push(run_instances_event([tagged]))  # a 2016 record: no tagSpecificationSet
    assert states([tagged]) == {tagged: "running"}
    assert inbox.emails() == []


def test_wrong_code_is_still_caught_when_describe_omits_tags(inbox, describe_omits_tags):
    [wrong] = launch(tags={"Code": "NOPE"})
    main_policy().push(run_instances_event([wrong]))
    assert states([wrong]) == {wrong: "terminated"}
    [message] = inbox.emails()
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
    assert fake_clock.sleeps == [2, 4, 4]  # widening pauses, up to grace-seconds
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
                  for m in inbox.emails()) == sorted(ids)
    assert fake_clock.sleeps[:3] == [1, 2, 4]  # the unknown id was retried, briefly


def test_stock_describe_would_have_dropped_the_whole_event(inbox):
    """The bug Broom's source works around, shown on c7n's own describe."""
    ids = launch(count=2)
    [data] = policy_file("ec2-tags.yml")["policies"]
    del data["source"]
    load_policy(data).push(run_instances_event(["i-0123456789abcdef0"] + ids))
    assert states(ids) == {i: "running" for i in ids}


# --- source: broom-describe with many unknown ids (issue 8, part 4) ------------------

FILTER_VALUES_LIMIT = 200  # EC2: FilterLimitExceeded past 200 filter values per call


@pytest.fixture
def describe_calls(monkeypatch):
    """Every DescribeInstances call's parameters, counted at the botocore level.

    Plays EC2 where moto does not: refuses more than 200 filter values in one call,
    and refuses a whole InstanceIds list naming a malformed id.
    """
    from botocore.exceptions import ClientError

    from c7n_broom.events import INSTANCE_ID
    original = BaseClient._make_api_call
    calls = []

    def make_api_call(client, operation, params):
        if operation == "DescribeInstances":
            calls.append(params)
            if sum(len(f["Values"]) for f in params.get("Filters", ())) > FILTER_VALUES_LIMIT:
                raise ClientError({"Error": {"Code": "FilterLimitExceeded"}}, operation)
            bad = [i for i in params.get("InstanceIds", ()) if not INSTANCE_ID.fullmatch(i)]
            if bad:
                raise ClientError({"Error": {"Code": "InvalidInstanceID.Malformed",
                                             "Message": "Invalid id: %r" % bad[0]}}, operation)
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return calls


def source_policy():
    return load_policy({"name": "broom-source", "resource": "aws.ec2",
                        "source": "broom-describe"})


def unknown_ids(count):
    return ["i-0ffff%012x" % n for n in range(count)]


def test_many_ids_with_unknown_ones_resolve_in_a_few_calls(aws, describe_calls, fake_clock):
    """Asked one by one, 990 unknown ids in 1,000 took 3,971 calls; looked up with an
    instance-id filter, 200 values a call, they take 21 (benchmarks/scale.py). Here
    250 ids, so that the lookups and the retry rounds both span two calls."""
    known = launch(count=10)
    unknown = unknown_ids(240)
    found = source_policy().resource_manager.get_resources(
        unknown[:120] + known + unknown[120:])
    assert sorted(r["InstanceId"] for r in found) == sorted(known)
    # The refused call, 2 lookups (200 + 50 ids), then 2 per retry round for the 240.
    assert len(describe_calls) == 1 + 2 + 3 * 2
    assert [sum(len(f["Values"]) for f in call["Filters"])
            for call in describe_calls[1:]] == [200, 50] + [200, 40] * 3
    assert fake_clock.sleeps == [1, 2, 4]
    retried = [set(f["Values"]) for call in describe_calls[3:] for f in call["Filters"]]
    assert set().union(*retried) == set(unknown)  # only the ids still unknown


def test_instances_looked_up_after_a_refusal_have_the_shape_c7n_gives(aws, describe_calls,
                                                                      fake_clock):
    known = launch(count=3, tags={"Code": "LOL"})
    source = source_policy().resource_manager.source
    plain = source.get_resources(known)
    looked_up = source.get_resources(unknown_ids(1) + known)
    # c7n's call, c7n's call refused, the lookup (then the retry rounds for the unknown id)
    assert [c.get("Filters") is not None for c in describe_calls[:3]] == [False, False, True]

    def by_id(resources):
        return sorted(resources, key=lambda r: r["InstanceId"])
    assert by_id(looked_up) == by_id(plain)
    assert all(r["ReservationId"] for r in looked_up)


def test_augment_still_fills_tags_describe_left_out(aws, fake_clock, describe_omits_tags):
    """c7n's EC2 augment (DescribeTags when no instance shows tags, pull mode) still
    runs on instances the source looked up after a refusal."""
    [instance] = launch(tags={"Code": "LOL"})
    found = source_policy().resource_manager.get_resources(unknown_ids(1) + [instance])
    assert [r["Tags"] for r in found] == [[{"Key": "Code", "Value": "LOL"}]]


def test_a_malformed_id_is_skipped_alone_and_not_retried(aws, describe_calls, fake_clock,
                                                         caplog):
    known = launch(count=2)
    with caplog.at_level("WARNING", logger="custodian.broom.source"):
        found = source_policy().resource_manager.get_resources(["i-xyz"] + known)
    assert sorted(r["InstanceId"] for r in found) == sorted(known)
    assert len(describe_calls) == 2  # refused, then one lookup
    assert fake_clock.sleeps == []
    assert "i-xyz" in caplog.text and "InvalidInstanceID.Malformed" in caplog.text


def test_an_id_ec2_learns_of_late_is_found_in_a_retry_round(aws, fake_clock, monkeypatch):
    """Eventual consistency: the new instance is unknown to EC2 until the first wait."""
    from botocore.exceptions import ClientError
    [late] = launch()
    [other] = launch()
    original = BaseClient._make_api_call

    def make_api_call(client, operation, params):
        if operation == "DescribeInstances" and not fake_clock.sleeps:
            if late in params.get("InstanceIds", ()):
                raise ClientError({"Error": {"Code": "InvalidInstanceID.NotFound"}},
                                  operation)
            response = original(client, operation, params)
            for reservation in response["Reservations"]:
                reservation["Instances"] = [i for i in reservation["Instances"]
                                            if i["InstanceId"] != late]
            return response
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    found = source_policy().resource_manager.get_resources([late, other])
    assert sorted(r["InstanceId"] for r in found) == sorted([late, other])
    assert fake_clock.sleeps == [1]


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
    refused = refuse_first("PublishBatch", "Throttled", times=2)
    [untagged] = launch()
    main_policy().push(run_instances_event([untagged]))
    assert len(refused) == 2
    assert len(inbox.emails()) == 1


def test_throttled_termination_is_retried(inbox, refuse_first):
    refused = refuse_first("TerminateInstances", "RequestLimitExceeded", times=1)
    [untagged] = launch()
    main_policy().push(run_instances_event([untagged]))
    assert refused and states([untagged]) == {untagged: "terminated"}


# Broom's state table (c7n_broom/state.py) missing, denied or throttled: state may
# only ever suppress a duplicate, so reports go out and a warning says what to fix.

def report_only_policy():
    [data] = policy_file("ec2-tags.yml")["policies"]
    return load_policy(data, variables={"broom_enforcement": "report-only"})


def state_warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.name == "custodian.broom.state"]


def test_without_the_state_table_reports_are_sent_and_a_warning_says_to_create_it(
        inbox, caplog):
    [instance] = launch()
    event = run_instances_event([instance])
    with caplog.at_level("WARNING", logger="custodian.broom.state"):
        report_only_policy().push(event)
        [warning] = state_warnings(caplog)
        report_only_policy().push(event)
    assert len(inbox.emails()) == 2  # no repeat suppression without the table
    assert "state table broom-state in us-east-1 cannot be used " \
           "(ResourceNotFoundException on UpdateItem): create it" in warning


@pytest.fixture
def dynamodb_fails(monkeypatch):
    """Every DynamoDB call fails with the error code set on the returned list."""
    from botocore.exceptions import ClientError
    code = ["AccessDeniedException"]
    original = BaseClient._make_api_call

    def make_api_call(client, operation, params):
        if client.meta.service_model.service_name == "dynamodb":
            raise ClientError({"Error": {"Code": code[0], "Message": "no"}}, operation)
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return code


def test_a_denied_state_table_reports_and_names_the_permission(inbox, state_table,
                                                               dynamodb_fails, caplog):
    [instance] = launch()
    event = run_instances_event([instance])
    with caplog.at_level("WARNING", logger="custodian.broom.state"):
        report_only_policy().push(event)
        report_only_policy().push(event)
    assert len(inbox.emails()) == 2
    warnings = state_warnings(caplog)
    assert len(warnings) == 2  # one per run
    assert ("allow dynamodb:UpdateItem on arn:aws:dynamodb:us-east-1:123456789012:table/"
            "broom-state to Broom's role") in warnings[0]


def test_a_throttled_state_table_does_not_hold_reports_back(inbox, state_table,
                                                             dynamodb_fails, monkeypatch):
    from c7n import utils
    monkeypatch.setattr(utils.time, "sleep", lambda seconds: None)  # c7n's back-off
    dynamodb_fails[0] = "ProvisionedThroughputExceededException"
    [instance] = launch()
    main_policy().push(run_instances_event([instance]))
    assert states([instance]) == {instance: "terminated"}
    assert len(inbox.emails()) == 1


def test_a_relaunch_loop_is_reported_every_time_without_the_state_table(inbox, caplog):
    """Unthrottled is noisy, never silent. (moto lets a test set the aws: tag an
    Auto Scaling group puts on its instances.)"""
    for _ in range(3):
        [instance] = launch(tags={"aws:autoscaling:groupName": "web"})
        event = run_instances_event([instance])
        event["detail"]["eventID"] = "relaunch-%s" % instance
        main_policy().push(event)
    assert len(inbox.emails()) == 3
