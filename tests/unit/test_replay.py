"""`broom replay` draining a dead-letter queue, and dependable on a batch (mock_aws).

The basic file cases are in test_cli.py; the plugin's handling of old events
(no grace wait, no retry of unknown ids) is tested here too, with the fake clock.
"""
import json
import sys

import boto3
import pytest
from click.testing import CliRunner

import broom.replay
from broom.cli import cli
from c7n_broom.source import RETRY_DELAYS, ResilientDescribeEC2

from support import (
    ACCOUNT,
    REGION,
    REPO,
    launch,
    load_policy,
    policy_file,
    run_instances_event,
    states,
)

POLICY = str(REPO / "policies" / "ec2-tags.yml")

OLD = "2020-01-02T03:04:05Z"
QUEUE = "broom-dead-letters"


def invoke(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


@pytest.fixture
def queue(aws, monkeypatch):
    """The dead-letter queue, empty; messages are Lambda's: the event as the body."""
    monkeypatch.setattr(broom.replay, "WAIT_SECONDS", 0)  # no long polling in tests
    sqs = boto3.client("sqs", region_name=REGION)
    url = sqs.create_queue(QueueName=QUEUE)["QueueUrl"]

    class Queue:
        def send(self, event):
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps(event))

        def bodies(self):
            """What is still in the queue (received with no visibility timeout)."""
            messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                           VisibilityTimeout=0).get("Messages", [])
            return [m["Body"] for m in messages]
    Queue.url = url
    return Queue()


@pytest.fixture
def files(tmp_path):
    def write(name, data):
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return str(path)
    return write


def record(instance_ids, **kw):
    return run_instances_event(instance_ids, **kw)["detail"]


# --- the dead-letter queue ----------------------------------------------------------

def test_execute_drains_the_queue_deleting_handled_messages(inbox, queue):
    [bad] = launch(tags={"Code": "NOPE"})
    queue.send(run_instances_event([bad]))
    result = invoke("replay", POLICY, "sqs://" + QUEUE, "--execute")
    assert result.exit_code == 0, result.output
    assert "%s  invalid  terminated" % bad in result.output
    assert states([bad]) == {bad: "terminated"}
    assert queue.bodies() == []
    assert len(inbox.emails()) == 1


def test_a_message_whose_event_failed_stays_in_the_queue(aws, queue):
    """No report topic: publishing fails, so the message is kept for another try."""
    [bad] = launch(tags={"Code": "NOPE"})
    queue.send(run_instances_event([bad]))
    result = invoke("replay", POLICY, queue.url, "--execute")
    assert result.exit_code == 1
    assert "failed: " in result.output
    assert "0 handled, 0 acted on, 1 failed, 0 skipped" in result.output
    assert len(queue.bodies()) == 1  # and visible again at once


def test_a_monkeypatched_failure_keeps_only_that_message(inbox, queue, monkeypatch):
    [bad, worse] = launch(count=2, tags={"Code": "NOPE"})
    queue.send(run_instances_event([bad]))
    queue.send(run_instances_event([worse]))
    run_policy = broom.replay.run_policy

    def fail_on_worse(policy, record, event, execute, age):
        if worse in json.dumps(record):
            raise RuntimeError("boom")
        return run_policy(policy, record, event, execute, age)
    monkeypatch.setattr(broom.replay, "run_policy", fail_on_worse)
    result = invoke("replay", POLICY, "sqs://" + QUEUE, "--execute")
    assert result.exit_code == 1
    assert "failed: RuntimeError: boom" in result.output
    [kept] = queue.bodies()
    assert worse in kept and bad not in kept


def test_a_dry_run_deletes_no_message(inbox, queue):
    [bad] = launch(tags={"Code": "NOPE"})
    queue.send(run_instances_event([bad]))
    result = invoke("replay", POLICY, "sqs://" + QUEUE)
    assert result.exit_code == 0, result.output
    assert "%s  invalid  dry run" % bad in result.output
    assert len(queue.bodies()) == 1
    assert states([bad]) == {bad: "running"}


