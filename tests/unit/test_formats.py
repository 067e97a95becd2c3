"""One publish, a format per subscriber: each format parsed as its consumer parses it.

The JSON document against schemas/broom.report-1.json (jsonschema), AWS Chatbot's card
against the fields its custom-notification documentation lists, the e-mail text as
before; all of them, digest included, under SNS's 256 KB limit.
"""
import json
import re

import boto3
import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from moto.sns.models import sns_backends

from c7n_broom import actions, formats, lookup, report, sweep
from c7n_broom import text as text_module
from c7n_broom.cost import Cost
from c7n_broom.identity import Creator
from c7n_broom.text import MAX_ATTRIBUTE_LENGTH

from support import (
    ACCOUNT,
    LIVE_MARKUP,
    REGION,
    REPO,
    Inbox,
    launch,
    load_policy,
    policy_with,
    report_validator,
    run_instances_event,
    states,
)

VALIDATOR = report_validator()
SCHEMA = VALIDATOR.schema

# AWS Chatbot custom notifications (docs.aws.amazon.com/chatbot/latest/adminguide/
# custom-notifs.html, "Event schema" and "Parameter details"): version "1.0" and
# source "custom" required; content.textType "client-markdown" (the only one);
# title, description strings; nextSteps and keywords lists of strings; metadata with
# threadId, summary, eventType, relatedResources (strings), additionalContext
# (string values).
CHATBOT_TOP = {"version", "source", "id", "content", "metadata"}
CHATBOT_CONTENT = {"textType", "title", "description", "nextSteps", "keywords"}
CHATBOT_METADATA = {"threadId", "summary", "eventType", "relatedResources",
                    "additionalContext"}

HOSTILE_CODE = "<!channel> @here *bold* _it_ ~x~ `code` ```fence``` [a](http://evil) <http://x|y>"
HOSTILE_SESSION = "@channel`*x*"


def assert_chatbot_card(card):
    """What AWS Chatbot accepts as a custom notification."""
    assert set(card) <= CHATBOT_TOP
    assert card["version"] == "1.0" and card["source"] == "custom"
    content = card["content"]
    assert set(content) <= CHATBOT_CONTENT
    assert content["textType"] == "client-markdown"
    assert isinstance(content["title"], str) and content["title"]
    assert isinstance(content["description"], str) and content["description"]
    assert all(isinstance(step, str) for step in content["nextSteps"])
    assert all(isinstance(word, str) and word for word in content["keywords"])
    metadata = card["metadata"]
    assert set(metadata) <= CHATBOT_METADATA
    assert all(isinstance(r, str) for r in metadata["relatedResources"])
    assert all(isinstance(v, str) for v in metadata["additionalContext"].values())


def assert_chat_inert(markdown):
    """No mention, link, tag or formatting can come from a value: every value sits in a
    code span holding no backtick, and nothing outside the spans is live markup."""
    assert not LIVE_MARKUP.search(markdown), LIVE_MARKUP.search(markdown)
    outside = re.sub(r"`[^`\n]*`", "", markdown)
    assert outside.count("`") == 0, outside
    for fragment in ("bold", "_it_", "~x~", "fence", "evil"):
        assert fragment not in outside


def sso_event(instance_ids, session="alice@example.com"):
    event = run_instances_event(instance_ids)
    event["detail"]["userIdentity"] = json.loads(
        (REPO / "tests" / "data" / "identities" / "sso-permission-set.json").read_text())
    identity = event["detail"]["userIdentity"]
    identity["arn"] = identity["arn"].rpartition("/")[0] + "/" + session
    identity["principalId"] = identity["principalId"].split(":")[0] + ":" + session
    return event


def main_policy(**options):
    return load_policy(policy_with("action:creator-report", **options))


def sent_envelopes(topic_arn):
    """The Message of every publish to a topic, as SNS got it (moto keeps them)."""
    topic = sns_backends[ACCOUNT][REGION].topics[topic_arn]
    return [message for _, message, *_ in topic.sent_notifications]


