"""``broom whatif`` on generated CloudTrail logs: the verdict, what Broom would have
done and the SCP answer for every kind of launch, through the command as users run it
(CliRunner, --json), and what it does with bad input."""
import gzip
import json

import pytest
import yaml
from click.testing import CliRunner

from broom.cli import cli
from broom.scp import policy_scp
from broom.whatif import evaluate

import trail
from support import POLICIES, policy_file
from trail import (
    ACCOUNT,
    autoscaling,
    create_tags,
    delete_tags,
    instance_id,
    log_file,
    role,
    root,
    run_instances,
    user,
)

MAIN = POLICIES / "ec2-tags.yml"
BREAK_GLASS = role("broom-break-glass", "bob", path="ops/")


def whatif(*args, policy=None):
    """Run the command with --json; (exit status, document, stderr)."""
    argv = ["whatif", "--json", "--no-progress", *[str(a) for a in args]]
    if policy:
        argv += ["--policy", str(policy)]
    result = CliRunner().invoke(cli, argv, catch_exceptions=False)
    document = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result.exit_code, document, result.stderr


def verdicts(document):
    """{instance id: (verdict, action, scp)} for every launched instance."""
    return {i["instance_id"]: (i["verdict"], i["action"], launch["scp"])
            for launch in document["launches"] for i in launch["instances"]}


def write_policy(tmp_path, **terminate_options):
    [data] = policy_file()["policies"]
    for action in data["actions"]:
        if action["type"] == "safe-terminate":
            action.update(terminate_options)
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tmp_path / "policy.yml"
    path.write_text(yaml.safe_dump({"policies": [data]}))
    return path


@pytest.fixture
def ids():
    return [instance_id() for _ in range(10)]


def test_every_kind_of_launch_gets_its_verdict_action_and_scp_answer(tmp_path, ids):
    a, b, c, d, e, f, g, h = ids[:8]
    log_file(tmp_path, [
        run_instances([a], 0, tags={"Code": "LOL", "Name": "web"}),
        run_instances([b], 10),
        run_instances([c], 20),
        create_tags([c], {"Code": "GGG"}, 24),  # within grace-seconds (10)
        run_instances([d], 30, who=role("karpenter", "i-0123456789abcdef0")),
        create_tags([d], {"Code": "LOL"}, 75),  # too late
        run_instances([e], 40, response_tags={"Code": "BRB"}, launch_template=True),
        run_instances([f], 50, who=BREAK_GLASS),
        run_instances([g], 60, who=root()),
        run_instances([h], 70, tags={"Code": "NOPE"}),
    ])
    status, document, stderr = whatif(tmp_path)

    assert status == 0, stderr
    assert verdicts(document) == {
        a: ("compliant", "none", "allow"),
        b: ("violation", "terminate", "deny"),
        c: ("compliant", "none", "deny"),  # a tool that tags after launch: the SCP breaks it
        d: ("violation", "terminate", "deny"),
        e: ("compliant", "none", "allow"),  # the launch template's Code
        f: ("violation", "exempt", "allow"),
        g: ("violation", "terminate", "deny"),
        h: ("violation", "terminate", "deny"),
    }
    by_id = {i["instance_id"]: i for launch in document["launches"] for i in launch["instances"]}
    assert by_id[c]["code"] == "GGG" and "CreateTags 4s after launch" in by_id[c]["reason"]
    assert by_id[d]["code"] is None
    assert "grace-seconds (10): CreateTags set it 45s after launch" in by_id[d]["reason"]
    assert by_id[h]["reason"] == "Code 'NOPE' is not an allowed code"
    assert by_id[f]["detail"] == "launched by an exempt principal (broom-break-glass)"


def test_each_launch_names_its_event_creator_account_and_region(tmp_path, ids):
    record = run_instances(ids[:2], 0, who=user("carol"), region="eu-west-1")
    log_file(tmp_path, [record])
    _, document, _ = whatif(tmp_path)

    [launch] = document["launches"]
    assert {k: launch[k] for k in ("event_id", "creator", "account", "region", "scp")} == {
        "event_id": record["eventID"], "creator": "carol", "account": ACCOUNT,
        "region": "eu-west-1", "scp": "deny"}
    assert launch["principal"] == "arn:aws:iam::%s:user/carol" % ACCOUNT
    assert launch["scp_statements"] == ["BroomDenyLaunchWithoutAllowedCode"]
    assert [set(i) >= {"instance_id", "verdict", "reason", "action"}
            for i in launch["instances"]] == [True, True]


