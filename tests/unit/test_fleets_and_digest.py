"""Fleets that relaunch, and events with many instances (mock_aws)."""
import boto3
import pytest

from c7n_broom.actions import CreatorReport

from support import launch, load_policy, policy_file, run_instances_event, states

ROOT_VIA_ASG = "event-cloud-trail-run-instances.json"  # Root, invokedBy autoscaling
BY_USER = "event-cloud-trail-run-instance-creator.json"  # an IAM user (c7nbot)


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
    [message] = inbox.emails()
    assert "Managed by:     Auto Scaling group web (relaunches what is terminated)" in (
        message["Message"])
    assert "add a Code tag with PropagateAtLaunch to the group" in message["Message"]
    assert "root via autoscaling.amazonaws.com" in message["Message"]
    assert marker() is None  # Broom's state is in its own table, not on the group


def test_relaunch_loop_sends_one_report_per_group_per_period(inbox, asg, state_table,
                                                             monkeypatch):
    now = [1_800_000_000.0]
    monkeypatch.setattr(CreatorReport, "clock", staticmethod(lambda: now[0]))
    for _ in range(5):  # the group relaunches every minute
        now[0] += 60
        [instance] = asg()
        main_policy().push(relaunch_event(instance))
        assert states([instance]) == {instance: "terminated"}
    assert len(inbox.emails()) == 1
    now[0] += 3600
    [instance] = asg()
    main_policy().push(relaunch_event(instance))
    assert len(inbox.emails()) == 1


def relaunch_event(instance, record=ROOT_VIA_ASG):
    """Each relaunch is its own RunInstances call, with its own event id."""
    event = run_instances_event([instance], record=record)
    event["detail"]["eventID"] = "relaunch-%s" % instance
    return event


