"""`broom uninstall` on moto's server, after a real `custodian run` deploy of the event
policy and the sweep in two regions: it removes the functions, their rules, targets
and permissions, the pending re-check schedules aimed at them (and their log groups on
request), says what it removed, and leaves everything else alone."""
import json
import subprocess
from datetime import datetime, timedelta, timezone

import pytest

from broom.local.aws import create_lambda_role
from broom.local.deploy import custodian_run

from e2e_support import BIN
from support import ACCOUNT, POLICIES

REGIONS = ("us-east-1", "eu-west-1")
EVENTS = POLICIES / "ec2-tags.yml"
SWEEP = POLICIES / "ec2-tags-sweep.yml"
FUNCTIONS = ("custodian-broom-ec2-require-code-tag", "custodian-broom-ec2-sweep-code-tag")


def uninstall(aws, *args):
    return subprocess.run([str(BIN / "broom"), "uninstall", "--policy", str(EVENTS),
                           "--policy", str(SWEEP), *args],
                          capture_output=True, text=True, env=aws.env(), timeout=300)


def deployed_state(aws):
    """What exists, per region: functions, rules (with targets), re-check schedules,
    log groups, of Broom and of others."""
    state = {}
    for region in REGIONS:
        events = aws.client("events", region=region)
        rules = {r["Name"]: len(events.list_targets_by_rule(Rule=r["Name"])["Targets"])
                 for r in events.list_rules()["Rules"]}
        state[region] = {
            "functions": sorted(f["FunctionName"] for f in aws.client(
                "lambda", region=region).list_functions()["Functions"]),
            "rules": rules,
            "schedules": sorted(s["Name"] for s in aws.client(
                "scheduler", region=region).list_schedules()["Schedules"]),
            "log groups": sorted(g["logGroupName"] for g in aws.client(
                "logs", region=region).describe_log_groups()["logGroups"]),
        }
    return state


def schedule(aws, region, name, target):
    aws.client("scheduler", region=region).create_schedule(
        Name=name, ScheduleExpression="at(%s)" % (datetime.now(timezone.utc) + timedelta(
            hours=1)).strftime("%Y-%m-%dT%H:%M:%S"),
        FlexibleTimeWindow={"Mode": "OFF"},
        Target={"Arn": target, "RoleArn": "arn:aws:iam::%s:role/broom-scheduler" % ACCOUNT,
                "Input": json.dumps({"held": ["i-0123456789abcdef0"]})})


@pytest.fixture
def deployed(fresh_aws, tmp_path):
    create_lambda_role(fresh_aws)
    for policy in (EVENTS, SWEEP):
        custodian_run(policy, tmp_path / policy.stem, REGIONS, fresh_aws.env())
    for region in REGIONS:
        arn = "arn:aws:lambda:%s:%s:function:%s" % (region, ACCOUNT, FUNCTIONS[0])
        schedule(fresh_aws, region, "broom-recheck-%s-0" % region, arn)
        # Someone else's: another function's schedule, another function, its log group.
        schedule(fresh_aws, region, "broom-recheck-not-ours-0",
                 "arn:aws:lambda:%s:%s:function:other" % (region, ACCOUNT))
        logs = fresh_aws.client("logs", region=region)
        for name in FUNCTIONS + ("other",):
            logs.create_log_group(logGroupName="/aws/lambda/%s" % name)
    return fresh_aws


def test_dry_run_lists_everything_and_removes_nothing(deployed):
    before = deployed_state(deployed)
    assert before["us-east-1"]["functions"] == sorted(FUNCTIONS)

    result = uninstall(deployed, "--region", REGIONS[0], "--region", REGIONS[1],
                       "--dry-run", "--log-groups")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for region in REGIONS:
        for name in FUNCTIONS:
            assert "would remove %s function %s (1 invoke permission(s))" % (
                region, name) in lines
            assert "would remove %s rule %s (1 target(s))" % (region, name) in lines
            assert "would remove %s log group /aws/lambda/%s" % (region, name) in lines
        assert "would remove %s schedule broom-recheck-%s-0 (group default)" % (
            region, region) in lines
    assert lines[-1] == "%s (us-east-1, eu-west-1): 14 to remove, 0 failed (dry run: " \
                        "nothing changed)" % ACCOUNT
    assert deployed_state(deployed) == before


def test_uninstall_removes_brooms_functions_rules_schedules_and_log_groups_only(deployed):
    result = uninstall(deployed, "--region", REGIONS[0], "--region", REGIONS[1],
                       "--log-groups")

    assert result.returncode == 0, result.stderr
    assert "removed us-east-1 function custodian-broom-ec2-sweep-code-tag" in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "%s (us-east-1, eu-west-1): 14 removed, 0 failed" % ACCOUNT)
    for region, found in deployed_state(deployed).items():
        assert found == {"functions": [], "rules": {},
                         "schedules": ["broom-recheck-not-ours-0"],
                         "log groups": ["/aws/lambda/other"]}, region

    again = uninstall(deployed, "--region", REGIONS[0], "--region", REGIONS[1])
    assert again.returncode == 0, again.stderr
    assert again.stdout.splitlines() == [
        "%s (us-east-1, eu-west-1): 0 removed, 0 failed" % ACCOUNT]


def test_uninstall_keeps_log_groups_unless_asked_and_finishes_a_half_done_removal(deployed):
    """A run that died after deleting the function (its rule is left) is finished by
    running again."""
    deployed.client("lambda", region=REGIONS[0]).delete_function(FunctionName=FUNCTIONS[0])

    result = uninstall(deployed, "--region", REGIONS[0])

    assert result.returncode == 0, result.stderr
    assert "removed us-east-1 rule %s (1 target(s))" % FUNCTIONS[0] in result.stdout
    found = deployed_state(deployed)[REGIONS[0]]
    assert found["functions"] == [] and found["rules"] == {}
    assert "/aws/lambda/%s" % FUNCTIONS[0] in found["log groups"]
    assert deployed_state(deployed)[REGIONS[1]]["functions"] == sorted(FUNCTIONS)