def test_a_failed_call_launched_nothing(tmp_path, ids):
    log_file(tmp_path, [
        run_instances([], 0, error=("Client.UnauthorizedOperation", "not authorized")),
        create_tags([ids[0]], {"Code": "NOPE"}, 5, error=("Client.InvalidID", "no")),
    ])
    status, document, _ = whatif(tmp_path)

    [launch] = document["launches"]
    assert status == 0
    assert launch["instances"] == []
    assert launch["error"].startswith("Client.UnauthorizedOperation")
    assert launch["scp"] == "deny"  # the request itself had no Code
    assert document["summary"]["failed_calls"] == 1


def test_a_wrong_code_set_after_launch_is_judged_as_set(tmp_path, ids):
    log_file(tmp_path, [run_instances([ids[0]], 0), create_tags([ids[0]], {"Code": "NOPE"}, 3)])
    _, document, _ = whatif(tmp_path)
    assert verdicts(document)[ids[0]] == ("violation", "terminate", "deny")


def test_a_code_deleted_after_launch_does_not_change_the_launch_verdict(tmp_path, ids):
    """The Lambda judges a tagged launch at once; removing the tag later is the
    tag-change policy's business (report-only)."""
    log_file(tmp_path, [run_instances([ids[0]], 0, tags={"Code": "LOL"}),
                        delete_tags([ids[0]], ["Code"], 2)])
    _, document, _ = whatif(tmp_path)
    assert verdicts(document)[ids[0]] == ("compliant", "none", "allow")


def test_fleets_left_to_their_group_and_not_subject_to_the_scp(tmp_path, ids):
    group = {"aws:autoscaling:groupName": "web-asg"}
    log_file(tmp_path, [run_instances(ids[:2], 0, who=autoscaling(), tags=group)])
    policy = write_policy(tmp_path / "p", **{"fleet-instances": "report-only"})
    _, document, _ = whatif(tmp_path, policy=policy)

    [launch] = document["launches"]
    assert launch["scp"] == "allow" and "service-linked" in launch["scp_note"]
    assert [(i["action"], i["fleet"]) for i in launch["instances"]] == [
        ("left-to-fleet", "Auto Scaling group web-asg")] * 2
    # with the shipped policy (fleet-instances: enforce) they are terminated
    _, document, _ = whatif(tmp_path)
    assert {i["action"] for i in document["launches"][0]["instances"]} == {"terminate"}


def test_the_cap_holds_more_wrong_codes_than_it_allows_but_never_missing_ones(tmp_path):
    wrong = [instance_id() for _ in range(21)]
    missing = [instance_id() for _ in range(21)]
    log_file(tmp_path, [run_instances(wrong, 0, tags={"Code": "NOPE"}),
                        run_instances(missing, 30)])
    _, document, _ = whatif(tmp_path)

    first, second = document["launches"]
    assert first["scp"] == second["scp"] == "deny"
    assert {i["action"] for i in first["instances"]} == {"held-by-cap"}
    assert "exceed the cap of 20" in first["instances"][0]["detail"]
    assert {i["action"] for i in second["instances"]} == {"terminate"}


def test_the_cap_counts_per_principal_over_the_period(tmp_path):
    batches = [[instance_id() for _ in range(8)] for _ in range(3)]
    log_file(tmp_path, [run_instances(batch, n * 60, tags={"Code": "NOPE"})
                        for n, batch in enumerate(batches)])
    later = [instance_id() for _ in range(8)]
    log_file(tmp_path / "next-day", [run_instances(later, 86400, tags={"Code": "NOPE"})])
    _, document, _ = whatif(tmp_path)

    actions = [{i["action"] for i in launch["instances"]} for launch in document["launches"]]
    assert actions == [{"terminate"}, {"terminate"}, {"held-by-cap"}, {"terminate"}]


def test_report_only_enforcement_from_a_var(tmp_path, ids):
    log_file(tmp_path, [run_instances([ids[0]], 0)])
    _, document, _ = whatif(tmp_path, "--var", "broom_enforcement=report-only")
    assert verdicts(document)[ids[0]] == ("violation", "report-only", "deny")