def test_sqs_receives_the_json_document_and_email_the_text(inbox):
    [wrong] = launch(tags={"Code": HOSTILE_CODE})
    event = sso_event([wrong], session=HOSTILE_SESSION)
    main_policy(cost=False).push(event)

    [received] = inbox.messages()
    document = json.loads(received["Message"])
    VALIDATOR.validate(document)
    assert document["schema"] == "broom.report/1" and document["kind"] == "instance"
    [entry] = document["instances"]
    assert entry["code"] == {"key": "Code", "value": HOSTILE_CODE, "reason": "invalid",
                             "allowed": ["LOL", "GGG", "BRB", "YLO"], "suggestion": None}
    assert entry["outcome"] == {"status": "terminated", "detail": None}
    assert document["creator"]["session"] == HOSTILE_SESSION  # true values, typed
    assert document["event"]["id"] == event["detail"]["eventID"]
    assert document["policy"] == "broom-ec2-require-code-tag"

    [envelope] = sent_envelopes(inbox.topic_arn)
    forms = json.loads(envelope)
    assert set(forms) == {"default", "email", "https"}  # https: the shipped chatbot format
    assert json.loads(forms["default"]) == document
    assert forms["email"] == document["text"]
    assert forms["email"].startswith("Broom terminated EC2 instance %s" % wrong)
    assert received["Subject"] == document["subject"]
    assert_chatbot_card(json.loads(forms["https"]))


def test_the_chatbot_card_names_the_launch_and_renders_nothing_from_its_values(inbox):
    [wrong] = launch(tags={"Code": HOSTILE_CODE})
    main_policy(cost=False).push(sso_event([wrong], session=HOSTILE_SESSION))
    [envelope] = sent_envelopes(inbox.topic_arn)
    card = json.loads(json.loads(envelope)["https"])

    assert_chatbot_card(card)
    content = card["content"]
    for text in [content["title"], content["description"]] + content["nextSteps"]:
        assert_chat_inert(text)
    assert wrong in content["title"] and "terminated" in content["title"]
    assert "`%s`" % wrong in content["description"]
    assert "`&lt;\uff01channel&gt; \uff20here *bold*" in content["description"]
    assert "\uff20channel\uff40*x*" in content["description"]  # backtick cannot end the span
    assert content["keywords"][:2] == [ACCOUNT, REGION]
    assert "terminated" in content["keywords"]
    assert not any(LIVE_MARKUP.search(k) for k in content["keywords"])
    assert card["metadata"]["relatedResources"] == [wrong]


def test_https_format_json_leaves_https_subscribers_the_document(inbox):
    [untagged] = launch()
    main_policy(**{"https-format": "json"}).push(run_instances_event([untagged]))
    [envelope] = sent_envelopes(inbox.topic_arn)
    assert set(json.loads(envelope)) == {"default", "email"}  # https takes the default


def test_chatbot_topic_gets_the_card_alone(aws):
    reports, chat = Inbox(), Inbox(topic_name="broom-chatbot")
    [untagged] = launch()
    main_policy(**{"https-format": "json", "chatbot-topic": chat.topic_arn}).push(
        run_instances_event([untagged]))
    [document] = [json.loads(m["Message"]) for m in reports.messages()]
    [card] = [json.loads(m["Message"]) for m in chat.messages()]
    assert_chatbot_card(card)
    assert document["instances"][0]["instance_id"] == untagged
    assert untagged in card["content"]["title"]


def test_a_code_that_differs_only_by_case_gets_a_suggestion(inbox):
    [wrong] = launch(tags={"Code": "lol"})
    main_policy().push(run_instances_event([wrong]))
    [report_] = inbox.emails()
    assert ('Why:            Code="lol" is not an allowed code: did you mean LOL? (codes '
            'are case-sensitive) (allowed codes: LOL, GGG, BRB, YLO)') in report_["Message"]
    assert report_["Document"]["instances"][0]["code"]["suggestion"] == "LOL"


