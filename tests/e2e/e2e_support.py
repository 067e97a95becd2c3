"""Helpers only the end-to-end tests use: moto's server as the local AWS, the stock CLIs.

The shared helpers are in tests/support.py (``launch`` and ``states`` take an EC2
client of the server as ``ec2=``); these take the :class:`broom.local.aws.LocalAws`
server, or a client made by ``aws.client(service, region=, account=)`` (a client for
another account costs an AssumeRole call: make it once per test and pass it around).
"""
import contextlib
import io
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import yaml

from broom.local.aws import TopicInbox

from support import ACCOUNT, IMAGE, POLICIES, REGION, launch, run_instances_event

BIN = Path(sys.executable).parent
OTHER_REGION = "eu-west-1"
TOPIC = "broom-reports"

# What a stock command prints when something went wrong, even when it exits 0.
# c7n-org logs a policy that fails to load at WARNING, and exits 0: "Error running
# policy in ACCOUNT @ REGION exception: ..."; one that fails to run at ERROR, and
# exits 1: "Exception running policy:NAME account:ACCOUNT region:REGION error:...".
PROBLEM = re.compile(r"error|traceback|exception", re.IGNORECASE)


def policy_data(name="ec2-tags.yml"):
    """The single policy in ``policies/NAME``, as written (variables not expanded)."""
    [data] = yaml.safe_load((POLICIES / name).read_text())["policies"]
    return data


def write_policy(path, data):
    """Write one policy to a policy file at ``path``; return the path."""
    path.write_text(yaml.safe_dump({"policies": [data]}, sort_keys=False))
    return path


def function_name(policy):
    """The Lambda function c7n provisions for a policy."""
    return "custodian-" + policy["name"]


def expected_pattern(policy):
    """The EventBridge pattern c7n renders for a cloudtrail-mode policy's events.

    c7n's cloudtrail pattern has no top-level ``source`` of its own; Broom's policies
    add ``source: [aws.ec2]`` through ``mode.pattern`` so that only AWS's events match.
    """
    events = policy["mode"]["events"]
    return {
        "source": ["aws.ec2"],
        "detail-type": ["AWS API Call via CloudTrail"],
        "detail": {"eventSource": sorted({e["source"] for e in events}),
                   "eventName": [e["event"] for e in events]},
    }


def launch_trio(ec2):
    """Three instances: an allowed Code, no Code tag, a Code that is not allowed."""
    return {
        "valid": launch(ec2=ec2, tags={"Code": "LOL"})[0],
        "missing": launch(ec2=ec2)[0],
        "invalid": launch(ec2=ec2, tags={"Code": "NOPE"})[0],
    }


def run_instances_record(instance_ids, region=REGION, account=ACCOUNT):
    """The recorded RunInstances CloudTrail record (IAM user c7nbot) launching
    ``instance_ids`` in ``account``/``region``: what EventBridge puts under ``detail``."""
    return run_instances_event(instance_ids, account=account, region=region)["detail"]


def server_inbox(aws, topic_name=TOPIC, region=REGION, account=None):
    """The report topic on the server, read through a subscribed SQS queue."""
    return TopicInbox(aws.client("sns", region=region, account=account),
                      aws.client("sqs", region=region, account=account), topic_name)


#: What a report's "Why:" line starts with, by violation reason (NOPE: launch_trio).
WHY = {"missing": "the instance has no Code tag",
       "invalid": 'Code="NOPE" is not an allowed code'}
# The recorded RunInstances event (tests/data/cloudtrail) was made by this IAM user.
CREATOR = "c7nbot"
CREATOR_ARN = "arn:aws:iam::644160558196:user/c7nbot"


def report_fields(body):
    """The "Label:   value" lines of a report body, as a dict."""
    return dict(re.findall(r"(?m)^([A-Z][A-Za-z ]+):[ \t]+(.*)$", body))


