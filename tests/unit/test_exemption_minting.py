"""An exemption cannot be minted: the SCP ``broom scp`` prints denies creating,
re-trusting or granting to any role or user an exemption pattern names, except by the
``--admin`` principals (evaluated with broom/scp_eval.py: IAM's documented semantics;
moto evaluates only StringEquals)."""
import json

import pytest
from click.testing import CliRunner

from broom import guards
from broom.cli import cli
from broom.scp_eval import denied_by, request

ACCOUNT = "111122223333"
DEVELOPER = ("arn:aws:iam::%s:role/developer" % ACCOUNT, ACCOUNT)
ADMIN = ("arn:aws:iam::%s:role/platform/admin" % ACCOUNT, ACCOUNT)


def scp(*args, policy=None):
    extra = ["--policy", str(policy)] if policy else []
    result = CliRunner().invoke(cli, ["scp", *extra, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def role(path_and_name):
    return "arn:aws:iam::%s:role/%s" % (ACCOUNT, path_and_name)


@pytest.mark.parametrize("action", guards.ROLE_MINTING)
@pytest.mark.parametrize("target", ["broom-break-glass", "dev/broom-break-glass"])
def test_nobody_mints_the_shipped_break_glass_role(action, target):
    """Before: a developer allowed iam:CreateRole created /dev/broom-break-glass and
    launched untagged, exempt."""
    document = scp()
    assert denied_by(document, request(action, role(target), DEVELOPER)) == [
        "BroomDenyMintingExemptRoles"]


def test_the_admins_named_may_manage_the_exempt_role_and_others_are_untouched():
    document = scp("--admin", "arn:aws:iam::*:role/platform/*")
    assert denied_by(document, request("iam:CreateRole", role("broom-break-glass"), ADMIN)) == []
    assert denied_by(document, request("iam:CreateRole", role("broom-break-glass"),
                                       DEVELOPER)) == ["BroomDenyMintingExemptRoles"]
    assert denied_by(document, request("iam:CreateRole", role("web-server"), DEVELOPER)) == []
    assert denied_by(document, request("iam:CreateRole", role("broom-break-glass-2"),
                                       DEVELOPER)) == []


def test_exempt_users_are_guarded_and_whole_accounts_need_no_guard(tmp_path):
    from support import REPO
    policy = tmp_path / "policy.yml"
    policy.write_text((REPO / "policies" / "ec2-tags.yml").read_text().replace(
        "exempt-principals: [broom-break-glass]",
        "exempt-principals: [\"arn:aws:iam::*:user/alice\", \"444455556666\"]"))
    document = scp(policy=policy)
    alice = "arn:aws:iam::%s:user/alice" % ACCOUNT

    assert [s["Sid"] for s in document["Statement"] if "Minting" in s["Sid"]] == [
        "BroomDenyMintingExemptUsers"]
    for action in guards.USER_MINTING:
        assert denied_by(document, request(action, alice, DEVELOPER)) == [
            "BroomDenyMintingExemptUsers"], action
    assert denied_by(document, request("iam:CreateAccessKey",
                                       alice.replace("alice", "bob"), DEVELOPER)) == []
