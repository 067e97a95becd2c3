"""``broom demo``: Broom's main job on a local AWS, with no AWS account.

Starts moto's server on a free loopback port, creates the execution role and the
report topic, deploys ``policies/ec2-tags.yml`` with the stock ``custodian`` command,
launches three instances (valid, missing and invalid Code), delivers their
RunInstances event to the deployed Lambda archive exactly as EventBridge would, and
prints what happened. Everything lives in temporary folders and the server's memory.
"""
import logging
import shutil
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import yaml

log = logging.getLogger("custodian.broom.demo")

PACKAGE_POLICIES = Path(__file__).parent / "policies"
SOURCE_POLICIES = Path(__file__).parent.parent / "policies"
IMAGE = "ami-0b5e3a1c0d2f4e6a8"
DEMO_USER = {
    "type": "AssumedRole",
    "principalId": "AROA3EXAMPLEDEMOUSER:alice@example.com",
    "arn": "arn:aws:sts::123456789012:assumed-role/"
           "AWSReservedSSO_Developer_0123456789abcdef/alice@example.com",
    "accountId": "123456789012",
    "accessKeyId": "ASIA3EXAMPLEDEMOKEY1",
    "sessionContext": {
        "sessionIssuer": {
            "type": "Role",
            "principalId": "AROA3EXAMPLEDEMOUSER",
            "arn": "arn:aws:iam::123456789012:role/aws-reserved/sso.amazonaws.com/"
                   "AWSReservedSSO_Developer_0123456789abcdef",
            "accountId": "123456789012",
            "userName": "AWSReservedSSO_Developer_0123456789abcdef"},
        "attributes": {"creationDate": "2026-01-01T09:00:00Z", "mfaAuthenticated": "false"},
    },
}
LAUNCHES = (("valid", {"Code": "LOL"}), ("missing", None), ("invalid", {"Code": "WAT"}))


class DemoError(RuntimeError):
    """A demo step failed; the message says which and why."""


def default_policy():
    """The policy file shipped with Broom (packaged copy, or the source tree's)."""
    for folder in (PACKAGE_POLICIES, SOURCE_POLICIES):
        if (folder / "ec2-tags.yml").exists():
            return folder / "ec2-tags.yml"
    raise DemoError("policies/ec2-tags.yml not found next to the broom package: reinstall Broom")


def lambda_function_name(policy_path):
    """The Lambda function a cloudtrail-mode policy file deploys (its first policy).

    The demo launches instances and delivers their RunInstances events: a policy run
    by other events (tag changes) or on a schedule (the sweep) is refused in one line
    saying which policies it supports.
    """
    from broom import policyfile

    try:
        policies = policyfile.read(policy_path)["policies"]
    except policyfile.PolicyFileError as e:
        raise DemoError(str(e))
    data = policies[0] if policies and isinstance(policies[0], dict) else {}
    mode = data.get("mode") if isinstance(data.get("mode"), dict) else {}
    events = {e.get("event") if isinstance(e, dict) else e for e in mode.get("events") or ()}
    if mode.get("type") != "cloudtrail" or "RunInstances" not in events:
        raise DemoError(
            "%s: broom demo runs a policy on RunInstances events (mode: cloudtrail: "
            "policies/ec2-tags.yml or ec2-tags-hub.yml); the first policy here runs %s%s"
            % (policy_path, _runs_on(mode, events), _instead(mode, events)))
    return mode.get("function-prefix", "custodian-") + data["name"]


def _instead(mode, events):
    """What to do with such a policy instead of the demo, or an empty string."""
    if mode.get("type") == "cloudtrail" and events:
        return " (replay recorded %s events through it with broom replay)" % (
            min(str(e) for e in events))
    if mode.get("type") == "periodic":
        return " (see what it would find with custodian run --dryrun in an account)"
    return ""


def _runs_on(mode, events):
    if mode.get("type") == "cloudtrail":
        return "on %s events" % "/".join(sorted(str(e) for e in events)) if events else (
            "on no events")
    if mode.get("type") == "periodic":
        return "on a schedule (mode: periodic)"
    return "in %s mode" % (mode.get("type") or "pull")


def grace(policy_path):
    """The allowed-codes grace period of a policy file's first policy (0 when unset)."""
    data = yaml.safe_load(Path(policy_path).read_text())["policies"][0]
    return max([f.get("grace-seconds", 0) for f in data.get("filters", ())
                if isinstance(f, dict) and f.get("type") == "allowed-codes"] or [0])


def run_instances_record(instances, tags, user_identity, region, account):
    """A CloudTrail RunInstances record (eventVersion 1.09 shape) for launched instances."""
    request = {"instancesSet": {"items": [{"imageId": instances[0]["ImageId"],
                                           "minCount": 1, "maxCount": 1}]},
               "instanceType": instances[0]["InstanceType"]}
    if tags:
        request["tagSpecificationSet"] = {"items": [{
            "resourceType": "instance",
            "tags": [{"key": k, "value": v} for k, v in tags.items()]}]}
    return {
        "eventVersion": "1.09",
        "userIdentity": user_identity,
        "eventTime": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "ec2.amazonaws.com",
        "eventName": "RunInstances",
        "awsRegion": region,
        "sourceIPAddress": "198.51.100.7",
        "userAgent": "aws-cli/2.17.0",
        "requestParameters": request,
        "responseElements": {
            "reservationId": "r-%s" % uuid.uuid4().hex[:17],
            "ownerId": account,
            "instancesSet": {"items": [{
                "instanceId": i["InstanceId"], "imageId": i["ImageId"],
                "instanceType": i["InstanceType"],
                "instanceState": {"code": 0, "name": "pending"}} for i in instances]},
        },
        "requestID": str(uuid.uuid4()),
        "eventID": str(uuid.uuid4()),
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }


