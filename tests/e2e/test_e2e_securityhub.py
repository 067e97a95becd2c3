"""End to end: Security Hub findings and metrics from the archives the stock `custodian`
command publishes, run the way Lambda runs them against moto's server.

A report-only launch policy's archive creates the finding (open, FAILED); the archive of
policies/ec2-tags-fixed.yml, given the CreateTags event that set an allowed Code, marks
it PASSED, which makes Security Hub resolve it. moto stores the imported findings but
does not move ``Workflow.Status`` itself as Security Hub does; the test reads what
Broom imported.
"""
import json

import pytest

from broom.local.aws import create_lambda_role, create_state_table
from broom.local.deploy import custodian_run, invoke_deployed

from e2e_support import function_name, policy_data, server_inbox, write_policy
from support import ACCOUNT, REGION, launch, run_instances_event, tag_event

LAUNCH = dict(policy_data("ec2-tags.yml"), name="broom-ec2-require-code-tag")
FIXED = policy_data("ec2-tags-fixed.yml")


@pytest.fixture(scope="module")
def deployed(local_aws, tmp_path_factory):
    """ec2-tags.yml in report-only mode and ec2-tags-fixed.yml, deployed with the stock
    `custodian run`, and Security Hub enabled in the account."""
    local_aws.reset()
    create_lambda_role(local_aws)
    create_state_table(local_aws.client("dynamodb", region=REGION))
    local_aws.client("securityhub", region=REGION).enable_security_hub()
    folder = tmp_path_factory.mktemp("securityhub")
    launch_policy = json.loads(json.dumps(LAUNCH))
    [terminate] = [a for a in launch_policy["actions"] if a["type"] == "safe-terminate"]
    terminate["enforcement"] = "report-only"
    for name, data in (("launch.yml", launch_policy), ("fixed.yml", FIXED)):
        custodian_run(write_policy(folder / name, data), folder / "out", [REGION],
                      local_aws.env())
    return local_aws


def findings(aws):
    client = aws.client("securityhub", region=REGION)
    return {f["Id"]: f for f in client.get_findings()["Findings"]}


def emf_lines(logs):
    return [json.loads(line) for line in logs.splitlines()
            if line.startswith("{") and '"_aws"' in line]


def test_the_published_archives_create_a_finding_and_resolve_it_once_the_code_is_fixed(
        deployed):
    inbox = server_inbox(deployed)
    ec2 = deployed.client("ec2", region=REGION)
    [instance] = launch(ec2=ec2, tags={"Code": "NOPE"})
    launched = run_instances_event([instance], tags={"Code": "NOPE"})["detail"]

    created = invoke_deployed(deployed, function_name(LAUNCH), launched, REGION)

    assert created.ok, created.logs[-4000:]
    [report] = inbox.emails()
    assert instance in report["Subject"]
    finding = findings(deployed)["broom/%s/%s/%s/code-tag" % (REGION, ACCOUNT, instance)]
    assert (finding["Compliance"], finding["RecordState"], finding["Workflow"]) == (
        {"Status": "FAILED"}, "ACTIVE", {"Status": "NOTIFIED"})
    assert finding["ProductFields"]["broom/outcome"] == "would-terminate"
    assert finding["Resources"][0]["Id"] == "arn:aws:ec2:%s:%s:instance/%s" % (
        REGION, ACCOUNT, instance)
    # The metrics of that run, as CloudWatch reads them from the function's log.
    assert {(d["Policy"], d.get("Outcome")): d.get("Violations", d.get("Judged"))
            for d in emf_lines(created.logs)} == {
        (LAUNCH["name"], None): 1, (LAUNCH["name"], "would-terminate"): 1}

    ec2.create_tags(Resources=[instance], Tags=[{"Key": "Code", "Value": "LOL"}])
    tagged = tag_event("create-tags.json", [instance], {"Code": "LOL"})["detail"]
    resolved = invoke_deployed(deployed, function_name(FIXED), tagged, REGION)

    assert resolved.ok, resolved.logs[-4000:]
    [after] = findings(deployed).values()
    assert after["Id"] == finding["Id"]
    assert after["Compliance"] == {"Status": "PASSED"}
    assert after["CreatedAt"] == finding["CreatedAt"]
    assert after["ProductFields"]["broom/policy"] == FIXED["name"]
    assert "Fixed by alice@example.com" in after["Description"]
    assert inbox.emails() == []  # resolving a finding reports nothing
