"""The launch record: one event read once, at the edge (c7n_broom.launch)."""
import copy
import dataclasses
from datetime import datetime, timedelta, timezone

import pytest

from c7n_broom import events, handler, launch, owed, recheck

from support import (
    ACCOUNT,
    REGION,
    create_fleet_event,
    load_record,
    policy_file,
    run_instances_event,
    states,
    tag_event,
)
from support import launch as run_launch


@pytest.fixture(autouse=True)
def nothing_remembered():
    """No test leaves the record of its event behind (as the handler does not)."""
    yield
    launch.forget()


RECORDS = ("event-cloud-trail-run-instance-creator.json",
           "event-cloud-trail-run-instance-creator-assumed.json",
           "event-cloud-trail-run-instances.json")
SUBSCRIBED = {("ec2.amazonaws.com", "RunInstances"), ("ec2.amazonaws.com", "CreateFleet"),
              ("ec2.amazonaws.com", "CreateTags")}


@pytest.mark.parametrize("name", RECORDS)
def test_a_recorded_launch_reads_as_its_record_says(name):
    record = load_record(name)
    found = launch.parse(events.envelope(record))

    assert found.event_id == record["eventID"]
    assert found.event_name == "RunInstances"
    assert found.event_source == "ec2.amazonaws.com"
    assert found.event_time == datetime.fromisoformat(
        record["eventTime"].replace("Z", "+00:00"))
    assert found.account == record["recipientAccountId"]
    assert found.region == record["awsRegion"]
    assert found.instance_ids == tuple(
        i["instanceId"] for i in record["responseElements"]["instancesSet"]["items"])
    assert found.principal.identity_type == record["userIdentity"]["type"]
    assert found.key == found.report_key == record["eventID"]
    assert found.skip == "" and not found.omitted and not found.is_recheck
    assert found.trusted is launch.UNJUDGED
    assert found.record is record


def test_the_auto_scaling_launch_names_both_instances_and_the_service():
    found = launch.parse(load_record("event-cloud-trail-run-instances.json"))  # a bare record

    assert found.instance_ids == ("i-784cdacd", "i-7b4cdace")
    assert found.principal.via == "autoscaling.amazonaws.com"
    assert (found.account, found.region) == ("619193117841", "us-west-1")


def test_the_assumed_role_session_is_the_principal():
    found = launch.parse(load_record("event-cloud-trail-run-instance-creator-assumed.json"))

    assert (found.principal.role, found.principal.session) == ("GR_Dev_Developer", "Radiant")


def test_an_event_without_a_record_names_nothing():
    event = load_record("event-instance-state.json")

    found = launch.parse(event)

    assert not found.has_record
    assert (found.event_id, found.instance_ids, found.key) == ("", (), "")
    assert (found.account, found.region) == (event["account"], event["region"])
    assert found.age_seconds() is None


@pytest.mark.parametrize("event", [None, 7, "RunInstances", [], {"detail": []},
                                   {"detail": {"eventName": ["RunInstances"]}}])
def test_any_value_parses_without_raising(event):
    found = launch.parse(event, SUBSCRIBED)

    assert found.instance_ids == ()
    assert found.trusted is (False if isinstance(event, dict) else launch.UNJUDGED)


def test_request_tags_are_read_and_cannot_be_changed():
    found = launch.parse(run_instances_event(["i-0123456789abcdef0"],
                                             tags={"Code": "LOL", "Team": "a"}))

    assert dict(found.request_tags) == {"Code": "LOL", "Team": "a"}
    with pytest.raises(TypeError):
        found.request_tags["Code"] = "GGG"
    with pytest.raises(dataclasses.FrozenInstanceError):
        found.event_id = "forged"


