"""Property-based fuzzing of the code that reads events (hypothesis; issue 4, point 10).

Two layers:

- the pure functions (events, identity, decisions, report) get arbitrary JSON, in and
  around the shapes they read: they never raise and return what they document;
- the Lambda handler gets EventBridge envelopes derived from a valid RunInstances event
  by random mutations, against a small EC2 world in moto: nothing escapes, compliant
  instances and instances the event does not name are never touched.

By default (``pytest``, ``pytest tests/unit``) each property gets a bounded number
of examples, kept small so that the unit suite stays under a minute: 30 handler
events, 50 to 300 per pure property (about 7 s on 2 cores). ``BROOM_FUZZ_EXAMPLES``
gives every property that many instead; the long run gives each 5,000:

    BROOM_FUZZ_EXAMPLES=5000 pytest tests/unit/test_fuzz.py --hypothesis-show-statistics

Measured on 2 cores: 28.5 minutes, 25 of them for the 5,000 handler events (moto keeps
every instance the events terminate, so later examples describe a larger world). Of
those events 47% were handed to c7n, 46% were refused as malformed or skipped (failed
call, no instance) and 19% terminated one or two violators. No failure.
"""
import copy
import json
import logging
import os
import re

import boto3
import pytest
from botocore.client import BaseClient
from c7n import handler as c7n_handler
from c7n.cwe import CloudWatchEvents
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as note
from hypothesis import strategies as st

from c7n_broom import (
    codes,
    decisions,
    events,
    fleets,
    handler,
    identity,
    instances,
    invocation,
    principals,
    report,
)
from c7n_broom.text import attribute

from support import (
    ACCOUNT,
    IDENTITIES,
    REGION,
    Inbox,
    assert_inert,
    create_fleet_event,
    launch,
    load_policy,
    now_iso,
    policy_file,
    run_instances_event,
    states,
)


def examples(default):
    """``BROOM_FUZZ_EXAMPLES`` (a longer run) or the bounded default."""
    return int(os.environ.get("BROOM_FUZZ_EXAMPLES", default))


def fuzz_settings(default):
    return settings(max_examples=examples(default), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.function_scoped_fixture,
                                           HealthCheck.large_base_example])


# --- strategies ---------------------------------------------------------------------

# Text with everything an event can carry: controls, bidi overrides, lone surrogates
# (JSON's "\ud800" escapes decode to them), non-characters, astral planes.
any_text = st.text(st.characters(exclude_categories=()), max_size=40)
json_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | any_text
                | st.sampled_from(["", " ", "\n", "{}", "\u202e", "\ud800"]))
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        any_text, children, max_size=4),
    max_leaves=12)

WORLD = ("@compliant-0", "@compliant-1", "@violator-0", "@violator-1")
unknown_ids = st.from_regex(r"\Ai-[0-9a-f]{17}\Z")
garbage_ids = (any_text | st.builds(lambda s: "i-" + s, any_text)
               | st.sampled_from(["i-", "i-\x00", "i-\ud800", "I-0123456789abcdef0",
                                  "i-" + "a" * 100_000, "sg-0123456789abcdef0"]))
instance_id_values = st.one_of(st.sampled_from(WORLD), unknown_ids, garbage_ids,
                               json_values)


def item(instance_id):
    return {"instanceId": instance_id, "imageId": "ami-2d39803a",
            "instanceState": {"code": 0, "name": "pending"}}


instance_items = st.one_of(
    st.builds(item, st.sampled_from(WORLD)),
    st.builds(item, instance_id_values),
    json_values,
    st.lists(st.builds(item, instance_id_values), max_size=3),  # nested: jmespath flattens
)


