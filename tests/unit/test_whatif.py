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


def test_a_code_deleted_after_the_grace_period_does_not_change_the_launch_verdict(
        tmp_path, ids):
    """The Lambda has judged the launch by then; removing the tag later is the
    tag-change policy's business (report-only)."""
    log_file(tmp_path, [run_instances([ids[0]], 0, tags={"Code": "LOL"}),
                        delete_tags([ids[0]], ["Code"], 12)])
    _, document, _ = whatif(tmp_path)
    assert verdicts(document)[ids[0]] == ("compliant", "none", "allow")


def test_a_code_deleted_within_the_grace_period_is_judged_missing(tmp_path, ids):
    """EC2's tags win over the request's: the request's Code does not stand in for
    one EC2 no longer shows while it shows other tags."""
    log_file(tmp_path, [run_instances([ids[0]], 0, tags={"Code": "LOL", "Team": "a"}),
                        delete_tags([ids[0]], ["Code"], 2)])
    _, document, _ = whatif(tmp_path)
    assert verdicts(document)[ids[0]] == ("violation", "terminate", "allow")
    [launch] = document["launches"]
    assert launch["instances"][0]["reason"] == (
        "no Code tag (DeleteTags removed it 2s after launch)")


def test_every_tag_deleted_within_the_grace_period_is_judged_as_the_lambda_does(
        tmp_path, ids):
    """With no tag left, EC2 shows what it shows before tags arrive: the Lambda lets
    the request's tags stand in (AllowedCodes.request_stand_in), and so does whatif;
    the tag-change policy and the SCP's BroomDenyRemovingEveryTag cover this case."""
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



def test_the_cap_counts_the_previous_window_too_as_the_state_table_does(tmp_path):
    """Broom's state table counts a principal's terminations in the current and the
    previous cap-period window: 12 just before 10:00 and 12 just after are 24 (over
    the cap of 20), while 12 more two windows later start afresh."""
    batches = [[instance_id() for _ in range(12)] for _ in range(3)]
    offsets = (3600 - 60, 3600 + 60, 3 * 3600 + 60)  # trail.START is 09:00
    log_file(tmp_path, [run_instances(batch, offset, tags={"Code": "NOPE"})
                        for batch, offset in zip(batches, offsets, strict=True)])
    _, document, _ = whatif(tmp_path)

    actions = [{i["action"] for i in launch["instances"]} for launch in document["launches"]]
    assert actions == [{"terminate"}, {"held-by-cap"}, {"terminate"}]

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


# --- instant EC2 Fleets (CreateFleet): docs/launch-paths.md ---------------------------

KARPENTER_ROLE = "arn:aws:iam::%s:role/KarpenterController" % ACCOUNT


def launches_by_event(document):
    return {launch["event_id"]: launch for launch in document["launches"]}


def test_an_instant_fleets_launches_get_their_verdict_action_and_scp_answer(tmp_path):
    untagged = [[instance_id(), instance_id()], [instance_id()]]  # two instance types
    tagged, wrong = instance_id(), instance_id()
    records = [trail.create_fleet(untagged, 0),
               trail.create_fleet([[tagged]], 10, tags={"Code": "LOL", "Name": "node"}),
               trail.create_fleet([[wrong]], 20, tags={"Code": "NOPE"})]
    log_file(tmp_path, records)
    status, document, stderr = whatif(tmp_path)

    assert status == 0, stderr
    assert verdicts(document) == dict(
        {i: ("violation", "terminate", "deny") for group in untagged for i in group},
        **{tagged: ("compliant", "none", "allow"),
           wrong: ("violation", "terminate", "deny")})
    first = launches_by_event(document)[records[0]["eventID"]]
    assert (first["creator"], first["principal"]) == ("KarpenterController", KARPENTER_ROLE)
    assert first["scp_statements"] == ["BroomDenyLaunchWithoutAllowedCode"]
    by_id = {i["instance_id"]: i for launch in document["launches"] for i in launch["instances"]}
    assert by_id[tagged]["reason"] == "Code LOL at launch"
    assert by_id[wrong]["reason"] == "Code 'NOPE' is not an allowed code"
    # EC2 tags an instant fleet's instances with its id: Broom names the fleet
    assert by_id[wrong]["fleet"] == "EC2 Fleet %s" % records[2]["responseElements"][
        "CreateFleetResponse"]["fleetId"]


