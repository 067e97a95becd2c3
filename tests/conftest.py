"""Shared fixtures: fake credentials, moto, recorded CloudTrail events, policy loading."""
import copy
import json
from datetime import datetime, timezone
from pathlib import Path

import boto3
import pytest
from c7n.config import Config
from c7n.credentials import SessionFactory
from c7n.policy import Policy
from moto import mock_aws

import c7n_broom  # noqa: F401  (registers Broom's elements)
from c7n_broom.localaws import TopicInbox

DATA = Path(__file__).parent / "data"
CLOUDTRAIL = DATA / "cloudtrail"
REPO = Path(__file__).parent.parent
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
IMAGE = "ami-12345678"  # moto does not check image ids; describe_images is slow


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch, tmp_path):
    """Fake credentials and no shared config, so nothing can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN",
                 "AWS_SECURITY_TOKEN", "C7N_USE_STS_REGIONAL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


@pytest.fixture
def aws():
    """moto in-process (mock_aws): fast unit tests."""
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def local_aws():
    """moto's standalone server on a free loopback port, for the stock CLIs."""
    from c7n_broom.localaws import LocalAws
    with LocalAws(region=REGION) as server:
        yield server


@pytest.fixture
def fresh_aws(local_aws):
    """The local AWS server, emptied before the test."""
    local_aws.reset()
    return local_aws


def load_record(name):
    """A recorded CloudTrail record from tests/data/cloudtrail/."""
    return json.loads((CLOUDTRAIL / name).read_text())


def now_iso():
    """The current time as CloudTrail writes eventTime."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_instances_event(instance_ids, record="event-cloud-trail-run-instance-creator.json",
                        account=ACCOUNT, region=REGION, tags=None, event_time=None):
    """An EventBridge envelope for a recorded RunInstances record, re-pointed at
    the given instance ids (and request tags, if any), made now (``event_time``:
    another eventTime): instances launched just before match it."""
    detail = copy.deepcopy(load_record(record) if isinstance(record, str) else record)
    if detail.get("eventName") == "RunInstances":
        detail["eventTime"] = event_time or now_iso()
    template = detail["responseElements"]["instancesSet"]["items"][0]
    items = []
    for instance_id in instance_ids:
        item = copy.deepcopy(template)
        item["instanceId"] = instance_id
        items.append(item)
    detail["responseElements"]["instancesSet"]["items"] = items
    detail["awsRegion"] = region
    detail["recipientAccountId"] = account
    if tags is not None:
        detail["requestParameters"]["tagSpecificationSet"] = {"items": [{
            "resourceType": "instance",
            "tags": [{"key": k, "value": v} for k, v in tags.items()]}]}
    return {
        "version": "0", "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2",
        "account": account, "time": detail["eventTime"], "region": region,
        "resources": [], "detail": detail,
    }


def launch(count=1, tags=None, region=REGION, **kw):
    """Launch instances in moto and return their ids."""
    ec2 = boto3.client("ec2", region_name=region)
    params = dict(ImageId=IMAGE, MinCount=count, MaxCount=count, InstanceType="t3.micro", **kw)
    if tags:
        params["TagSpecifications"] = [{
            "ResourceType": "instance",
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    return [i["InstanceId"] for i in ec2.run_instances(**params)["Instances"]]


def states(instance_ids, region=REGION):
    ec2 = boto3.client("ec2", region_name=region)
    result = {}
    for reservation in ec2.describe_instances(InstanceIds=instance_ids)["Reservations"]:
        for instance in reservation["Instances"]:
            result[instance["InstanceId"]] = instance["State"]["Name"]
    return result


_OUTPUT = {}


@pytest.fixture(autouse=True, scope="session")
def policy_output(tmp_path_factory):
    """Where policies loaded by tests write their run logs and resources.json."""
    _OUTPUT["dir"] = str(tmp_path_factory.mktemp("custodian-output"))
    return _OUTPUT["dir"]


def load_policy(data, region=REGION, account_id=ACCOUNT, variables=None, validate=True):
    """Load one policy the way the custodian CLI does: expand variables, then validate."""
    config = Config.empty(region=region, account_id=account_id, output_dir=_OUTPUT["dir"],
                          cache="", cache_period=0)
    policy = Policy(data, config, session_factory=SessionFactory(region))
    policy.expand_variables(policy.get_variables(dict(variables or {})))
    if validate:
        policy.validate()
    return policy


def policy_file(name="ec2-tags.yml"):
    import yaml
    return yaml.safe_load((REPO / "policies" / name).read_text())


class Inbox(TopicInbox):
    """The report topic, read through a subscribed SQS queue (mock_aws)."""

    def __init__(self, topic_name="broom-reports", region=REGION):
        super().__init__(boto3.client("sns", region_name=region),
                         boto3.client("sqs", region_name=region), topic_name)


@pytest.fixture
def inbox(aws):
    return Inbox()


class Protection:
    """EC2's termination protection, which moto does not enforce, emulated at the
    botocore level: TerminateInstances naming a protected instance is refused as a
    whole with OperationNotPermitted; clearing ``disableApiTermination`` through
    ModifyInstanceAttribute lifts it (as ``terminate`` with ``force`` does)."""

    def __init__(self):
        self.protected = set()
        self.calls = []

    def __call__(self, original):
        from botocore.exceptions import ClientError

        def make_api_call(client, operation, params):
            if operation == "TerminateInstances":
                self.calls.append(list(params["InstanceIds"]))
                blocked = sorted(self.protected & set(params["InstanceIds"]))
                if blocked:
                    raise ClientError({"Error": {
                        "Code": "OperationNotPermitted",
                        "Message": "The instance '%s' may not be terminated. Modify its "
                                   "'disableApiTermination' instance attribute and try "
                                   "again." % blocked[0]}}, operation)
            if (operation == "ModifyInstanceAttribute"
                    and params.get("Attribute") == "disableApiTermination"
                    and str(params.get("Value")).lower() == "false"):
                self.protected.discard(params["InstanceId"])
            return original(client, operation, params)
        return make_api_call


@pytest.fixture
def protection(monkeypatch):
    from botocore.client import BaseClient
    emulation = Protection()
    monkeypatch.setattr(BaseClient, "_make_api_call", emulation(BaseClient._make_api_call))
    return emulation


class FakeClock:
    """Time that passes only when code sleeps: tests never wait for real."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps = []

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture(autouse=True)
def fake_clock(monkeypatch):
    from c7n_broom.filters import AllowedCodes
    from c7n_broom.source import ResilientDescribeEC2
    clock = FakeClock()
    monkeypatch.setattr(AllowedCodes, "clock", staticmethod(clock.monotonic))
    monkeypatch.setattr(AllowedCodes, "sleep", staticmethod(clock.sleep))
    monkeypatch.setattr(ResilientDescribeEC2, "sleep", staticmethod(clock.sleep))
    return clock


def create_state_table(name="broom-state", region=REGION):
    """Broom's state table as the README tells IaC to create it (mock_aws)."""
    from c7n_broom.localaws import create_state_table as create
    return create(boto3.client("dynamodb", region_name=region), name)


@pytest.fixture
def state_table(aws):
    """The ``broom-state`` DynamoDB table, empty."""
    return create_state_table()
