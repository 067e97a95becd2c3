"""What a new user meets in the first hour: `broom replay` on a folder and its dry-run
summary, `broom preflight`'s summary line, `broom whatif`'s case hint."""
import json

from click.testing import CliRunner

from broom.cli import cli

import trail
from support import REPO, launch, run_instances_event, states

POLICY = str(REPO / "policies" / "ec2-tags.yml")
TAGS = POLICY
CHANGED = str(REPO / "policies" / "ec2-tags-changed.yml")
SWEEP = str(REPO / "policies" / "ec2-tags-sweep.yml")


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


# --- broom replay -------------------------------------------------------------------

def test_replay_of_an_empty_folder_says_it_holds_no_log_file(aws, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    result = invoke("replay", POLICY, str(empty))
    assert "no such file" not in result.output
    assert "%s holds no CloudTrail log file (*.json.gz, *.json)" % empty in result.stderr
    assert result.exit_code == 0
    assert "0 event(s) read" in result.stdout and "; 1 input(s) skipped" in result.stdout


def test_replay_of_a_folder_replays_the_log_files_in_it(aws, tmp_path):
    [bad] = launch(tags={"Code": "NOPE"})
    folder = tmp_path / "dead-letters" / "2026"
    folder.mkdir(parents=True)
    (folder / "a.json").write_text(json.dumps(run_instances_event([bad])["detail"]))
    (folder / "notes.txt").write_text("not a log")
    result = invoke("replay", POLICY, str(tmp_path / "dead-letters"))
    assert result.exit_code == 0, result.output
    assert "%s  invalid  dry run" % bad in result.stdout
    assert "1 event(s) read, 1 matched a policy" in result.stdout
    assert "input(s) skipped" not in result.stdout


def test_replay_dry_run_summary_does_not_claim_it_acted(aws, tmp_path):
    [bad] = launch(tags={"Code": "NOPE"})
    path = tmp_path / "a.json"
    path.write_text(json.dumps(run_instances_event([bad])["detail"]))
    result = invoke("replay", POLICY, str(path))
    assert result.exit_code == 0, result.output
    assert "1 handled, 1 acted on" not in result.stdout
    assert ("1 event(s) read, 1 matched a policy: 1 handled, 1 would be acted on, "
            "0 failed, 0 skipped (dry run: nothing changed)") in result.stdout
    assert states([bad]) == {bad: "running"}


def test_replay_of_a_path_that_does_not_exist_names_it(aws, tmp_path):
    result = CliRunner().invoke(cli, ["replay", POLICY, str(tmp_path / "nope")])
    assert result.exit_code == 2
    assert "no such file or folder: %s" % (tmp_path / "nope") in result.output


# --- broom preflight ----------------------------------------------------------------

def test_preflight_summary_counts_what_it_checked_in_words_that_add_up(tmp_path):
    path = tmp_path / "accounts.yml"
    path.write_text(
        "accounts:\n"
        "  - {account_id: '111111111111', name: a, role: r-deployer,\n"
        "     regions: [us-east-1, eu-west-1]}\n"
        "  - {account_id: '222222222222', name: b, role: r-deployer, regions: [us-east-1]}\n"
        "  - {account_id: '333333333333', name: c, role: r-deployer, regions: [us-east-1]}\n")
    result = invoke("preflight", "-c", str(path), "-u", TAGS)
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == [
        "checked 1 policy in each of 4 account-regions (3 accounts, 2 regions): "
        "4 deployments"]


def test_preflight_summary_of_the_shipped_accounts():
    result = invoke("preflight", "-c", str(REPO / "accounts.yml"), "-u", TAGS, "-u", CHANGED,
                    "-u", SWEEP)
    assert result.exit_code == 0, result.output
    # sandbox: 2 regions, data-team: 1, training: 1; three policies in each
    assert result.stdout.splitlines() == [
        "checked 3 policies in each of 4 account-regions (3 accounts, 2 regions): "
        "12 deployments"]


# --- broom whatif -------------------------------------------------------------------

def test_whatif_says_did_you_mean_for_a_code_wrong_only_in_case(tmp_path):
    wrong_case, wrong = trail.instance_id(), trail.instance_id()
    trail.log_file(tmp_path, [
        trail.run_instances([wrong_case], 0, tags={"Code": "lol"}),
        trail.run_instances([wrong], 10, tags={"Code": "NOPE"}),
    ])
    result = invoke("whatif", "--json", "--no-progress", str(tmp_path))
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    reasons = {i["instance_id"]: i["reason"]
               for launch in document["launches"] for i in launch["instances"]}
    assert reasons[wrong_case] == ("Code 'lol' is not an allowed code: did you mean LOL? "
                                   "(codes are case-sensitive)")
    assert reasons[wrong] == "Code 'NOPE' is not an allowed code"
    table = invoke("whatif", "--no-progress", str(tmp_path))
    assert "did you mean LOL?" in table.stdout