@st.composite
def instance_sets(draw):
    """responseElements.instancesSet.items: well-formed or not, few, duplicated, huge."""
    if draw(st.booleans()):  # ids EC2 could have returned: the world's, or unknown ones
        items = draw(st.lists(st.builds(item, st.sampled_from(WORLD) | unknown_ids),
                              min_size=1, max_size=5))
    else:
        items = draw(st.lists(instance_items, max_size=6))
    if draw(st.booleans()):
        # Huge: what repeats never reaches DescribeInstances one id at a time
        # (c7n drops ids without the "i-" prefix), so moto stays fast.
        filler = draw(st.sampled_from([{"instanceId": "sg-1"}, None, 7, {}, [], "x"]))
        items += [filler] * draw(st.integers(100, 3000))
    if items and draw(st.booleans()):
        items += draw(st.lists(st.sampled_from(items), max_size=4))  # duplicates
    return items


def identity_files():
    return [json.loads(p.read_text()) for p in sorted(IDENTITIES.glob("*.json"))]


BREAK_GLASS = {
    "type": "AssumedRole", "principalId": "AROAEXAMPLE:oncall",
    "arn": "arn:aws:sts::%s:assumed-role/broom-break-glass/oncall" % ACCOUNT,
    "accountId": ACCOUNT,
    "sessionContext": {"sessionIssuer": {
        "type": "Role", "arn": "arn:aws:iam::%s:role/broom-break-glass" % ACCOUNT,
        "userName": "broom-break-glass"}}}
user_identities = st.sampled_from(identity_files() + [BREAK_GLASS]) | json_values

request_tag_sets = st.one_of(
    st.builds(lambda code: {"items": [{"resourceType": "instance",
                                        "tags": [{"key": "Code", "value": code}]}]},
              st.sampled_from(["LOL", "NOPE", "", "lol"]) | json_scalars),
    st.builds(lambda rtype, tags: {"items": [{"resourceType": rtype, "tags": tags}]},
              st.sampled_from(["instance", "volume"]) | json_scalars, json_values),
    json_values)

EVENT_NAMES = st.sampled_from(["RunInstances", "CreateTags", "DeleteTags",
                               "TerminateInstances", "StartInstances", ""]) | json_values
EVENT_SOURCES = (st.sampled_from(["ec2.amazonaws.com", "autoscaling.amazonaws.com"])
                 | json_values)
ERROR_CODES = (st.sampled_from(["Client.UnauthorizedOperation",
                                "Server.InsufficientInstanceCapacity", "", 0, False])
               | json_values)


def paths(value, prefix=()):
    """Every key path in a JSON value (list indexes included)."""
    found = []
    children = (value.items() if isinstance(value, dict) else
                enumerate(value) if isinstance(value, list) and len(value) < 50 else ())
    for key, child in children:
        found.append(prefix + (key,))
        found.extend(paths(child, prefix + (key,)))
    return found


def mutate(value, path, action, new):
    """Delete, replace or add (dicts) at ``path``; returns the mutated value."""
    if not path:
        return new
    parent = value
    for key in path[:-1]:
        parent = parent[key]
    key = path[-1]
    if action == "delete":
        del parent[key]
    elif action == "replace":
        parent[key] = new
    elif isinstance(parent, dict):
        parent[str(new)[:20] if not isinstance(new, str) else new] = copy.deepcopy(
            parent[key])
    return value


# "@now": the time the event is resolved, so that it matches the world's launches.
BASE_EVENT = run_instances_event(["@violator-0"], event_time="@now")


@st.composite
def envelopes(draw):
    """An EventBridge envelope from a valid RunInstances event, then mutated."""
    event = copy.deepcopy(BASE_EVENT)
    detail = event["detail"]
    detail["responseElements"]["instancesSet"]["items"] = draw(instance_sets())
    fields = {"eventName": EVENT_NAMES, "eventSource": EVENT_SOURCES,
              "errorCode": ERROR_CODES, "userIdentity": user_identities}
    for name, values in fields.items():
        if draw(st.integers(0, 5)) == 5:
            detail[name] = draw(values)
    if draw(st.booleans()):
        detail["requestParameters"]["tagSpecificationSet"] = draw(request_tag_sets)
    event = copy.deepcopy(event)  # drawn values may be shared (sampled_from): copy first
    for _ in range(draw(st.sampled_from([0, 0, 1, 2, 4]))):
        path = draw(st.sampled_from([()] + paths(event)))
        action = draw(st.sampled_from(["delete", "replace", "add"]))
        if action == "delete" and not path:
            action = "replace"
        new = draw(json_values | st.sampled_from(WORLD) | unknown_ids)
        event = mutate(event, path, action, new)
    return event