def test_a_message_that_is_not_an_event_is_skipped_and_kept(inbox, queue):
    queue.send({"hello": "world"})
    result = invoke("replay", POLICY, "sqs://" + QUEUE, "--execute")
    assert result.exit_code == 1, result.output  # the queue is not drained
    assert "skipped sqs://%s message" % QUEUE in result.stderr
    assert "1 input(s) skipped" in result.output
    assert len(queue.bodies()) == 1


# --- a batch goes on past failures --------------------------------------------------

def test_execute_goes_on_after_a_report_that_cannot_be_published(aws, files):
    """No report topic: each event fails on its own, every violator is still handled."""
    first, second = launch(tags={"Code": "NOPE"}), launch(tags={"Code": "NOPE"})
    paths = [files("a.json", record(first)), files("b.json", record(second))]
    result = invoke("replay", POLICY, *paths, "--execute")
    assert result.exit_code == 1
    assert states(first + second) == {first[0]: "terminated", second[0]: "terminated"}
    assert result.output.count("failed: ") == 2
    assert result.output.rstrip().endswith(
        "2 event(s) read, 2 matched a policy: 0 handled, 0 acted on, 2 failed, 0 skipped")


def test_files_without_cloudtrail_records_are_named_and_skipped(aws, files):
    [bad] = launch(tags={"Code": "NOPE"})
    empty = files("empty.json", {"Records": []})
    other = files("other.json", {"detail-type": "Scheduled Event", "detail": {}})
    good = files("good.json", record([bad]))
    result = invoke("replay", POLICY, empty, other, good)
    assert result.exit_code == 0, result.output
    assert "empty.json holds no CloudTrail record" in result.stderr
    assert "other.json holds no CloudTrail record" in result.stderr
    assert "%s  invalid  dry run" % bad in result.stdout
    assert ("1 event(s) read, 1 matched a policy: 1 handled, 1 would be acted on"
            in result.stdout)
    assert "; 2 input(s) skipped" in result.stdout


def test_results_are_shown_as_each_event_is_done(aws, files, monkeypatch):
    import broom.cli
    shown = []
    replay_event = broom.cli.replay_event

    def remember_output(*args):
        shown.append(sys.stdout.buffer.getvalue().decode())
        return replay_event(*args)
    monkeypatch.setattr(broom.cli, "replay_event", remember_output)
    [a], [b] = launch(tags={"Code": "NOPE"}), launch(tags={"Code": "NOPE"})
    invoke("replay", POLICY, files("a.json", record([a])), files("b.json", record([b])))
    assert a not in shown[0] and a in shown[1]


def test_progress_is_counted_on_stderr_only_when_asked(aws, files):
    path = files("a.json", record(launch(tags={"Code": "NOPE"})))
    assert "1 event(s), 0 failed" in invoke("replay", POLICY, path, "--progress").stderr
    assert "event(s), 0 failed" not in invoke("replay", POLICY, path).stderr


def test_json_prints_one_document_on_stdout(aws, files):
    [bad] = launch(tags={"Code": "NOPE"})
    result = invoke("replay", POLICY, files("a.json", record([bad], event_time=OLD)),
                    files("x.json", {"Records": []}), "--json")
    assert result.exit_code == 0, result.output
    [event] = json.loads(result.stdout)
    assert event["policy"] == "broom-ec2-require-code-tag"
    assert event["event_name"] == "RunInstances" and event["event_time"] == OLD
    assert event["region"] == REGION and event["creator"] and event["event_id"]
    assert event["skipped"] is None and event["error"] is None
    [instance] = event["instances"]
    assert instance["instance_id"] == bad and instance["verdict"] == "invalid"
    assert instance["outcome"].startswith("anomaly")  # launched now, recorded in 2020
    assert "x.json" in result.stderr and "1 event(s) read" in result.stderr


# --- old events: no grace wait, no retries, gone instances shown as gone -------------

