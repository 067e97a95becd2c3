"""End to end, hub and spoke: the hub's function files the Security Hub finding in the
member account where the instance lives (through broom-member), never in the hub, so
Security Hub's own aggregation carries it to the administrator account."""
from test_e2e_hub import FUNCTION, HUB, MEMBER, hub  # noqa: F401  (the deployed hub)

from broom.local.deploy import invoke_deployed

from e2e_support import run_instances_record, server_inbox
from support import REGION, launch


def test_a_members_violation_is_a_finding_in_the_member_account(hub):  # noqa: F811
    inbox = server_inbox(hub)  # the hub's report topic
    for account in (HUB, MEMBER):
        hub.client("securityhub", account=account).enable_security_hub()
    member_ec2 = hub.client("ec2", account=MEMBER)
    [invalid] = launch(ec2=member_ec2, tags={"Code": "NOPE"})

    result = invoke_deployed(hub, FUNCTION, run_instances_record([invalid], account=MEMBER),
                             REGION, account=MEMBER, function_account=HUB)

    assert result.ok, result.logs[-4000:]
    [finding] = hub.client("securityhub", account=MEMBER).get_findings()["Findings"]
    assert finding["Id"] == "broom/%s/%s/%s/code-tag" % (REGION, MEMBER, invalid)
    assert finding["AwsAccountId"] == MEMBER
    assert finding["ProductArn"] == "arn:aws:securityhub:%s:%s:product/%s/default" % (
        REGION, MEMBER, MEMBER)
    assert finding["RecordState"] == "ARCHIVED"  # terminated
    assert finding["Resources"][0]["Id"] == "arn:aws:ec2:%s:%s:instance/%s" % (
        REGION, MEMBER, invalid)
    assert hub.client("securityhub", account=HUB).get_findings()["Findings"] == []
    [report] = inbox.emails()
    assert invalid in report["Subject"]