def test_the_trust_verdict_refuses_a_record_copied_into_another_accounts_event():
    event = run_instances_event(["i-0123456789abcdef0"])
    assert launch.parse(event, SUBSCRIBED).trusted is True

    moved = dict(copy.deepcopy(event), account="999999999999")
    found = launch.parse(moved, SUBSCRIBED)

    assert found.trusted is False
    assert "account" in found.distrust
    assert found.distrust == events.untrusted(moved, SUBSCRIBED)


def test_a_call_not_subscribed_to_is_distrusted():
    found = launch.parse(tag_event("create-tags.json", ["i-0123456789abcdef0"], {"Code": "x"}),
                         {("ec2.amazonaws.com", "RunInstances")})

    assert found.trusted is False and "subscribes" in found.distrust


def test_a_failed_call_and_a_cut_record_are_marked():
    failed = run_instances_event(["i-0123456789abcdef0"])
    failed["detail"]["errorCode"] = "UnauthorizedOperation"
    cut = run_instances_event(["i-0123456789abcdef0"])
    cut["detail"]["responseElements"] = {"omitted": True}

    assert launch.parse(failed).skip.startswith("the call failed (UnauthorizedOperation")
    assert launch.parse(cut).omitted
    assert launch.parse(cut).skip  # names no instance until resolved


def test_an_instant_fleet_is_keyed_on_its_launch():
    event = create_fleet_event([["i-0bbbbbbbbbbbbbbbb", "i-0aaaaaaaaaaaaaaaa"]],
                               tags={"Code": "LOL"})

    found = launch.parse(event)

    assert found.instance_ids == ("i-0bbbbbbbbbbbbbbbb", "i-0aaaaaaaaaaaaaaaa")
    assert found.report_key == events.FLEET_LAUNCH
    assert found.key == events.FLEET_LAUNCH + "#i-0aaaaaaaaaaaaaaaa"
    assert dict(found.request_tags) == {"Code": "LOL"}


def test_a_recheck_is_keyed_apart_and_names_its_hold():
    event = run_instances_event(["i-0123456789abcdef0"])
    hold = "hold#ec2-require-code-tag#%s#%s#0-0" % (ACCOUNT, REGION)
    event[recheck.MARKER] = {"hold": hold, "instances": ["i-0123456789abcdef0"]}

    found = launch.parse(event)

    assert found.is_recheck and found.hold_key == hold
    assert found.key == event["detail"]["eventID"] + "#recheck"
    assert owed.event_key(event) == found.key


def test_age_is_read_from_the_event_time():
    at = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)
    event = run_instances_event(["i-0123456789abcdef0"], event_time="2026-01-05T08:59:00Z")

    assert launch.parse(event).age_seconds(at) == 60
    assert launch.parse(event).age_seconds(at + timedelta(hours=1)) == 3660


def test_an_event_is_parsed_once_while_the_handler_works_on_it(monkeypatch):
    event = run_instances_event(["i-0123456789abcdef0"])
    first = launch.remember(event, launch.parse(event))
    monkeypatch.setattr(launch, "parse", lambda *a, **k: pytest.fail("parsed again"))

    assert launch.of(event) is first
    assert owed.event_key(event) == first.key


def test_an_event_changed_in_place_after_the_handler_is_read_anew():
    """A caller may hand the same dict over again, changed: the record read for its
    first delivery must not stand for the second."""
    event = run_instances_event(["i-0123456789abcdef0"])
    launch.remember(event, launch.parse(event))
    launch.forget()

    event["detail"]["eventID"] = "another-event-about-it"

    assert launch.of(event).event_id == "another-event-about-it"
    assert owed.event_key(event) == "another-event-about-it"


def test_the_handlers_verdict_is_what_the_elements_read():
    event = run_instances_event(["i-0123456789abcdef0"])

    launch.remember(event, launch.parse(event, SUBSCRIBED))

    assert launch.of(event).trusted is True


