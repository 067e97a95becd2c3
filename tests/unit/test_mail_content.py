"""Messages carry no more than their reader needs: what notify-creator hands c7n-mailer
(mock_aws)."""
import copy

from test_mailer import SSO, event_by, mailer_queue, policy, read_as_c7n_mailer

from c7n_broom import mailer

from support import launch, run_instances_event


def test_the_mailer_gets_neither_the_whole_event_nor_the_whole_policy(inbox):
    """Before: the whole CloudTrail record (access key id, source IP, user agent,
    request parameters) and the whole policy (every address in creators) were sent."""
    sqs, url = mailer_queue()
    [untagged] = launch()
    event = event_by(SSO, [untagged])
    record = event["detail"]
    record.update(sourceIPAddress="203.0.113.9", userAgent="secret-agent/1.0")
    record["userIdentity"] = dict(record["userIdentity"], accessKeyId="ASIAEXAMPLEKEY")
    table = {"arn:aws:iam::123456789012:user/bob": "bob@example.com"}

    policy(url, creators=table).push(copy.deepcopy(event))

    [message] = read_as_c7n_mailer(sqs, url)
    text = str(message)
    for secret in ("203.0.113.9", "secret-agent", "ASIAEXAMPLEKEY", "bob@example.com",
                   "requestParameters", "tagSpecificationSet"):
        assert secret not in text, secret
    assert set(message["policy"]) <= set(mailer.POLICY_FIELDS)
    assert message["policy"]["name"] == "broom-notify"
    detail = message["event"]["detail"]
    assert detail["eventName"] == "RunInstances"
    assert detail["userIdentity"]["arn"] == SSO["arn"]
    [resource] = message["resources"]
    assert resource["c7n:broom-report"]["code"]["reason"] == "missing"  # the reason


def test_mail_event_keeps_the_call_the_time_and_who():
    event = run_instances_event(["i-0123456789abcdef0"])
    slim = mailer.mail_event(event)
    assert set(slim["detail"]) == {"eventName", "eventTime", "awsRegion",
                                   "recipientAccountId", "userIdentity"}
    assert mailer.mail_event({"detail-type": "Scheduled Event", "detail": {}}) is None


def test_reports_carry_no_credentials_or_network_details(inbox):
    """The same review for Broom's own report (every format and attribute)."""
    [untagged] = launch()
    event = run_instances_event([untagged])
    record = event["detail"]
    record.update(sourceIPAddress="203.0.113.9", userAgent="secret-agent/1.0")
    record["userIdentity"] = dict(record["userIdentity"], accessKeyId="ASIAEXAMPLEKEY")
    sqs, url = mailer_queue()

    policy(url).push(event)

    [report] = inbox.emails()
    for secret in ("203.0.113.9", "secret-agent", "ASIAEXAMPLEKEY"):
        assert secret not in str(report), secret
