"""``broom whatif`` applies the Lambda's tag rule: EC2's tags win over the request's.

The request's tags stand in only for an instance EC2 shows no tags at all for; a
``Code`` deleted while Broom looks (within the policy's ``grace-seconds`` of launch)
is missing, as the Lambda then finds it.
"""
import json

from click.testing import CliRunner

from broom.cli import cli

from support import delete_tags as delete_ec2_tags
from support import launch, load_policy, policy_file, run_instances_event, states
from trail import create_tags, delete_tags, instance_id, log_file, run_instances


def verdicts(tmp_path):
    result = CliRunner().invoke(cli, ["whatif", "--json", "--no-progress", str(tmp_path)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return {i["instance_id"]: (i["verdict"], i["action"])
            for launch in json.loads(result.stdout)["launches"] for i in launch["instances"]}


def test_a_requested_code_deleted_right_after_launch_is_missing(tmp_path):
    """Before: the request's Code=LOL made it compliant though EC2 showed it without."""
    i = instance_id()
    log_file(tmp_path, [run_instances([i], 0, tags={"Code": "LOL", "Name": "web"}),
                        delete_tags([i], ["Code"], 2)])
    assert verdicts(tmp_path)[i] == ("violation", "terminate")


def test_deleting_every_tag_right_after_launch_leaves_the_request_standing_in(tmp_path):
    """EC2 shows no tags at all: the Lambda takes the request's (the tag-change policy
    sees the DeleteTags)."""
    i = instance_id()
    log_file(tmp_path, [run_instances([i], 0, tags={"Code": "LOL", "Name": "web"}),
                        delete_tags([i], None, 2)])
    assert verdicts(tmp_path)[i] == ("compliant", "none")


def test_a_code_deleted_after_the_grace_period_is_the_tag_change_policys(tmp_path):
    i = instance_id()
    log_file(tmp_path, [run_instances([i], 0, tags={"Code": "LOL", "Name": "web"}),
                        delete_tags([i], ["Code"], 60)])
    assert verdicts(tmp_path)[i] == ("compliant", "none")


def test_a_code_set_again_after_its_deletion_within_grace_counts(tmp_path):
    i, j = instance_id(), instance_id()
    log_file(tmp_path, [
        run_instances([i], 0, tags={"Code": "LOL", "Name": "web"}),
        delete_tags([i], ["Code"], 2), create_tags([i], {"Code": "GGG"}, 4),
        run_instances([j], 0, tags={"Name": "db"}),
        create_tags([j], {"Code": "GGG"}, 1), delete_tags([j], ["Code"], 3)])
    found = verdicts(tmp_path)
    assert found[i] == ("compliant", "none")
    assert found[j] == ("violation", "terminate")


def test_the_request_does_not_stand_in_when_ec2_reports_other_tags(tmp_path):
    """EC2 reported the instance's tags in its response, without a Code: missing."""
    i = instance_id()
    log_file(tmp_path, [run_instances([i], 0, tags={"Code": "LOL"},
                                      response_tags={"Name": "web"})])
    assert verdicts(tmp_path)[i] == ("violation", "terminate")


def test_whatif_and_the_lambda_agree_on_codes_deleted_right_after_launch(inbox, tmp_path):
    """The shipped policy runs in mock_aws on each launch's event after the Code was
    deleted; whatif reads the same records. A Code deleted among other tags is
    missing to both; deleting the only tag leaves the request standing in for both."""
    policy = load_policy(policy_file()["policies"][0])
    among, = launch(tags={"Code": "LOL", "Name": "web"})
    only, = launch(tags={"Code": "LOL"})
    delete_ec2_tags([among, only], {"Code": "LOL"})
    events = [run_instances_event([among], tags={"Code": "LOL", "Name": "web"}),
              run_instances_event([only], tags={"Code": "LOL"})]
    for number, event in enumerate(events):  # each call its own eventID, as CloudTrail
        event["detail"]["eventID"] = "7a1b2c3d-1a2b-4c3d-8e9f-0a1b2c3d4e5%d" % number
        policy.push(event)
    records = [e["detail"] for e in events]
    deletions = [delete_tags([i], ["Code"], 0) for i in (among, only)]
    for record, deletion in zip(records, deletions, strict=True):
        deletion["eventTime"] = record["eventTime"]
    log_file(tmp_path, records + deletions)

    outcomes = {m["MessageAttributes"]["broom.instance_id"]["Value"]:
                m["MessageAttributes"]["broom.outcome"]["Value"] for m in inbox.messages()}
    assert states([among, only]) == {among: "terminated", only: "running"}
    assert outcomes == {among: "terminated"}
    assert verdicts(tmp_path) == {among: ("violation", "terminate"), only: ("compliant", "none")}
