"""The report's text and attributes: pure functions, plain data."""
import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from c7n_broom import report, text
from c7n_broom.identity import UNKNOWN, Creator, resolve_creator

from support import assert_inert, marks_in_a_row

FINDING = report.Finding(instance_id="i-0123456789abcdef0", region="eu-west-1",
                         account_id="111111111111", image_id="ami-1", instance_type="t3.micro",
                         launch_time="2026-01-01T00:00:00+00:00", code_value=None,
                         reason="missing", allowed=("LOL", "GGG"), event_name="RunInstances",
                         event_time="2026-01-01T00:00:01Z", event_id="e-1")
ALICE = Creator(name="alice", identity_type="IAMUser",
                arn="arn:aws:iam::111111111111:user/alice", account_id="111111111111")
ALL_STATUSES = [report.TERMINATED, report.FAILED, report.WOULD_TERMINATE, report.EXEMPT,
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


# Values an attacker chooses: a tag value (EC2 accepts any characters), an instance
# name, the session name of an assumed role (chosen by whoever called AssumeRole).
CHANNEL_PING = "<!channel> @here <b>x</b>"
MASKED_LINK = "[click](http://evil.example)"
ZALGO = "".join(c + "\u0300\u0316\u0317\u0318\u0319\u031a\u0350" * 4 for c in "Zalgo")
SPACES = "LOL" + " " * 50 + "GGG"
RLO = "invoice\u202egpj.exe"
HOSTILE = report.Finding(
    instance_id="i-0123456789abcdef0", region="eu-west-1", account_id="111111111111",
    image_id=RLO, instance_type=ZALGO, code_value=CHANNEL_PING, reason="invalid",
    allowed=("LOL",), event_name="RunInstances", event_time="2026-01-01T00:00:01Z",
    event_id="e-1", extra={"Name": MASKED_LINK, "Owner": SPACES})
EVERYONE = resolve_creator({
    "type": "AssumedRole", "accountId": "111111111111",
    "arn": "arn:aws:sts::111111111111:assumed-role/Developer/@everyone",
    "sessionContext": {"sessionIssuer": {"userName": "Developer"}}})


def assert_no_hostile_markup(rendered):
    """None of the attacker's values survives as live markup, a mention, Zalgo spill,
    a run of spaces or a bidirectional override (the body's own padding aside)."""
    assert_inert(rendered)
    for raw in (CHANNEL_PING, "@here", "@everyone", "<!channel>", MASKED_LINK, "\u202e",
                SPACES, ZALGO):
        assert raw not in rendered
    assert marks_in_a_row(rendered) <= 1


def test_hostile_values_reach_the_report_inert_but_recognisable():
    outcome = report.Outcome(report.TERMINATED)

    body = report.body(HOSTILE, outcome, EVERYONE)

    assert_no_hostile_markup(body)
    for shown in ('Code tag:       "&lt;\uff01channel&gt; \uff20here &lt;b&gt;x&lt;/b&gt;"',
                  "Launched by:    \uff20everyone",
                  "Role:           Developer (session \uff20everyone)",
                  "Name:           [click] (http://evil.example)",
                  "Owner:          LOL GGG", "Image:          invoice\\u202egpj.exe"):
        assert shown in body.splitlines()
    instance_type = body.split("Instance type:  ")[1].partition("\n")[0]
    assert "".join(c for c in unicodedata.normalize("NFD", instance_type)
                   if not unicodedata.combining(c)) == "Zalgo"


def test_hostile_values_never_reach_the_subject_as_markup():
    finding = report.Finding(instance_id="i-1 <!channel>", region="[x](y)",
                             account_id="1", code_value=CHANNEL_PING,
                             reason="<b>bad</b> \u00b9!x")  # "?!x" once made ASCII

    subject = report.subject(finding, report.Outcome("<@U1>"))

    assert_inert(subject)
    assert subject.isascii() and subject.isprintable()
    assert "channel" in subject and "bad" in subject


def test_hostile_creator_is_inert_wherever_it_is_described():
    creator = Creator(name="@here\nFAKE LINE", via="<!channel>", note=MASKED_LINK)

    described = report.describe_creator(creator)

    assert described == ("\uff20here\\x0aFAKE LINE via &lt;\uff01channel&gt; "
                         "([click] (http://evil.example))")
    assert_inert(described)


def test_attributes_carry_the_true_values():
    attributes = report.attributes(HOSTILE, report.Outcome(report.TERMINATED), EVERYONE)

    assert attributes["broom.code"]["StringValue"] == CHANNEL_PING
    assert attributes["broom.creator"]["StringValue"] == "@everyone"
    assert attributes["broom.creator_arn"]["StringValue"] == (
        "arn:aws:sts::111111111111:assumed-role/Developer/@everyone")


def test_attributes_drop_only_what_sns_cannot_carry():
    finding = report.Finding(instance_id="i-1", region="us-east-1", account_id="1",
                             code_value="LOL\x00\ud800\n<b>", reason="invalid")

    attributes = report.attributes(finding, report.Outcome(report.TERMINATED), UNKNOWN)

    assert attributes["broom.code"]["StringValue"] == "LOL\n<b>"


def test_digest_is_inert_too_and_its_attributes_true():
    items = [(HOSTILE, report.Outcome(report.HELD, CHANNEL_PING)),
             (report.Finding(instance_id="i-2", region="eu-west-1", account_id="1",
                             code_value=MASKED_LINK, reason="invalid", instance_type=ZALGO),
              report.Outcome(report.HELD, CHANNEL_PING))]

    subject, body, attributes = report.digest(items, EVERYONE)

    assert_no_hostile_markup(subject + "\n" + body)
    assert "Launched by:    \uff20everyone" in body
    assert "Why not:        &lt;\uff01channel&gt; \uff20here &lt;b&gt;x&lt;/b&gt;" in body
    assert attributes["broom.creator"]["StringValue"] == "@everyone"


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
    attributes = report.attributes(finding, outcome, creator)
    carried = {name: attribute["StringValue"] for name, attribute in attributes.items()}
    assert carried.get("broom.code", "") == text.attribute(value)
    assert carried.get("broom.creator", "") == text.attribute(creator.name)
    assert all(attribute["StringValue"] for attribute in attributes.values())


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
