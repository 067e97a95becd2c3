"""policies/ec2-tags-sweep.yml in pull mode against moto (mock_aws): instances that were
there before Broom, creators from CloudTrail's LookupEvents (botocore's Stubber, as
moto lacks it), one digest per run, report-only unless the account enforces."""
import json
from datetime import timedelta

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import ANY
from c7n.exceptions import PolicyValidationError
from moto.sns.models import sns_backends

from c7n_broom import decisions, lookup, report, sweep
from c7n_broom.cost import Cost
from c7n_broom.cost import unknown as cost_unknown
from c7n_broom.identity import Creator

from support import (
    ACCOUNT,
    REGION,
    Inbox,
    iam_action,
    in_lookup_order,
    launch,
    load_policy,
    lookup_page,
    policy_file,
    report_validator,
    role_identity,
    states,
)

POLICY = "ec2-tags-sweep.yml"
DAYS = timedelta(days=3)
ENFORCE = {"broom_enforcement": "enforce"}
SCHEMA = report_validator()


def sweep_policy(variables=None, mode=None, **terminate_options):
    """The shipped sweep, run in pull mode (or ``mode``) with the given vars, and
    without its quarantine: these tests follow one run's decisions to their end
    (tests/unit/test_quarantine.py takes the shipped quarantine run by run)."""
    [data] = policy_file(POLICY)["policies"]
    if mode is None:
        del data["mode"]
    else:
        data["mode"].update(mode)
    for action in data["actions"]:
        if action["type"] == "safe-terminate":
            action.pop("quarantine")
            action.update(terminate_options)
    return load_policy(data, variables=variables)


def pre_existing(aged, count=1, age=DAYS, **tags):
    """Instances launched ``age`` ago (moto sees them as launched now)."""
    ids = launch(count=count, tags=tags or None)
    for instance_id in ids:
        aged.ages[instance_id] = age
    return ids


def digest(inbox):
    """The run's one report as an e-mail subscriber reads it (``Message``: the text),
    with the JSON document SQS subscribers get (``Document``)."""
    [message] = inbox.emails()
    return message


@pytest.fixture
def violators(aged, inbox):
    """One instance of each kind of violation and one compliant, three days old."""
    return {"missing": pre_existing(aged)[0],
            "invalid": pre_existing(aged, Code="NOPE")[0],
            "empty": pre_existing(aged, Code=" ")[0],
            "compliant": pre_existing(aged, Code="LOL")[0]}


def broken(violators):
    return [violators[k] for k in ("missing", "invalid", "empty")]


# 1. Report-only by default, enforcement per account ----------------------------------

def test_a_sweep_reports_every_violator_in_one_digest_and_terminates_none_by_default(
        violators, trail, inbox, state_table):
    trail.launched(broken(violators))

    sweep_policy().run()

    assert set(states(violators.values()).values()) == {"running"}
    message = digest(inbox)
    body = message["Message"]
    for instance_id in broken(violators):
        assert instance_id in body
    assert violators["compliant"] not in body
    assert "found 3 EC2 instances in us-east-1 (account %s)" % ACCOUNT in body
    assert "New:            3" in body and "Still open:     0" in body
    assert "Outcome:        would terminate: 3" in body
    assert "Creators:       3 found, 0 unknown, 0 still being looked up" in body
    assert body.count("Launched by:  c7nbot via signin.amazonaws.com") == 3
    assert "age 3 d 0 h" in body and "t3.micro" in body and "running" in body
    assert message["Subject"] == "Broom sweep: 3 instances without an allowed Code in " \
        "us-east-1 (3 new)"
    attributes = message["MessageAttributes"]
    assert attributes["broom.kind"]["Value"] == "sweep"
    assert attributes["broom.count"]["Value"] == "3"
    assert attributes["broom.outcome"]["Value"] == "would-terminate"
    assert trail.pending() == 0