def test_no_suggestion_for_a_lookalike_or_a_different_code():
    for value in ("LOI", "ＬＯＬ", "LOLL"):
        finding = report.Finding(instance_id="i-1", region=REGION, account_id=ACCOUNT,
                                 code_value=value, reason="invalid", allowed=("LOL",))
        assert finding.suggestion == ""
        assert "did you mean" not in report.describe_reason(finding)


# --- FIFO topics --------------------------------------------------------------------

def fifo_inbox():
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name="broom-reports.fifo", Attributes={"FifoTopic": "true"})
    url = sqs.create_queue(QueueName="broom-inbox.fifo", Attributes={
        "FifoQueue": "true"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])[
        "Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic["TopicArn"], Protocol="sqs", Endpoint=arn)
    return topic["TopicArn"], sqs, url


def test_a_fifo_topic_is_valid_and_dedups_a_repeated_event(aws):
    topic, sqs, url = fifo_inbox()
    [untagged] = launch()
    event = run_instances_event([untagged])
    # No state table: only SNS/SQS deduplication can drop the second delivery.
    main_policy(topic=topic).push(event)
    main_policy(topic=topic).push(event)

    received = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   AttributeNames=["All"])["Messages"]
    assert len(received) == 1
    attributes = received[0]["Attributes"]
    assert attributes["MessageGroupId"] == event["detail"]["eventID"]
    assert re.fullmatch(r"[0-9a-f]{64}", attributes["MessageDeduplicationId"])
    assert states([untagged]) == {untagged: "terminated"}


def test_fifo_ids_stay_within_what_sns_accepts():
    message = actions.Message("i-1", "s", "t", {}, document={"a": 1})
    hostile = "id with spaces\n and é and " + "x" * 300
    ids = actions.fifo_ids("arn:aws:sns:us-east-1:1:t.fifo", "p", hostile, message)
    for value in ids.values():
        assert 1 <= len(value) <= 128 and re.fullmatch(r"[!-~]+", value)
    assert actions.fifo_ids("arn:aws:sns:us-east-1:1:t", "p", "e", message) == {}
    again = actions.fifo_ids("arn:aws:sns:us-east-1:1:t.fifo", "p", hostile, message)
    other = actions.fifo_ids("arn:aws:sns:us-east-1:1:t.fifo", "p", hostile + "#recheck",
                             message)
    assert again == ids and other["MessageDeduplicationId"] != ids["MessageDeduplicationId"]
    no_event = actions.fifo_ids("arn:aws:sns:us-east-1:1:t.fifo", "p", "", message)
    assert no_event["MessageGroupId"] == "broom-p"


# --- SNS's 256 KB, every format -----------------------------------------------------

# The largest values each field can hold: EC2 tag values are at most 256 characters,
# Creator fields 2048 (identity.MAX_FIELD_LENGTH); quotes and backslashes double when
# JSON-escaped, and again inside the envelope; 4-byte characters are the widest UTF-8.
WIDE = '"\\\U0001f9f9\u202e<' * 64
BIG_CREATOR = Creator(**{name: (WIDE * 8)[:MAX_ATTRIBUTE_LENGTH] for name in (
    "name", "identity_type", "arn", "account_id", "role", "session", "via", "note",
    "principal_arn")})
KNOWN = Cost(known=True, hourly=0.0104, hours=0.1, so_far=0.00104, per_month=7.592)


def big_finding(n, price=KNOWN):
    return report.Finding(
        instance_id="i-%017x" % n, region=REGION, account_id=ACCOUNT, image_id=WIDE[:256],
        instance_type=WIDE[:256], launch_time=WIDE[:256], code_key=WIDE[:128],
        code_value=WIDE[:256], reason="invalid", allowed=tuple(WIDE[:256] for _ in range(50)),
        event_name=WIDE[:256], event_time=WIDE[:256], event_id=WIDE[:256],
        extra={WIDE[:40]: WIDE[:256], "Fleet": WIDE[:256]}, platform=WIDE[:256], cost=price)


