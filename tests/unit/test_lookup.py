"""CloudTrail LookupEvents attribution (c7n_broom.lookup), on botocore's Stubber: moto
does not implement LookupEvents. Responses follow the documented shape; the
CloudTrailEvent strings are recorded RunInstances records re-pointed at the instance, and
CreateFleet records built in the documented shape (support.create_fleet_event)."""
import copy
import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.stub import ANY, Stubber

from c7n_broom import lookup

from support import FakeClock, create_fleet_event, load_record

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=timezone.utc)
LAUNCHED = NOW - timedelta(days=3)
INSTANCE = "i-0123456789abcdef0"


def record(instance_id=INSTANCE, name="event-cloud-trail-run-instance-creator.json"):
    """A recorded RunInstances record naming ``instance_id``."""
    detail = copy.deepcopy(load_record(name))
    items = detail["responseElements"]["instancesSet"]["items"]
    detail["responseElements"]["instancesSet"]["items"] = [dict(items[0],
                                                               instanceId=instance_id)]
    return detail


def entry(cloudtrail_event, name="RunInstances"):
    """One LookupEvents ``Events`` item."""
    return {"EventId": "e-1", "EventName": name, "ReadOnly": "false",
            "EventTime": LAUNCHED, "EventSource": "ec2.amazonaws.com",
            "Username": "someone", "Resources": [],
            "CloudTrailEvent": cloudtrail_event if isinstance(cloudtrail_event, str)
            else json.dumps(cloudtrail_event)}


def request(instance_id=INSTANCE, launched=LAUNCHED, token=None):
    params = {"LookupAttributes": [{"AttributeKey": "ResourceName",
                                    "AttributeValue": instance_id}],
              "StartTime": launched - lookup.WINDOW, "EndTime": launched + lookup.WINDOW,
              "MaxResults": lookup.PAGE_SIZE}
    if token:
        params["NextToken"] = token
    return params


