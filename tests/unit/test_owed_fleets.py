"""What EC2 Fleet launches owe: one obligation per launch, never one for all of them
(mock_aws)."""
import boto3

from c7n_broom import invocation, owed, state

from support import (
    REGION,
    create_fleet_event,
    launch_fleet,
    load_policy,
    policy_file,
    run_instances_event,
    states,
)

POLICY = "broom-ec2-require-code-tag"


class Context:
    invoked_function_arn = "arn:aws:lambda:%s:123456789012:function:broom" % REGION

    def get_remaining_time_in_millis(self):
        return 60_000


def main_policy():
    [data] = policy_file("ec2-tags.yml")["policies"]
    return load_policy(data)


def test_a_fleet_launch_is_not_left_to_an_invocation_working_on_another_one(
        inbox, state_table):
    """Before: every fleet launch shared one obligation (``fleet-launch``), so while
    one invocation worked on a fleet, another fleet's launch was taken for the same
    event: nothing terminated, nothing reported, the invocation succeeded."""
    [first] = launch_fleet()
    [second] = launch_fleet()
    table = state.StateTable(None, REGION)
    table._client = boto3.client("dynamodb", region_name=REGION)
    invocation.start(Context())
    working = owed.begin(table, POLICY, owed.event_key(create_fleet_event([[first]])))
    assert not working.busy  # another invocation, still at work on the first fleet

    main_policy().push(create_fleet_event([[second]]))

    assert states([second]) == {second: "terminated"}
    assert [m["MessageAttributes"]["broom.instance_id"]["Value"]
            for m in inbox.emails()] == [second]


def test_both_records_of_one_fleet_launch_share_its_key():
    [a, b] = ["i-0aaaaaaaaaaaaaaaa", "i-0bbbbbbbbbbbbbbbb"]
    create = create_fleet_event([[b, a]])
    by_fleet = run_instances_event([a, b])
    by_fleet["detail"]["userIdentity"] = dict(
        create["detail"]["userIdentity"], invokedBy="ec2fleet.amazonaws.com")
    assert owed.event_key(create) == owed.event_key(by_fleet) == "fleet-launch#" + a
    assert owed.event_key(create) != owed.event_key(create_fleet_event([[b]]))
