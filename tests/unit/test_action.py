"""creator-report and the main policy, pushed a RunInstances event (mock_aws)."""
import boto3
import pytest
from c7n.exceptions import PolicyValidationError

from c7n_broom.actions import ReportDeliveryError

from support import (
    ACCOUNT,
    REGION,
    Inbox,
    create_state_table,
    launch,
    load_policy,
    policy_file,
    run_instances_event,
    states,
)


def main_policy(variables=None):
    [data] = policy_file("ec2-tags.yml")["policies"]
    return load_policy(data, variables=variables)


def test_push_terminates_violators_and_reports_the_creator(inbox):
    [good] = launch(tags={"Code": "LOL"})
    [untagged] = launch()
    [wrong] = launch(tags={"Code": "NOPE"})
    event = run_instances_event([good, untagged, wrong])

    main_policy().push(event)

    assert states([good, untagged, wrong]) == {
        good: "running", untagged: "terminated", wrong: "terminated"}
    messages = {m["MessageAttributes"]["broom.instance_id"]["Value"]: m
                for m in inbox.emails()}
    assert set(messages) == {untagged, wrong}
    body = messages[untagged]["Message"]
    assert "Broom terminated EC2 instance %s in us-east-1" % untagged in body
    assert "Launched by:    c7nbot" in body
    assert "Identity type:  IAMUser" in body
    assert "arn:aws:iam::644160558196:user/c7nbot" in body
    assert "Account:        %s" % ACCOUNT in body
    assert "Image:          ami-12345678" in body
    assert "Instance type:  t3.micro" in body
    assert "Launch time:    20" in body
    assert "Event:          RunInstances at %s" % event["detail"]["eventTime"] in body
    assert "the instance has no Code tag" in body
    assert "Action taken:   terminated" in body
    assert "LOL, GGG, BRB, YLO" in body
    assert '"NOPE" is not an allowed code' in messages[wrong]["Message"]
    assert messages[untagged]["Subject"] == (
        "Broom terminated %s in us-east-1: no Code tag" % untagged)
    attrs = messages[wrong]["MessageAttributes"]
    assert attrs["broom.outcome"]["Value"] == "terminated"
    assert attrs["broom.reason"]["Value"] == "invalid"
    assert attrs["broom.code"]["Value"] == "NOPE"
    assert attrs["broom.creator"]["Value"] == "c7nbot"


def test_second_delivery_of_the_same_event_sends_no_new_report(inbox):
    [untagged] = launch()
    event = run_instances_event([untagged])
    main_policy().push(event)
    assert len(inbox.emails()) == 1
    main_policy().push(event)
    assert inbox.emails() == []


def test_report_says_termination_failed_when_the_instance_survives(inbox, protection):
    """The message never claims a termination EC2 did not do: a protected spot
    instance cannot be forced."""
    [spot] = launch(InstanceMarketOptions={"MarketType": "spot"})
    protection.protected.add(spot)
    main_policy().push(run_instances_event([spot]))
    assert states([spot]) == {spot: "running"}
    [message] = inbox.emails()
    assert "Broom could NOT terminate EC2 instance" in message["Message"]
    assert "termination FAILED" in message["Message"]
    assert "force cannot clear termination protection on spot" in message["Message"]
    assert "terminated" not in message["Subject"].replace("NOT terminate", "")
    assert message["MessageAttributes"]["broom.outcome"]["Value"] == "termination-failed"


def report_only_policy(**options):
    return load_policy({
        "name": "broom-report-only", "resource": "aws.ec2",
        "filters": [{"type": "allowed-codes", "codes": ["LOL"]}],
        "actions": [dict({"type": "creator-report",
                          "topic": "arn:aws:sns:{region}:{account_id}:broom-reports"},
                         **options)]})


def test_pull_mode_report_marks_the_creator_unknown_and_terminates_nothing(inbox):
    [untagged] = launch()
    report_only_policy().run()
    assert states([untagged]) == {untagged: "running"}
    [message] = inbox.emails()
    assert "Launched by:    unknown" in message["Message"]
    assert "Action taken:   none (this policy only reports)" in message["Message"]
    assert "Event:          none" in message["Message"]


def test_report_goes_to_a_topic_in_another_region(aws):
    eu = Inbox(region="eu-west-1")
    [untagged] = launch()
    report_only_policy(topic=eu.topic_arn).run()
    [message] = eu.emails()
    assert untagged in message["Message"]
    assert "Region:         us-east-1" in message["Message"]


def test_topic_override_from_vars_wins_over_the_default_topic(aws):
    default = Inbox()
    other = Inbox(topic_name="team-a-reports")
    [untagged] = launch(tags={"Code": "ABC"})
    main_policy(variables={"broom_topic": other.topic_arn,
                           "broom_codes": "XYZ"}).push(run_instances_event([untagged]))
    assert default.emails() == []
    [message] = other.emails()
    assert '"ABC" is not an allowed code (allowed codes: XYZ)' in message["Message"]