def groups(count):
    return [report.Group(big_finding(n), report.Outcome(report.HELD, WIDE[:1024]),
                         ["i-%017x" % n]) for n in range(count)]


@pytest.mark.parametrize("https_chatbot", [True, False])
def test_the_largest_single_report_fits_in_every_format(https_chatbot):
    [message] = actions.compose_messages(groups(1), BIG_CREATOR, "Launched by")
    assert message.size(https_chatbot) <= formats.BUDGET
    VALIDATOR.validate(message.document)
    assert message.document["instances"][0]["code"]["value"] == WIDE[:256]
    assert len(formats.dumps(message.chatbot).encode("utf-8")) < formats.SNS_LIMIT


@pytest.mark.parametrize("https_chatbot", [True, False])
def test_the_largest_launch_fits_as_one_digest_in_every_format(https_chatbot):
    """5000 instances with every field at its widest: more than one event can carry
    (EventBridge events are at most 256 KB) or a run reports at once."""
    message, = actions.compose_messages(groups(5000), BIG_CREATOR, "Launched by")
    assert message.size(https_chatbot) <= formats.BUDGET < formats.SNS_LIMIT
    forms = json.loads(message.envelope(https_chatbot))
    document = json.loads(forms["default"])
    VALIDATOR.validate(document)
    assert document["kind"] == "digest" and document["count"] == 5000
    assert 0 < len(document["instances"]) < 5000
    assert document["omitted"] == 5000 - len(document["instances"])
    assert document["cost"] == {"currency": "USD", "so_far": round(5000 * 0.00104, 6),
                                "per_month": round(5000 * 7.592, 4), "known": 5000,
                                "unknown": 0}
    assert "more instances (not listed: message size limit)" in forms["email"]
    assert_chatbot_card(message.chatbot)
    assert_chat_inert(message.chatbot["content"]["description"])


def test_a_digest_of_ordinary_instances_lists_them_all(inbox):
    """Published through SNS (moto refuses a message over 256 KB)."""
    instance_ids = launch(count=25)
    main_policy(**{"max-messages": 20}).push(run_instances_event(instance_ids))
    [received] = inbox.messages()
    document = json.loads(received["Message"])
    VALIDATOR.validate(document)
    assert document["kind"] == "digest"
    assert sorted(i["instance_id"] for i in document["instances"]) == sorted(instance_ids)
    assert document["omitted"] == 0 and document["outcomes"] == {"terminated": 25}
    [envelope] = sent_envelopes(inbox.topic_arn)
    assert_chatbot_card(json.loads(json.loads(envelope)["https"]))
    assert "Broom found 25 EC2 instances" in json.loads(envelope)["email"]


def test_the_schema_refuses_what_a_consumer_could_not_rely_on():
    [message] = actions.compose_messages(groups(1), BIG_CREATOR, "Launched by")
    for broken in ({"schema": "broom.report/2"}, {"kind": "other"},
                   {"instances": [{"instance_id": 5}]}, {"count": "1"}):
        with pytest.raises(jsonschema.ValidationError):
            VALIDATOR.validate(dict(message.document, **broken))


@settings(max_examples=300, deadline=None)
@given(value=st.text(), name=st.text(), detail=st.text())
def test_any_value_stays_inert_in_the_card_and_true_in_the_document(value, name, detail):
    finding = report.Finding(instance_id="i-1", region=REGION, account_id=ACCOUNT,
                             code_value=value, reason="invalid", allowed=("LOL", value),
                             instance_type=value, event_name="RunInstances",
                             event_time=value, extra={"Fleet": value})
    outcome = report.Outcome(report.HELD, detail)
    creator = Creator(name=name, arn=value, identity_type=value)
    [message] = actions.compose_messages(
        [report.Group(finding, outcome, ["i-1"])], creator, "Launched by")
    card = message.chatbot
    assert_chatbot_card(card)
    for text in [card["content"]["description"]] + card["content"]["nextSteps"]:
        assert_chat_inert(text)
    assert not any(LIVE_MARKUP.search(k) for k in card["content"]["keywords"])
    document = json.loads(json.loads(message.envelope())["default"])
    VALIDATOR.validate(document)
    assert document["instances"][0]["code"]["value"] == text_module.true_value(value)
    assert document["creator"]["name"] == text_module.true_value(creator.name)
    assert message.size(True) <= formats.BUDGET