# --- the pure layer ---------------------------------------------------------------

records = json_values | envelopes() | st.builds(lambda e: e.get("detail") if isinstance(
    e, dict) else e, envelopes())


@fuzz_settings(300)
@given(event=records)
@example(event={"detail": {"eventName": "RunInstances",
                           "requestParameters": {"tagSpecificationSet": {"items": [
                               {"resourceType": "instance", "tags": 5}]}}}})
def test_event_readers_never_raise_and_return_what_they_document(event):
    record = events.cloudtrail_record(event)
    assert record is None or (isinstance(record, dict) and (
        record is event or record is event.get("detail")))
    for candidate in (event, record):
        tags = events.request_tags(candidate)
        assert all(type(k) is str and type(v) is str for k, v in tags.items())
        assert all(type(i) is str and i.startswith("i-")
                   for i in events.launched_instances(candidate))
        assert type(events.field(candidate, "userIdentity", "arn")) is str
        assert type(events.field(candidate, "errorCode")) is str
    reason = events.skip_reason(event)
    assert reason is None or (type(reason) is str and reason)
    for cloudtrail in (False, True):
        problem = events.malformed(event, cloudtrail=cloudtrail)
        assert problem is None or (type(problem) is str and problem)


@st.composite
def create_fleet_records(draw):
    """A CreateFleet record of the documented shape (support.create_fleet_event), its
    XML-derived lists drawn in either form, then mutated."""
    groups = draw(st.lists(st.lists(unknown_ids, min_size=1, max_size=3), max_size=3))
    detail = create_fleet_event(
        groups, tags=draw(st.none() | st.dictionaries(any_text, any_text, max_size=3)),
        errors=draw(st.lists(any_text, max_size=2)),
        single_as_element=draw(st.booleans()))["detail"]
    for _ in range(draw(st.sampled_from([0, 1, 2, 4]))):
        path = draw(st.sampled_from([()] + paths(detail)))
        action = draw(st.sampled_from(["delete", "replace", "add"]))
        if action == "delete" and not path:
            action = "replace"
        detail = mutate(detail, path, action, draw(json_values | unknown_ids))
    return detail


@fuzz_settings(100)  # the costliest records to draw: 7 ms each
@given(record=create_fleet_records())
def test_the_policy_acts_on_no_instance_broom_does_not_read_from_a_create_fleet_record(
        record):
    """Whatever a CreateFleet record holds, every instance id c7n extracts with the
    shipped policy's ``ids`` is one Broom reads as launched (or c7n gets nothing it can
    use: the handler refuses non-string ids); Broom's readers never raise."""
    launched = events.launched_instances(record)
    tags = events.request_tags(record)
    assert all(type(i) is str and i.startswith("i-") for i in launched)
    assert all(type(k) is str and type(v) is str for k, v in tags.items())
    if not isinstance(record, dict) or record.get("eventName") != "CreateFleet":
        return
    record = dict(record, eventSource="ec2.amazonaws.com")
    [data] = policy_file("ec2-tags.yml")["policies"]
    extracted = CloudWatchEvents.get_ids({"detail": record}, data["mode"]) or []
    usable = [i for i in extracted if isinstance(i, str) and i.startswith("i-")]
    assert set(usable) <= set(launched) or events.unusable_ids(extracted)