def test_codes_from_a_var_change_the_verdict_and_the_scp(tmp_path, ids):
    log_file(tmp_path, [run_instances([ids[0]], 0, tags={"Code": "ZZZ"})])
    _, document, _ = whatif(tmp_path, "--var", "broom_codes=ZZZ,YYY")
    assert verdicts(document)[ids[0]] == ("compliant", "none", "allow")


def test_the_scp_is_the_one_broom_scp_prints():
    rule = evaluate.load_rule(MAIN)
    assert rule.scp == policy_scp(MAIN)
    printed = CliRunner().invoke(cli, ["scp"], catch_exceptions=False).output
    assert rule.scp == json.loads(printed)


def test_suggested_exemptions_name_the_principals_blocked_most(tmp_path):
    karpenter = role("karpenter", "i-0123456789abcdef0", path="k8s/")
    records = [run_instances([instance_id()], n, who=karpenter) for n in range(3)]
    records += [run_instances([instance_id()], 10, who=user("carol")),
                run_instances([instance_id()], 20, who=root()),
                run_instances([instance_id()], 30, who=autoscaling())]
    log_file(tmp_path, records)
    _, document, _ = whatif(tmp_path)

    suggested = document["suggested_exemptions"]
    assert [(s["pattern"], s["launches"]) for s in suggested] == [
        ("arn:aws:iam::%s:role/k8s/karpenter" % ACCOUNT, 3),
        ("arn:aws:iam::%s:user/carol" % ACCOUNT, 1),
        (None, 1)]  # root: only its whole account can be exempted
    result = CliRunner().invoke(cli, ["whatif", str(tmp_path)])
    snippet = result.stdout[result.stdout.index("exempt-principals:"):].split("\n\n")[0]
    assert yaml.safe_load(snippet) == {"exempt-principals": [
        "arn:aws:iam::%s:role/k8s/karpenter" % ACCOUNT, "arn:aws:iam::%s:user/carol" % ACCOUNT]}


def test_summary_counts_per_account_creator_code_principal_and_hour(tmp_path):
    log_file(tmp_path, [
        run_instances([instance_id()], 0, who=user("carol"), tags={"Code": "NOPE"}),
        run_instances([instance_id()], 10, who=user("carol")),
        run_instances([instance_id()], 3600, who=user("dave", "444455556666"),
                      account="444455556666"),
        run_instances([instance_id()], 3610, tags={"Code": "LOL"}),
    ])
    _, document, _ = whatif(tmp_path)

    summary = document["summary"]
    assert summary["violations_per_account"] == {ACCOUNT: 2, "444455556666": 1}
    assert summary["violations_per_creator"] == {"carol": 2, "dave": 1}
    assert summary["violations_per_code"] == {"(none)": 2, "NOPE": 1}
    assert summary["scp_refusals_per_principal"] == {
        "arn:aws:iam::%s:user/carol" % ACCOUNT: 2,
        "arn:aws:iam::444455556666:user/dave": 1}
    assert summary["busiest_hours"] == {"2026-10-01 09:00": 2, "2026-10-01 10:00": 1}
    text = CliRunner().invoke(cli, ["whatif", str(tmp_path)]).stdout
    for line in ("Violations per creator:", "SCP refusals per principal:",
                 "Busiest hours", "4 launch(es) (0 failed call(s)), 4 instance(s): "
                 "1 compliant, 3 violation(s)"):
        assert line in text


def test_since_until_account_and_region_select_launches(tmp_path):
    keep = instance_id()
    log_file(tmp_path, [
        run_instances([instance_id()], -60),
        run_instances([keep], 0),
        run_instances([instance_id()], 3600),
        run_instances([instance_id()], 10, account="444455556666"),
        run_instances([instance_id()], 20, region="eu-west-1"),
    ])
    _, document, _ = whatif(tmp_path, "--since", "2026-10-01T09:00:00Z", "--until",
                            "2026-10-01T10:00:00Z", "--account-id", ACCOUNT,
                            "--region", "us-east-1")
    assert list(verdicts(document)) == [keep]


