"""Generated CloudTrail history for ``broom whatif``: records in the shape CloudTrail
writes them (built on the recorded events in tests/data/cloudtrail/) and log files as
CloudTrail delivers them to S3. Used by tests/unit/test_whatif*.py and
benchmarks/whatif.py."""
import copy
import gzip
import itertools
import json
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

CLOUDTRAIL = Path(__file__).parent / "data" / "cloudtrail"
ACCOUNT = "111122223333"
REGION = "us-east-1"
START = datetime(2026, 10, 1, 9, 0, 0, tzinfo=timezone.utc)
_ids = itertools.count(1)


def _load(name):
    return json.loads((CLOUDTRAIL / name).read_text())


_RUN = _load("event-cloud-trail-run-instance-creator.json")
_CREATE = _load("create-tags.json")
_DELETE = _load("delete-tags.json")


def at(seconds):
    """CloudTrail's eventTime ``seconds`` after START."""
    return (START + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def instance_id():
    return "i-%017x" % next(_ids)


# --- who -------------------------------------------------------------------------------

def user(name, account=ACCOUNT):
    return {"type": "IAMUser", "principalId": "AIDAEXAMPLE%s" % name.upper(),
            "arn": "arn:aws:iam::%s:user/%s" % (account, name), "accountId": account,
            "accessKeyId": "AKIAEXAMPLE", "userName": name}


def role(name, session="alice", path="", account=ACCOUNT):
    role_arn = "arn:aws:iam::%s:role/%s%s" % (account, path, name)
    return {"type": "AssumedRole", "principalId": "AROAEXAMPLE:%s" % session,
            "arn": "arn:aws:sts::%s:assumed-role/%s/%s" % (account, name, session),
            "accountId": account, "accessKeyId": "ASIAEXAMPLE",
            "sessionContext": {"sessionIssuer": {
                "type": "Role", "principalId": "AROAEXAMPLE", "arn": role_arn,
                "accountId": account, "userName": name},
                "attributes": {"creationDate": at(0), "mfaAuthenticated": "false"}}}


def root(account=ACCOUNT):
    return {"type": "Root", "principalId": account, "arn": "arn:aws:iam::%s:root" % account,
            "accountId": account, "accessKeyId": "ASIAEXAMPLE"}


def autoscaling(account=ACCOUNT):
    """Auto Scaling's service-linked role, as it launches a group's instances."""
    return role("AWSServiceRoleForAutoScaling", "AutoScaling",
                "aws-service-role/autoscaling.amazonaws.com/", account)


# --- records ---------------------------------------------------------------------------

def _tag_items(tags):
    return [{"key": k, "value": v} for k, v in tags.items()]


def run_instances(ids, seconds=0, who=None, tags=None, response_tags=None, account=ACCOUNT,
                  region=REGION, error=None, launch_template=False, spot=None, extra_tags=None):
    """A RunInstances record launching ``ids``: ``tags`` in the request's
    tagSpecificationSet for instances; ``response_tags`` what EC2 reports on each
    instance (defaults to ``tags``; a launch template's tags come only there); ``error``
    (code, message) makes it a failed call; ``spot`` "persistent" or "one-time"."""
    record = copy.deepcopy(_RUN)
    record.update(eventTime=at(seconds), awsRegion=region, recipientAccountId=account,
                  eventID=str(uuid.uuid4()), userIdentity=who or user("alice", account))
    params = record["requestParameters"]
    specs = []
    if tags is not None:
        specs.append({"resourceType": "instance", "tags": _tag_items(tags)})
    for kind, kind_tags in (extra_tags or {}).items():
        specs.append({"resourceType": kind, "tags": _tag_items(kind_tags)})
    if specs:
        params["tagSpecificationSet"] = {"items": specs}
    if launch_template:
        params["launchTemplate"] = {"launchTemplateId": "lt-0123456789abcdef0",
                                    "version": "$Default"}
    if spot:
        params["instanceMarketOptions"] = {"marketType": "spot", "spotOptions": {
            "spotInstanceType": spot}}
    if error:
        record["errorCode"], record["errorMessage"] = error
        record["responseElements"] = None
        return record
    shown = tags if response_tags is None else response_tags
    template = record["responseElements"]["instancesSet"]["items"][0]
    items = []
    for number, iid in enumerate(ids):
        item = copy.deepcopy(template)
        item["instanceId"] = iid
        if shown:
            item["tagSet"] = {"items": _tag_items(shown)}
        if spot:
            item["spotInstanceRequestId"] = "sir-%08d" % number
            item["instanceLifecycle"] = "spot"
        items.append(item)
    record["responseElements"]["instancesSet"]["items"] = items
    return record


def karpenter(session="1715000000000000000", account=ACCOUNT):
    """A Kubernetes node provisioner's controller role (its session name is a number)."""
    return role("KarpenterController", session, account=account)


def create_fleet(groups, seconds=0, who=None, tags=None, account=ACCOUNT, region=REGION,
                 error=None, errors=(), fleet_type="instant", single_as_element=True):
    """A CreateFleet record of an instant fleet launching ``groups`` (one list of
    instance ids per instance type), in the shape ``support.create_fleet_event``
    builds and documents (EC2's XML shape: a list of one recorded as the element alone
    unless ``single_as_element`` is false): ``tags`` in the request's instance
    TagSpecification; ``errors`` error codes of what it could not launch; ``error``
    (code, message) makes it a failed call; ``fleet_type`` request or maintain makes a
    fleet that launches later (its response names no instance)."""
    from support import create_fleet_event  # imports boto3 and c7n: only when needed

    number = next(_ids)
    record = create_fleet_event(
        groups, tags=tags, errors=errors, identity=who or karpenter(account=account),
        fleet_type=fleet_type, single_as_element=single_as_element, account=account,
        region=region, event_time=at(seconds),
        fleet_id="fleet-%08x-0000-4000-8000-%012x" % (number, number))["detail"]
    record.update(eventID=str(uuid.uuid4()), requestID=str(uuid.uuid4()))
    if error:
        record["errorCode"], record["errorMessage"] = error
        record["responseElements"] = None
    return record


def by_ec2_fleet(record):
    """A RunInstances record as EC2 Fleet makes it for an instant fleet's launch: the
    caller's identity, ``invokedBy`` (and source and agent) ``ec2fleet.amazonaws.com``
    (aws/karpenter-provider-aws#8190)."""
    record = copy.deepcopy(record)
    record["userIdentity"]["invokedBy"] = "ec2fleet.amazonaws.com"
    record["sourceIPAddress"] = record["userAgent"] = "ec2fleet.amazonaws.com"
    return record


def create_tags(ids, tags, seconds, who=None, account=ACCOUNT, region=REGION, error=None):
    record = copy.deepcopy(_CREATE)
    record.update(eventTime=at(seconds), awsRegion=region, recipientAccountId=account,
                  eventID=str(uuid.uuid4()))
    if who:
        record["userIdentity"] = who
    record["requestParameters"] = {"resourcesSet": {"items": [{"resourceId": i} for i in ids]},
                                   "tagSet": {"items": _tag_items(tags)}}
    if error:
        record["errorCode"], record["errorMessage"] = error
    return record


def delete_tags(ids, keys, seconds, account=ACCOUNT, region=REGION):
    record = copy.deepcopy(_DELETE)
    record.update(eventTime=at(seconds), awsRegion=region, recipientAccountId=account,
                  eventID=str(uuid.uuid4()))
    record["requestParameters"] = {"resourcesSet": {"items": [{"resourceId": i} for i in ids]}}
    if keys is not None:
        record["requestParameters"]["tagSet"] = {"items": [{"key": k} for k in keys]}
    return record


def other_event(seconds, number=0, account=ACCOUNT, region=REGION):
    """A record Broom does not need (most of a real trail): reads of other services."""
    name, source = [("GetObject", "s3.amazonaws.com"), ("AssumeRole", "sts.amazonaws.com"),
                    ("DescribeInstances", "ec2.amazonaws.com"),
                    ("PutMetricData", "monitoring.amazonaws.com"),
                    ("Decrypt", "kms.amazonaws.com")][number % 5]
    return {
        "eventVersion": "1.09", "userIdentity": role("app-%d" % (number % 7), "worker"),
        "eventTime": at(seconds), "eventSource": source, "eventName": name,
        "awsRegion": region, "sourceIPAddress": "10.0.%d.%d" % (number % 250, number % 200),
        "userAgent": "aws-sdk-go-v2/1.30.3 os/linux lang/go#1.22.5 md/GOOS#linux",
        "requestParameters": {"bucketName": "data-%d" % (number % 13),
                              "key": "path/to/object-%d.parquet" % number,
                              "roleSessionName": "worker-%d" % number},
        "responseElements": None, "requestID": "REQ%012d" % number,
        "eventID": str(uuid.UUID(int=number)), "readOnly": True,
        "resources": [{"type": "AWS::S3::Object", "ARN": "arn:aws:s3:::data/%d" % number}],
        "eventType": "AwsApiCall", "managementEvent": False,
        "recipientAccountId": account, "eventCategory": "Data",
        "tlsDetails": {"tlsVersion": "TLSv1.3", "cipherSuite": "TLS_AES_128_GCM_SHA256",
                       "clientProvidedHostHeader": "s3.%s.amazonaws.com" % region}}


def log_file(folder, records, name=None, gz=True):
    """Write ``records`` as a CloudTrail log file; returns its path."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = name or "%s_CloudTrail_%s_%s.json%s" % (ACCOUNT, REGION, uuid.uuid4().hex[:8],
                                                   ".gz" if gz else "")
    data = json.dumps({"Records": records}).encode()
    path = folder / name
    path.write_bytes(gzip.compress(data) if gz else data)
    return path
