"""Broom at scale, in process against moto (mock_aws): the figures behind two limits.

- digest: one RunInstances event naming N instances whose Code is not allowed
  (``--instances``, 500 by default), pushed to policies/ec2-tags.yml: the cap holds
  them all and one digest reports them. Prints the time, the digest's size (the whole
  per-protocol envelope: e-mail text, JSON document, Chatbot card) against SNS's 256 KiB
  limit, how many instances it lists (the others are counted) and the API calls by
  operation.
- unknown ids: ``source: broom-describe`` resolving M instance ids (``--ids``, 1,000
  by default) of which 10 exist: EC2 refuses the first call, the source looks the ids
  up with an instance-id filter (200 values a call) and asks again for the unknown
  ones in 3 rounds. Prints the DescribeInstances calls against the ids, and the waits.

    python benchmarks/scale.py [--instances 500] [--ids 1000]

Exits 1 when an outcome is wrong (an instance terminated, the digest over the limit or
neither listing nor counting an id, a known instance not found), not on time: shared
machines are noisy.
tests/unit runs both scenarios at a small scale (test_fleets_and_digest.py,
test_resilience.py).
"""
import argparse
import collections
import copy
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # measure the working tree

REGION = "us-east-1"
ACCOUNT = "123456789012"  # moto's default account
IMAGE = "ami-12345678"  # moto does not check image ids
SNS_LIMIT = 256 * 1024
FILTER_VALUES_LIMIT = 200  # EC2: FilterLimitExceeded past 200 filter values in one call


def fake_aws_environment(workdir):
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing", AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION, AWS_CONFIG_FILE=str(Path(workdir) / "none"),
        AWS_SHARED_CREDENTIALS_FILE=str(Path(workdir) / "none"),
        MOTO_EC2_LOAD_DEFAULT_AMIS="false")
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
        os.environ.pop(name, None)


class Calls:
    """Every API call made inside the ``with`` block, counted by operation. Plays EC2
    where moto does not: more than 200 filter values in one call are refused."""

    def __enter__(self):
        from botocore.client import BaseClient
        from botocore.exceptions import ClientError
        self.counts = collections.Counter()
        self.describe = []
        self.original = original = BaseClient._make_api_call

        def make_api_call(client, operation, params):
            self.counts[operation] += 1
            if operation == "DescribeInstances":
                self.describe.append(params)
                values = sum(len(f["Values"]) for f in params.get("Filters", ()))
                if values > FILTER_VALUES_LIMIT:
                    raise ClientError({"Error": {"Code": "FilterLimitExceeded"}}, operation)
            return original(client, operation, params)
        BaseClient._make_api_call = make_api_call
        return self

    def __exit__(self, *exc):
        from botocore.client import BaseClient
        BaseClient._make_api_call = self.original


def load_policy(data, output_dir):
    from c7n.config import Config
    from c7n.credentials import SessionFactory
    from c7n.policy import Policy
    config = Config.empty(region=REGION, account_id=ACCOUNT, output_dir=output_dir,
                          cache="", cache_period=0)
    policy = Policy(data, config, session_factory=SessionFactory(REGION))
    policy.expand_variables(policy.get_variables({}))
    policy.validate()
    return policy


def launch(count, tags):
    import boto3
    ec2 = boto3.client("ec2", region_name=REGION)
    described = ec2.run_instances(
        ImageId=IMAGE, MinCount=count, MaxCount=count, InstanceType="t3.micro",
        TagSpecifications=[{"ResourceType": "instance", "Tags": [
            {"Key": k, "Value": v} for k, v in tags.items()]}])["Instances"]
    return described


