"""Broom's metrics as CloudWatch Embedded Metric Format lines (no API call): what a run
writes, and that it is the document CloudWatch turns into metrics (mock_aws)."""
import io
import json

import pytest

from c7n_broom import handler, invocation, metrics

from support import (
    launch,
    load_policy,
    policy_file,
    run_instances_event,
)

LAMBDA = {"AWS_LAMBDA_FUNCTION_NAME": "custodian-broom-ec2-require-code-tag"}


@pytest.fixture
def emitted(monkeypatch):
    """The EMF documents written during the test, as in Lambda (at a fixed time)."""
    stream = io.StringIO()
    monkeypatch.setattr(metrics, "EMITTER", metrics.Emitter(
        stream, clock=lambda: 1700000000.5, environ=LAMBDA))

    def read():
        return [json.loads(text) for text in stream.getvalue().splitlines()]
    return read


def values(documents, metric):
    """{(Policy, Outcome or None): value} of ``metric``."""
    return {(d.get("Policy"), d.get("Outcome")): d[metric]
            for d in documents if metric in d}


def test_a_run_counts_judged_instances_and_violations_per_outcome(inbox, emitted):
    ids = launch(count=3)
    [good] = launch(tags={"Code": "LOL"})
    [data] = policy_file("ec2-tags.yml")["policies"]
    load_policy(data).push(run_instances_event(ids + [good]))

    documents = emitted()
    policy = "broom-ec2-require-code-tag"
    assert values(documents, "Judged") == {(policy, None): 4}
    assert values(documents, "Violations") == {(policy, "terminated"): 3}
    [violations] = [d for d in documents if "Violations" in d]
    assert violations["_aws"] == {"Timestamp": 1700000000500, "CloudWatchMetrics": [{
        "Namespace": "Broom",
        "Dimensions": [["Policy", "Outcome"], ["Policy"], ["Outcome"]],
        "Metrics": [{"Name": "Violations", "Unit": "Count"}]}]}


def test_report_only_and_exempt_launches_are_counted_under_their_outcome(inbox, emitted):
    ids = launch(count=2)
    [data] = policy_file("ec2-tags.yml")["policies"]
    load_policy(data, variables={"broom_enforcement": "report-only"}).push(
        run_instances_event(ids))

    assert values(emitted(), "Violations") == {
        ("broom-ec2-require-code-tag", "would-terminate"): 2}


def test_a_refused_event_is_counted(emitted, monkeypatch):
    monkeypatch.setattr(handler, "policy_data", lambda: {"policies": [
        {"name": "broom-ec2-require-code-tag", "mode": {"type": "cloudtrail"}}]})
    assert handler.run({"detail-type": "AWS API Call via CloudTrail", "detail": 7}, None) \
        is None

    [document] = emitted()
    assert document["RefusedEvents"] == 1
    assert document["Policy"] == "broom-ec2-require-code-tag"
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Policy"], []]


def test_a_failed_report_is_counted(aws, emitted):
    [instance] = launch()
    [data] = policy_file("ec2-tags.yml")["policies"]  # no topic: publishing fails
    with pytest.raises(Exception, match="could not be published"):
        load_policy(data).push(run_instances_event([instance]))

    assert values(emitted(), "ReportFailures") == {("broom-ec2-require-code-tag", None): 1}


def test_an_invocation_leaving_something_owed_is_counted(
        inbox, state_table, deployed, emitted, fake_clock):
    """An id EC2 does not show yet fails a fresh invocation for Lambda to retry."""
    [data] = policy_file("ec2-tags.yml")["policies"]
    deployed(data)
    with pytest.raises(invocation.RetryLater):
        handler.run(run_instances_event(["i-0123456789abcdef0"]), None)

    assert values(emitted(), "Owed") == {("broom-ec2-require-code-tag", None): 1}


def test_nothing_is_written_outside_lambda_unless_asked():
    assert not metrics.enabled({})
    assert metrics.enabled({"BROOM_METRICS": "emf"})
    assert metrics.enabled(LAMBDA)
    assert not metrics.enabled(dict(LAMBDA, BROOM_METRICS="off"))
    stream = io.StringIO()
    metrics.Emitter(stream, environ={}).count("p", metrics.JUDGED, 3)
    assert stream.getvalue() == ""


def emf_problems(document):
    """What breaks the EMF specification's rules (CloudWatch drops such a line's
    metrics): the directive's shape, each dimension a top-level string member, each
    metric a top-level number, at most 30 dimensions a set and 100 metrics."""
    problems = []
    directive = document.get("_aws")
    if not isinstance(directive, dict) or not isinstance(directive.get("Timestamp"), int):
        return ["_aws.Timestamp must be an integer (milliseconds)"]
    for entry in directive.get("CloudWatchMetrics") or ["missing"]:
        if not isinstance(entry, dict) or not isinstance(entry.get("Namespace"), str):
            problems.append("a CloudWatchMetrics entry needs a Namespace")
            continue
        for names in entry.get("Dimensions", []):
            if len(names) > 30:
                problems.append("more than 30 dimensions in a set")
            problems += ["dimension %s is not a top-level string" % name for name in names
                         if not isinstance(document.get(name), str)]
        if not 1 <= len(entry.get("Metrics", [])) <= 100:
            problems.append("1 to 100 metrics")
        problems += ["metric %s is not a top-level number" % m["Name"]
                     for m in entry.get("Metrics", [])
                     if isinstance(document.get(m["Name"]), bool)
                     or not isinstance(document.get(m["Name"]), (int, float))]
    return problems


def test_every_line_follows_the_emf_specification(inbox, emitted):
    ids = launch(count=2)
    [data] = policy_file("ec2-tags.yml")["policies"]
    load_policy(data).push(run_instances_event(ids))

    documents = emitted()
    assert len(documents) == 2
    assert [emf_problems(d) for d in documents] == [[], []]
    assert emf_problems({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{
        "Namespace": "Broom", "Dimensions": [["Policy"]],
        "Metrics": [{"Name": "Judged"}]}]}, "Judged": "3"}) == [
        "dimension Policy is not a top-level string", "metric Judged is not a top-level number"]