# --- the sweep's digest (policies/ec2-tags-sweep.yml) -----------------------------------

def sweep_rows(count, creator=BIG_CREATOR, price=KNOWN):
    """``count`` violators with every field at its widest, half of them still open,
    each with its own (long) creator and a group whose owner is long too."""
    owner = lookup.Attribution(lookup.FOUND, creator)
    return [sweep.Row(big_finding(n, price), report.Outcome(report.HELD, WIDE[:1024]),
                      lookup.Attribution(lookup.FOUND, creator) if n % 3 else
                      lookup.Attribution(lookup.FAULT, reason=WIDE[:256]),
                      86400.0 * 3 + n, WIDE[:64], n % 2 == 0,
                      ("Auto Scaling group", WIDE[:256]),
                      (("Auto Scaling group", WIDE[:256], owner, "UpdateAutoScalingGroup"),))
            for n in range(count)]


@pytest.mark.parametrize("https_chatbot", [True, False])
def test_the_largest_sweep_fits_in_every_format(https_chatbot):
    """5,000 violators with long creators: one message, every format under SNS's limit;
    the text and the document list the same instances, new ones first."""
    message = actions.sweep_message(sweep_rows(5000), REGION, ACCOUNT, "broom-sweep")
    assert message.size(https_chatbot) <= formats.BUDGET < formats.SNS_LIMIT
    forms = json.loads(message.envelope(https_chatbot))
    document = json.loads(forms["default"])
    VALIDATOR.validate(document)
    assert document["kind"] == "sweep" and document["count"] == 5000
    assert document["sweep"] == {"new": 2500, "still_open": 2500,
                                 "creators": {"found": 3333, "unknown": 0, "pending": 1667}}
    listed = document["instances"]
    assert 0 < len(listed) < 5000 and document["omitted"] == 5000 - len(listed)
    assert listed[0]["instance_id"] == "i-%017x" % 0  # new ones first
    assert listed[0]["sweep"]["creator"]["status"] == "fault"
    assert listed[0]["sweep"]["fleet_owners"][0]["creator"]["name"] == \
        text_module.true_value(BIG_CREATOR.name)
    assert document["cost"]["known"] == 5000
    email = forms["email"]
    assert email == document["text"]
    assert "... and %d more instances" % (5000 - len(listed)) in email
    assert email.count("Launched by:") == len(listed)
    assert_chatbot_card(message.chatbot)
    assert_chat_inert(message.chatbot["content"]["description"])
    if https_chatbot:
        assert json.loads(forms["https"]) == message.chatbot
    assert message.attributes["broom.count"]["StringValue"] == "5000"


#: A creator as long as IAM lets a caller make one: role and session names of 64
#: characters (AssumeRole's limits), an ARN naming both, every character the widest.
LONG_CREATOR = Creator(name=WIDE[:64], identity_type="AssumedRole", role=WIDE[:64],
                       session=WIDE[:64], arn="arn:aws:sts::%s:assumed-role/%s/%s" % (
                           ACCOUNT, WIDE[:64], WIDE[:64]), account_id=ACCOUNT)