def digest(count, workdir):
    import boto3
    import yaml

    import c7n_broom  # noqa: F401  (registers Broom's elements)
    from broom.demo import DEMO_USER, run_instances_record
    from broom.local.aws import TopicInbox
    from broom.local.lambda_runner import eventbridge_envelope

    inbox = TopicInbox(boto3.client("sns", region_name=REGION),
                       boto3.client("sqs", region_name=REGION), "broom-reports")
    instances = launch(count, {"Code": "NOPE"})  # a code not allowed: capped
    ids = [i["InstanceId"] for i in instances]
    event = eventbridge_envelope(run_instances_record(
        instances, {"Code": "NOPE"}, copy.deepcopy(DEMO_USER), REGION, ACCOUNT))
    [data] = yaml.safe_load((REPO / "policies" / "ec2-tags.yml").read_text())["policies"]
    policy = load_policy(data, workdir)
    with Calls() as calls:
        start = time.perf_counter()
        policy.push(event)
        elapsed = time.perf_counter() - start
    running = [i for r in boto3.client("ec2", region_name=REGION).describe_instances(
        InstanceIds=ids)["Reservations"] for i in r["Instances"]
        if i["State"]["Name"] == "running"]
    messages = inbox.emails()
    # What SNS counted: the per-protocol envelope (e-mail text, JSON document, Chatbot
    # card), as moto kept it.
    from moto.sns.models import sns_backends
    sent = sns_backends[ACCOUNT][REGION].topics[inbox.topic_arn].sent_notifications
    size = sum(len(envelope.encode("utf-8")) for _, envelope, *_ in sent)
    listed = sum(len(m["Document"]["instances"]) for m in messages)
    counted = sum(len(m["Document"]["instances"]) + m["Document"]["omitted"]
                  for m in messages)
    print("digest: %d instances held by the cap in %.2f s (%.1f ms an instance)" % (
        count, elapsed, 1000 * elapsed / count))
    print("  %d message(s), %d bytes: %.1f%% of SNS's 256 KiB; %d of %d ids listed; "
          "%d of %d still running" % (len(messages), size, 100 * size / SNS_LIMIT,
                                      listed, count, len(running), count))
    print("  API calls: %s" % ", ".join("%s %d" % item for item in sorted(
        calls.counts.items())))
    # Every id listed (e-mail text and JSON document alike) or counted as not listed.
    return (len(messages) == 1 and size < SNS_LIMIT and listed > 0 and counted == count
            and len(running) == count)


def unknown_ids(count, workdir):
    from c7n_broom.source import RETRY_DELAYS, ResilientDescribeEC2

    known = [i["InstanceId"] for i in launch(10, {"Code": "LOL"})]
    unknown = ["i-0ffff%012x" % n for n in range(count - len(known))]
    half = len(unknown) // 2
    waits = []
    ResilientDescribeEC2.sleep = staticmethod(waits.append)  # count the waits, skip them
    policy = load_policy({"name": "broom-source", "resource": "aws.ec2",
                          "source": "broom-describe"}, workdir)
    with Calls() as calls:
        start = time.perf_counter()
        found = policy.resource_manager.get_resources(unknown[:half] + known + unknown[half:])
        elapsed = time.perf_counter() - start
    rounds = len(RETRY_DELAYS) + 1
    print("unknown ids: %d ids, %d known, resolved in %.2f s" % (count, len(known), elapsed))
    print("  %d DescribeInstances calls (%.3f a call per id; one id a call would take at "
          "least %d), %d lookup rounds, waits %s = %d s (not slept here)" % (
              len(calls.describe), len(calls.describe) / count, count, rounds,
              "+".join(str(w) for w in waits), sum(waits)))
    return sorted(r["InstanceId"] for r in found) == sorted(known)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=500)
    parser.add_argument("--ids", type=int, default=1000)
    args = parser.parse_args()
    logging.getLogger("custodian").setLevel(logging.ERROR)  # the ids skipped, one by one
    with tempfile.TemporaryDirectory() as workdir:
        fake_aws_environment(workdir)
        from moto import mock_aws
        ok = True
        with mock_aws():
            ok &= digest(args.instances, workdir)
        with mock_aws():
            ok &= unknown_ids(args.ids, workdir)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