def test_one_publish_carries_the_sweep_in_every_format(violators, trail, inbox,
                                                      state_table):
    """E-mail gets the text, SQS the JSON document (valid against the shipped schema),
    and, as the shipped policy says https-format: chatbot, HTTPS gets Chatbot's card."""
    trail.launched(broken(violators))

    sweep_policy().run()

    [envelope] = [message for _, message, *_ in sns_backends[ACCOUNT][REGION].topics[
        inbox.topic_arn].sent_notifications]
    forms = json.loads(envelope)
    assert set(forms) == {"default", "email", "https"}
    document = json.loads(forms["default"])
    SCHEMA.validate(document)
    assert document["kind"] == "sweep" and document["event"] is None
    assert document["sweep"] == {"new": 3, "still_open": 0,
                                 "creators": {"found": 3, "unknown": 0, "pending": 0}}
    listed = {i["instance_id"]: i for i in document["instances"]}
    assert set(listed) == set(broken(violators))
    for entry in listed.values():
        assert entry["sweep"]["new"] is True and entry["sweep"]["state"] == "running"
        assert entry["sweep"]["creator"]["status"] == "found"
        assert entry["sweep"]["creator"]["creator"]["name"] == "c7nbot"
        assert entry["sweep"]["age_seconds"] >= 3 * 86400
        assert entry["outcome"]["status"] == "would-terminate"
    assert forms["email"] == document["text"]
    assert "Broom's sweep found 3 EC2 instances" in forms["email"]
    card = json.loads(forms["https"])
    assert card["source"] == "custom" and "*New:* 3  *Still open:* 0" in card[
        "content"]["description"]
    assert sorted(card["metadata"]["relatedResources"]) == sorted(broken(violators))


def test_an_enforcing_account_has_exactly_the_violators_terminated(
        violators, trail, inbox, state_table):
    trail.launched(broken(violators))

    sweep_policy(ENFORCE).run()

    assert states(violators.values()) == dict(
        {i: "terminated" for i in broken(violators)}, **{violators["compliant"]: "running"})
    received = digest(inbox)
    body = received["Message"]
    assert "Outcome:        terminated: 3" in body
    # Each row shows the state after Broom's actions, in every form.
    rows = [line for line in body.splitlines() if line.startswith("  i-")]
    assert len(rows) == 3
    assert all("  terminated  " in line and "running" not in line for line in rows), rows
    assert {i["sweep"]["state"] for i in received["Document"]["instances"]} == {"terminated"}


def test_young_instances_are_left_to_the_event_path(aged, trail, inbox, state_table):
    [young] = launch()  # launched now: the event path's

    resources = sweep_policy(ENFORCE).run()

    assert resources == [] and states([young]) == {young: "running"}
    assert inbox.messages() == []


# 2. The second sweep: cached creators, still open ------------------------------------

def test_the_second_sweep_makes_no_lookup_and_lists_them_as_still_open(
        violators, trail, inbox, state_table):
    trail.launched(broken(violators))
    sweep_policy().run()
    inbox.messages()
    assert trail.pending() == 0

    sweep_policy().run()  # the Stubber refuses any call not queued

    body = digest(inbox)["Message"]
    assert "New:            0" in body and "Still open:     3" in body
    assert "Still open (3):" in body and "New (" not in body
    assert body.count("Launched by:  c7nbot") == 3


def test_a_new_violator_is_new_beside_those_still_open(violators, aged, trail, inbox,
                                                       state_table):
    trail.launched(broken(violators))
    sweep_policy().run()
    inbox.messages()
    [later] = pre_existing(aged, age=timedelta(hours=2))
    trail.launched([later], role_identity("developers", "carol@example.com"))

    sweep_policy().run()

    message = digest(inbox)
    body = message["Message"]
    assert "New:            1" in body and "Still open:     3" in body
    new_part, still_part = body.split("Still open (3):")
    assert later in new_part and "carol@example.com" in new_part
    assert later not in still_part
    assert message["MessageAttributes"]["broom.new"]["Value"] == "1"


def test_without_the_state_table_creators_are_looked_up_again_and_reported_as_new(
        violators, trail, inbox):
    for _ in range(2):
        trail.launched(broken(violators))
        sweep_policy().run()
        body = digest(inbox)["Message"]
        assert "New:            3" in body
    assert trail.pending() == 0


def test_tags_cannot_make_a_violator_already_reported_nor_name_its_creator(
        violators, trail, inbox, state_table):
    boto3.client("ec2", region_name=REGION).create_tags(
        Resources=[violators["missing"]], Tags=[
            {"Key": "broom:reported", "Value": "2020-01-01"},
            {"Key": "broom:creator", "Value": "somebody-else"}])
    trail.launched(broken(violators))

    sweep_policy().run()

    body = digest(inbox)["Message"]
    assert "New:            3" in body and "somebody-else" not in body


