"""`broom replay` (click's CliRunner, mock_aws); `broom scp` is in test_scp.py."""
import gzip
import json

import pytest
from click.testing import CliRunner

from broom.cli import cli

from support import REPO, launch, run_instances_event, states

POLICY = str(REPO / "policies" / "ec2-tags.yml")


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def event_file(tmp_path):
    def write(instance_ids, name="event.json", wrap=None, **kw):
        record = run_instances_event(instance_ids, **kw)["detail"]
        data = wrap(record) if wrap else record
        path = tmp_path / name
        raw = json.dumps(data).encode()
        path.write_bytes(gzip.compress(raw) if name.endswith(".gz") else raw)
        return str(path)
    return write


def test_replay_shows_violators_and_changes_nothing_by_default(inbox, event_file):
    [good] = launch(tags={"Code": "LOL"})
    [bad] = launch(tags={"Code": "NOPE"})
    result = invoke("replay", POLICY, event_file([good, bad]))
    assert result.exit_code == 0, result.output
    assert "broom-ec2-require-code-tag RunInstances 20" in result.output
    assert " in us-east-1 by c7nbot" in result.output
    assert "%s  invalid  dry run" % bad in result.output
    assert good not in result.output
    assert ("1 event(s) read, 1 matched a policy: 1 handled, 1 would be acted on, 0 failed, "
            "0 skipped (dry run: nothing changed)") in result.output
    assert states([good, bad]) == {good: "running", bad: "running"}
    assert inbox.emails() == []


def test_replay_execute_terminates_and_reports(inbox, event_file):
    [bad] = launch(tags={"Code": "NOPE"})
    result = invoke("replay", POLICY, event_file([bad]), "--execute")
    assert result.exit_code == 0, result.output
    assert "%s  invalid  terminated" % bad in result.output
    assert states([bad]) == {bad: "terminated"}
    assert len(inbox.emails()) == 1


def test_replay_reads_gzipped_cloudtrail_log_files(aws, event_file):
    [bad] = launch()
    other = {"eventName": "DescribeInstances", "eventSource": "ec2.amazonaws.com",
             "awsRegion": "us-east-1", "userIdentity": {"type": "IAMUser"}}
    path = event_file([bad], name="log.json.gz",
                      wrap=lambda record: {"Records": [other, record]})
    result = invoke("replay", POLICY, path)
    assert result.exit_code == 0, result.output
    assert "%s  missing  dry run" % bad in result.output
    assert "2 event(s) read, 1 matched a policy" in result.output


def test_replay_accepts_eventbridge_events_and_vars(aws, event_file):
    [ok_here] = launch(tags={"Code": "TEAM"})
    # The event EventBridge delivers; a made-up envelope is refused as Lambda refuses it.
    path = event_file([ok_here], wrap=lambda record: run_instances_event([ok_here]))
    result = invoke("replay", POLICY, path, "--var", "broom_codes=TEAM")
    assert result.exit_code == 0, result.output
    assert "no instance breaks the rule" in result.output


def test_replay_skips_failed_calls(aws, event_file):
    def failed(record):
        record["errorCode"] = "Client.InstanceLimitExceeded"
        return record
    result = invoke("replay", POLICY, event_file(["i-0123456789abcdef0"], wrap=failed))
    assert "skipped: the call failed (Client.InstanceLimitExceeded" in result.output


def test_replay_names_a_file_it_cannot_read(aws, tmp_path):
    bad = tmp_path / "notes.txt"
    bad.write_text("not json")
    result = invoke("replay", POLICY, str(bad))
    assert result.exit_code == 0
    assert "skipped " in result.stderr and "notes.txt: not a readable JSON file" in result.stderr
    assert "1 input(s) skipped" in result.output


def test_replay_rejects_a_malformed_var(aws, event_file):
    result = CliRunner().invoke(cli, ["replay", POLICY, event_file(["i-1"]), "--var", "x"])
    assert result.exit_code == 2
    assert "expected NAME=VALUE" in result.output