@fuzz_settings(250)
@given(ids=st.lists(instance_id_values | unknown_ids, max_size=6))
def test_unusable_ids_accepts_exactly_strings_with_well_formed_instance_ids(ids):
    reason = events.unusable_ids(ids)
    usable = all(isinstance(i, str) and (not i.startswith("i-") or re.fullmatch(
        r"i-([0-9a-f]{8}|[0-9a-f]{17})", i)) for i in ids)
    assert (reason is None) == usable
    if reason:
        assert type(reason) is str and reason.isascii() and one_line(reason)


@fuzz_settings(250)
@given(value=json_values)
def test_text_is_always_a_string(value):
    assert type(events.text(value)) is str


# Integers too long for str() (Python's 4300-digit limit): hypothesis cannot even
# print them, so they are checked here.
@pytest.mark.parametrize("value", [10 ** 5000, -(10 ** 5000)], ids=["huge", "-huge"])
def test_text_of_an_integer_too_long_to_print_is_a_string(value):
    assert type(events.text(value)) is str
    event = {"detail": {"eventName": "RunInstances", "errorCode": value}}
    assert events.skip_reason(event).startswith("the call failed")


@fuzz_settings(250)
@given(event=records)
def test_creator_is_always_a_reportable_one_liner(event):
    """The creator holds what the event recorded; the report renders it inert."""
    creator = identity.creator_from_record(event)
    assert creator.name and creator.identity_type
    line = report.describe_creator(creator)
    assert type(line) is str and line and one_line(line)
    assert_inert(line)


LIVE = list(instances.LIVE_STATES)
resources = st.fixed_dictionaries(
    {"State": st.one_of(st.none(), st.fixed_dictionaries(
        {"Name": st.sampled_from(LIVE + ["shutting-down", "terminated"]) | json_scalars}))},
    optional={
        "Tags": st.lists(st.one_of(
            st.fixed_dictionaries({"Key": st.sampled_from(
                [k for k, _ in fleets.FLEET_TAGS] + ["Code", "Name"]) | any_text,
                "Value": any_text | st.none()}),
            json_scalars), max_size=4) | st.none(),
        "SpotInstanceRequestId": any_text | st.none(),
        "InstanceLifecycle": st.sampled_from(["spot", "scheduled"]) | st.none(),
    })
settings_values = st.builds(
    decisions.Settings,
    enforcement=st.sampled_from(decisions.ENFORCEMENT_MODES),
    cap=st.integers(1, 30),
    fleet_instances=st.sampled_from(decisions.ENFORCEMENT_MODES),
    exempt_principals=st.lists(st.sampled_from(["broom-break-glass", "*:role/ops*",
                                                "arn:aws:iam::*:role/x"]) | any_text,
                               max_size=3).map(tuple),
    exempt_accounts=st.lists(st.sampled_from([ACCOUNT, "111111111111"]),
                             max_size=2).map(tuple))


@fuzz_settings(250)
@given(found=st.lists(resources, max_size=40), user=user_identities,
       account=st.sampled_from([ACCOUNT, "111111111111", ""]), policy=settings_values)
def test_decide_terminates_only_live_unexempted_instances_within_the_cap(
        found, user, account, policy):
    for n, resource in enumerate(found):
        resource["InstanceId"] = "i-%017x" % n
    creator = identity.resolve_creator(user)
    plan = decisions.decide(found, creator, account, policy)
    assert set(plan) == {r["InstanceId"] for r in found}
    doomed = [r for r in found if plan[r["InstanceId"]].terminate]
    assert len(doomed) <= policy.cap
    for r in found:
        decision = plan[r["InstanceId"]]
        assert decision.terminate == (decision.outcome is None)
        if not decision.terminate:
            assert type(decision.outcome.status) is str and decision.outcome.detail
    for r in doomed:
        assert (r.get("State") or {}).get("Name") in instances.LIVE_STATES
        assert policy.enforcement == decisions.ENFORCE
        assert account not in policy.exempt_accounts
        assert principals.exempting(creator, policy.exempt_principals) is None
        if fleets.fleet_of(r):
            assert policy.fleet_instances == decisions.ENFORCE