# 3. Exemptions, unknown creators, the fail-safe -----------------------------------------

def test_an_exempt_principals_instance_is_reported_not_terminated(violators, trail, inbox,
                                                                 state_table):
    exempt = violators["missing"]
    trail.launched(broken(violators), lambda i: role_identity(
        "broom-break-glass", "oncall") if i == exempt else None)

    sweep_policy(ENFORCE).run()

    assert states([exempt]) == {exempt: "running"}
    assert states([violators["invalid"]]) == {violators["invalid"]: "terminated"}
    assert "launched by an exempt principal (broom-break-glass)" in digest(inbox)["Message"]


def test_denied_lookups_keep_every_violator_while_there_are_exemptions(
        violators, trail, inbox, state_table):
    trail.refuse("AccessDeniedException")

    sweep_policy(ENFORCE).run()

    assert set(states(broken(violators)).values()) == {"running"}
    body = digest(inbox)["Message"]
    assert "Creators:       0 found, 0 unknown, 3 still being looked up" in body
    assert body.count("Launched by:  not known yet (Broom's role may not call "
                      "cloudtrail:LookupEvents") == 3
    assert body.count("not terminated until Broom knows who launched it (who launched "
                      "it is not known yet") == 3
    assert "left alone until its creator is known: 3" in body


def test_without_exemptions_an_unresolved_creator_does_not_hold_termination(
        violators, trail, inbox, state_table):
    trail.refuse("ThrottlingException", times=lookup.RETRIES + 1)  # then no more calls

    sweep_policy(ENFORCE, **{"exempt-principals": []}).run()

    assert set(states(broken(violators)).values()) == {"terminated"}


def test_a_throttled_lookup_is_tried_again_by_the_next_sweep(violators, trail, inbox,
                                                            state_table):
    trail.refuse("ThrottlingException", times=lookup.RETRIES + 1)  # then no more calls
    sweep_policy(ENFORCE).run()
    body = digest(inbox)["Message"]
    assert "3 still being looked up" in body
    assert body.count("CloudTrail kept throttling the lookups (ThrottlingException)") >= 3

    trail.launched(broken(violators))
    sweep_policy(ENFORCE).run()

    assert set(states(broken(violators)).values()) == {"terminated"}
    assert trail.pending() == 0


def test_the_lookup_budget_leaves_the_rest_pending_and_says_so(violators, trail, inbox,
                                                              state_table):
    [data] = policy_file(POLICY)["policies"]
    del data["mode"]
    [lookups] = [a for a in data["actions"] if a["type"] == "lookup-creators"]
    lookups["max-lookups"] = 1
    first = in_lookup_order(broken(violators))[0]
    trail.launched([first])

    load_policy(data).run()

    body = digest(inbox)["Message"]
    assert "1 found, 0 unknown, 2 still being looked up" in body
    assert "(the next sweep looks them up again)" in body
    assert body.count("Launched by:  not known yet (the 1 CloudTrail lookups of this "
                      "run were used up") == 2


def test_older_than_90_days_the_creator_is_unknown_for_good_and_it_is_still_swept(
        aged, trail, inbox, state_table):
    [old] = pre_existing(aged, age=timedelta(days=120))

    # no LookupEvents call queued: none is made
    sweep_policy(ENFORCE, **{"unknown-creators": "enforce"}).run()

    assert states([old]) == {old: "terminated"}
    body = digest(inbox)["Message"]
    assert "unknown (launched more than 90 days ago" in body
    assert "0 found, 1 unknown, 0 still being looked up" in body


def test_the_shipped_sweep_leaves_instances_of_unknown_creators_to_people(
        aged, trail, inbox, state_table):
    """They may be an exempt principal's: the shipped sweep has unknown-creators:
    report-only."""
    [old] = pre_existing(aged, age=timedelta(days=120))

    sweep_policy(ENFORCE).run()

    assert states([old]) == {old: "running"}
    assert "who launched it is unknown, and such instances are only reported" in digest(
        inbox)["Message"]