def test_another_event_or_a_replaced_record_is_read_anew():
    event = run_instances_event(["i-0123456789abcdef0"])
    first = launch.remember(event, launch.parse(event))
    other = run_instances_event(["i-0fedcba9876543210"])

    assert launch.of(other).instance_ids == ("i-0fedcba9876543210",)
    assert launch.of(event) is first
    event["detail"] = copy.deepcopy(other["detail"])
    assert launch.of(event).instance_ids == ("i-0fedcba9876543210",)


def test_a_recheck_reads_the_record_of_its_hold_keeping_the_verdict():
    """A re-check judges the record Broom recorded with its hold, not the one the
    event carried: every later stage reads the hold's."""
    event = run_instances_event(["i-0123456789abcdef0"])
    event[recheck.MARKER] = {"hold": "hold#p#%s#%s#0-0" % (ACCOUNT, REGION)}
    launch.remember(event, launch.parse(event, SUBSCRIBED))
    held = copy.deepcopy(event["detail"])
    held["eventID"] = "11111111-2222-4333-8444-555555555555"
    held["userIdentity"] = {"type": "IAMUser", "userName": "bob", "accountId": ACCOUNT,
                            "arn": "arn:aws:iam::%s:user/bob" % ACCOUNT}

    found = launch.replace_record(event, held)

    assert event["detail"] is held
    assert launch.of(event) is found
    assert found.event_id == held["eventID"] and found.principal.name == "bob"
    assert found.key == held["eventID"] + "#recheck"
    assert found.trusted is True



# -- the handler reads the event once, and every element reads what it read ------------

class Context:
    invoked_function_arn = "arn:aws:lambda:%s:%s:function:broom" % (REGION, ACCOUNT)

    def get_remaining_time_in_millis(self):
        return 60000


@pytest.fixture
def function(deployed):
    [data] = policy_file("ec2-tags.yml")["policies"]
    deployed(data)
    return data


@pytest.fixture
def reads(monkeypatch):
    """How often the launch record parses an event, and how often anything else asks
    events.cloudtrail_record for an event's record."""
    found = {"parse": 0, "cloudtrail_record": 0, "parsing": False}
    parse, cloudtrail_record = launch.parse, events.cloudtrail_record

    def counted_parse(*args, **kwargs):
        found["parse"] += 1
        found["parsing"] = True
        try:
            return parse(*args, **kwargs)
        finally:
            found["parsing"] = False

    def counted_record(*args, **kwargs):
        if not found["parsing"]:  # read again, elsewhere
            found["cloudtrail_record"] += 1
        return cloudtrail_record(*args, **kwargs)
    monkeypatch.setattr(launch, "parse", counted_parse)
    monkeypatch.setattr(events, "cloudtrail_record", counted_record)
    return found


def test_the_handler_reads_a_violating_launch_once(inbox, state_table, function, fake_clock,
                                                   reads):
    """Trust, judge, act, owe and tell all read the one record the handler parsed."""
    [instance] = run_launch(tags={"Code": "NOPE"})
    event = run_instances_event([instance])

    handler.run(event, Context())

    assert states([instance]) == {instance: "terminated"}
    [message] = inbox.emails()
    assert message["MessageAttributes"]["broom.instance_id"]["Value"] == instance
    assert reads["parse"] == 1
    assert reads["cloudtrail_record"] == 0  # nothing reads the raw event again


def test_after_the_handler_the_same_dict_changed_is_a_new_event(
        inbox, state_table, function, fake_clock):
    [first, second] = run_launch(count=2, tags={"Code": "NOPE"})
    event = run_instances_event([first])
    handler.run(event, Context())
    event["detail"]["eventID"] = "another-event-about-it"
    event["detail"]["responseElements"]["instancesSet"]["items"][0]["instanceId"] = second

    handler.run(event, Context())

    assert states([first, second]) == {first: "terminated", second: "terminated"}
    assert sorted(m["MessageAttributes"]["broom.instance_id"]["Value"]
                  for m in inbox.emails()) == sorted([first, second])