findings = st.builds(
    report.Finding,
    instance_id=any_text, region=any_text, account_id=any_text, image_id=any_text,
    instance_type=any_text, launch_time=any_text, code_key=any_text,
    code_value=any_text | st.none(),
    reason=st.sampled_from([codes.MISSING, codes.EMPTY, codes.INVALID]) | any_text,
    allowed=st.lists(any_text, max_size=5).map(tuple), event_name=any_text,
    event_time=any_text, event_id=any_text,
    extra=st.dictionaries(any_text, any_text, max_size=3))
# The status is always one of Broom's constants; the detail can quote EC2 or the event.
outcomes = st.builds(report.Outcome, status=st.sampled_from([
    report.TERMINATED, report.FAILED, report.WOULD_TERMINATE, report.EXEMPT, report.HELD,
    report.GONE, report.REPORTED]), detail=any_text)
creators = st.builds(identity.resolve_creator, user_identities)


def one_line(text):
    return "\n" not in text and "\r" not in text


def assert_true_values(attributes):
    """Attributes carry true values: not escaped, only what SNS cannot carry removed."""
    for value in (a["StringValue"] for a in attributes.values()):
        assert value and attribute(value) == value


@fuzz_settings(250)
@given(finding=findings, outcome=outcomes, creator=creators,
       actor=st.sampled_from(["Launched by", "Tagged by", "Untagged by"]))
def test_report_is_well_formed_for_any_finding(finding, outcome, creator, actor):
    body = report.body(finding, outcome, creator, actor)
    assert type(body) is str and body.endswith("\n")
    assert len(body.encode("utf-8")) < report.SNS_LIMIT
    assert sum(line.startswith("Action taken:") for line in body.splitlines()) == 1
    assert_inert(body)
    subject = report.subject(finding, outcome)
    assert subject and len(subject) <= report.SUBJECT_LIMIT and subject.isascii()
    assert subject.isprintable()
    assert_inert(subject)
    attributes = report.attributes(finding, outcome, creator)
    assert len(attributes) <= 10
    assert all(a["DataType"] == "String" for a in attributes.values())
    assert_true_values(attributes)


@fuzz_settings(50)  # up to 12,000 findings each: 12 ms an example
@given(items=st.lists(st.tuples(findings, outcomes), min_size=1, max_size=30),
       copies=st.integers(1, 400), creator=creators)
def test_digest_fits_sns_for_any_findings(items, copies, creator):
    subject, body, attributes = report.digest(items * copies, creator)
    assert len(body.encode("utf-8")) <= report.DIGEST_BUDGET + 4096
    assert subject and len(subject) <= report.SUBJECT_LIMIT and subject.isascii()
    assert attributes["broom.count"]["StringValue"] == str(len(items) * copies)
    assert_inert(subject + "\n" + body)
    assert_true_values(attributes)


# --- the Lambda handler's pre-check: what the fuzzer found ---------------------------

def main_policy_data():
    [data] = policy_file("ec2-tags.yml")["policies"]
    return data


PERIODIC = {
    "name": "broom-periodic", "resource": "aws.ec2",
    "mode": {"type": "periodic", "schedule": "rate(1 hour)",
             "role": "arn:aws:iam::%s:role/broom-lambda" % ACCOUNT,
             "packages": ["c7n_broom"], "handler": "c7n_broom.handler.run"},
    "filters": [{"type": "allowed-codes", "codes": ["LOL"]}],
}


def with_detail(**changes):
    def change(event):
        for key, value in changes.items():
            if value is DROP:
                del event["detail"][key]
            else:
                event["detail"][key] = value
        return event
    return change


def with_ids(*ids):
    def change(event):
        event["detail"]["responseElements"]["instancesSet"]["items"] = [
            {"instanceId": i} for i in ids]
        return event
    return change