# 4. The cap counts everything one sweep would terminate ------------------------------

def test_more_violators_than_the_cap_are_all_held_for_the_next_sweep(aged, trail, inbox,
                                                                     state_table):
    ids = pre_existing(aged, count=4)
    trail.launched(ids)

    sweep_policy(ENFORCE, **{"max-terminations": 3}).run()

    assert set(states(ids).values()) == {"running"}
    body = digest(inbox)["Message"]
    assert "4 instances to terminate in one sweep exceed the cap of 3" in body
    assert sweep.NEXT_SWEEP in body


def test_the_cap_counts_each_creator_over_the_period(aged, trail, inbox, state_table):
    def who(instance_id):
        return role_identity("bob-role" if instance_id in bob else "alice-role", "s")
    first = pre_existing(aged, count=2)
    bob = []
    trail.launched(first, who)
    sweep_policy(ENFORCE, **{"max-terminations": 3}).run()
    assert set(states(first).values()) == {"terminated"}
    inbox.messages()
    alice = pre_existing(aged, count=2)
    bob = pre_existing(aged, count=1)
    trail.launched(alice + bob, who)

    sweep_policy(ENFORCE, **{"max-terminations": 3}).run()

    assert set(states(alice).values()) == {"running"}
    assert states(bob) == {bob[0]: "terminated"}
    assert "with 2 already terminated for the same principal in this period, 2 more " \
        "would exceed the cap of 3" in digest(inbox)["Message"]


# 5. Faults ---------------------------------------------------------------------------

def test_a_failed_publish_fails_the_run_after_terminating_and_reports_again_next_time(
        violators, trail, state_table, monkeypatch):
    trail.launched(broken(violators))
    inbox = Inbox()
    from botocore.client import BaseClient
    original = BaseClient._make_api_call

    def refuse_publish(client, operation, params):
        if operation == "PublishBatch":
            raise ClientError({"Error": {"Code": "AuthorizationError", "Message": "no"}},
                              operation)
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", refuse_publish)

    with pytest.raises(Exception, match="could not be published"):
        sweep_policy(ENFORCE).run()
    assert set(states(broken(violators)).values()) == {"terminated"}
    assert inbox.messages() == []
    monkeypatch.setattr(BaseClient, "_make_api_call", original)
    [item] = [i for i in boto3.client("dynamodb", region_name=REGION).scan(
        TableName="broom-state")["Items"] if violators["missing"] in i["pk"]["S"]]
    assert "attribution" in item and "reported" not in item


# 6. Allowed codes without an event: no tag re-read of settled instances ---------------

def test_pull_mode_reads_no_tags_again_for_instances_older_than_a_few_minutes(
        aged, monkeypatch):
    old = pre_existing(aged, count=3)
    [young] = launch()
    calls = []
    from botocore.client import BaseClient
    original = BaseClient._make_api_call

    def record(client, operation, params):
        if operation == "DescribeTags" and {"Name": "key", "Values": ["Code"]} in params.get(
                "Filters", ()):  # Broom's re-read (c7n's own tag back-fill asks for all)
            calls.append(params)
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    policy = load_policy({"name": "broom-pull", "resource": "aws.ec2", "filters": [
        {"type": "allowed-codes", "codes": ["LOL"]}]})

    found = {r["InstanceId"] for r in policy.run()}

    assert found == set(old) | {young}
    [call] = calls
    assert call["Filters"][0]["Values"] == [young]


# 7. Validation: the schedule, and exemptions need creators ----------------------------

def test_an_unset_schedule_var_means_hourly():
    policy = sweep_policy(mode={})
    assert policy.data["mode"]["schedule"] == "rate(1 hour)"


def test_the_schedule_var_sets_the_schedule():
    policy = sweep_policy({"broom_sweep_schedule": "cron(0 7 * * ? *)"}, mode={})
    assert policy.data["mode"]["schedule"] == "cron(0 7 * * ? *)"


@pytest.mark.parametrize("schedule", ["hourly", "rate(0 hours)", "rate(1 hours)", "{x}y"])
def test_a_schedule_that_is_no_schedule_expression_is_refused_naming_the_var(schedule):
    with pytest.raises(PolicyValidationError, match="broom_sweep_schedule") as error:
        sweep_policy({"broom_sweep_schedule": schedule}, mode={})
    assert "mode.schedule must be an EventBridge schedule expression" in str(error.value)


