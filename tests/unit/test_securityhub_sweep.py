"""security-hub-finding in the sweep (pull mode, mock_aws): the violators' findings, and
Broom's open findings on instances the sweep no longer finds in violation settled:
archived when gone, PASSED when their Code is allowed now."""
import logging
from datetime import timedelta

import boto3
import pytest
from botocore.stub import Stubber

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


def stub_security_hub(monkeypatch, code, calls):
    """Every Security Hub client the policy makes answers ``calls`` with ``code``, in
    order (botocore's Stubber: moto does not refuse a hub that is not enabled)."""
    real_client = boto3.Session.client
    stubs = []

    def client(session, service, *args, **kwargs):
        made = real_client(session, service, *args, **kwargs)
        if service == "securityhub":
            stub = Stubber(made)
            for call in calls:
                stub.add_client_error(call, code, "Account is not subscribed to AWS "
                                                  "Security Hub")
            stub.activate()
            stubs.append(stub)
        return made
    monkeypatch.setattr(boto3.Session, "client", client)
    return stubs


def hub_warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.name == "custodian.broom.securityhub" and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("code", ["InvalidAccessException", "AccessDeniedException"])
def test_a_sweep_where_security_hub_is_off_or_denied_is_one_warning_and_the_digest_goes_out(
        aged, trail, inbox, state_table, monkeypatch, caplog, code):
    """The sweep both imports and reads findings: Security Hub off is still one line,
    and it does not try to read what it could not write."""
    stubs = stub_security_hub(monkeypatch, code, ["batch_import_findings"])
    violator = old(aged)
    trail.launched([violator])

    with caplog.at_level(logging.WARNING, logger="custodian.broom.securityhub"):
        sweep_policy().run()

    [digest] = inbox.emails()
    assert violator in digest["Message"]
    [warning] = hub_warnings(caplog)
    assert "Security Hub not used in account %s %s (%s)" % (ACCOUNT, REGION, code) in warning
    [stub] = stubs
    stub.assert_no_pending_responses()


def test_a_sweep_that_may_import_but_not_read_files_its_violators_and_says_so_once(
        aged, trail, inbox, state_table, monkeypatch, caplog):
    """A role without securityhub:GetFindings (an older role): the violators are
    filed; the settling is skipped with one warning naming the permission."""
    real_client = boto3.Session.client
    stubs = []

    def client(session, service, *args, **kwargs):
        made = real_client(session, service, *args, **kwargs)
        if service == "securityhub":
            stub = Stubber(made)
            stub.add_response("batch_import_findings",
                              {"FailedCount": 0, "SuccessCount": 1, "FailedFindings": []})
            stub.add_client_error("get_findings", "AccessDeniedException", "not authorized")
            stub.activate()
            stubs.append(stub)
        return made
    monkeypatch.setattr(boto3.Session, "client", client)
    violator = old(aged)
    trail.launched([violator])

    with caplog.at_level(logging.WARNING, logger="custodian.broom.securityhub"):
        [resource] = sweep_policy().run()

    assert resource["InstanceId"] == violator
    [stub] = stubs
    stub.assert_no_pending_responses()  # imported, then the read was refused
    [warning] = hub_warnings(caplog)
    assert "not read (AccessDeniedException)" in warning
    assert "securityhub:GetFindings" in warning