DROP = object()
GOOD_ID = "i-0123456789abcdef0"

# Each of these made c7n raise (AttributeError, KeyError, TypeError, botocore's
# UnicodeEncodeError or, on moto, ResponseParserError) when the handler passed it on.
MALFORMED = {
    "event-is-an-array": (lambda e: [e], "the event is an array, not a JSON object"),
    "event-is-a-string": (lambda e: "RunInstances", "the event is a string"),
    "detail-is-null": (lambda e: dict(e, detail=None), "detail is null, not a JSON object"),
    "detail-is-an-array": (lambda e: dict(e, detail=[]), "detail is an array"),
    "no-detail": (lambda e: {k: v for k, v in e.items() if k != "detail"},
                  "no detail: cloudtrail-mode policies need"),
    "bare-cloudtrail-record": (lambda e: e["detail"], "no detail: cloudtrail-mode"),
    "no-event-name": (with_detail(eventName=DROP), "detail.eventName is missing"),
    "event-name-is-an-array": (with_detail(eventName=["RunInstances"]),
                               "detail.eventName is an array, not a string"),
    "no-event-source": (with_detail(eventSource=DROP), "detail.eventSource is missing"),
    "instance-id-is-a-number": (with_ids(GOOD_ID, 5), "resource id 5 is a number"),
    "instance-id-is-an-array": (with_ids([GOOD_ID]), "is an array, not a string"),
    "instance-id-with-nul": (with_ids(GOOD_ID, "i-\x00"),
                             "'i-\\x00' is not an EC2 instance id"),
    "instance-id-with-surrogate": (with_ids("i-\ud800"), "is not an EC2 instance id"),
    "instance-id-huge": (with_ids("i-" + "a" * 100_000), "is not an EC2 instance id"),
    "nested-item-with-a-number-id": (
        lambda e: with_ids()(e) and dict(e, detail=dict(e["detail"], responseElements={
            "instancesSet": {"items": [[{"instanceId": 7}]]}})), "resource id 7"),
}


@pytest.mark.parametrize("mutation, message", MALFORMED.values(), ids=list(MALFORMED))
def test_malformed_event_is_refused_with_a_warning(deployed, handed_over, caplog, mutation,
                                                   message):
    deployed(main_policy_data())
    event = mutation(run_instances_event([GOOD_ID]))
    with caplog.at_level("WARNING", logger="custodian.broom.handler"):
        assert handler.run(event, None) is None
    assert handed_over == []
    assert message in caplog.text


def test_malformed_event_is_refused_before_custodian_has_loaded_config_json(
        handed_over, caplog, monkeypatch, tmp_path):
    """Cold start: c7n reads config.json only once it has the event; Broom reads it too."""
    (tmp_path / "config.json").write_text(json.dumps({"policies": [main_policy_data()]}))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(c7n_handler, "policy_data", None)
    with caplog.at_level("WARNING", logger="custodian.broom.handler"):
        assert handler.run({}, None) is None
    assert handed_over == []
    assert "no detail: cloudtrail-mode policies need" in caplog.text


@pytest.mark.parametrize("event", [
    {}, {"detail-type": "Scheduled Event", "source": "aws.events", "detail": {}},
    {"detail-type": "Scheduled Event", "source": "aws.scheduler", "detail": "{}"},
], ids=["manual-invoke", "eventbridge-rule", "eventbridge-scheduler"])
def test_periodic_function_still_gets_events_that_are_not_cloudtrail_calls(
        deployed, handed_over, event):
    deployed(PERIODIC)
    handler.run(event, None)
    assert handed_over == [event]


def test_well_formed_event_is_handed_to_custodian(deployed, handed_over):
    deployed(main_policy_data())
    event = run_instances_event([GOOD_ID, "i-0123abcd"])
    handler.run(event, None)
    assert handed_over == [event]


# --- the policy layer: the Lambda handler against a small EC2 world (moto) ------------

