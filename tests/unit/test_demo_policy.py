"""`broom demo --policy`: which policies the demo can run, refused in one line."""
import pytest

from broom.demo import DemoError, lambda_function_name

from support import POLICIES


@pytest.mark.parametrize("name, runs, instead, not_said", [
    ("ec2-tags-changed.yml", "runs on CreateTags/DeleteTags events",
     "replay recorded CreateTags events through it with broom replay", "schedule"),
    ("ec2-tags-sweep.yml", "runs on a schedule (mode: periodic)",
     "see what it would find with custodian run --dryrun", "CreateTags"),
])
def test_demo_refuses_a_policy_not_run_by_run_instances_naming_those_it_runs(
        name, runs, instead, not_said):
    with pytest.raises(DemoError) as refused:
        lambda_function_name(POLICIES / name)
    message = str(refused.value)
    assert "\n" not in message
    assert runs in message
    assert "policies/ec2-tags.yml or ec2-tags-hub.yml" in message
    assert instead in message and not_said not in message


@pytest.mark.parametrize("name", ["ec2-tags.yml", "ec2-tags-hub.yml"])
def test_demo_runs_the_run_instances_policies(name):
    assert lambda_function_name(POLICIES / name).startswith("custodian-broom-")


def test_a_policy_file_that_is_not_yaml_is_one_line(tmp_path):
    path = tmp_path / "p.yml"
    path.write_text("policies: [\n")
    with pytest.raises(DemoError) as refused:
        lambda_function_name(path)
    assert "\n" not in str(refused.value) and "not a readable policy file" in str(refused.value)