def test_exemptions_without_an_event_need_lookup_creators_first():
    [data] = policy_file(POLICY)["policies"]
    data["actions"] = [a for a in data["actions"] if a["type"] != "lookup-creators"]
    with pytest.raises(PolicyValidationError, match="add '- type: lookup-creators' before"):
        load_policy(data)


# 8. Pure parts -----------------------------------------------------------------------

def row(instance_id="i-1", cost=None, new=True, status=lookup.FOUND):
    finding = report.Finding(instance_id=instance_id, region=REGION, account_id=ACCOUNT,
                             instance_type="t3.micro", allowed=("LOL",), cost=cost)
    return sweep.Row(finding, report.Outcome(report.WOULD_TERMINATE),
                     lookup.Attribution(status, Creator(name="<@U1> alice")), 90000.0,
                     "running", new, None)


def test_a_cost_shows_only_when_set_and_the_digest_sums_it():
    three_days = Cost(known=True, hourly=0.0104, hours=72, so_far=0.7488, per_month=7.592)
    _, without, _ = sweep.digest([row()], REGION, ACCOUNT)
    _, priced, _ = sweep.digest([row("i-1", three_days), row("i-2", three_days),
                                 row("i-3", cost_unknown("no permission for "
                                                         "pricing:GetProducts"))],
                                REGION, ACCOUNT)

    assert "cost" not in without.lower()
    assert ("Cost:         $0.0104 an hour on demand (t3.micro, Linux/UNIX, us-east-1); "
            "ran 3.0 days: $0.7488 so far; $7.59 a month had it kept running") in priced
    assert "Cost:         cost unknown (no permission for pricing:GetProducts)" in priced
    assert ("Cost:           $1.50 so far, $15.18 a month had they kept running "
            "(on-demand prices); cost unknown for 1 of 3") in priced


def test_creator_names_stay_inert_in_the_text():
    _, body, _ = sweep.digest([row()], REGION, ACCOUNT)
    assert "<@U1>" not in body and "&lt;＠U1&gt; alice" in body


def test_the_text_lists_at_most_the_limit_new_ones_first_and_counts_the_rest():
    rows = [row("i-%017d" % n, new=n % 2 == 0) for n in range(10)]
    _, body, _ = sweep.digest(rows, REGION, ACCOUNT, limit=6)
    listed = [line.split()[0] for line in body.splitlines() if line.startswith("  i-")]
    assert listed == ["i-%017d" % n for n in (0, 2, 4, 6, 8, 1)]
    assert "  ... and 4 more instances (not listed: message size limit)" in body
    _, none_listed, _ = sweep.digest(rows, REGION, ACCOUNT, limit=0)
    assert "New (" not in none_listed and "... and 10 more instances" in none_listed


def test_a_huge_sweep_text_stays_under_the_sns_limit_and_counts_what_is_not_listed():
    rows = [row("i-%017d" % n, new=n % 2 == 0) for n in range(5000)]
    subject, body, attributes = sweep.digest(rows, REGION, ACCOUNT)
    assert len(body.encode("utf-8")) < report.DIGEST_BUDGET + 4096
    assert "more instances (not listed: message size limit)" in body
    assert attributes["broom.count"]["StringValue"] == "5000"


@pytest.mark.parametrize("outcome, described, now, shown", [
    (report.TERMINATED, "running", {"i-1": "shutting-down"}, "shutting-down"),
    (report.TERMINATED, "running", {}, "terminated"),  # EC2 no longer lists it
    (report.FAILED, "running", {"i-1": "running"}, "running"),
    (report.WOULD_TERMINATE, "stopped", {}, "stopped"),
])
def test_a_row_shows_the_state_after_brooms_actions(outcome, described, now, shown):
    assert sweep.state_after(report.Outcome(outcome), described, now, "i-1") == shown


