"""security-hub-finding in the sweep (pull mode, mock_aws): the violators' findings, and
Broom's open findings on instances the sweep no longer finds in violation settled:
archived when gone, PASSED when their Code is allowed now."""
from datetime import timedelta

import boto3

from support import ACCOUNT, REGION, launch, load_policy, policy_file

DAYS = timedelta(days=3)


def sweep_policy(variables=None):
    [data] = policy_file("ec2-tags-sweep.yml")["policies"]
    del data["mode"]
    return load_policy(data, variables=variables)


def findings():
    client = boto3.client("securityhub", region_name=REGION)
    return {f["Id"].split("/")[3]: f for f in client.get_findings()["Findings"]}


def old(aged, **tags):
    [instance] = launch(tags=tags or None)
    aged.ages[instance] = DAYS
    return instance


def test_the_sweep_files_its_violators_and_settles_fixed_and_gone_ones(aged, trail, inbox,
                                                                      state_table):
    boto3.client("securityhub", region_name=REGION).enable_security_hub()
    fixed, gone, still = old(aged), old(aged), old(aged, Code="NOPE")
    trail.launched([fixed, gone, still])
    sweep_policy().run()  # report-only: all three stay, open
    first = findings()
    assert set(first) == {fixed, gone, still}
    assert {f["Compliance"]["Status"] for f in first.values()} == {"FAILED"}
    assert {f["RecordState"] for f in first.values()} == {"ACTIVE"}
    assert first[still]["ProductFields"]["broom/policy"] == "broom-ec2-sweep-code-tag"
    inbox.emails()

    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.create_tags(Resources=[fixed], Tags=[{"Key": "Code", "Value": "GGG"}])
    ec2.terminate_instances(InstanceIds=[gone])
    trail.launched([still])
    sweep_policy().run()

    after = findings()
    assert after[fixed]["Compliance"]["Status"] == "PASSED"
    assert after[fixed]["CreatedAt"] == first[fixed]["CreatedAt"]
    assert after[gone]["RecordState"] == "ARCHIVED"
    assert after[gone]["ProductFields"]["broom/outcome"] == "already-gone"
    assert (after[still]["Compliance"]["Status"], after[still]["RecordState"]) == (
        "FAILED", "ACTIVE")


def test_a_young_violator_the_sweep_did_not_judge_keeps_its_open_finding(aged, trail, inbox,
                                                                          state_table):
    """Opened by the event path (report-only), then not judged by the sweep (younger
    than its 15 minutes): still breaking the rule, so left open."""
    from support import run_instances_event
    boto3.client("securityhub", region_name=REGION).enable_security_hub()
    [young] = launch(tags={"Code": "NOPE"})
    [data] = policy_file("ec2-tags.yml")["policies"]
    load_policy(data, variables={"broom_enforcement": "report-only"}).push(
        run_instances_event([young], tags={"Code": "NOPE"}))
    sweep_policy().run()

    finding = findings()[young]
    assert (finding["Compliance"]["Status"], finding["RecordState"]) == ("FAILED", "ACTIVE")
    assert finding["ProductFields"]["broom/policy"] == "broom-ec2-require-code-tag"
    assert finding["AwsAccountId"] == ACCOUNT