ALLOWED = ["LOL", "GGG", "BRB", "YLO"]
WORLD_TAGS = {"@compliant-0": {"Code": "LOL"}, "@compliant-1": {"Code": "LOL"},
              "@violator-0": None, "@violator-1": {"Code": "NOPE"}}
GONE = ("shutting-down", "terminated")


class World:
    """Two compliant instances and two violators that events may name (through the
    WORLD tokens), and two untagged "outsiders" that no event ever names."""

    def __init__(self):
        self.ids = {token: launch(tags=tags)[0] for token, tags in WORLD_TAGS.items()}
        self.outsiders = launch(count=2)
        self.inbox = Inbox()

    def resolve(self, value):
        """The event with each token replaced by the instance it stands for now."""
        if value == "@now":
            return now_iso()
        if isinstance(value, str):
            return self.ids.get(value, value)
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if isinstance(value, dict):
            return {k: self.resolve(v) for k, v in value.items()}
        return value

    def violators(self):
        return {i for token, i in self.ids.items() if token.startswith("@violator")}

    def states(self):
        return states(list(self.ids.values()) + self.outsiders)

    def replace(self, gone):
        """Launch a fresh instance for each violator terminated: the world stays the same."""
        for token, instance_id in self.ids.items():
            if instance_id in gone:
                self.ids[token] = launch(tags=WORLD_TAGS[token])[0]


@pytest.fixture
def api_calls(monkeypatch):
    """Every AWS call the handler makes. EC2 answers an id asked twice once; moto
    raises IndexError instead, so repeated ids are dropped before moto sees them."""
    calls = []
    original = BaseClient._make_api_call

    def make_api_call(client, operation, params):
        calls.append((operation, params))
        if operation == "DescribeInstances" and "InstanceIds" in params:
            params = dict(params, InstanceIds=list(dict.fromkeys(params["InstanceIds"])))
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return calls


@pytest.fixture
def dispatched(monkeypatch):
    """Events the Broom handler hands over to c7n, which then runs them."""
    calls = []
    original = c7n_handler.dispatch_event

    def dispatch_event(event, context):
        calls.append(event)
        return original(event, context)
    monkeypatch.setattr(c7n_handler, "dispatch_event", dispatch_event)
    return calls