def test_sweep_and_event_paths_decide_through_the_same_function():
    """One creator per instance: the exemption applies to that instance only."""
    resources = [{"InstanceId": i, "State": {"Name": "running"}} for i in ("i-1", "i-2")]
    exempt = Creator(name="x", principal_arn="arn:aws:iam::%s:role/broom-break-glass" %
                     ACCOUNT, arn="arn:aws:sts::%s:assumed-role/broom-break-glass/x" % ACCOUNT,
                     role="broom-break-glass", identity_type="AssumedRole")
    other = Creator(name="y", principal_arn="arn:aws:iam::%s:role/dev" % ACCOUNT,
                    identity_type="AssumedRole")
    settings = decisions.Settings(exempt_principals=("broom-break-glass",))

    found = decisions.decide(resources, other, ACCOUNT, settings,
                             creators={"i-1": exempt, "i-2": other})

    assert found["i-1"].outcome.status == report.EXEMPT
    assert found["i-2"].terminate


# 9. Fleets: who can fix what relaunches them ---------------------------------------

def test_a_group_instance_names_who_set_up_the_group_and_its_launch_template(
        aged, trail, inbox, state_table):
    ec2 = boto3.client("ec2", region_name=REGION)
    template = ec2.create_launch_template(LaunchTemplateName="web", LaunchTemplateData={
        "ImageId": "ami-12345678", "InstanceType": "t3.micro"})["LaunchTemplate"]
    boto3.client("autoscaling", region_name=REGION).create_auto_scaling_group(
        AutoScalingGroupName="web", MinSize=1, MaxSize=1, DesiredCapacity=1,
        AvailabilityZones=["us-east-1a"],
        LaunchTemplate={"LaunchTemplateId": template["LaunchTemplateId"]})
    [member] = [i["InstanceId"] for r in ec2.describe_instances()["Reservations"]
                for i in r["Instances"]]
    aged.ages[member] = DAYS
    tags = {t["Key"] for t in ec2.describe_tags(Filters=[
        {"Name": "resource-id", "Values": [member]}])["Tags"]}
    assert "aws:autoscaling:groupName" in tags
    assert "aws:ec2launchtemplate:id" in tags
    trail.launched([member], role_identity("AWSServiceRoleForAutoScaling", "AutoScaling"))
    [change] = lookup_page(member)["Events"]
    record = dict(json.loads(change["CloudTrailEvent"]), eventName="UpdateAutoScalingGroup",
                  userIdentity=role_identity("platform", "dave@example.com"))
    for resource_name, events in (
            ("web", [dict(change, EventName="UpdateAutoScalingGroup",
                          CloudTrailEvent=json.dumps(record))]),
            (template["LaunchTemplateId"], [])):  # no record: unknown, with the reason
        trail.stubber.add_response("lookup_events", {"Events": events}, {
            "LookupAttributes": [{"AttributeKey": "ResourceName",
                                  "AttributeValue": resource_name}],
            "StartTime": ANY, "EndTime": ANY, "MaxResults": ANY})

    sweep_policy().run()

    body = digest(inbox)["Message"]
    assert "Managed by:   Auto Scaling group web" in body
    assert "Auto Scaling group web last set up by dave@example.com (UpdateAutoScalingGroup)" \
        in body
    assert "AWSServiceRoleForAutoScaling" in body  # who launched it: the service
    assert "launch template %s last set up by unknown (no CreateLaunchTemplate" % (
        template["LaunchTemplateId"]) in body
    assert trail.pending() == 0

    sweep_policy().run()  # cached for a day: no lookup at all
    assert "last set up by dave@example.com" in digest(inbox)["Message"]


def test_every_call_a_sweep_makes_is_a_permission_its_policy_declares(
        violators, trail, inbox, state_table, monkeypatch):
    from botocore.client import BaseClient
    made = set()
    original = BaseClient._make_api_call

    def record(client, operation, params):
        made.add(iam_action(client, operation))
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", record)
    trail.launched(broken(violators))
    policy = sweep_policy(ENFORCE)

    policy.run()

    assert {"cloudtrail:LookupEvents", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem",
            "ec2:TerminateInstances", "sns:Publish"} <= made
    assert made - set(policy.get_permissions()) == set()


def test_any_periodic_policy_with_allowed_codes_gets_the_hourly_default():
    [data] = policy_file(POLICY)["policies"]
    data["actions"] = [{"type": "creator-report",
                        "topic": "arn:aws:sns:{region}:{account_id}:broom-reports"}]
    assert load_policy(data).data["mode"]["schedule"] == "rate(1 hour)"
