"""The report's text and attributes: pure functions, plain data."""
import pytest
from hypothesis import given, settings, strategies as st

from c7n_broom import report
from c7n_broom.identity import UNKNOWN, Creator

FINDING = report.Finding(instance_id="i-0123456789abcdef0", region="eu-west-1",
                         account_id="111111111111", image_id="ami-1", instance_type="t3.micro",
                         launch_time="2026-01-01T00:00:00+00:00", code_value=None,
                         reason="missing", allowed=("LOL", "GGG"), event_name="RunInstances",
                         event_time="2026-01-01T00:00:01Z", event_id="e-1")
ALICE = Creator(name="alice", identity_type="IAMUser",
                arn="arn:aws:iam::111111111111:user/alice", account_id="111111111111")
ALL_STATUSES = [report.TERMINATED, report.FAILED, report.REPORT_ONLY, report.EXEMPT,
                report.HELD, report.GONE, report.REPORTED]


@pytest.mark.parametrize("status", ALL_STATUSES)
def test_only_a_confirmed_termination_is_called_terminated(status):
    outcome = report.Outcome(status, "detail")
    text = report.body(FINDING, outcome, ALICE) + report.subject(FINDING, outcome)
    claims = text.count("Broom terminated") + text.count("Action taken:   terminated")
    assert bool(claims) == (status == report.TERMINATED)


def test_body_names_everything_a_person_needs():
    text = report.body(FINDING, report.Outcome(report.TERMINATED), ALICE)
    for expected in ("Launched by:    alice", "Identity type:  IAMUser",
                     "arn:aws:iam::111111111111:user/alice", "Account:        111111111111",
                     "Region:         eu-west-1", "Instance:       i-0123456789abcdef0",
                     "Image:          ami-1", "Instance type:  t3.micro",
                     "Launch time:    2026-01-01T00:00:00+00:00",
                     "Event:          RunInstances at 2026-01-01T00:00:01Z (event id e-1)",
                     "Code tag:       (no Code tag)", "allowed codes: LOL, GGG"):
        assert expected in text


def test_pull_mode_report_says_no_event_and_unknown_creator():
    finding = report.Finding(instance_id="i-1", region="us-east-1", account_id="1")
    text = report.body(finding, report.Outcome(report.REPORTED), UNKNOWN)
    assert "Launched by:    unknown" in text
    assert "none (found by a scheduled or manual run)" in text


@pytest.mark.parametrize("raw, shown", [
    ("a\nb", "a\\x0ab"), ("tab\there", "tab\\x09here"), ("\u202eevil", "\\u202eevil"),
    ("caf\u00e9", "caf\u00e9"), ("x" * 300, "x" * 255 + "…"), (None, ""), (42, "42"),
])
def test_clean_keeps_one_printable_line(raw, shown):
    assert report.clean(raw) == shown


@settings(max_examples=300, deadline=None)
@given(value=st.text(), name=st.text(), arn=st.text())
def test_untrusted_text_cannot_add_lines_or_break_the_subject(value, name, arn):
    finding = report.Finding(instance_id="i-1", region="us-east-1", account_id="1",
                             code_value=value, reason="invalid")
    creator = Creator(name=name, arn=arn)
    outcome = report.Outcome(report.TERMINATED, value)
    expected = report.body(report.Finding(instance_id="i-1", region="us-east-1",
                                          account_id="1", code_value="x", reason="invalid"),
                           report.Outcome(report.TERMINATED, "x"), Creator(name="x", arn="x"))
    assert len(report.body(finding, outcome, creator).splitlines()) == len(
        expected.splitlines())
    subject = report.subject(finding, outcome)
    assert len(subject) <= 100 and subject.isascii() and "\n" not in subject
    for attribute in report.attributes(finding, outcome, creator).values():
        assert attribute["StringValue"] and "\n" not in attribute["StringValue"]


def test_attributes_stay_within_what_sqs_delivers():
    attributes = report.attributes(FINDING, report.Outcome(report.TERMINATED), ALICE)
    assert len(attributes) <= 10
    assert attributes["broom.outcome"]["StringValue"] == "terminated"
    assert "broom.code" not in attributes  # no value: SNS refuses empty attributes


def test_digest_fits_sns_limit_however_many_instances():
    items = [(report.Finding(instance_id="i-%017d" % n, region="us-east-1",
                             account_id="1", instance_type="t3.micro", reason="invalid",
                             code_value="\u00e9" * 50), report.Outcome(report.HELD, "cap"))
             for n in range(20000)]
    subject, body, attributes = report.digest(items, ALICE)
    assert len(body.encode("utf-8")) < report.SNS_LIMIT - 10 * 1024
    assert "more instances (not listed: message size limit)" in body
    assert subject == "Broom: 20000 instances without an allowed Code in us-east-1"
    assert attributes["broom.count"]["StringValue"] == "20000"
