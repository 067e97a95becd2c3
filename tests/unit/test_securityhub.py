"""security-hub-finding: Broom's violations as Security Hub findings with a lifecycle
(mock_aws for EC2, SNS and Security Hub; botocore's Stubber for Security Hub's refusals,
which moto does not make: it imports findings into a hub that is not enabled)."""
import logging

import boto3
import pytest
from botocore.stub import Stubber
from c7n.exceptions import PolicyValidationError

from c7n_broom import securityhub

from support import (
    ACCOUNT,
    REGION,
    create_tags,
    launch,
    load_policy,
    policy_file,
    run_instances_event,
    states,
)


def findings(region=REGION):
    """Every finding moto holds, by id (moto's GetFindings ignores filters)."""
    client = boto3.client("securityhub", region_name=region)
    return {f["Id"]: f for f in client.get_findings()["Findings"]}


def launch_policy(variables=None):
    [data] = policy_file("ec2-tags.yml")["policies"]
    return load_policy(data, variables=variables)


def fixed_policy():
    [data] = policy_file("ec2-tags-fixed.yml")["policies"]
    return load_policy(data)


@pytest.fixture
def hub(inbox):
    boto3.client("securityhub", region_name=REGION).enable_security_hub()
    return inbox


def test_a_terminated_violator_becomes_a_resolved_archived_failed_finding(hub):
    [instance] = launch()
    launch_policy().push(run_instances_event([instance]))

    assert states([instance]) == {instance: "terminated"}
    finding = findings()["broom/%s/%s/%s/code-tag" % (REGION, ACCOUNT, instance)]
    assert finding["ProductArn"] == (
        "arn:aws:securityhub:%s:%s:product/%s/default" % (REGION, ACCOUNT, ACCOUNT))
    assert finding["AwsAccountId"] == ACCOUNT
    assert finding["SchemaVersion"] == "2018-10-08"
    assert finding["Compliance"] == {"Status": "FAILED"}
    assert finding["RecordState"] == "ARCHIVED"
    assert finding["Workflow"] == {"Status": "RESOLVED"}
    assert finding["Severity"]["Label"] == "MEDIUM"
    assert finding["Title"] == "EC2 instance %s has no Code tag" % instance
    assert "The instance has no Code tag" in finding["Description"]
    assert "Broom's action: terminated" in finding["Description"]
    assert "Launched by" in finding["Description"]
    assert "LOL, GGG, BRB, YLO" in finding["Remediation"]["Recommendation"]["Text"]
    [resource] = finding["Resources"]
    assert resource["Type"] == "AwsEc2Instance"
    assert resource["Id"] == "arn:aws:ec2:%s:%s:instance/%s" % (REGION, ACCOUNT, instance)
    assert resource["Details"]["AwsEc2Instance"]["Type"] == "t3.micro"
    fields = finding["ProductFields"]
    assert fields["broom/outcome"] == "terminated"
    assert fields["broom/code-reason"] == "missing"
    assert fields["broom/policy"] == "broom-ec2-require-code-tag"
    assert fields["broom/event-name"] == "RunInstances"
    assert fields["broom/creator-type"] == "IAMUser"
    assert fields["broom/creator"]


def test_report_only_keeps_the_finding_open_and_notified_with_the_reason(hub):
    [instance] = launch(tags={"Code": "NOPE"})
    launch_policy({"broom_enforcement": "report-only"}).push(
        run_instances_event([instance], tags={"Code": "NOPE"}))

    assert states([instance]) == {instance: "running"}
    [finding] = findings().values()
    assert finding["Compliance"] == {"Status": "FAILED"}
    assert finding["RecordState"] == "ACTIVE"
    assert finding["Workflow"] == {"Status": "NOTIFIED"}
    assert finding["ProductFields"]["broom/outcome"] == "would-terminate"
    assert finding["ProductFields"]["broom/outcome-detail"] == "report-only mode"
    assert finding["ProductFields"]["broom/code-value"] == "NOPE"
    assert finding["Note"]["Text"] == "report-only mode"
    assert "report-only mode" in finding["Description"]
    assert "not an allowed code" in finding["Title"]


def test_fixing_the_code_passes_the_open_finding_and_creates_none_for_others(hub):
    [flagged, other] = launch(count=2, tags={"Code": "NOPE"})
    launch_policy({"broom_enforcement": "report-only"}).push(
        run_instances_event([flagged], tags={"Code": "NOPE"}))
    [before] = findings().values()

    fixed_policy().push(create_tags([flagged, other], {"Code": "LOL"}))

    [after] = findings().values()  # nothing imported for the instance never flagged
    assert after["Id"] == before["Id"]
    assert after["Compliance"] == {"Status": "PASSED"}
    assert after["RecordState"] == "ACTIVE"
    assert after["CreatedAt"] == before["CreatedAt"]
    assert after["Title"] == "EC2 instance %s now has an allowed Code tag" % flagged
    assert after["ProductFields"]["broom/policy"] == "broom-ec2-code-tag-fixed"
    assert after["ProductFields"]["broom/creator"] == "alice@example.com"
    assert "Fixed by alice@example.com" in after["Description"]