def test_a_fleets_instances_are_left_to_it_when_fleets_are_only_reported(tmp_path):
    iid = instance_id()
    log_file(tmp_path, [trail.create_fleet([[iid]], 0)])
    policy = write_policy(tmp_path / "p", **{"fleet-instances": "report-only"})
    _, document, _ = whatif(tmp_path, policy=policy)
    assert verdicts(document) == {iid: ("violation", "left-to-fleet", "deny")}


def test_a_code_tagged_after_a_fleet_launch_counts_within_the_grace_period(tmp_path):
    early, late = instance_id(), instance_id()
    log_file(tmp_path, [trail.create_fleet([[early, late]], 0),
                        create_tags([early], {"Code": "GGG"}, 4),
                        create_tags([late], {"Code": "GGG"}, 40)])
    _, document, _ = whatif(tmp_path)
    assert verdicts(document) == {early: ("compliant", "none", "deny"),
                                  late: ("violation", "terminate", "deny")}


def test_the_scp_answer_of_a_fleet_is_its_callers_run_instances_with_the_fleets_tags():
    """IAM authorises each launch of an instant fleet as the caller's ec2:RunInstances
    with the fleet request's instance TagSpecification as request tags."""
    from broom.scp_eval import denied_by, launch_requests, launch_tags

    document = evaluate.load_rule(MAIN).scp
    principal = (KARPENTER_ROLE, ACCOUNT)

    def refused(record):
        tags = launch_tags(record)
        return sorted({sid for request in launch_requests(trail.REGION, ACCOUNT, principal,
                                                          tags)
                       for sid in denied_by(document, request)})

    allowed = trail.create_fleet([[instance_id()]], 0, tags={"Code": "LOL"})
    assert launch_tags(allowed)["instance"] == {"Code": "LOL"}
    assert refused(allowed) == []
    assert refused(trail.create_fleet([[instance_id()]], 0)) == [
        "BroomDenyLaunchWithoutAllowedCode"]
    assert refused(trail.create_fleet([[instance_id()]], 0, tags={"Code": "NOPE"})) == [
        "BroomDenyCodeOutsideTheList", "BroomDenyLaunchWithoutAllowedCode"]
    # the fleet's own tags (ResourceType fleet) are not the instances' request tags
    fleet_only = trail.create_fleet([[instance_id()]], 0, tags={"Code": "LOL"})
    for spec in fleet_only["requestParameters"]["CreateFleetRequest"]["TagSpecification"]:
        spec["ResourceType"] = "fleet"
    assert refused(fleet_only) == ["BroomDenyLaunchWithoutAllowedCode"]


def test_a_fleet_launch_recorded_by_create_fleet_and_run_instances_is_judged_once(tmp_path):
    """EC2 Fleet records RunInstances (invokedBy ec2fleet.amazonaws.com, the caller's
    identity) for the instances a CreateFleet names: one launch, each instance once;
    the tags EC2 reports in those RunInstances responses (the launch template's) count."""
    a, b, c = instance_id(), instance_id(), instance_id()
    fleet = trail.create_fleet([[a, b], [c]], 0)
    who = fleet["userIdentity"]
    made = [trail.by_ec2_fleet(run_instances([a, b], 1, who=who, response_tags={
                "Code": "LOL"})),
            trail.by_ec2_fleet(run_instances([c], 1, who=who))]
    log_file(tmp_path, made[:1] + [fleet] + made[1:])  # file order is not time order
    status, document, _ = whatif(tmp_path)

    assert status == 0
    [launch] = document["launches"]
    assert launch["event_id"] == fleet["eventID"]  # the caller's call is the launch
    assert launch["also_recorded_by"] == [r["eventID"] for r in made]
    assert [i["instance_id"] for i in launch["instances"]] == [a, b, c]
    assert verdicts(document) == {a: ("compliant", "none", "allow"),
                                  b: ("compliant", "none", "allow"),
                                  c: ("violation", "terminate", "allow")}
    assert document["stats"]["joined"] == 2
    assert document["summary"]["launches"] == 1