@pytest.fixture
def cloudtrail():
    client = boto3.client("cloudtrail", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def finder(client, clock=None, **options):
    clock = clock or FakeClock()
    return lookup.Lookup(client, clock=clock.monotonic, sleep=clock.sleep, now=NOW, **options)


def test_the_creator_comes_from_the_launch_record_of_the_instance(cloudtrail):
    client, stubber = cloudtrail
    stubber.add_response("lookup_events", {"Events": [entry(record())]}, request())

    found = finder(client).attribute(INSTANCE, LAUNCHED)

    assert found.status == lookup.FOUND
    assert found.settled
    assert found.creator.name == "c7nbot"  # the recorded IAM user
    assert found.creator.identity_type == "IAMUser"


def test_pages_are_followed_until_the_launch_record(cloudtrail):
    client, stubber = cloudtrail
    stop = dict(record(), eventName="StopInstances")
    stubber.add_response("lookup_events", {"Events": [entry(stop, "StopInstances")],
                                           "NextToken": "page-2"}, request())
    stubber.add_response("lookup_events", {"Events": [entry(record())]},
                         request(token="page-2"))

    search = finder(client)
    found = search.attribute(INSTANCE, LAUNCHED)

    assert found.status == lookup.FOUND
    assert search.calls == 2


def test_throttling_backs_off_and_retries_within_the_rate_limit(cloudtrail):
    client, stubber = cloudtrail
    stubber.add_client_error("lookup_events", "ThrottlingException", "Rate exceeded")
    stubber.add_response("lookup_events", {"Events": [entry(record())]}, request())
    clock = FakeClock()

    search = finder(client, clock)
    found = search.attribute(INSTANCE, LAUNCHED)

    assert found.status == lookup.FOUND
    assert search.calls == 2 and search.throttled == 1
    assert clock.sleeps and max(clock.sleeps) >= 2 * lookup.INTERVAL


def test_throttled_again_and_again_the_creator_is_a_fault_not_unknown(cloudtrail):
    client, stubber = cloudtrail
    for _ in range(lookup.RETRIES + 1):
        stubber.add_client_error("lookup_events", "ThrottlingException", "Rate exceeded")

    search = finder(client)
    found = search.attribute(INSTANCE, LAUNCHED)
    after = search.attribute("i-0fedcba9876543210", LAUNCHED)  # no call: the run stops

    assert found.status == after.status == lookup.FAULT
    assert not found.settled
    assert "kept throttling" in found.reason and after.reason == found.reason
    assert search.calls == lookup.RETRIES + 1


def test_denied_once_no_more_calls_and_every_creator_says_why(cloudtrail):
    client, stubber = cloudtrail
    stubber.add_client_error("lookup_events", "AccessDeniedException", "not allowed")

    search = finder(client)
    first = search.attribute(INSTANCE, LAUNCHED)
    second = search.attribute("i-0fedcba9876543210", LAUNCHED)

    assert first.status == second.status == lookup.FAULT
    assert "cloudtrail:LookupEvents" in first.reason and first.reason == second.reason
    assert search.calls == 1


@pytest.mark.parametrize("broken", ["{not json", json.dumps(["a list"]),
                                    json.dumps({"eventName": "RunInstances"})])
def test_a_malformed_record_is_a_fault_with_its_reason(cloudtrail, broken):
    client, stubber = cloudtrail
    stubber.add_response("lookup_events", {"Events": [entry(broken)]}, request())

    found = finder(client).attribute(INSTANCE, LAUNCHED)

    assert found.status == lookup.FAULT
    assert "could not read" in found.reason


def test_a_record_of_another_instance_is_not_taken_for_this_one(cloudtrail):
    client, stubber = cloudtrail
    stubber.add_response("lookup_events", {"Events": [entry(record("i-0aaaaaaaaaaaaaaaa"))]},
                         request())

    found = finder(client).attribute(INSTANCE, LAUNCHED)

    assert found.status == lookup.FAULT
    assert found.creator.name == "unknown"


def test_older_than_the_event_history_is_unknown_for_good_without_a_call(cloudtrail):
    client, _ = cloudtrail

    search = finder(client)
    found = search.attribute(INSTANCE, NOW - timedelta(days=91))

    assert found.status == lookup.UNKNOWN_FOR_GOOD and found.settled
    assert "90 days" in found.reason
    assert search.calls == 0


def test_no_record_is_unknown_for_good_once_cloudtrail_had_time_to_deliver(cloudtrail):
    client, stubber = cloudtrail
    stubber.add_response("lookup_events", {"Events": []}, request())
    just_now = NOW - timedelta(minutes=20)
    stubber.add_response("lookup_events", {"Events": []}, request(launched=just_now))

    search = finder(client)
    old = search.attribute(INSTANCE, LAUNCHED)
    young = search.attribute(INSTANCE, just_now)

    assert old.status == lookup.UNKNOWN_FOR_GOOD
    assert "no launch record" in old.reason
    assert young.status == lookup.PENDING and not young.settled


def test_the_budget_bounds_the_calls_and_the_rest_is_pending(cloudtrail):
    client, stubber = cloudtrail
    for n in range(2):
        stubber.add_response("lookup_events", {"Events": [entry(record("i-%017d" % n))]},
                             request("i-%017d" % n))

    search = finder(client, budget=2)
    found = [search.attribute("i-%017d" % n, LAUNCHED) for n in range(3)]

    assert [f.status for f in found] == [lookup.FOUND, lookup.FOUND, lookup.PENDING]
    assert "lookups of this run were used up" in found[2].reason
    assert search.calls == 2


def test_calls_are_spaced_to_stay_under_two_per_second(cloudtrail):
    client, stubber = cloudtrail
    for _ in range(5):
        stubber.add_response("lookup_events", {"Events": []}, {
            "LookupAttributes": ANY, "StartTime": ANY, "EndTime": ANY, "MaxResults": ANY})
    clock = FakeClock()
    times = []
    original = client.lookup_events

    def timed(**params):
        times.append(clock.now)
        return original(**params)
    client.lookup_events = timed

    search = finder(client, clock)
    for n in range(5):
        search.attribute("i-%017d" % n, LAUNCHED)

    gaps = [b - a for a, b in zip(times[:-1], times[1:], strict=True)]
    assert len(times) == 5 and min(gaps) >= 0.5
    # any one-second window holds at most two calls
    assert all(sum(1 for t in times if start <= t < start + 1) <= 2 for start in times)


def test_first_launch_is_the_primary_interface_attach_time_after_a_restart():
    started = NOW - timedelta(hours=1)
    resource = {"LaunchTime": started, "NetworkInterfaces": [
        {"Attachment": {"DeviceIndex": 1, "AttachTime": NOW - timedelta(days=9)}},
        {"Attachment": {"DeviceIndex": 0, "AttachTime": LAUNCHED}}]}

    assert lookup.first_launch(resource) == LAUNCHED
    assert lookup.first_launch({"LaunchTime": started.isoformat()}) == started
    assert lookup.first_launch({}) is None


def test_an_attribution_survives_its_round_trip_through_the_state_table():
    found = lookup.Attribution(lookup.FOUND, lookup.unknown("x").creator, "")
    assert lookup.Attribution.from_dict(found.as_dict()) == found
    assert lookup.Attribution.from_dict({"status": "made-up"}) is None
    assert lookup.Attribution.from_dict("nonsense") is None


def test_an_unexpected_error_stops_the_lookups_of_the_run_but_not_the_sweep(cloudtrail):
    client, stubber = cloudtrail
    stubber.add_client_error("lookup_events", "InternalFailure", "boom", 500)

    search = finder(client)
    found = [search.attribute("i-%017d" % n, LAUNCHED) for n in range(2)]

    assert [f.status for f in found] == [lookup.FAULT, lookup.FAULT]
    assert found[1].reason == "CloudTrail lookups failed (InternalFailure)"
    assert search.calls == 1


def change(name, user, failed=False):
    record = {"eventName": name, "userIdentity": {
        "type": "IAMUser", "userName": user, "arn": "arn:aws:iam::123456789012:user/" + user,
        "accountId": "123456789012"}}
    if failed:
        record["errorCode"] = "AccessDenied"
    return entry(record, name)


def test_a_groups_owner_is_who_last_created_or_updated_it(cloudtrail):
    client, stubber = cloudtrail
    params = {"LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": "web"}],
              "StartTime": NOW - lookup.HISTORY, "EndTime": NOW,
              "MaxResults": lookup.PAGE_SIZE}
    stubber.add_response("lookup_events", {"Events": [
        change("SetDesiredCapacity", "scaler"),
        change("UpdateAutoScalingGroup", "mallory", failed=True)], "NextToken": "2"}, params)
    stubber.add_response("lookup_events", {"Events": [
        change("UpdateAutoScalingGroup", "dave"), change("CreateAutoScalingGroup", "erin")]},
        dict(params, NextToken="2"))

    owner, event_name = finder(client).fleet_owner("Auto Scaling group", "web")

    assert owner.status == lookup.FOUND and owner.creator.name == "dave"
    assert event_name == "UpdateAutoScalingGroup"