def test_an_old_event_waits_neither_for_tags_nor_for_unknown_ids(aws, files, fake_clock):
    untagged = launch(count=5)
    [gone] = launch()
    boto3.client("ec2", region_name=REGION).terminate_instances(InstanceIds=[gone])
    unknown = "i-0123456789abcdef0"
    path = files("old.json", {"Records": [record(untagged + [gone, unknown], event_time=OLD)]})
    result = invoke("replay", POLICY, path)
    assert result.exit_code == 0, result.output
    assert fake_clock.sleeps == []
    assert all("%s  missing" % i in result.output for i in untagged)
    assert "%s  -  already gone (terminated)" % gone in result.output
    assert "%s  -  not found" % unknown in result.output


def test_an_instance_already_gone_is_not_called_compliant(aws, files):
    [gone] = launch()
    boto3.client("ec2", region_name=REGION).terminate_instances(InstanceIds=[gone])
    result = invoke("replay", POLICY, files("a.json", record([gone])))
    assert "%s  -  already gone (terminated)" % gone in result.output
    assert "no instance breaks the rule" not in result.output


def test_allowed_codes_does_not_wait_for_tags_of_an_old_event(aws, fake_clock):
    [data] = policy_file("ec2-tags.yml")["policies"]
    policy = load_policy(data)
    [untagged] = launch()
    [check] = [f for f in policy.resource_manager.filters if f.type == "allowed-codes"]
    resources = policy.resource_manager.get_resources([untagged])
    assert check.process(resources, run_instances_event([untagged], event_time=OLD))
    assert fake_clock.sleeps == []
    assert check.process(resources, run_instances_event([untagged]))
    assert sum(fake_clock.sleeps) == 10  # a fresh event still gets its grace period


def test_unknown_ids_are_retried_only_for_a_fresh_event(aws, fake_clock):
    [data] = policy_file("ec2-tags.yml")["policies"]
    source = load_policy(data).resource_manager.source
    assert isinstance(source, ResilientDescribeEC2)
    [known] = launch()
    unknown = "i-0123456789abcdef0"
    found = source.for_event_age(3600).get_resources([known, unknown])
    assert [r["InstanceId"] for r in found] == [known] and fake_clock.sleeps == []
    source.for_event_age(10).get_resources([known, unknown])
    assert fake_clock.sleeps == list(RETRY_DELAYS)


# --- usage and configuration errors --------------------------------------------------

def test_no_credentials_is_one_line_not_a_traceback(files, monkeypatch):
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    result = invoke("replay", POLICY, files("a.json", record(["i-0123456789abcdef0"])))
    assert result.exit_code == 1
    assert result.stderr.startswith("broom replay failed: no AWS credentials (set AWS_PROFILE")
    assert len(result.stderr.splitlines()) == 1


def test_an_unknown_profile_is_one_line(files, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "nobody")
    result = invoke("replay", POLICY, files("a.json", record(["i-0123456789abcdef0"])))
    assert result.exit_code == 1
    assert "broom replay failed: " in result.stderr and "nobody" in result.stderr
    assert "Traceback" not in result.output


def test_no_region_for_a_queue_name_is_one_line(aws, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    result = invoke("replay", POLICY, "sqs://" + QUEUE)
    assert result.exit_code == 1
    assert "no AWS region" in result.stderr


@pytest.mark.parametrize("var", ["x", "=x"])
def test_a_malformed_var_is_a_usage_error(aws, files, var):
    path = files("a.json", record(["i-0123456789abcdef0"]))
    result = CliRunner().invoke(cli, ["replay", POLICY, path, "--var", var])
    assert result.exit_code == 2
    assert "Invalid value for --var: expected NAME=VALUE" in result.output


def test_a_missing_file_is_a_usage_error(aws, tmp_path):
    result = CliRunner().invoke(cli, ["replay", POLICY, str(tmp_path / "nope.json")])
    assert result.exit_code == 2
    assert "no such file" in result.output


def test_records_of_another_account_are_skipped(aws, files):
    path = files("a.json", record(["i-0123456789abcdef0"], account="999999999999"))
    result = invoke("replay", POLICY, path)
    assert result.exit_code == 1
    assert "refused: the record is from account 999999999999" in result.output
    assert ACCOUNT in result.output