def test_a_run_instances_by_ec2_fleet_first_is_still_one_launch_with_the_fleets_answer(
        tmp_path):
    """Recorded the same second, the RunInstances may come first: the CreateFleet
    joins it and is the record judged (its request tags, its SCP answer)."""
    iid = instance_id()
    fleet = trail.create_fleet([[iid]], 0, tags={"Code": "LOL"})
    made = trail.by_ec2_fleet(run_instances([iid], 0, who=fleet["userIdentity"]))
    log_file(tmp_path, [made, fleet])
    _, document, _ = whatif(tmp_path)

    [launch] = document["launches"]
    assert launch["event_id"] == fleet["eventID"]
    assert launch["also_recorded_by"] == [made["eventID"]]
    assert verdicts(document) == {iid: ("compliant", "none", "allow")}


def test_run_instances_records_of_a_fleet_without_its_create_fleet_are_launches(tmp_path):
    """A fleet of type request or maintain: its CreateFleet names nothing and is no
    launch; EC2 Fleet's service-linked role launches later, and those RunInstances
    records are judged (the SCP does not apply to the role)."""
    iid = instance_id()
    slr = role("AWSServiceRoleForEC2Fleet", "ec2fleet",
               "aws-service-role/ec2fleet.amazonaws.com/")
    log_file(tmp_path, [trail.create_fleet([], 0, fleet_type="maintain"),
                        trail.by_ec2_fleet(run_instances([iid], 30, who=slr))])
    status, document, stderr = whatif(tmp_path)

    assert status == 0, stderr
    [launch] = document["launches"]
    assert launch["principal"].endswith(":role/aws-service-role/ec2fleet.amazonaws.com/"
                                        "AWSServiceRoleForEC2Fleet")
    assert verdicts(document) == {iid: ("violation", "terminate", "allow")}
    assert document["stats"]["later_fleets"] == 1
    text = CliRunner().invoke(cli, ["whatif", str(tmp_path)]).stdout
    assert "1 CreateFleet of type request/maintain" in text


def test_a_failed_fleet_and_a_fleet_that_launched_nothing_are_failed_calls(tmp_path):
    failed = trail.create_fleet([], 0, error=("Client.UnauthorizedOperation", "denied"))
    empty = trail.create_fleet([], 10, errors=["InsufficientInstanceCapacity"])
    log_file(tmp_path, [failed, empty])
    status, document, _ = whatif(tmp_path)

    assert status == 0
    launches = launches_by_event(document)
    assert launches[failed["eventID"]]["error"].startswith("Client.UnauthorizedOperation")
    assert launches[empty["eventID"]]["error"] == (
        "CreateFleet record names no launched instance (responseElements has no "
        "instance ids)")
    assert [launch["instances"] for launch in document["launches"]] == [[], []]
    assert {launch["scp"] for launch in document["launches"]} == {"deny"}
    assert document["summary"]["failed_calls"] == 2


def test_a_partly_failed_fleet_judges_what_it_launched(tmp_path):
    iid = instance_id()
    log_file(tmp_path, [trail.create_fleet([[iid]], 0, errors=["InsufficientInstanceCapacity"])])
    _, document, _ = whatif(tmp_path)
    [launch] = document["launches"]
    assert "error" not in launch
    assert verdicts(document) == {iid: ("violation", "terminate", "deny")}


@pytest.mark.parametrize("single", [True, False], ids=["bare objects", "lists"])
def test_a_fleet_record_is_read_in_both_xml_list_shapes(tmp_path, single):
    """CloudTrail records a list of one as the element alone: instance sets, instance
    ids and the request's TagSpecification and Tag."""
    one, two, three = instance_id(), instance_id(), instance_id()
    bare = trail.create_fleet([[one]], 0, tags={"Code": "LOL"}, single_as_element=single)
    spec = bare["requestParameters"]["CreateFleetRequest"]["TagSpecification"][0]
    if single:
        bare["requestParameters"]["CreateFleetRequest"]["TagSpecification"] = spec
        spec["Tag"] = spec["Tag"][0]
    response = bare["responseElements"]["CreateFleetResponse"]["fleetInstanceSet"]
    assert isinstance(response["item"], dict) is single
    log_file(tmp_path, [bare, trail.create_fleet([[two, three]], 5,
                                                 single_as_element=single)])
    _, document, _ = whatif(tmp_path)
    assert verdicts(document) == {one: ("compliant", "none", "allow"),
                                  two: ("violation", "terminate", "deny"),
                                  three: ("violation", "terminate", "deny")}