def test_a_later_violation_of_the_same_instance_updates_the_same_finding(hub):
    [instance] = launch(tags={"Code": "NOPE"})
    policy = launch_policy({"broom_enforcement": "report-only"})
    policy.push(run_instances_event([instance], tags={"Code": "NOPE"}))
    fixed_policy().push(create_tags([instance], {"Code": "LOL"}))
    [data] = policy_file("ec2-tags-changed.yml")["policies"]
    load_policy(data).push(create_tags([instance], {"Code": "TYPO"}))

    [finding] = findings().values()
    assert finding["Compliance"] == {"Status": "FAILED"}
    assert finding["ProductFields"]["broom/policy"] == "broom-ec2-code-tag-changed"
    assert finding["ProductFields"]["broom/code-value"] == "TYPO"
    assert "Tagged by" in finding["Description"]


@pytest.mark.parametrize("code", ["InvalidAccessException", "AccessDeniedException"])
def test_a_disabled_or_denied_security_hub_is_one_warning_and_the_report_goes_out(
        inbox, monkeypatch, caplog, code):
    real_client = boto3.Session.client
    stubs = []

    def client(session, service, *args, **kwargs):
        made = real_client(session, service, *args, **kwargs)
        if service == "securityhub":
            stub = Stubber(made)
            stub.add_client_error("batch_import_findings", code,
                                  "Account is not subscribed to AWS Security Hub")
            stub.activate()
            stubs.append(stub)
        return made
    monkeypatch.setattr(boto3.Session, "client", client)
    [instance] = launch()

    with caplog.at_level(logging.WARNING, logger="custodian.broom.securityhub"):
        launch_policy().push(run_instances_event([instance]))

    assert states([instance]) == {instance: "terminated"}
    [message] = inbox.emails()
    assert instance in message["Subject"]
    warnings = [r for r in caplog.records if r.name == "custodian.broom.securityhub"]
    assert len(warnings) == 1
    assert "Security Hub not used in account %s %s (%s)" % (ACCOUNT, REGION, code) in \
        warnings[0].getMessage()
    stubs[0].assert_no_pending_responses()


def finding_for(instance_id):
    """A valid finding (botocore checks the request before the Stubber answers)."""
    from c7n_broom.identity import UNKNOWN
    return securityhub.asff(
        {"Type": "AwsEc2Instance", "Id": "arn:aws:ec2:%s:%s:instance/%s" % (
            REGION, ACCOUNT, instance_id)}, REGION, ACCOUNT, instance_id, "p",
        {"key": "Code", "value": None, "reason": "missing", "allowed": ["LOL"]},
        {"status": "terminated"}, UNKNOWN, None, "2026-01-01T00:00:00+00:00")


def test_other_security_hub_errors_are_raised(aws):
    policy = fixed_policy()
    [action] = policy.resource_manager.actions
    client = boto3.client("securityhub", region_name=REGION)
    with Stubber(client) as stub:
        stub.add_client_error("batch_import_findings", "InternalException", "boom")
        with pytest.raises(Exception, match="InternalException"):
            action.import_findings(client, [finding_for("i-1")])


def test_rejected_findings_are_logged(aws, caplog):
    policy = fixed_policy()
    [action] = policy.resource_manager.actions
    client = boto3.client("securityhub", region_name=REGION)
    with Stubber(client) as stub, caplog.at_level(logging.WARNING):
        stub.add_response("batch_import_findings", {
            "FailedCount": 1, "SuccessCount": 1, "FailedFindings": [
                {"Id": securityhub.finding_id(REGION, ACCOUNT, "i-a"),
                 "ErrorCode": "InvalidInput", "ErrorMessage": "too long"}]})
        assert action.import_findings(client, [finding_for("i-a"), finding_for("i-b")]) == [
            securityhub.finding_id(REGION, ACCOUNT, "i-b")]
    assert "Security Hub refused 1 of 2 findings (InvalidInput: too long)" in caplog.text


def test_the_finding_id_is_per_instance_and_rule_and_the_lifecycle_per_outcome():
    assert securityhub.finding_id("eu-west-1", "111111111111", "i-1") == \
        "broom/eu-west-1/111111111111/i-1/code-tag"
    assert securityhub.product_arn("cn-north-1", "111111111111") == (
        "arn:aws-cn:securityhub:cn-north-1:111111111111:product/111111111111/default")
    assert securityhub.lifecycle("terminated", True) == ("FAILED", "ARCHIVED", "RESOLVED")
    assert securityhub.lifecycle("already-gone", False) == ("FAILED", "ARCHIVED", "RESOLVED")
    for status in ("held-by-cap", "exempt", "would-terminate", "termination-failed"):
        assert securityhub.lifecycle(status, True) == ("FAILED", "ACTIVE", "NOTIFIED")
        assert securityhub.lifecycle(status, False) == ("FAILED", "ACTIVE", "NEW")


def test_a_failed_finding_needs_creator_report_before_it(aws):
    [data] = policy_file("ec2-tags.yml")["policies"]
    data["actions"] = [a for a in data["actions"] if a["type"] != "creator-report"]
    with pytest.raises(PolicyValidationError, match="after creator-report"):
        load_policy(data)


def test_finding_types_are_checked(aws):
    [data] = policy_file("ec2-tags-fixed.yml")["policies"]
    data["actions"][0]["types"] = ["Made Up/Category"]
    with pytest.raises(PolicyValidationError, match="namespace"):
        load_policy(data)


def test_permissions_passed_needs_getfindings_too(aws):
    [action] = fixed_policy().resource_manager.actions
    assert set(action.get_permissions()) == {
        "securityhub:BatchImportFindings", "securityhub:GetFindings"}
    launch_actions = launch_policy().resource_manager.actions
    [finding] = [a for a in launch_actions if a.type == "security-hub-finding"]
    assert finding.get_permissions() == ("securityhub:BatchImportFindings",)
