"""notify-creator: c7n notify's message on c7n-mailer's queue, to a creator address
Broom can trust; decoded here exactly as c7n-mailer's sqs_queue_processor does."""
import base64
import copy
import json
import random
import zlib

import boto3
import pytest
from c7n.exceptions import PolicyExecutionError

from c7n_broom import mailer
from c7n_broom.identity import resolve_creator

from support import ACCOUNT, IDENTITIES, REGION, launch, load_policy, run_instances_event

SSO = json.loads((IDENTITIES / "sso-permission-set.json").read_text())
ROLE = json.loads((IDENTITIES / "assumed-role-meaningful-session.json").read_text())


def with_session(identity, session):
    identity = copy.deepcopy(identity)
    identity["arn"] = identity["arn"].rpartition("/")[0] + "/" + session
    identity["principalId"] = identity["principalId"].split(":")[0] + ":" + session
    return identity


def iam_user(name):
    return {"type": "IAMUser", "principalId": "AIDAEXAMPLE", "accountId": ACCOUNT,
            "arn": "arn:aws:iam::%s:user/%s" % (ACCOUNT, name), "userName": name}


# --- whose address is trusted -------------------------------------------------------

def test_an_identity_center_session_name_is_the_users_address():
    creator = resolve_creator(SSO)
    assert mailer.creator_address(creator, {}) == "alice@example.com"
    assert mailer.creator_address(creator, {}, identity_center=False) == ""
    assert mailer.creator_address(creator, {}, domains=["corp.example"]) == ""
    assert mailer.creator_address(creator, {}, domains=["EXAMPLE.com"]) == "alice@example.com"


def test_a_session_name_chosen_by_the_caller_is_never_an_address():
    """Anyone allowed to assume a role picks its session name: naming it after a victim
    must not make Broom mail them."""
    for identity in (with_session(ROLE, "victim@example.com"),
                     iam_user("victim@example.com")):
        assert mailer.creator_address(resolve_creator(identity), {}) == ""


def test_an_sso_lookalike_role_outside_the_reserved_path_is_not_trusted():
    lookalike = with_session(SSO, "victim@example.com")
    issuer = lookalike["sessionContext"]["sessionIssuer"]
    issuer["arn"] = "arn:aws:iam::%s:role/%s" % (ACCOUNT, issuer["userName"])
    assert mailer.creator_address(resolve_creator(lookalike), {}) == ""
    del lookalike["sessionContext"]  # path unknown: not trusted either
    assert mailer.creator_address(resolve_creator(lookalike), {}) == ""



def test_a_role_path_that_spells_the_reserved_path_is_not_trusted():
    """IAM paths may hold ':' and '/', so a role anyone with iam:CreateRole makes at
    path "/x:role/aws-reserved/sso.amazonaws.com/" has an ARN that contains the
    reserved path: only a role whose path starts with it is Identity Center's."""
    lookalike = with_session(SSO, "victim@example.com")
    issuer = lookalike["sessionContext"]["sessionIssuer"]
    issuer["arn"] = "arn:aws:iam::%s:role/x:role/aws-reserved/sso.amazonaws.com/%s" % (
        ACCOUNT, issuer["userName"])
    assert mailer.creator_address(resolve_creator(lookalike), {}) == ""

def test_the_creators_table_maps_principals_not_session_names():
    table = {"role/Developer": "dev-team@example.com",
             "arn:aws:iam::%s:user/bob" % ACCOUNT: "bob@example.com",
             "user/carol": "carol@example.com"}
    assert mailer.creator_address(resolve_creator(ROLE), table) == "dev-team@example.com"
    assert mailer.creator_address(resolve_creator(iam_user("bob")), table) == "bob@example.com"
    assert mailer.creator_address(resolve_creator(iam_user("carol")), table) == (
        "carol@example.com")
    # "carol" is the session name of a Developer session: it maps nothing.
    assert mailer.creator_address(resolve_creator(ROLE), {"user/carol": "x@example.com"}) == ""
    # The table wins over the Identity Center name; domains apply to it too.
    sso_role = "role/" + SSO["sessionContext"]["sessionIssuer"]["userName"]
    assert mailer.creator_address(resolve_creator(SSO), {sso_role: "ops@example.com"}) == (
        "ops@example.com")
    assert mailer.creator_address(resolve_creator(ROLE), table, domains=["corp.example"]) == ""


@pytest.mark.parametrize("address", [
    "a b@example.com", "a@example", "a@@example.com", "a:b@example.com", "a@exa_mple.com",
    "\u0430@example.com", "a@example.com\n", "slack://a@example.com", "a..b@example.com"])
def test_only_plain_addresses_are_handed_to_the_mailer(address):
    assert not mailer.is_address(address)


# --- the message on c7n-mailer's queue -----------------------------------------------

def mailer_queue():
    sqs = boto3.client("sqs", region_name=REGION)
    return sqs, sqs.create_queue(QueueName="c7n-mailer")["QueueUrl"]


def read_as_c7n_mailer(sqs, url):
    """c7n-mailer's MailerSqsQueueProcessor.run + process_sqs_message: receive with
    the mtype attribute, check it, unwrap an SNS envelope if any, b64decode,
    zlib.decompress, json.loads."""
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                   MessageAttributeNames=["mtype", "recipient"]).get(
                                       "Messages", [])
    decoded = []
    for message in messages:
        assert message["MessageAttributes"]["mtype"]["StringValue"] == "maidmsg/1.0"
        body = message["Body"]
        try:
            body = json.dumps(json.loads(body)["Message"])
        except ValueError:
            pass
        decoded.append(json.loads(zlib.decompress(base64.b64decode(body))))
    return decoded


