"""EC2's current tags win over the request's (mock_aws).

A launch request's tags may only stand in for tags EC2 cannot show yet: an instance
with no tags at all in DescribeInstances and DescribeTags just after launch. Once EC2
shows the instance's tags, they are the truth: a Code requested at launch and deleted
right after is missing, and the instance is terminated in an enforcing account.
"""
import boto3

from support import (
    REGION,
    delete_tags,
    launch,
    load_policy,
    policy_file,
    run_instances_event,
    states,
)


def main_policy():
    [data] = policy_file("ec2-tags.yml")["policies"]
    return load_policy(data)


def allowed_codes(policy):
    [f] = [f for f in policy.resource_manager.filters if f.type == "allowed-codes"]
    return f


def test_a_code_requested_then_deleted_is_missing(inbox):
    """Before: the request's Code=LOL made the instance compliant although EC2 showed
    it without a Code, and it ran untagged."""
    [instance] = launch(tags={"Code": "LOL", "Name": "web"})
    delete_tags([instance], {"Code": "LOL"})

    main_policy().push(run_instances_event([instance], tags={"Code": "LOL", "Name": "web"}))

    assert states([instance]) == {instance: "terminated"}


def test_a_code_requested_then_deleted_is_missing_when_only_describe_tags_shows_the_rest(
        aws):
    """DescribeInstances shows no tags yet (just after launch), DescribeTags shows the
    instance's remaining tags: EC2 shows its tags, the request no longer stands in."""
    [instance] = launch(tags={"Code": "LOL", "Name": "web"})
    delete_tags([instance], {"Code": "LOL"})
    f = allowed_codes(main_policy())
    not_shown_yet = {"InstanceId": instance, "Tags": [], "State": {"Name": "running"}}

    [found] = f.process([not_shown_yet], run_instances_event([instance], tags={"Code": "LOL"}))

    assert found["c7n:broom-violation"]["reason"] == "missing"


def test_the_request_stands_in_only_while_ec2_shows_no_tags_at_all(aws):
    [instance] = launch()
    f = allowed_codes(main_policy())
    not_shown_yet = {"InstanceId": instance, "Tags": [], "State": {"Name": "running"}}

    assert f.process([not_shown_yet], run_instances_event([instance], tags={"Code": "LOL"})) == []


def test_ec2s_code_wins_over_the_requests(aws):
    [instance] = launch(tags={"Code": "NOPE"})
    f = allowed_codes(main_policy())
    described = boto3.client("ec2", region_name=REGION).describe_instances(
        InstanceIds=[instance])["Reservations"][0]["Instances"]

    [found] = f.process(described, run_instances_event([instance], tags={"Code": "LOL"}))

    assert found["c7n:broom-violation"]["value"] == "NOPE"