def strings_in(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from strings_in(v)
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings_in(v)


def touched(calls, instance_ids):
    """Instances named in calls that change something (anything but Describe/List/Get;
    a report's text may quote any id the event held, so Publish is not a change). A
    Security Hub finding changes the instance its resource names: its other fields
    quote the event (a creator's ARN may be any text, an instance id too)."""
    changing = []
    for operation, params in calls:
        if operation.startswith(("Describe", "List", "Get", "Publish")):
            continue
        if operation == "BatchImportFindings":
            params = [r.get("Id", "").rsplit("/", 1)[-1]
                      for f in params.get("Findings", ()) for r in f.get("Resources", ())]
        changing.append(params)
    return {s for params in changing for s in strings_in(params)} & set(instance_ids)


def reported(inbox):
    """Instance ids in the reports published (one per report, or a digest's lines)."""
    found = set()
    for message in inbox.emails():
        attributes = message.get("MessageAttributes", {})
        if "broom.instance_id" in attributes:
            found.add(attributes["broom.instance_id"]["Value"])
        else:
            found.update(re.findall(r"^(i-[0-9a-f]+) ", message["Message"], re.M))
    return found


def expected_terminations(event, world):
    """Violators a well-formed RunInstances event names, unless its creator is exempt
    or its own request tags give the untagged one an allowed code."""
    detail = event["detail"]
    if (detail.get("eventName"), detail.get("eventSource")) != (
            "RunInstances", "ec2.amazonaws.com") or detail.get("errorCode"):
        return set()
    creator = identity.creator_from_record(detail)
    if principals.exempting(creator, ["broom-break-glass"]):
        return set()
    named = set(CloudWatchEvents.get_ids(event, MAIN_MODE)) & world.violators()
    launched = launch_times(named)
    named = {i for i in named if not events.launch_mismatch(detail, launched[i])}
    requested = events.request_tags(detail).get("Code")
    if codes.classify(requested, ALLOWED) is None:
        named.discard(world.ids["@violator-0"])  # the request tagged it: compliant
    return named


def launch_times(instance_ids):
    if not instance_ids:
        return {}
    ec2 = boto3.client("ec2", region_name=REGION)
    return {i["InstanceId"]: i["LaunchTime"]
            for r in ec2.describe_instances(InstanceIds=sorted(instance_ids))["Reservations"]
            for i in r["Instances"]}


MAIN_MODE = main_policy_data()["mode"]


@pytest.fixture
def world(aws, deployed):
    """The EC2 world and the main policy deployed. Built once per test function:
    hypothesis runs every example in the same one (fixtures are not reset between
    examples), and each example puts it back as it found it."""
    deployed(main_policy_data())
    return World()


@pytest.fixture
def quiet_custodian(monkeypatch):
    """c7n's handler logs every event whole at INFO (C7N_DEBUG_EVENT): over thousands
    of examples pytest would hold hundreds of MB of captured log. Warnings stay."""
    monkeypatch.setattr(logging.getLogger("custodian"), "level", logging.WARNING)


@fuzz_settings(30)
@given(template=envelopes())
def test_handler_never_touches_what_the_event_does_not_name(
        world, api_calls, dispatched, quiet_custodian, template):
    """Whatever the event, nothing escapes the handler (but the failure that makes
    Lambda retry a fresh event naming ids EC2 does not show yet), compliant instances and
    instances the event does not name are never touched nor reported, and the
    violators a well-formed launch event names are terminated.

    This is what Lambda runs: Broom's handler, then c7n's dispatch_event with
    config.json's content already loaded (the ``deployed`` fixture), which validates
    the policy and pushes the event.
    """
    event = world.resolve(template)
    api_calls.clear()
    dispatched.clear()

    try:
        handler.run(event, None)
    except invocation.RetryLater as e:  # a fresh event names ids EC2 does not show:
        assert "EC2 does not show" in str(e)  # the invocation fails, Lambda retries it
        note("retried: %s" % e)

    after = world.states()
    gone = {i for i, state in after.items() if state in GONE}
    named = set()
    if dispatched:
        named = set(CloudWatchEvents.get_ids(event, MAIN_MODE)) & world.violators()
    assert gone <= named
    assert touched(api_calls, after) <= named
    assert reported(world.inbox) <= named
    for token in ("@compliant-0", "@compliant-1"):
        assert after[world.ids[token]] == "running"
    assert all(after[i] == "running" for i in world.outsiders)
    if dispatched:
        assert gone == expected_terminations(event, world)
    note("handed to c7n" if dispatched else "refused or skipped")
    note("terminated %d" % len(gone))
    world.replace(gone)


# --- bugs fuzzing found in source.py (fixed): kept as regression tests ----------------

def push_main_policy(event):
    load_policy(main_policy_data()).push(event)


def test_an_instance_named_twice_is_terminated_and_reported_once(inbox, api_calls):
    [violator] = launch()
    push_main_policy(run_instances_event([violator, violator, GOOD_ID]))
    assert states([violator]) == {violator: "terminated"}
    assert [params["InstanceIds"] for operation, params in api_calls
            if operation == "TerminateInstances"] == [[violator]]
    assert len(inbox.emails()) == 1


def test_unknown_ids_are_retried_within_the_lambda_timeout(inbox, fake_clock):
    [violator] = launch()
    push_main_policy(run_instances_event([violator] + ["i-%017x" % n for n in range(20)]))
    assert states([violator]) == {violator: "terminated"}
    assert sum(fake_clock.sleeps) < MAIN_MODE["timeout"]