def policy(url, **options):
    return load_policy({
        "name": "broom-notify", "resource": "aws.ec2",
        "mode": {"type": "cloudtrail", "packages": ["c7n_broom"],
                 "handler": "c7n_broom.handler.run", "events": [{
                     "source": "ec2.amazonaws.com", "event": "RunInstances",
                     "ids": "responseElements.instancesSet.items[].instanceId"}]},
        "filters": [{"type": "allowed-codes", "codes": ["LOL"]}],
        "actions": [{"type": "safe-terminate"},
                    {"type": "creator-report",
                     "topic": "arn:aws:sns:{region}:{account_id}:broom-reports"},
                    dict({"type": "notify-creator", "queue": url}, **options)]})


def event_by(identity, instance_ids):
    event = run_instances_event(instance_ids)
    event["detail"]["userIdentity"] = identity
    return event


def test_the_creator_gets_c7n_notifys_message_for_what_they_launched(inbox):
    sqs, url = mailer_queue()
    [untagged] = launch(UserData="secret-bootstrap")
    policy(url, slack=True).push(event_by(SSO, [untagged]))

    [message] = read_as_c7n_mailer(sqs, url)
    assert message["action"]["to"] == ["alice@example.com", "slack://alice@example.com"]
    assert message["action"]["type"] == "notify"
    assert message["action"]["template"] == "default"
    assert message["action"]["subject"] == (
        "Broom: an EC2 instance you launched in us-east-1 broke the Code tag rule")
    assert message["policy"]["name"] == "broom-notify"
    assert message["policy"]["resource"] == "aws.ec2"
    assert (message["account_id"], message["region"]) == (ACCOUNT, REGION)
    assert message["event"]["detail"]["userIdentity"]["arn"] == SSO["arn"]
    [resource] = message["resources"]
    assert resource["InstanceId"] == untagged
    assert "UserData" not in resource
    finding = resource["c7n:broom-report"]
    assert finding["outcome"]["status"] == "terminated"
    assert finding["code"]["reason"] == "missing"
    assert len(inbox.emails()) == 1  # the team's report still goes out


def test_nobody_is_mailed_for_an_untrusted_session_name(inbox):
    sqs, url = mailer_queue()
    [untagged] = launch()
    policy(url).push(event_by(with_session(ROLE, "victim@example.com"), [untagged]))
    assert read_as_c7n_mailer(sqs, url) == []
    assert len(inbox.emails()) == 1


def test_a_scheduled_run_knows_no_creator_and_mails_nobody(inbox):
    sqs, url = mailer_queue()
    [untagged] = launch()
    data = policy(url, creators={"user/bob": "bob@example.com"}).data
    data.pop("mode")
    load_policy(data).run()
    assert read_as_c7n_mailer(sqs, url) == []
    assert untagged in inbox.emails()[0]["Message"]


def test_creators_from_an_s3_object(inbox):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="broom-config")
    s3.put_object(Bucket="broom-config", Key="creators.json",
                  Body=json.dumps({"user/bob": "bob@example.com"}))
    sqs, url = mailer_queue()
    [untagged] = launch()
    policy(url, **{"creators-from": {"url": "s3://broom-config/creators.json"}}).push(
        event_by(iam_user("bob"), [untagged]))
    [message] = read_as_c7n_mailer(sqs, url)
    assert message["action"]["to"] == ["bob@example.com"]


def test_a_creators_source_that_is_not_a_mapping_is_an_error(inbox):
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket="broom-config")
    s3.put_object(Bucket="broom-config", Key="creators.json", Body=json.dumps(["a"]))
    sqs, url = mailer_queue()
    [untagged] = launch()
    bad = policy(url, **{"creators-from": {"url": "s3://broom-config/creators.json"}})
    with pytest.raises(PolicyExecutionError, match="must hold one JSON object"):
        bad.push(event_by(iam_user("bob"), [untagged]))


def test_a_large_launch_is_split_into_messages_the_queue_accepts():
    resources = [{"InstanceId": "i-%d" % n, "Blob": base64.b64encode(
        random.Random(n).randbytes(4000)).decode()} for n in range(400)]
    bodies = mailer.batches(lambda part: mailer.message(
        {"name": "p", "resource": "aws.ec2"}, ACCOUNT, REGION, None, ["a@example.com"],
        part), resources, budget=64 * 1024)
    assert len(bodies) > 1 and all(len(b) <= 64 * 1024 for b in bodies)
    ids = [r["InstanceId"] for b in bodies for r in mailer.unpack(b)["resources"]]
    assert ids == [r["InstanceId"] for r in resources]


def test_queue_urls_arns_and_names_are_read_as_c7n_reads_them():
    assert mailer.queue_location("arn:aws:sqs:eu-west-1:111111111111:c7n-mailer", REGION,
                                 ACCOUNT) == (
        "eu-west-1", "https://sqs.eu-west-1.amazonaws.com/111111111111/c7n-mailer")
    assert mailer.queue_location("c7n-mailer", REGION, ACCOUNT) == (
        REGION, "https://sqs.us-east-1.amazonaws.com/%s/c7n-mailer" % ACCOUNT)
    url = "https://sqs.eu-west-1.amazonaws.com/111111111111/c7n-mailer"
    assert mailer.queue_location(url, REGION, ACCOUNT) == ("eu-west-1", url)