def test_a_running_fleet_instance_is_never_throttled(inbox, asg, state_table, monkeypatch):
    """Throttling exists for relaunch loops: an instance left running (here: fleet
    instances report-only) is reported whenever its fleet was reported before."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(CreatorReport, "clock", staticmethod(lambda: now[0]))
    [terminated] = asg()
    main_policy().push(relaunch_event(terminated))
    running = []
    for _ in range(3):
        now[0] += 60
        running += asg()
        main_policy(terminate={"fleet-instances": "report-only"}).push(
            relaunch_event(running[-1]))
    assert states(running) == {i: "running" for i in running}
    reported = [m["MessageAttributes"]["broom.instance_id"]["Value"]
                for m in inbox.emails()]
    assert reported == [terminated] + running


def test_only_the_terminated_instances_of_a_group_are_throttled(
        inbox, asg, state_table, protection):
    """One protected instance of the group survives the relaunch: it is reported,
    with its own outcome; the terminated one is part of the loop already reported."""
    [first] = asg()
    main_policy().push(relaunch_event(first))
    assert len(inbox.emails()) == 1
    protected, loose, other = asg(count=3)
    protection.protected.add(protected)
    protection.protected.add(other)
    main_policy(terminate={"force": False}).push(
        run_instances_event([loose, protected, other], record=ROOT_VIA_ASG))
    assert states([protected, loose, other]) == {
        protected: "running", loose: "terminated", other: "running"}
    [message] = inbox.emails()
    assert message["Subject"].startswith("Broom could NOT terminate %s" % protected)
    assert "Also in group:  %s\n" % other in message["Message"]
    assert loose not in message["Message"]


def test_several_instances_of_a_group_in_one_event_make_one_report(inbox, asg):
    instances = asg(count=3)
    main_policy().push(run_instances_event(instances, record=ROOT_VIA_ASG))
    [message] = inbox.emails()
    assert "Also in group:" in message["Message"]
    for instance in instances:
        assert instance in message["Message"]


def test_fleet_instances_can_be_left_to_their_owner(inbox, asg):
    [instance] = asg()
    main_policy(terminate={"fleet-instances": "report-only"}).push(
        run_instances_event([instance], record=ROOT_VIA_ASG))
    assert states([instance]) == {instance: "running"}
    [message] = inbox.emails()
    assert "fleet instances are only reported (Auto Scaling group web)" in message["Message"]
    assert message["Subject"].startswith("Broom would terminate")


def test_instances_outside_fleets_are_still_reported_one_by_one(inbox, asg):
    [grouped] = asg()
    loose = launch(count=2)
    main_policy().push(run_instances_event([grouped] + loose))
    reported = sorted(m["MessageAttributes"]["broom.instance_id"]["Value"]
                      for m in inbox.emails())
    assert reported == sorted([grouped] + loose)


def test_many_instances_in_one_event_arrive_as_one_digest(inbox):
    ids = launch(count=25)
    main_policy(terminate={"max-terminations": 30}).push(run_instances_event(ids))
    assert set(states(ids).values()) == {"terminated"}
    [message] = inbox.emails()
    assert message["Subject"] == "Broom: 25 instances without an allowed Code in us-east-1"
    assert all(i in message["Message"] for i in ids)
    assert "terminated: 25" in message["Message"]
    assert message["MessageAttributes"]["broom.count"]["Value"] == "25"


def test_a_launch_over_the_cap_is_held_and_reported_in_one_digest(inbox):
    """30 instances here; benchmarks/scale.py runs 500 (a third of SNS's 256 KiB)."""
    ids = launch(count=30, tags={"Code": "NOPE"})  # a code not allowed: capped
    main_policy().push(run_instances_event(ids))
    assert set(states(ids).values()) == {"running"}
    [message] = inbox.emails()
    assert len(message["Message"].encode("utf-8")) < 256 * 1024
    assert "held back from terminating: 30" in message["Message"]
    assert "30 instances to terminate in one event exceed the cap of 20" in message[
        "Message"]
    assert sum(i in message["Message"] for i in ids) == 30


# Broom's state is not in tags: what the policed principals can set never silences.

FAR_FUTURE = "99999999999"


def test_a_far_future_marker_tag_on_a_group_does_not_silence_its_reports(inbox, asg):
    """The group's owner (or anyone allowed to tag it) sets broom:last-report."""
    boto3.client("autoscaling", region_name="us-east-1").create_or_update_tags(Tags=[{
        "ResourceId": "web", "ResourceType": "auto-scaling-group",
        "Key": "broom:last-report", "Value": FAR_FUTURE, "PropagateAtLaunch": False}])
    [instance] = asg()
    main_policy().push(run_instances_event([instance], record=ROOT_VIA_ASG))
    assert states([instance]) == {instance: "terminated"}
    [message] = inbox.emails()
    assert "Auto Scaling group web" in message["Message"]
    assert marker() == FAR_FUTURE  # Broom neither reads nor writes it


def test_a_one_time_spot_instance_is_a_plain_instance_whatever_its_request_says(
        inbox, spot):
    """Its launcher tags the request at launch: no fleet, no throttle, no exemption."""
    _, instance = spot.request("one-time", tags={"broom:last-report": FAR_FUTURE})
    main_policy(terminate={"fleet-instances": "report-only"}).push(
        run_instances_event([instance]))
    assert states([instance]) == {instance: "terminated"}
    [message] = inbox.emails()
    assert "Action taken:   terminated" in message["Message"]
    assert "Managed by" not in message["Message"]


def test_a_persistent_spot_request_is_a_fleet_named_from_ec2s_own_record(
        inbox, spot, state_table, monkeypatch):
    """Only a persistent request relaunches what is terminated: its loop is throttled."""
    now = [1_800_000_000.0]
    monkeypatch.setattr(CreatorReport, "clock", staticmethod(lambda: now[0]))
    request, instance = spot.request("persistent")
    main_policy().push(relaunch_event(instance, record=BY_USER))
    assert states([instance]) == {instance: "terminated"}
    [message] = inbox.emails()
    assert "Managed by:     spot request %s (relaunches" % request in message["Message"]
    assert "cancel it, or request again with a Code tag" in message["Message"]
    now[0] += 60
    relaunched = spot.relaunch(request)
    main_policy().push(relaunch_event(relaunched, record=BY_USER))
    assert states([relaunched]) == {relaunched: "terminated"}
    assert inbox.emails() == []