@dataclass
class DemoResult:
    """What the demo saw: launched instances by label, final states, reports received."""

    instances: dict = field(default_factory=dict)
    states: dict = field(default_factory=dict)
    reports: list = field(default_factory=list)
    seconds: float = 0.0

    def problems(self):
        """Differences from what Broom promises (empty when the demo worked)."""
        expected = {"valid": "running", "missing": "terminated", "invalid": "terminated"}
        problems = ["%s instance %s is %s, expected %s" % (
            label, self.instances[label], self.states.get(self.instances[label]), state)
            for label, state in expected.items()
            if self.states.get(self.instances[label]) != state]
        reported = sorted(r["attributes"].get("broom.instance_id") for r in self.reports)
        violators = sorted(self.instances[label] for label in ("missing", "invalid"))
        if reported != violators:
            problems.append("reports received for %s, expected %s" % (reported, violators))
        return problems


def run_demo(echo, port=0, region="us-east-1", policy=None):
    """Run the demo, reporting progress through ``echo(text)``; return a DemoResult."""
    from broom.local.aws import (
        DEFAULT_ACCOUNT,
        LocalAws,
        TopicInbox,
        create_lambda_role,
        create_state_table,
    )
    from broom.local.deploy import custodian_run, invoke_deployed, stock_command

    started = time.monotonic()
    policy = Path(policy) if policy else default_policy()
    function_name = lambda_function_name(policy)
    result = DemoResult()
    workdir = Path(tempfile.mkdtemp(prefix="broom-demo-"))
    try:
        echo("[1/6] starting a local AWS (moto server) on 127.0.0.1 ...")
        with LocalAws(port=port, region=region) as aws:
            echo("      %s" % aws.endpoint_url)
            echo("[2/6] creating the execution role broom-lambda, the topic broom-reports "
                 "and the state table broom-state")
            create_lambda_role(aws)
            create_state_table(aws.client("dynamodb", region=region))
            inbox = TopicInbox(aws.client("sns", region=region),
                               aws.client("sqs", region=region))
            echo("[3/6] validating and deploying %s with the stock `custodian` command ..."
                 % policy.name)
            stock_command("custodian", ["validate", policy], aws.env(region=region))
            custodian_run(policy, workdir / "out", [region], aws.env(region=region))
            config = aws.client("lambda", region=region).get_function(
                FunctionName=function_name)["Configuration"]
            echo("      Lambda %s (%s, %s MB, %ss) behind EventBridge rule on RunInstances" % (
                function_name, config["Runtime"], config["MemorySize"], config["Timeout"]))
            echo("[4/6] launching three instances as alice@example.com (SSO)")
            ec2 = aws.client("ec2", region=region)
            records = []
            for label, tags in LAUNCHES:
                params = dict(ImageId=IMAGE, MinCount=1, MaxCount=1, InstanceType="t3.micro")
                if tags:
                    params["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [
                        {"Key": k, "Value": v} for k, v in tags.items()]}]
                launched = ec2.run_instances(**params)["Instances"]
                result.instances[label] = launched[0]["InstanceId"]
                records.append(run_instances_record(
                    launched, tags, DEMO_USER, region, DEFAULT_ACCOUNT))
                echo("      %-8s %s  Code=%s" % (label, launched[0]["InstanceId"],
                                               (tags or {}).get("Code", "(none)")))
            echo("[5/6] delivering the RunInstances events to the deployed Lambda archive "
                 "(an instance with no Code tag gets %ss to be tagged late)" % grace(policy))
            with ThreadPoolExecutor(max_workers=len(records)) as pool:
                invocations = list(pool.map(
                    lambda record: invoke_deployed(aws, function_name, record, region),
                    records))
            for invocation in invocations:
                if not invocation.ok:
                    raise DemoError("the Lambda handler failed (%s: %s):\n%s" % (
                        invocation.error_type, invocation.error_message,
                        invocation.logs[-4000:]))
            result.states = _states(ec2, list(result.instances.values()))
            result.reports = [{
                "subject": m.get("Subject", ""), "message": m["Message"],
                "document": m.get("Document"),
                "attributes": {k: v["Value"] for k, v in
                               m.get("MessageAttributes", {}).items()}}
                for m in inbox.emails()]
        echo("[6/6] local AWS stopped")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    result.seconds = time.monotonic() - started
    return result


def _states(ec2, instance_ids):
    states = {}
    for reservation in ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]:
        for instance in reservation["Instances"]:
            states[instance["InstanceId"]] = instance["State"]["Name"]
    return states
