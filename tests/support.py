"""What the tests share: constants, recorded events, moto helpers, policy loading.

Imported as ``support`` by tests/unit and tests/e2e (tests/conftest.py puts tests/ on
``sys.path``); the conftest.py files hold fixtures only. Helpers only the end-to-end
tests use are in tests/e2e/e2e_support.py.
"""
import copy
import filecmp
import functools
import io
import json
import re
import unicodedata
import uuid
import zipfile
from datetime import datetime, timezone
from pathlib import Path

import boto3
import yaml
from c7n.config import Config
from c7n.credentials import SessionFactory
from c7n.policy import Policy

from broom.local.aws import TopicInbox
from broom.local.lambda_runner import eventbridge_envelope

TESTS = Path(__file__).parent
DATA = TESTS / "data"
CLOUDTRAIL = DATA / "cloudtrail"
IDENTITIES = DATA / "identities"
REPO = TESTS.parent
POLICIES = REPO / "policies"
ACCOUNT = "123456789012"  # moto's default account
REGION = "us-east-1"
IMAGE = "ami-12345678"  # moto does not check image ids; describe_images is slow

#: Where policies loaded by tests write their run logs (set by conftest's policy_output).
OUTPUT = {"dir": None}


# --- recorded CloudTrail events -----------------------------------------------------

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
    another eventTime): instances launched just before match it. Each call is a new
    event (its own eventID); deliver the same envelope again to repeat one."""
    detail = copy.deepcopy(load_record(record) if isinstance(record, str) else record)
    if detail.get("eventName") == "RunInstances":
        detail["eventTime"] = event_time or now_iso()
        detail["eventID"] = str(uuid.uuid4())  # each call is its own event, as in CloudTrail
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


def tag_event(record, resource_ids, tags):
    """A CreateTags/DeleteTags event naming ``resource_ids``; ``tags`` maps keys to
    values (None: a DeleteTags key without a value); ``tags=None`` omits the tag list."""
    detail = copy.deepcopy(load_record(record))
    detail["recipientAccountId"] = ACCOUNT
    detail["awsRegion"] = REGION
    detail["eventID"] = str(uuid.uuid4())  # each call is its own event
    params = detail["requestParameters"]
    params["resourcesSet"]["items"] = [{"resourceId": i} for i in resource_ids]
    if tags is None:
        del params["tagSet"]
    else:
        params["tagSet"]["items"] = [{"key": k} if v is None else {"key": k, "value": v}
                                     for k, v in tags.items()]
    return eventbridge_envelope(detail)


#: A Karpenter controller's session (EKS pod identity through web identity federation):
#: who makes CreateFleet calls for a Kubernetes cluster's nodes.
NODE_PROVISIONER = {
    "type": "AssumedRole",
    "principalId": "AROAEXAMPLEKARPENTER1:1715000000000000000",
    "arn": "arn:aws:sts::%s:assumed-role/KarpenterController-demo/1715000000000000000"
           % ACCOUNT,
    "accountId": ACCOUNT,
    "accessKeyId": "ASIAEXAMPLEKEYID1234",
    "sessionContext": {
        "sessionIssuer": {
            "type": "Role", "principalId": "AROAEXAMPLEKARPENTER1",
            "arn": "arn:aws:iam::%s:role/KarpenterController-demo" % ACCOUNT,
            "accountId": ACCOUNT, "userName": "KarpenterController-demo"},
        "webIdFederationData": {
            "federatedProvider": "arn:aws:iam::%s:oidc-provider/oidc.eks.us-east-1."
                                 "amazonaws.com/id/EXAMPLE0D8C7B6A5" % ACCOUNT,
            "attributes": {}},
        "attributes": {"creationDate": "2026-01-05T09:00:00Z", "mfaAuthenticated": "false"}},
}


def _xml_list(values, single_as_element):
    """A repeated XML element as CloudTrail records it: ``{"item": [...]}``, or, for
    one element with ``single_as_element``, ``{"item": element}``."""
    values = list(values)
    return {"item": values[0] if single_as_element and len(values) == 1 else values}


def create_fleet_event(groups, tags=None, errors=(), identity=None, fleet_type="instant",
                       single_as_element=True, account=ACCOUNT, region=REGION,
                       event_time=None, fleet_id="fleet-0a1b2c3d-4e5f-6789-abcd-ef0123456789"):
    """An EventBridge envelope for a CreateFleet record (no recorded one ships with the
    tests: this one is BUILT, not recorded).

    Its shape is the documented one: the CreateFleet API reference's response
    (``fleetId``, ``fleetInstanceSet`` of CreateFleetInstance with ``instanceIds``,
    ``errorSet`` of CreateFleetError, instant fleets only) in EC2's XML form as
    CloudTrail records it, ``responseElements.CreateFleetResponse.fleetInstanceSet
    .item[].instanceIds.item[]``, where a list of one is the element alone
    (``single_as_element``); and the request as recorded CreateFleet records published
    in aws-samples/siem-on-amazon-opensearch-service#98,
    aws/karpenter-provider-aws#5850 and kubernetes-sigs/karpenter#2813 show it,
    ``requestParameters.CreateFleetRequest`` with ``Type`` and
    ``TagSpecification[].{ResourceType, Tag[].{Key, Value, tag}}``.

    ``groups``: one list of instance ids per launched instance type (one
    fleetInstanceSet item each); ``tags``: the request's instance tags; ``errors``:
    error codes of what could not be launched; ``identity``: the userIdentity
    (default: a Karpenter controller's session).
    """
    event_time = event_time or now_iso()
    response = {"xmlns": "http://ec2.amazonaws.com/doc/2016-11-15/",
                "requestId": "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b", "fleetId": fleet_id}
    if groups:
        response["fleetInstanceSet"] = _xml_list(
            [{"launchTemplateAndOverrides": {
                "launchTemplateSpecification": {"launchTemplateId": "lt-0abcdef1234567890",
                                                "version": 1},
                "overrides": {"instanceType": "t3.micro", "subnetId": "subnet-0123abcd"}},
              "lifecycle": "on-demand",
              "instanceIds": _xml_list(ids, single_as_element),
              "instanceType": "t3.micro"} for ids in groups], single_as_element)
    if errors:
        response["errorSet"] = _xml_list(
            [{"errorCode": code, "errorMessage": "There is no capacity for this request.",
              "lifecycle": "on-demand"} for code in errors], single_as_element)
    request = {
        "TargetCapacitySpecification": {"DefaultTargetCapacityType": "on-demand",
                                        "TotalTargetCapacity": sum(len(g) for g in groups)},
        "Type": fleet_type,
        "LaunchTemplateConfigs": {"LaunchTemplateSpecification": {
            "LaunchTemplateName": "karpenter.k8s.aws/1234567890", "Version": "$Latest"},
            "tag": 1},
        "ClientToken": "7c9e6679-7425-40de-944b-e07fc1f90ae7",
    }
    if tags is not None:
        request["TagSpecification"] = [
            {"ResourceType": "instance", "tag": 1, "Tag": [
                {"Key": k, "Value": v, "tag": n} for n, (k, v) in enumerate(tags.items(), 1)]},
            {"ResourceType": "fleet", "tag": 2, "Tag": [
                {"Key": "karpenter.sh/nodepool", "Value": "default", "tag": 1}]}]
    detail = {
        "eventVersion": "1.10",
        "userIdentity": copy.deepcopy(identity or NODE_PROVISIONER),
        "eventTime": event_time,
        "eventSource": "ec2.amazonaws.com",
        "eventName": "CreateFleet",
        "awsRegion": region,
        "sourceIPAddress": "192.0.2.10",
        "userAgent": "aws-sdk-go-v2/1.36.3 ua/2.1 os/linux lang/go#1.24.2 api/ec2#1.215.0 "
                     "karpenter.sh-1.5.0",
        "requestParameters": {"CreateFleetRequest": request},
        "responseElements": {"CreateFleetResponse": response},
        "requestID": "0f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b",
        "eventID": "3c5d7e9f-1a2b-4c3d-8e9f-0a1b2c3d4e5f",
        "readOnly": False,
        "eventType": "AwsApiCall",
        "managementEvent": True,
        "recipientAccountId": account,
        "eventCategory": "Management",
    }
    return {
        "version": "0", "id": "9f8e7d6c-5b4a-4392-8170-6f5e4d3c2b1a",
        "detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2",
        "account": account, "time": event_time, "region": region,
        "resources": [], "detail": detail,
    }


# --- EC2 ------------------------------------------------------------------------------

def launch(count=1, tags=None, region=REGION, ec2=None, **params):
    """Launch ``count`` instances and return their ids; ``ec2``: a client of the
    local AWS server (default: a client of the in-process ``mock_aws``)."""
    ec2 = ec2 or boto3.client("ec2", region_name=region)
    params = dict(ImageId=IMAGE, MinCount=count, MaxCount=count, InstanceType="t3.micro",
                  **params)
    if tags:
        params["TagSpecifications"] = [{
            "ResourceType": "instance",
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    return [i["InstanceId"] for i in ec2.run_instances(**params)["Instances"]]


def launch_fleet(count=1, tags=None, region=REGION, ec2=None):
    """Launch ``count`` instances with an instant EC2 Fleet (CreateFleet, as Karpenter
    does) and return their ids; ``ec2`` as for :func:`launch`. ``tags`` go in the
    request's instance TagSpecifications."""
    ec2 = ec2 or boto3.client("ec2", region_name=region)
    template = "broom-test-nodes"
    if not ec2.describe_launch_templates(
            Filters=[{"Name": "launch-template-name", "Values": [template]}])[
            "LaunchTemplates"]:
        ec2.create_launch_template(LaunchTemplateName=template, LaunchTemplateData={
            "ImageId": IMAGE, "InstanceType": "t3.micro"})
    params = dict(
        Type="instant",
        LaunchTemplateConfigs=[{"LaunchTemplateSpecification": {
            "LaunchTemplateName": template, "Version": "$Latest"}}],
        TargetCapacitySpecification={"TotalTargetCapacity": count,
                                     "DefaultTargetCapacityType": "on-demand"})
    if tags:
        params["TagSpecifications"] = [{
            "ResourceType": "instance",
            "Tags": [{"Key": k, "Value": v} for k, v in tags.items()]}]
    response = ec2.create_fleet(**params)
    return [i for launched in response["Instances"] for i in launched["InstanceIds"]]


def states(instance_ids, ec2=None, region=REGION):
    """{instance id: state name} as EC2 shows them now; ``ec2`` as for :func:`launch`."""
    ec2 = ec2 or boto3.client("ec2", region_name=region)
    return {instance["InstanceId"]: instance["State"]["Name"]
            for reservation in ec2.describe_instances(
                InstanceIds=list(instance_ids))["Reservations"]
            for instance in reservation["Instances"]}


def create_tags(resource_ids, tags):
    """CreateTags in moto, and the event CloudTrail records for it (an SSO user)."""
    boto3.client("ec2", region_name=REGION).create_tags(
        Resources=resource_ids, Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    return tag_event("create-tags.json", resource_ids, tags)


def delete_tags(resource_ids, tags):
    """DeleteTags in moto, and the event CloudTrail records for it (an IAM user)."""
    boto3.client("ec2", region_name=REGION).delete_tags(
        Resources=resource_ids,
        Tags=[{"Key": k} if v is None else {"Key": k, "Value": v} for k, v in tags.items()])
    return tag_event("delete-tags.json", resource_ids, tags)


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


class SpotRequests:
    """Spot requests in moto. moto leaves SpotInstanceRequestId out of
    DescribeInstances: wrapped around ``BaseClient._make_api_call``, this puts it in
    (``fill``), as EC2 does."""

    def __init__(self):
        self.ec2 = boto3.client("ec2", region_name=REGION)
        self.requests = {}  # instance id: request id

    def request(self, kind="one-time", tags=None):
        """Request one spot instance (``kind``: one-time or persistent), with
        ``tags`` on the request; returns (request id, instance id)."""
        [made] = self.ec2.request_spot_instances(
            SpotPrice="0.05", InstanceCount=1, Type=kind,
            LaunchSpecification={"ImageId": IMAGE, "InstanceType": "t3.micro"},
            TagSpecifications=[{"ResourceType": "spot-instances-request", "Tags": [
                {"Key": k, "Value": v} for k, v in (tags or {}).items()]}] if tags else [],
        )["SpotInstanceRequests"]
        request_id = made["SpotInstanceRequestId"]
        [described] = self.ec2.describe_spot_instance_requests(
            SpotInstanceRequestIds=[request_id])["SpotInstanceRequests"]
        self.requests[described["InstanceId"]] = request_id
        return request_id, described["InstanceId"]

    def relaunch(self, request_id):
        """What EC2 does for a persistent request whose instance was terminated."""
        [instance] = launch(InstanceMarketOptions={"MarketType": "spot"})
        self.requests[instance] = request_id
        return instance

    def fill(self, response):
        for reservation in response.get("Reservations", []):
            for instance in reservation["Instances"]:
                if instance["InstanceId"] in self.requests:
                    instance["SpotInstanceRequestId"] = self.requests[instance["InstanceId"]]

    def __call__(self, original):
        def make_api_call(client, operation, params):
            response = original(client, operation, params)
            if operation == "DescribeInstances":
                self.fill(response)
            return response
        return make_api_call


# --- SNS, DynamoDB --------------------------------------------------------------------

class Inbox(TopicInbox):
    """The report topic, read through a subscribed SQS queue (mock_aws)."""

    def __init__(self, topic_name="broom-reports", region=REGION):
        super().__init__(boto3.client("sns", region_name=region),
                         boto3.client("sqs", region_name=region), topic_name)


def create_state_table(name="broom-state", region=REGION):
    """Broom's state table as the README tells IaC to create it (mock_aws)."""
    from broom.local.aws import create_state_table as create
    return create(boto3.client("dynamodb", region_name=region), name)


# --- policies -------------------------------------------------------------------------

def load_policy(data, region=REGION, account_id=ACCOUNT, variables=None, validate=True):
    """Load one policy the way the custodian CLI does: expand variables, then validate."""
    config = Config.empty(region=region, account_id=account_id, output_dir=OUTPUT["dir"],
                          cache="", cache_period=0)
    policy = Policy(data, config, session_factory=SessionFactory(region))
    policy.expand_variables(policy.get_variables(dict(variables or {})))
    if validate:
        policy.validate()
    return policy


def policy_file(name="ec2-tags.yml"):
    """The policy document ``policies/NAME``, as written (variables not expanded): a
    copy of its own for the caller to change."""
    return copy.deepcopy(parsed_yaml((POLICIES / name).read_text()))


@functools.lru_cache(maxsize=None)
def parsed_yaml(text):
    """``text`` parsed once per run (PyYAML takes milliseconds a file, and the tests
    read the same few files a thousand times): shared, so copy it before changing it."""
    return yaml.safe_load(text)


#: An option value for :func:`policy_with`: remove the option.
DROP = object()


def policy_with(element, name="ec2-tags.yml", **options):
    """The single policy of ``policies/NAME`` with options of one element changed;
    ``element`` is "filter:TYPE" or "action:TYPE"; an option set to DROP is removed."""
    [data] = policy_file(name)["policies"]
    kind, element_type = element.split(":")
    [target] = [e for e in data["filters" if kind == "filter" else "actions"]
                if e["type"] == element_type]
    for option, value in options.items():
        if value is DROP:
            target.pop(option, None)
        else:
            target[option] = value
    return data


def make_zip(files):
    """A Lambda archive holding ``files`` ({name: source})."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, contents in files.items():
            archive.writestr(name, contents)
    return buffer.getvalue()


# --- time -----------------------------------------------------------------------------

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


# --- report text ----------------------------------------------------------------------

# What a chat tool or a mail client would still treat as markup in a rendered value:
# a tag or Slack's <!here>/<@U1>/<url|text>, an entity other than the three readable()
# writes, an @ or ! at the start of a word, a Markdown link or image.
LIVE_MARKUP = re.compile(r"[<>]|&(?!amp;|lt;|gt;)|(?<![^\W_])[@!]|\]\(")
UNSAFE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def assert_inert(rendered):
    """Report text that no mail client nor chat tool turns into markup, mentions or
    extra lines (a body's own line breaks excepted)."""
    assert not LIVE_MARKUP.search(rendered), LIVE_MARKUP.search(rendered)
    assert not any(unicodedata.category(char) in UNSAFE for char in rendered.replace("\n", ""))


def marks_in_a_row(rendered):
    """The longest run of combining marks."""
    longest = run = 0
    for char in rendered:
        run = run + 1 if unicodedata.category(char) in ("Mn", "Me") else 0
        longest = max(longest, run)
    return longest


# --- the installed copy against the working tree ------------------------------------

#: The packages whose ``.py`` files an install copies from the working tree.
PACKAGES = ("c7n_broom", "broom")
#: Files an install puts at the root of site-packages.
ROOT_FILES = ("_c7n_broom_autoload.py", "c7n_broom.pth")


def _package_files(root, packages):
    return {path.relative_to(root).as_posix(): path
            for package in packages for path in sorted((root / package).rglob("*.py"))
            if "__pycache__" not in path.parts}


def working_tree_files(packages=PACKAGES, root_files=ROOT_FILES):
    """{installed path: working tree file}: what ``pip install .`` copies, and where
    (policies/*.yml are installed as broom/policies/*.yml)."""
    files = _package_files(REPO, packages)
    if "broom" in packages:
        files.update({"broom/policies/" + path.name: path
                      for path in sorted(POLICIES.glob("*.yml"))})
    files.update({name: REPO / name for name in root_files})
    return files


def installed_files(site, packages=PACKAGES, root_files=ROOT_FILES):
    """{installed path: file} of the copy under ``site`` (a site-packages directory)."""
    files = _package_files(site, packages)
    if "broom" in packages:
        files.update({"broom/policies/" + path.name: path
                      for path in sorted((site / "broom" / "policies").glob("*.yml"))})
    files.update({name: site / name for name in root_files if (site / name).exists()})
    return files


def stale_files(site, packages=PACKAGES, root_files=ROOT_FILES):
    """What differs between the copy under ``site`` and the working tree: files that
    differ, are not installed, or are installed but no longer in the working tree."""
    want = working_tree_files(packages, root_files)
    have = installed_files(site, packages, root_files)
    stale = ["%s (differs)" % name for name in sorted(set(want) & set(have))
             if not filecmp.cmp(want[name], have[name], shallow=False)]
    stale += ["%s (not installed)" % name for name in sorted(set(want) - set(have))]
    stale += ["%s (not in the working tree)" % name for name in sorted(set(have) - set(want))]
    return stale


# --- sweeps: pre-existing instances, CloudTrail's event history ----------------------

class Aged:
    """Instances launched long ago, in moto (which stamps LaunchTime at run time):
    wrapped around ``BaseClient._make_api_call``, DescribeInstances shows the launch
    time and the attach times of the interfaces and volumes of the instances in
    ``ages`` that much earlier (``{instance id: timedelta}``)."""

    def __init__(self):
        self.ages = {}

    def __call__(self, original):
        def make_api_call(client, operation, params):
            response = original(client, operation, params)
            if operation == "DescribeInstances":
                for reservation in response.get("Reservations", []):
                    for instance in reservation["Instances"]:
                        self.shift(instance)
            return response
        return make_api_call

    def shift(self, instance):
        age = self.ages.get(instance["InstanceId"])
        if not age:
            return
        instance["LaunchTime"] -= age
        for eni in instance.get("NetworkInterfaces", []):
            if "AttachTime" in eni.get("Attachment", {}):
                eni["Attachment"]["AttachTime"] -= age
        for device in instance.get("BlockDeviceMappings", []):
            if "AttachTime" in device.get("Ebs", {}):
                device["Ebs"]["AttachTime"] -= age


def launch_record(instance_id, identity=None):
    """A recorded RunInstances record naming ``instance_id`` (``identity``: another
    userIdentity), as CloudTrail's LookupEvents returns it in ``CloudTrailEvent``."""
    detail = copy.deepcopy(load_record("event-cloud-trail-run-instance-creator.json"))
    item = detail["responseElements"]["instancesSet"]["items"][0]
    detail["responseElements"]["instancesSet"]["items"] = [dict(item, instanceId=instance_id)]
    if identity is not None:
        detail["userIdentity"] = identity
    return detail


def lookup_page(instance_id, identity=None, token=None):
    """A LookupEvents response holding the RunInstances record of ``instance_id``
    (None: no record)."""
    events = [] if instance_id is None else [{
        "EventId": "00000000-0000-0000-0000-%012d" % (abs(hash(instance_id)) % 10**12),
        "EventName": "RunInstances", "ReadOnly": "false",
        "EventSource": "ec2.amazonaws.com", "Resources": [],
        "EventTime": datetime(2026, 1, 1, tzinfo=timezone.utc),
        "CloudTrailEvent": json.dumps(launch_record(instance_id, identity))}]
    page = {"Events": events}
    if token:
        page["NextToken"] = token
    return page


def role_identity(role, session, account=ACCOUNT, path="/"):
    """The userIdentity of an assumed-role session."""
    return {"type": "AssumedRole", "principalId": "AROAEXAMPLE:%s" % session,
            "arn": "arn:aws:sts::%s:assumed-role/%s/%s" % (account, role, session),
            "accountId": account, "sessionContext": {"sessionIssuer": {
                "type": "Role", "principalId": "AROAEXAMPLE", "userName": role,
                "arn": "arn:aws:iam::%s:role%s%s" % (account, path, role),
                "accountId": account}}}


class Trail:
    """CloudTrail's LookupEvents, which moto lacks, on botocore's Stubber: responses
    are queued in the order the sweep asks (``sweep.lookup_order``)."""

    def __init__(self, region=REGION):
        from botocore.stub import Stubber
        self.client = boto3.client("cloudtrail", region_name=region)
        self.stubber = Stubber(self.client)
        self.stubber.activate()

    def launched(self, instance_ids, identity=None):
        """Each instance's RunInstances record, by ``identity`` (default: the recorded
        IAM user c7nbot), or by ``identity(instance_id)`` when it is callable."""
        from botocore.stub import ANY
        for instance_id in in_lookup_order(instance_ids):
            who = identity(instance_id) if callable(identity) else identity
            self.stubber.add_response("lookup_events", lookup_page(instance_id, who), {
                "LookupAttributes": [{"AttributeKey": "ResourceName",
                                      "AttributeValue": instance_id}],
                "StartTime": ANY, "EndTime": ANY, "MaxResults": ANY})

    def refuse(self, code, times=1):
        for _ in range(times):
            self.stubber.add_client_error("lookup_events", code, "refused by the test")

    def pending(self):
        return len(self.stubber._queue)


def in_lookup_order(instance_ids, ec2=None):
    """``instance_ids`` in the order the sweep looks them up (as EC2 describes them)."""
    from c7n_broom.sweep import lookup_order
    ec2 = ec2 or boto3.client("ec2", region_name=REGION)
    described = [i for r in ec2.describe_instances(InstanceIds=list(instance_ids))[
        "Reservations"] for i in r["Instances"]]
    return [i["InstanceId"] for i in lookup_order(described)]


# --- the report document ------------------------------------------------------------

def report_validator():
    """A JSON Schema validator of the report document (schemas/broom.report-1.json)."""
    import jsonschema
    schema = json.loads((REPO / "schemas" / "broom.report-1.json").read_text())
    return jsonschema.Draft202012Validator(schema)


#: API operations IAM authorises as another action (SNS PublishBatch is sns:Publish).
IAM_ACTION_OF = {"sns:PublishBatch": "sns:Publish"}


def iam_action(client, operation):
    """The IAM action that authorises ``operation`` of a botocore ``client``."""
    name = "%s:%s" % (client.meta.service_model.signing_name, operation)
    return IAM_ACTION_OF.get(name, name)