def test_the_cap_counts_a_fleets_caller_as_the_principal(tmp_path):
    """Two node provisioner sessions of one role are one principal for the cap; an
    untagged fleet is never held."""
    first = [instance_id() for _ in range(3)]
    second = [instance_id() for _ in range(3)]
    other = [instance_id() for _ in range(3)]
    untagged = [instance_id() for _ in range(3)]
    log_file(tmp_path, [
        trail.create_fleet([first], 0, tags={"Code": "NOPE"}, who=trail.karpenter("1")),
        trail.create_fleet([second], 60, tags={"Code": "NOPE"}, who=trail.karpenter("2")),
        trail.create_fleet([other], 120, tags={"Code": "NOPE"}, who=user("carol")),
        trail.create_fleet([untagged], 180, who=trail.karpenter("3")),
    ])
    policy = write_policy(tmp_path / "p", **{"max-terminations": 5})
    _, document, _ = whatif(tmp_path, policy=policy)

    actions = [({i["action"] for i in launch["instances"]}, launch["creator"])
               for launch in document["launches"]]
    assert actions == [({"terminate"}, "KarpenterController"),
                       ({"held-by-cap"}, "KarpenterController"),
                       ({"terminate"}, "carol"),
                       ({"terminate"}, "KarpenterController")]


def test_since_and_until_select_fleet_launches_as_launches(tmp_path):
    inside, after = instance_id(), instance_id()
    log_file(tmp_path, [trail.create_fleet([[inside]], 3599),
                        create_tags([inside], {"Code": "LOL"}, 3603),
                        trail.create_fleet([[after]], 3601)])
    _, document, _ = whatif(tmp_path, "--until", "2026-10-01T10:00:00Z")
    assert verdicts(document) == {inside: ("compliant", "none", "deny")}


def test_a_policy_without_create_fleet_judges_only_what_ec2_fleet_records_as_run_instances(
        tmp_path):
    """Simulated as deployed: a rule without CreateFleet never sees the fleet's record,
    only the RunInstances records EC2 Fleet makes for it."""
    [data] = policy_file()["policies"]
    data["mode"]["events"] = [e for e in data["mode"]["events"] if e["event"] != "CreateFleet"]
    path = tmp_path / "p" / "policy.yml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump({"policies": [data]}))
    seen, unseen = instance_id(), instance_id()
    fleet = trail.create_fleet([[seen]], 0, tags={"Code": "LOL"})
    log_file(tmp_path / "trail", [
        fleet, trail.by_ec2_fleet(run_instances([seen], 1, who=fleet["userIdentity"])),
        trail.create_fleet([[unseen]], 10)])
    assert evaluate.load_rule(path).launch_calls == {"RunInstances"}
    _, document, _ = whatif(tmp_path / "trail", policy=path)

    [launch] = document["launches"]
    assert launch["event_id"] != fleet["eventID"] and "also_recorded_by" not in launch
    assert verdicts(document) == {seen: ("violation", "terminate", "deny")}


@pytest.mark.parametrize("arn, linked", [
    ("arn:aws:iam::111111111111:role/aws-service-role/autoscaling.amazonaws.com/"
     "AWSServiceRoleForAutoScaling", True),
    # IAM paths may hold ':' and '/': this path only spells the service-role path.
    ("arn:aws:iam::111111111111:role/x:role/aws-service-role/AWSServiceRoleForAutoScaling",
     False),
    ("arn:aws:iam::111111111111:role/AWSServiceRoleForAutoScaling", False),
    ("", False),
])
def test_only_roles_under_the_service_role_path_count_as_service_linked(arn, linked):
    assert evaluate.service_linked(arn) is linked