def report_summary(message):
    """What an SNS notification of Broom's report tells its reader, field by field."""
    fields = report_fields(message["Message"])
    return {
        "topic": message["TopicArn"],
        "action taken": fields.get("Action taken"),
        "why": fields.get("Why", "").split(" (allowed codes")[0],
        "launched by": fields.get("Launched by", "").split(" ")[0],
        "identity type": fields.get("Identity type"),
        "identity arn": fields.get("Identity ARN"),
        "account": fields.get("Account"),
        "region": fields.get("Region"),
        "instance": fields.get("Instance"),
        "image": fields.get("Image"),
        "instance type": fields.get("Instance type"),
        "subject names the instance": fields.get("Instance", "?") in message["Subject"],
    }


def terminated_report(instance_id, reason, region=REGION, account=ACCOUNT,
                      topic_account=None):
    """The report_summary() of a report on an instance of launch_trio() terminated
    after the recorded RunInstances event (topic in ``topic_account``, default the
    instance's account)."""
    return {
        "topic": "arn:aws:sns:%s:%s:%s" % (region, topic_account or account, TOPIC),
        "action taken": "terminated",
        "why": WHY[reason],
        "launched by": CREATOR,
        "identity type": "IAMUser",
        "identity arn": CREATOR_ARN,
        "account": account,
        "region": region,
        "instance": instance_id,
        "image": IMAGE,
        "instance type": "t3.micro",
        "subject names the instance": True,
    }


def by_instance(messages):
    """{instance id: notification}, from the ``broom.instance_id`` attribute."""
    return {m["MessageAttributes"]["broom.instance_id"]["Value"]: m for m in messages}


def archive_config(archive):
    """The config.json c7n wrote into a Lambda archive (the policy it runs)."""
    with zipfile.ZipFile(io.BytesIO(archive)) as zipped:
        return json.loads(zipped.read("config.json"))


def stock(name, args, env, cwd=None):
    """Run a stock console script (custodian, c7n-org) and return it, whatever its
    exit status; ``.output`` holds stdout and stderr together."""
    completed = subprocess.run(
        [str(BIN / name)] + [str(a) for a in args], env=env, cwd=cwd,
        capture_output=True, text=True, timeout=300)
    completed.output = completed.stdout + completed.stderr
    return completed


def problems(output):
    """The lines of a command's output that report an error or a traceback."""
    return [line for line in output.splitlines() if PROBLEM.search(line)]


def deployment_snapshot(aws, name, region=REGION, account=None):
    """Everything ``custodian run`` provisions for a function, for comparison."""
    lam = aws.client("lambda", region=region, account=account)
    events = aws.client("events", region=region, account=account)
    rules = events.list_rules()["Rules"]
    return {
        "function": lam.get_function(FunctionName=name)["Configuration"],
        "versions": [v["Version"] for v in
                     lam.list_versions_by_function(FunctionName=name)["Versions"]],
        "permissions": json.loads(lam.get_policy(FunctionName=name)["Policy"])["Statement"],
        "rules": rules,
        "targets": {rule["Name"]: events.list_targets_by_rule(Rule=rule["Name"])["Targets"]
                    for rule in rules},
    }


@contextlib.contextmanager
def lambda_rejects_duplicate_statement_ids():
    """Make moto's Lambda AddPermission refuse a statement id the policy already holds.

    AWS Lambda answers ResourceConflictException ("The statement id (...) provided
    already exists"), which c7n catches when it deploys a policy again; moto 5 appends
    a duplicate statement instead. The server runs in this process, so patching its
    backend here makes the local AWS behave as AWS does.
    """
    from moto.awslambda.exceptions import LambdaClientError
    from moto.awslambda.policy import Policy

    class StatementIdConflict(LambdaClientError):
        code = 409

        def __init__(self, sid):
            super().__init__(
                "ResourceConflictException",
                "The statement id (%s) provided already exists. Please provide a new "
                "statement id, or remove the existing statement." % sid)

    add_statement = Policy.add_statement

    def add_unique_statement(self, raw, qualifier=None):
        sid = json.loads(raw).get("StatementId")
        if sid and any(s.get("Sid") == sid for s in self.statements):
            raise StatementIdConflict(sid)
        return add_statement(self, raw, qualifier)

    Policy.add_statement = add_unique_statement
    try:
        yield
    finally:
        Policy.add_statement = add_statement