def test_tag_calls_just_after_until_still_count_for_the_last_launches(tmp_path, ids):
    log_file(tmp_path, [run_instances([ids[0]], 3599), create_tags([ids[0]], {"Code": "LOL"},
                                                                    3603)])
    _, document, _ = whatif(tmp_path, "--until", "2026-10-01T10:00:00Z")
    assert verdicts(document) == {ids[0]: ("compliant", "none", "deny")}


def test_a_corrupt_file_is_named_and_skipped_and_the_others_evaluated(tmp_path, ids):
    log_file(tmp_path, [run_instances([ids[0]], 0)], name="a.json.gz")
    (tmp_path / "b.json.gz").write_bytes(gzip.compress(b'{"Records": [')[:-4])
    (tmp_path / "c.json").write_text(json.dumps({"Name": "not a trail"}))
    (tmp_path / "d.json.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    log_file(tmp_path, [run_instances([ids[1]], 5)], name="e.json")
    status, document, stderr = whatif(tmp_path)

    assert status == 2
    assert list(verdicts(document)) == [ids[0], ids[1]]
    assert [s["source"].rsplit("/", 1)[1] for s in document["skipped"]] == [
        "b.json.gz", "c.json", "d.json.gz"]
    assert "b.json.gz: not" in stderr and "c.json: holds no CloudTrail records" in stderr


def test_lookup_events_output_is_read(tmp_path, ids):
    records = [run_instances([ids[0]], 0), create_tags([ids[0]], {"Code": "LOL"}, 3)]
    page = {"Events": [{"EventId": r["eventID"], "EventName": r["eventName"],
                        "CloudTrailEvent": json.dumps(r)} for r in reversed(records)]}
    path = tmp_path / "lookup.json"
    path.write_text(json.dumps(page))
    status, document, _ = whatif(path)
    assert status == 0
    assert verdicts(document) == {ids[0]: ("compliant", "none", "deny")}


def test_usage_and_policy_errors_exit_1(tmp_path):
    assert whatif()[0] == 1
    assert whatif(tmp_path / "missing")[0] == 1
    bad = tmp_path / "bad.yml"
    bad.write_text("policies: [{name: x, resource: aws.ec2, filters: [{type: allowed-codes}]}]")
    status, _, stderr = whatif(tmp_path, policy=bad)
    assert status == 1 and "no allowed codes" in stderr
    status, _, stderr = whatif(tmp_path, "--since", "last tuesday")
    assert status == 1 and "--since 'last tuesday'" in stderr
    status, _, stderr = whatif(tmp_path, policy=POLICIES / "ec2-tags-changed.yml")
    assert status == 1 and "judges RunInstances" in stderr
    # click's own usage errors too (its default status, 2, means "input skipped" here)
    assert whatif(tmp_path, "--no-such-option")[0] == 1
    status, _, stderr = whatif(tmp_path, "--var", "broom_codes")
    assert status == 1 and "expected NAME=VALUE" in stderr


def test_the_text_output_keeps_untrusted_names_on_one_line(tmp_path):
    log_file(tmp_path, [run_instances([instance_id()], 0,
                                      who=user("eve\nSCP allow <!here>"))])
    out = CliRunner().invoke(cli, ["whatif", str(tmp_path)]).stdout
    rows = [line for line in out.splitlines() if line.startswith("2026-")]
    assert len(rows) == 1 and "<!here>" not in out


def test_generated_history_module_is_the_shape_broom_reads(ids):
    """The generator's records go through the plugin's own parsers."""
    from c7n_broom import events

    record = run_instances(ids[:2], 0, tags={"Code": "LOL"})
    assert events.launched_instances(record) == ids[:2]
    assert events.request_tags(record) == {"Code": "LOL"}
    assert events.skip_reason(record) is None
    assert trail.at(61) == "2026-10-01T09:01:01Z"


def test_progress_goes_to_stderr_and_leaves_stdout_one_document(tmp_path):
    for n in range(3):
        log_file(tmp_path, [run_instances([instance_id()], n)], name="%d.json.gz" % n)
    result = CliRunner().invoke(cli, ["whatif", "--json", "--progress", str(tmp_path)],
                                catch_exceptions=False)
    assert "broom whatif: 3 file(s), 3 record(s), 0 launch(es) judged" in result.stderr
    assert len(json.loads(result.stdout)["launches"]) == 3
