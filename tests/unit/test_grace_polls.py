"""The wait for a late Code tag (grace-seconds) reads tags after widening pauses:
a violation costs a few DescribeTags calls, and the last read is at the end of the
wait, so a tag set within grace-seconds still counts (fake clock: nothing waits)."""
import boto3
import pytest
from botocore.client import BaseClient

from support import REGION, launch, load_policy, policy_file, run_instances_event, states

GRACE = 10  # policies/ec2-tags.yml


@pytest.fixture
def tag_reads(monkeypatch, fake_clock):
    """When each DescribeTags was made (fake clock, seconds from the first call), and
    ``tag_reads.tag_at``: {instance id: (seconds, Code value)} tagged by then."""
    original = BaseClient._make_api_call

    class Reads(list):
        tag_at = {}
        start = None

    reads = Reads()

    def make_api_call(client, operation, params):
        if reads.start is None:
            reads.start = fake_clock.now
        if operation == "DescribeTags":
            reads.append(fake_clock.now - reads.start)
            for instance_id, (at, value) in list(reads.tag_at.items()):
                if fake_clock.now - reads.start >= at:
                    del reads.tag_at[instance_id]
                    boto3.client("ec2", region_name=REGION).create_tags(
                        Resources=[instance_id], Tags=[{"Key": "Code", "Value": value}])
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return reads


def main_policy():
    [data] = policy_file("ec2-tags.yml")["policies"]
    assert data["filters"][0]["grace-seconds"] == GRACE
    return load_policy(data)


def test_a_violation_costs_three_tag_reads_the_last_at_the_end_of_grace(
        inbox, tag_reads):
    """Before: DescribeTags every 2 seconds, 6 calls for the shipped 10 seconds."""
    [untagged] = launch()
    main_policy().push(run_instances_event([untagged]))
    assert tag_reads == [2, 6, 10]
    assert states([untagged]) == {untagged: "terminated"}
    assert len(inbox.emails()) == 1


def test_a_code_tag_set_within_grace_is_seen_and_the_wait_stops(inbox, tag_reads):
    [late, never] = launch(count=2)
    tag_reads.tag_at[late] = (5, "LOL")
    main_policy().push(run_instances_event([late, never]))
    assert tag_reads == [2, 6, 10]  # the untagged one is still waited for
    assert states([late, never]) == {late: "running", never: "terminated"}


def test_a_tagged_launch_stops_waiting_at_the_first_read_that_shows_it(inbox, tag_reads):
    [late] = launch()
    tag_reads.tag_at[late] = (1, "LOL")
    main_policy().push(run_instances_event([late]))
    assert tag_reads == [2]
    assert states([late]) == {late: "running"}
    assert inbox.emails() == []


def test_a_code_tag_set_just_before_grace_ends_is_seen(inbox, tag_reads):
    [late] = launch()
    tag_reads.tag_at[late] = (GRACE - 0.5, "LOL")
    main_policy().push(run_instances_event([late]))
    assert tag_reads[-1] == GRACE
    assert states([late]) == {late: "running"}
