"""``broom whatif`` applies the Lambda's tag rule: EC2's tags win over the request's.

The request's tags stand in only for an instance EC2 shows no tags at all for; a
``Code`` deleted while Broom looks (within the policy's ``grace-seconds`` of launch)
is missing, as the Lambda then finds it.
"""
import json

from click.testing import CliRunner

from broom.cli import cli

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