def test_untrusted_strings_cannot_break_the_message_layout(inbox):
    [wrong] = launch(tags={"Code": "X\nAction taken:   nothing"})
    event = run_instances_event([wrong])
    event["detail"]["userIdentity"]["userName"] = "eve\r\nLaunched by: admin"
    main_policy().push(event)
    [message] = inbox.emails()
    lines = message["Message"].splitlines()
    assert [line for line in lines if line.startswith("Action taken:")] == [
        "Action taken:   terminated"]
    [launched_by] = [line for line in lines if line.startswith("Launched by")]
    assert launched_by.startswith("Launched by:    eve\\x0d\\x0aLaunched by: admin")
    assert "\\x0aAction taken:" in message["Message"]


def test_failed_report_still_terminates_and_ends_in_an_error(aws):
    [untagged] = launch()
    missing_topic = "arn:aws:sns:us-east-1:%s:does-not-exist" % ACCOUNT
    policy = main_policy(variables={"broom_topic": missing_topic})
    with pytest.raises(ReportDeliveryError, match="1 of 1 reports could not be published"):
        policy.push(run_instances_event([untagged]))
    assert states([untagged]) == {untagged: "terminated"}


def test_validation_rejects_a_topic_that_is_not_an_sns_arn(aws):
    with pytest.raises(PolicyValidationError, match="'topic' must be an SNS topic ARN"):
        report_only_policy(topic="broom-reports")


def test_validation_rejects_a_bad_topic_override(aws):
    with pytest.raises(PolicyValidationError, match="'topic-override' must be an SNS"):
        report_only_policy(**{"topic-override": "arn:aws:sqs:us-east-1:123456789012:q"})


def test_validation_rejects_a_topic_var_that_is_not_a_string(aws):
    """c7n-org keeps a var's type when the whole string is one placeholder."""
    with pytest.raises(PolicyValidationError, match="'topic-override' must be an SNS"):
        main_policy(variables={"broom_topic": ["arn:aws:sns:us-east-1:123456789012:a"]})


def report_only_main_policy():
    return main_policy(variables={"broom_enforcement": "report-only"})


def test_a_reported_event_tag_set_in_advance_does_not_silence_the_report(inbox):
    """The launcher sets broom:reported-event to the event id at launch."""
    event = run_instances_event(["i-placeholder"])
    [instance] = launch(tags={"broom:reported-event": event["detail"]["eventID"]})
    event = run_instances_event([instance])
    report_only_main_policy().push(event)
    assert states([instance]) == {instance: "running"}
    [message] = inbox.emails()
    assert "Broom would terminate EC2 instance %s" % instance in message["Message"]


def test_repeated_delivery_reports_an_instance_left_running_once(inbox, state_table):
    [instance] = launch()
    event = run_instances_event([instance])
    for _ in range(3):  # EventBridge delivers at least once
        report_only_main_policy().push(event)
    assert states([instance]) == {instance: "running"}
    assert len(inbox.emails()) == 1
    event["detail"]["eventID"] = "another-event-about-it"
    report_only_main_policy().push(event)
    assert len(inbox.emails()) == 1  # read messages are gone: one new report


def test_a_report_that_could_not_be_published_is_sent_on_the_retry(aws, state_table):
    """Claims are given back when SNS refuses: state never silences a report."""
    [instance] = launch()
    event = run_instances_event([instance])
    missing = "arn:aws:sns:us-east-1:%s:does-not-exist" % ACCOUNT
    with pytest.raises(ReportDeliveryError):
        main_policy(variables={"broom_enforcement": "report-only",
                               "broom_topic": missing}).push(event)
    inbox = Inbox()
    report_only_main_policy().push(event)
    assert len(inbox.emails()) == 1


def test_state_table_option_names_the_table(inbox):
    create_state_table("team-broom-state")
    [instance] = launch()
    [data] = policy_file("ec2-tags.yml")["policies"]
    [report] = [a for a in data["actions"] if a["type"] == "creator-report"]
    report["state-table"] = "{broom_state_table}"
    event = run_instances_event([instance])
    for _ in range(2):
        load_policy(data, variables={"broom_enforcement": "report-only",
                                     "broom_state_table": "team-broom-state"}).push(event)
    assert len(inbox.emails()) == 1
    items = boto3.client("dynamodb", region_name=REGION).scan(
        TableName="team-broom-state")["Items"]
    assert [i["pk"]["S"] for i in items] == [
        "owe#broom-ec2-require-code-tag#%s" % event["detail"]["eventID"]]


def test_validation_rejects_a_state_table_that_is_not_a_table_name(aws):
    with pytest.raises(PolicyValidationError, match="'state-table' must be a DynamoDB "
                       "table name"):
        report_only_policy(**{"state-table": "arn:aws:dynamodb:us-east-1:1:table/x"})
