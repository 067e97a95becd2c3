"""Fleets that relaunch, and events with many instances (mock_aws)."""
import boto3
import pytest

from c7n_broom.actions import CreatorReport
from conftest import launch, load_policy, policy_file, run_instances_event, states

ROOT_VIA_ASG = "event-cloud-trail-run-instances.json"  # Root, invokedBy autoscaling


def main_policy(terminate=None, report=None):
    [data] = policy_file("ec2-tags.yml")["policies"]
    for action in data["actions"]:
        if action["type"] == "safe-terminate":
            action.update(terminate or {})
        if action["type"] == "creator-report":
            action.update(report or {})
    return load_policy(data)


@pytest.fixture
def asg(aws):
    """An untagged Auto Scaling group 'web' with one instance; returns a launcher of more."""
    ec2 = boto3.client("ec2", region_name="us-east-1")
    autoscaling = boto3.client("autoscaling", region_name="us-east-1")
    ec2.create_launch_template(LaunchTemplateName="web-lt", LaunchTemplateData={
        "ImageId": "ami-12345678", "InstanceType": "t3.micro"})
    autoscaling.create_auto_scaling_group(
        AutoScalingGroupName="web", LaunchTemplate={"LaunchTemplateName": "web-lt"},
        MinSize=0, MaxSize=10, DesiredCapacity=0, AvailabilityZones=["us-east-1a"])

    def relaunch(count=1):
        # What the group does: launch with its system tag on the instances.
        return launch(count=count, tags={"aws:autoscaling:groupName": "web"})
    return relaunch


def marker(autoscaling_group="web"):
    tags = boto3.client("autoscaling", region_name="us-east-1").describe_tags(
        Filters=[{"Name": "auto-scaling-group", "Values": [autoscaling_group]}])["Tags"]
    return {t["Key"]: t["Value"] for t in tags}.get("broom:last-report")


def test_report_names_the_group_to_fix(inbox, asg):
    [instance] = asg()
    main_policy().push(run_instances_event([instance], record=ROOT_VIA_ASG))
    assert states([instance]) == {instance: "terminated"}
    [message] = inbox.messages()
    assert "Managed by:     Auto Scaling group web (relaunches what is terminated)" in (
        message["Message"])
    assert "add a Code tag with PropagateAtLaunch to the group" in message["Message"]
    assert "root via autoscaling.amazonaws.com" in message["Message"]
    assert marker() is not None


def test_relaunch_loop_sends_one_report_per_group_per_period(inbox, asg, monkeypatch):
    now = [1_800_000_000.0]
    monkeypatch.setattr(CreatorReport, "clock", staticmethod(lambda: now[0]))
    for minute in range(5):  # the group relaunches every minute
        now[0] += 60
        [instance] = asg()
        main_policy().push(run_instances_event([instance], record=ROOT_VIA_ASG))
        assert states([instance]) == {instance: "terminated"}
    assert len(inbox.messages()) == 1
    now[0] += 3600
    [instance] = asg()
    main_policy().push(run_instances_event([instance], record=ROOT_VIA_ASG))
    assert len(inbox.messages()) == 1


def test_several_instances_of_a_group_in_one_event_make_one_report(inbox, asg):
    instances = asg(count=3)
    main_policy().push(run_instances_event(instances, record=ROOT_VIA_ASG))
    [message] = inbox.messages()
    assert "Also in group:" in message["Message"]
    for instance in instances:
        assert instance in message["Message"]


def test_fleet_instances_can_be_left_to_their_owner(inbox, asg):
    [instance] = asg()
    main_policy(terminate={"fleet-instances": "report-only"}).push(
        run_instances_event([instance], record=ROOT_VIA_ASG))
    assert states([instance]) == {instance: "running"}
    [message] = inbox.messages()
    assert "fleet instances are only reported (Auto Scaling group web)" in message["Message"]
    assert message["Subject"].startswith("Broom would terminate")


def test_instances_outside_fleets_are_still_reported_one_by_one(inbox, asg):
    [grouped] = asg()
    loose = launch(count=2)
    main_policy().push(run_instances_event([grouped] + loose))
    reported = sorted(m["MessageAttributes"]["broom.instance_id"]["Value"]
                      for m in inbox.messages())
    assert reported == sorted([grouped] + loose)


def test_many_instances_in_one_event_arrive_as_one_digest(inbox):
    ids = launch(count=25)
    main_policy(terminate={"max-terminations": 30}).push(run_instances_event(ids))
    assert set(states(ids).values()) == {"terminated"}
    [message] = inbox.messages()
    assert message["Subject"] == "Broom: 25 instances without an allowed Code in us-east-1"
    assert all(i in message["Message"] for i in ids)
    assert "terminated: 25" in message["Message"]
    assert message["MessageAttributes"]["broom.count"]["Value"] == "25"


def test_a_500_instance_launch_is_held_by_the_cap_and_reported_within_sns_limits(inbox):
    ids = launch(count=500)
    main_policy().push(run_instances_event(ids))
    assert set(states(ids).values()) == {"running"}
    [message] = inbox.messages()
    assert len(message["Message"].encode("utf-8")) < 256 * 1024
    assert "held back from terminating: 500" in message["Message"]
    assert "500 instances to terminate in one event exceed the cap of 20" in message[
        "Message"]
    assert sum(i in message["Message"] for i in ids) == 500