@pytest.mark.parametrize("https_chatbot", [True, False])
def test_a_sweep_of_5000_ordinary_instances_with_long_creators_fits_and_lists_many(
        https_chatbot):
    """Real instances (short ids and types), creators as long as IAM allows: the text
    shrinks with the listed count, and the listed count is as large as fits."""
    rows = [sweep.Row(report.Finding(instance_id="i-%017x" % n, region=REGION,
                                     account_id=ACCOUNT, instance_type="m5.large",
                                     allowed=("LOL", "GGG"), cost=KNOWN,
                                     platform="Linux/UNIX"),
                      report.Outcome(report.WOULD_TERMINATE),
                      lookup.Attribution(lookup.FOUND, LONG_CREATOR), 86400.0, "running",
                      n >= 1000) for n in range(5000)]
    message = actions.sweep_message(rows, REGION, ACCOUNT, "broom-sweep")
    assert message.size(https_chatbot) <= formats.BUDGET
    document = json.loads(json.loads(message.envelope(https_chatbot))["default"])
    VALIDATOR.validate(document)
    listed = document["instances"]
    assert 50 < len(listed) < 1000
    assert all(entry["sweep"]["new"] for entry in listed)  # 4,000 new: listed first
    assert listed[0]["sweep"]["creator"]["creator"]["name"] == text_module.true_value(
        LONG_CREATOR.name)
    assert message.body.count("      Launched by:") == len(listed)
    # One more would not fit: the largest count that does was chosen.
    subject, body, attributes = sweep.digest(rows, REGION, ACCOUNT, limit=len(listed) + 1)
    bigger = actions.Message("x", subject, body, attributes, [], [], formats.sweep_document(
        rows, "broom-sweep", subject, body, len(listed) + 1), message.chatbot)
    assert bigger.size(True) > formats.BUDGET


def test_an_ordinary_sweep_lists_every_violator_in_every_format():
    alice = lookup.Attribution(lookup.FOUND, Creator(name="alice@example.com",
                                                     identity_type="AssumedRole"))
    rows = [sweep.Row(report.Finding(instance_id="i-%017x" % n, region=REGION,
                                     account_id=ACCOUNT, instance_type="m5.large",
                                     allowed=("LOL", "GGG"), cost=KNOWN),
                      report.Outcome(report.WOULD_TERMINATE), alice, 3600.0 * n,
                      "running", n % 2 == 0) for n in range(30)]
    message = actions.sweep_message(rows, REGION, ACCOUNT, "broom-sweep")
    document = message.document
    VALIDATOR.validate(document)
    assert document["omitted"] == 0 and len(document["instances"]) == 30
    assert document["event"] is None and document["creator"]["name"] == "(per instance)"
    assert "not listed" not in message.body
    description = message.chatbot["content"]["description"]
    assert "*New:* 15  *Still open:* 15" in description
    assert "launched by `alice@example.com`" in description
    assert "… and 10 more (see the e-mail report)" in description
    assert message.chatbot["content"]["keywords"][2] == "sweep"


@settings(max_examples=200, deadline=None)
@given(value=st.text(), name=st.text(), reason=st.text())
def test_any_value_stays_inert_in_the_sweep_card_and_true_in_its_document(value, name,
                                                                          reason):
    finding = report.Finding(instance_id="i-1", region=REGION, account_id=ACCOUNT,
                             code_value=value, reason="invalid", allowed=("LOL", value),
                             instance_type=value)
    rows = [sweep.Row(finding, report.Outcome(report.WOULD_TERMINATE),
                      lookup.Attribution(lookup.FOUND, Creator(name=name)), 60.0, value),
            sweep.Row(finding, report.Outcome(report.UNRESOLVED),
                      lookup.Attribution(lookup.PENDING, reason=reason), None, value, False)]
    message = actions.sweep_message(rows, REGION, ACCOUNT)
    assert_chatbot_card(message.chatbot)
    for text in [message.chatbot["content"]["description"]] + message.chatbot[
            "content"]["nextSteps"]:
        assert_chat_inert(text)
    VALIDATOR.validate(message.document)
    entry = message.document["instances"][1]["sweep"]
    assert entry["state"] == (text_module.true_value(value) or None)
    assert entry["creator"]["reason"] == (text_module.true_value(reason) or None)
    assert message.document["outcomes"] == {"would-terminate": 1, "creator-unresolved": 1}
