"""End to end: the sweep (policies/ec2-tags-sweep.yml) deployed per region with the stock
`custodian run` on moto's server, then its published archive run the way Lambda runs a
schedule's invocation.

moto has no CloudTrail LookupEvents: in the archive run every lookup fails, which is
also how a sweep without cloudtrail:LookupEvents behaves (creators "not known yet",
violators still reported). Attribution itself is tested on botocore's Stubber in
tests/unit/test_lookup.py and tests/unit/test_sweep.py.
"""
import json
import uuid
from datetime import datetime, timezone

import pytest
import yaml

from broom.local.aws import create_lambda_role, create_state_table
from broom.local.deploy import custodian_run, execution_env, published
from broom.local.lambda_runner import run_archive

from e2e_support import (
    OTHER_REGION,
    function_name,
    launch_trio,
    policy_data,
    problems,
    server_inbox,
    stock,
    write_policy,
)
from support import ACCOUNT, POLICIES, REGION, report_validator, states

POLICY_FILE = POLICIES / "ec2-tags-sweep.yml"
POLICY = policy_data(POLICY_FILE.name)
FUNCTION = function_name(POLICY)
REGIONS = (REGION, OTHER_REGION)
SCHEMA = report_validator()


@pytest.fixture(scope="module")
def deployed(local_aws, tmp_path_factory):
    """The shipped sweep, deployed by the stock `custodian run` in two regions."""
    local_aws.reset()
    create_lambda_role(local_aws)
    for region in REGIONS:
        create_state_table(local_aws.client("dynamodb", region=region))
    custodian_run(POLICY_FILE, tmp_path_factory.mktemp("deploy"), REGIONS, local_aws.env())
    return local_aws


def scheduled_event(region, rule_arn):
    """What an EventBridge schedule delivers to the function."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event",
            "source": "aws.events", "account": ACCOUNT,
            "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": region, "resources": [rule_arn], "detail": {}}


def test_custodian_run_deploys_one_hourly_scheduled_function_per_region(deployed):
    for region in REGIONS:
        function = deployed.client("lambda", region=region).get_function(
            FunctionName=FUNCTION)["Configuration"]
        events = deployed.client("events", region=region)
        [rule] = events.list_rules(NamePrefix=FUNCTION)["Rules"]
        [target] = events.list_targets_by_rule(Rule=rule["Name"])["Targets"]

        assert function["Handler"] == "c7n_broom.handler.run"
        assert function["Timeout"] == POLICY["mode"]["timeout"]
        assert rule["ScheduleExpression"] == "rate(1 hour)"  # the var is unset
        assert "EventPattern" not in rule
        assert rule["State"] == "ENABLED"
        assert target["Arn"] == function["FunctionArn"]


def deploy_copy(aws, tmp_path, **changes):
    """A copy of the sweep deployed in REGION: moto's instances are all just launched,
    so the copy leaves none to the event path (instance-age 0)."""
    data = json.loads(json.dumps(POLICY))
    data["name"] = "broom-sweep-e2e-%s" % uuid.uuid4().hex[:6]
    for f in data["filters"]:
        if f.get("type") == "instance-age":
            f["minutes"] = 0
    for action in data["actions"]:
        action.update(changes.get(action["type"], {}))
        for key in [k for k, v in action.items() if v is None]:  # None: removed
            del action[key]
    path = write_policy(tmp_path / "sweep.yml", data)
    custodian_run(path, tmp_path / "out", [REGION], aws.env())
    return function_name(data)


def run_deployed(aws, name):
    config, archive = published(aws, name, REGION)
    rule = aws.client("events").describe_rule(Name=name)
    return run_archive(archive, config["Handler"], scheduled_event(REGION, rule["Arn"]),
                       env=execution_env(aws, config, REGION), timeout=config["Timeout"],
                       function_name=name, memory_mb=config["MemorySize"])


def test_the_deployed_sweep_reports_pre_existing_violators_and_terminates_none(
        deployed, tmp_path):
    ec2 = deployed.client("ec2")
    inbox = server_inbox(deployed)
    instances = launch_trio(ec2)
    name = deploy_copy(deployed, tmp_path)

    result = run_deployed(deployed, name)

    assert result.ok, result.logs[-4000:]
    assert set(states(instances.values(), ec2).values()) == {"running"}
    [message] = inbox.emails()
    body = message["Message"]
    assert instances["missing"] in body and instances["invalid"] in body
    assert instances["valid"] not in body
    assert "Outcome:        left alone until its creator is known: 2" in body
    assert "Launched by:  not known yet (CloudTrail lookups failed" in body
    # moto serves no Price List API: the shipped policy's cost line says so.
    assert "Cost:           cost unknown" in body
    document = message["Document"]  # what SQS subscribers got
    SCHEMA.validate(document)
    assert document["kind"] == "sweep" and document["count"] == 2
    assert document["sweep"]["creators"] == {"found": 0, "unknown": 0, "pending": 2}
    assert {i["sweep"]["creator"]["status"] for i in document["instances"]} == {"fault"}
    ec2.terminate_instances(InstanceIds=list(instances.values()))


def test_an_enforcing_sweep_without_exemptions_terminates_exactly_the_violators(
        deployed, tmp_path):
    ec2 = deployed.client("ec2")
    inbox = server_inbox(deployed)
    instances = launch_trio(ec2)
    # without the shipped quarantine (its timeline: test_e2e_quarantine.py)
    name = deploy_copy(deployed, tmp_path, **{"safe-terminate": {
        "enforcement": "enforce", "exempt-principals": [], "quarantine": None}})

    result = run_deployed(deployed, name)

    assert result.ok, result.logs[-4000:]
    assert states(instances.values(), ec2) == {
        instances["valid"]: "running", instances["missing"]: "terminated",
        instances["invalid"]: "terminated"}
    [message] = inbox.emails()
    assert "Outcome:        terminated: 2" in message["Message"]
    rows = [line for line in message["Message"].splitlines() if line.startswith("  i-")]
    assert len(rows) == 2 and all("running" not in line for line in rows), rows
    assert {i["sweep"]["state"] for i in message["Document"]["instances"]} <= {
        "shutting-down", "terminated"}
    ec2.terminate_instances(InstanceIds=[instances["valid"]])


def test_c7n_org_sets_each_accounts_schedule_from_its_var(deployed, tmp_path):
    hourly, six_hourly = "444444444444", "666666666666"
    accounts = tmp_path / "accounts.yml"
    accounts.write_text(yaml.safe_dump({"accounts": [
        {"account_id": hourly, "name": "hourly", "regions": [REGION],
         "role": "arn:aws:iam::%s:role/broom-deployer" % hourly},
        {"account_id": six_hourly, "name": "six-hourly", "regions": [REGION],
         "role": "arn:aws:iam::%s:role/broom-deployer" % six_hourly,
         "vars": {"broom_sweep_schedule": "rate(6 hours)"}}]}))
    for account in (hourly, six_hourly):
        create_lambda_role(deployed, account=account)
    (tmp_path / "cache").mkdir()

    completed = stock("c7n-org", [
        "run", "-c", accounts, "-s", tmp_path / "out", "-u", POLICY_FILE,
        "--cache-period", "0", "--cache-path", tmp_path / "cache"],
        dict(deployed.env(), C7N_ORG_PARALLEL="2"))

    assert problems(completed.output) == [], completed.output
    schedules = {account: deployed.client("events", account=account).describe_rule(
        Name=FUNCTION)["ScheduleExpression"] for account in (hourly, six_hourly)}
    assert schedules == {hourly: "rate(1 hour)", six_hourly: "rate(6 hours)"}