def test_fleet_sources_come_only_from_the_tags_aws_sets():
    resource = {"Tags": [{"Key": "aws:autoscaling:groupName", "Value": "web"},
                         {"Key": "aws:ec2launchtemplate:id", "Value": "lt-1"},
                         {"Key": "autoscaling:groupName", "Value": "forged"}]}
    assert lookup.fleet_sources(resource) == [
        ("Auto Scaling group", "web"), (lookup.LAUNCH_TEMPLATE, "lt-1")]
    assert lookup.fleet_sources({}) == []


# Instant fleets: the CreateFleet record names the instances (docs/launch-paths.md) ------

def fleet_record(groups, single_as_element=True, **options):
    return create_fleet_event(groups, single_as_element=single_as_element,
                              **options)["detail"]


@pytest.mark.parametrize("single_as_element", [True, False])
def test_an_instant_fleets_instance_is_attributed_to_the_create_fleet_caller(
        cloudtrail, single_as_element):
    """Karpenter's controller launched it: the CreateFleet record, in either of the
    shapes CloudTrail records EC2's XML response in, names the instance."""
    client, stubber = cloudtrail
    launched = fleet_record([["i-0aaaaaaaaaaaaaaaa"], [INSTANCE]], single_as_element)
    stubber.add_response("lookup_events", {"Events": [entry(launched, "CreateFleet")]},
                         request())

    found = finder(client).attribute(INSTANCE, LAUNCHED)

    assert found.status == lookup.FOUND
    assert found.creator.role == "KarpenterController-demo"
    assert found.creator.identity_type == "AssumedRole"


def test_a_create_fleet_naming_other_instances_is_not_trusted(cloudtrail):
    client, stubber = cloudtrail
    other = fleet_record([["i-0bbbbbbbbbbbbbbbb"]])
    stubber.add_response("lookup_events", {"Events": [entry(other, "CreateFleet")]},
                         request())

    found = finder(client).attribute(INSTANCE, LAUNCHED)

    assert found.status == lookup.FAULT
    assert "1 launch record(s) Broom could not read" in found.reason


@pytest.mark.parametrize("fleet_type", ["request", "maintain"])
def test_a_fleet_that_launches_later_is_no_launch_by_its_caller(cloudtrail, fleet_type):
    """Its instances come from EC2 Fleet's own RunInstances: that record decides."""
    client, stubber = cloudtrail
    later = fleet_record([[INSTANCE]], fleet_type=fleet_type)
    stubber.add_response("lookup_events", {"Events": [
        entry(later, "CreateFleet"), entry(record())]}, request())

    found = finder(client).attribute(INSTANCE, LAUNCHED)

    assert found.status == lookup.FOUND and found.creator.name == "c7nbot"


def test_a_failed_create_fleet_launched_nothing(cloudtrail):
    client, stubber = cloudtrail
    failed = dict(fleet_record([[INSTANCE]]), errorCode="Client.UnauthorizedOperation")
    stubber.add_response("lookup_events", {"Events": [entry(failed, "CreateFleet")]},
                         request())

    found = finder(client).attribute(INSTANCE, LAUNCHED)

    assert found.status == lookup.UNKNOWN_FOR_GOOD
    assert "no launch record" in found.reason


def test_an_entry_whose_record_is_another_call_is_not_trusted(cloudtrail):
    """A LookupEvents entry named CreateFleet must hold a CreateFleet record."""
    client, stubber = cloudtrail
    stubber.add_response("lookup_events", {"Events": [entry(record(), "CreateFleet")]},
                         request())

    assert finder(client).attribute(INSTANCE, LAUNCHED).status == lookup.FAULT
