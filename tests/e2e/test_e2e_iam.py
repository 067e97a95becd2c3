"""End to end: Broom's execution role exactly as templates/account.yml grants it, on
moto's server with IAM enforcement on. It is enough for the job, and no permission in
it is spare: without any one of them, the part of the job that needs it fails (an
instance left running, a report missing or repeated, no re-check scheduled).

policies/ec2-tags.yml is deployed with the stock ``custodian run`` (enforcement off),
then enforcement is switched on (moto's ``POST /moto-api/reset-auth``) and the
published archive runs as the role, as Lambda runs it (broom.local.lambda_runner).
The runs (the template's role, and one role per permission left out) go at once, each
with principals and event ids of its own, and are checked once enforcement is off.

What moto cannot check, so this file does not:

- Resource scoping. moto 5 authorises EC2, SNS, DynamoDB and EventBridge Scheduler
  calls against resource "*" only: a statement scoped to instance, topic, table or
  schedule ARNs is denied there. The role gets the template's statements with every
  Resource widened to "*" (``for_moto``); tests/unit/test_templates.py holds the
  template's scopes equal to broom/permissions.py's instead.
- Conditions. moto evaluates StringEquals only, and gives identity policies no
  request context, so ``ec2:Attribute`` and ``iam:PassedToService`` always pass.
- ``iam:PassRole``: moto does not check it when CreateSchedule passes a role.
- Lambda's own use of the role (its logs, the dead-letter queue): moto cannot run a
  function, and the archive never makes those calls itself.

Which generated permissions moto enforces is found by trying (``moto_denies``, at
collection): a case moto cannot check is skipped, and its id says why.
"""
import contextlib
import copy
import dataclasses
import json
import threading
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import boto3
import pytest
from botocore.exceptions import ClientError

from broom import permissions
from broom.local.aws import LAMBDA_TRUST_POLICY, create_dead_letter_queue, create_state_table
from broom.local.deploy import custodian_run, published
from broom.local.lambda_runner import run_archive
from c7n_broom import recheck, securityhub
from c7n_broom.identity import UNKNOWN

import cfn_templates
from e2e_support import TOPIC, function_name, policy_data, server_inbox
from support import ACCOUNT, IDENTITIES, IMAGE, POLICIES, REGION, launch, run_instances_event

POLICY_FILE = POLICIES / "ec2-tags.yml"
FUNCTION = function_name(policy_data(POLICY_FILE.name))
GENERATED = sorted(permissions.role_actions(
    "account", permissions.policy_permissions([POLICY_FILE])))
REFS = {"AWS::AccountId": ACCOUNT, "AWS::Partition": "aws", "AWS::Region": REGION}
DENIED = 403
[CAP] = [a["max-terminations"] for a in policy_data(POLICY_FILE.name)["actions"]
         if a["type"] == "safe-terminate"]


# --- IAM enforcement on moto's server ------------------------------------------------

def set_auth(aws, count):
    """moto authorises every request after the next ``count`` ("inf": never)."""
    request = urllib.request.Request(
        aws.endpoint_url + "/moto-api/reset-auth", data=str(count).encode(), method="POST",
        headers={"Content-Type": "text/plain"})  # a form body would reach moto empty
    with urllib.request.build_opener(urllib.request.ProxyHandler({})).open(
            request, timeout=30) as response:
        response.read()


@contextlib.contextmanager
def iam_enforced(aws):
    """IAM enforcement on, and off again whatever happens (the other e2e tests share
    the server)."""
    set_auth(aws, 0)
    try:
        yield
    finally:
        set_auth(aws, "inf")


def template_role_policy(template="account.yml", role="broom-lambda"):
    """The role's policy document from a template, as CloudFormation resolves it for
    the local account (no KMS key: the key's statement is a separate policy)."""
    return cfn_templates.resolve(
        cfn_templates.role_policy_document(cfn_templates.load(template), role), REFS)


def for_moto(document, without=None):
    """``document`` as moto can check it: every Resource "*" (moto authorises these
    services against "*" only), ``without`` left out of its statement, and
    ``sns:PublishBatch`` wherever ``sns:Publish`` is: AWS authorises PublishBatch as
    ``sns:Publish`` (``support.IAM_ACTION_OF``), moto as an action of its own."""
    document = copy.deepcopy(document)
    kept = []
    for statement in document["Statement"]:
        statement["Resource"] = "*"
        statement["Action"] = [a for a in cfn_templates.actions_of(statement) if a != without]
        if "sns:Publish" in statement["Action"]:
            statement["Action"].append("sns:PublishBatch")
        if statement["Action"]:
            kept.append(statement)
    document["Statement"] = kept
    return document


# --- which permissions moto enforces, found by trying --------------------------------

_INSTANCE = "i-0123456789abcdef0"
_SCHEDULE = ("scheduler", "create_schedule", {
    "Name": "broom-recheck-probe", "GroupName": recheck.SCHEDULE_GROUP,
    "ScheduleExpression": "at(2030-01-01T00:00:00)",
    "FlexibleTimeWindow": {"Mode": "OFF"},
    "Target": {"Arn": "arn:aws:lambda:%s:%s:function:%s" % (REGION, ACCOUNT, FUNCTION),
               "RoleArn": "arn:aws:iam::%s:role/%s" % (ACCOUNT, recheck.SCHEDULER_ROLE)}})
_ITEM = {"TableName": "broom-state", "Key": {"pk": {"S": "probe"}}}
_FINDING = securityhub.asff(
    {"Type": "AwsEc2Instance", "Id": "arn:aws:ec2:%s:%s:instance/%s" % (REGION, ACCOUNT,
                                                                      _INSTANCE)},
    REGION, ACCOUNT, _INSTANCE, "probe",
    {"key": "Code", "value": None, "reason": "missing", "allowed": ["LOL"]},
    {"status": "terminated"}, UNKNOWN, None, "2030-01-01T00:00:00+00:00")
#: One call per permission the archive needs (iam:PassRole: the call that passes a role).
PROBES = {
    "ec2:DescribeInstances": ("ec2", "describe_instances", {}),
    "ec2:DescribeSpotInstanceRequests": ("ec2", "describe_spot_instance_requests", {}),
    "ec2:DescribeTags": ("ec2", "describe_tags", {}),
    "ec2:ModifyInstanceAttribute": ("ec2", "modify_instance_attribute", {
        "InstanceId": _INSTANCE, "Attribute": "disableApiTermination", "Value": "false"}),
    "ec2:TerminateInstances": ("ec2", "terminate_instances", {"InstanceIds": [_INSTANCE]}),
    "sns:Publish": ("sns", "publish", {
        "TopicArn": "arn:aws:sns:%s:%s:%s" % (REGION, ACCOUNT, TOPIC), "Message": "probe"}),
    "dynamodb:DeleteItem": ("dynamodb", "delete_item", _ITEM),
    "dynamodb:GetItem": ("dynamodb", "get_item", _ITEM),
    "dynamodb:PutItem": ("dynamodb", "put_item", {
        "TableName": "broom-state", "Item": {"pk": {"S": "probe"}}}),
    "dynamodb:UpdateItem": ("dynamodb", "update_item", _ITEM),
    "scheduler:CreateSchedule": _SCHEDULE,
    "iam:PassRole": _SCHEDULE,
    "securityhub:BatchImportFindings": ("securityhub", "batch_import_findings", {
        "Findings": [_FINDING]}),
}


def moto_denies():
    """{permission: True when moto refuses its probe to a user allowed every other
    probed permission, and lets a user allowed all of them make it}. In-process moto
    (mock_aws, the server's code), at collection, before the server starts."""
    from moto import mock_aws
    from moto.core.authorization import enable_iam_authentication

    def user(iam, name, actions):
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="probe", PolicyDocument=json.dumps({
            "Version": "2012-10-17",
            "Statement": [{"Effect": "Allow", "Action": sorted(actions), "Resource": "*"}]}))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return {"aws_access_key_id": key["AccessKeyId"],
                "aws_secret_access_key": key["SecretAccessKey"]}

    def denied(keys, service, operation, params):
        client = boto3.client(service, region_name=REGION, **keys)
        try:
            getattr(client, operation)(**params)
        except ClientError as e:
            return e.response["ResponseMetadata"]["HTTPStatusCode"] == DENIED
        return False

    with pytest.MonkeyPatch.context() as patch:  # as tests/conftest.py's aws_credentials
        for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            patch.setenv(name, "testing")
        with mock_aws():
            iam = boto3.client("iam", region_name=REGION)
            boto3.client("scheduler", region_name=REGION).create_schedule_group(
                Name=recheck.SCHEDULE_GROUP)
            allowed = user(iam, "probe-all", PROBES)
            lacking = {action: user(iam, "probe-%d" % n, set(PROBES) - {action})
                       for n, action in enumerate(PROBES)}
            with enable_iam_authentication():
                return {action: denied(lacking[action], *call) and not denied(allowed, *call)
                        for action, call in PROBES.items()}


MOTO_DENIES = moto_denies()

#: What each permission is for: the scenario of the job (``Run``) that needs it, and
#: the check that fails without it.
NEEDED_FOR = {
    "ec2:DescribeInstances": ("launch", "untagged instance terminated"),
    "ec2:DescribeSpotInstanceRequests": ("launch", "spot report names its persistent request"),
    "ec2:DescribeTags": ("launch", "instance tagged late kept"),
    "ec2:ModifyInstanceAttribute": ("launch", "protected instance terminated"),
    "ec2:TerminateInstances": ("launch", "untagged instance terminated"),
    "sns:Publish": ("launch", "each violator reported once"),
    "dynamodb:GetItem": ("capped", "launches over the principal's cap held"),
    "dynamodb:UpdateItem": ("capped", "launches over the principal's cap held"),
    "scheduler:CreateSchedule": ("capped", "held instances' re-check scheduled"),
    "iam:PassRole": ("capped", "held instances' re-check scheduled"),  # once moto checks it
    # the hold is recorded (recheck.record_hold) before its re-check is scheduled
    "dynamodb:PutItem": ("capped", "held instances' re-check scheduled"),
    "securityhub:BatchImportFindings": ("launch", "violators filed in Security Hub"),
}


#: Permissions no scenario of the job shows needed yet. Since obligations (UpdateItem)
#: keep an event's reports, DeleteItem serves the launch policy only to give a refused
#: fleet report's slot back (state.release_fleet), and the quarantine of the sweep.
NOT_SHOWN = {"dynamodb:DeleteItem": "only a refused fleet report (and the sweep's "
                                    "quarantine) needs it, and no scenario here has one: "
                                    "add one to Run"}

#: Permissions of APIs moto does not serve: no job on moto can show them needed.
NOT_SERVED = {"pricing:GetProducts": "moto serves no Price List API: without it a report "
                                     "says \"cost unknown\" (tests/unit/test_cost.py)"}


def cases():
    return list(_cases())


def _cases():
    for action in GENERATED:
        if action in permissions.LAMBDA_SERVICE:
            reason = "used by the Lambda service, not the function's code"
        elif action in NOT_SERVED:
            reason = NOT_SERVED[action]
        elif action in NOT_SHOWN:
            reason = NOT_SHOWN[action]
        elif action not in PROBES:
            reason = "no probe: add one to PROBES"
        elif not MOTO_DENIES[action]:
            reason = "not checked by moto"
        else:
            yield pytest.param(action, id=action)
            continue
        yield pytest.param(action, id="%s (%s)" % (action, reason),
                           marks=pytest.mark.skip(reason="%s: %s" % (action, reason)))


ENFORCED = [a for a in GENERATED if a not in permissions.LAMBDA_SERVICE
            and MOTO_DENIES.get(a)]


# --- what AWS does that moto does not, emulated in the server's process ---------------

_TAGLESS = {}


def hide_tags_from_describe_instances(instance_id):
    """DescribeInstances just after launch can show an instance without the tags
    DescribeTags already shows (upstream c7n #10909). moto's server runs in this
    process: make this instance's model answer DescribeInstances without tags."""
    from moto.ec2.models import ec2_backends

    instance = ec2_backends[ACCOUNT][REGION].get_instance(instance_id)
    cls = type(instance)
    if cls not in _TAGLESS:
        _TAGLESS[cls] = type(cls.__name__, (cls,), {"tag_set": property(lambda self: [])})
    instance.__class__ = _TAGLESS[cls]


def persistent_spot_instance(ec2, tags):
    """An instance of a persistent spot request, and the request's id. EC2 shows the
    request id in DescribeInstances; moto does not, so its model is given it."""
    from moto.ec2.models import ec2_backends

    [made] = ec2.request_spot_instances(
        SpotPrice="0.05", InstanceCount=1, Type="persistent",
        LaunchSpecification={"ImageId": IMAGE, "InstanceType": "t3.micro"},
    )["SpotInstanceRequests"]
    request_id = made["SpotInstanceRequestId"]
    [request] = ec2.describe_spot_instance_requests(
        SpotInstanceRequestIds=[request_id])["SpotInstanceRequests"]
    instance_id = request["InstanceId"]
    ec2.create_tags(Resources=[instance_id],
                    Tags=[{"Key": k, "Value": v} for k, v in tags.items()])
    ec2_backends[ACCOUNT][REGION].get_instance(instance_id).spot_instance_request_id = (
        request_id)
    return instance_id, request_id


@contextlib.contextmanager
def sns_refuses_once(instance_ids):
    """SNS refuses the first report about each of ``instance_ids`` (as a topic
    deleted and made again would), then accepts them."""
    from moto.sns.exceptions import TopicNotFound
    from moto.sns.models import SNSBackend

    pending, lock = set(instance_ids), threading.Lock()
    original = SNSBackend.publish

    def publish(self, message, *args, **kwargs):
        about = ((kwargs.get("message_attributes") or {}).get(
            "broom.instance_id") or {}).get("Value")
        with lock:
            refuse = about in pending
            pending.discard(about)
        if refuse:
            raise TopicNotFound()
        return original(self, message, *args, **kwargs)

    SNSBackend.publish = publish
    try:
        yield
    finally:
        SNSBackend.publish = original


# --- the job ----------------------------------------------------------------------------

def record(instance_ids, tag, identity=None):
    """A RunInstances record launching ``instance_ids`` now, by a principal of its own
    (``tag`` names it: the per-principal cap and the claims never mix runs), with an
    event id of its own (schedules and claims are named after it)."""
    detail = run_instances_event(instance_ids)["detail"]
    detail["eventID"] = str(uuid.uuid4())
    if identity is None:
        identity = dict(detail["userIdentity"], userName="c7nbot-" + tag,
                        arn="arn:aws:iam::644160558196:user/c7nbot-" + tag)
    detail["userIdentity"] = identity
    return detail


def break_glass_identity(tag):
    """An AssumedRole session of broom-break-glass, the policy's exempt principal."""
    identity = json.loads((IDENTITIES / "assumed-role-meaningful-session.json").read_text())
    identity["arn"] = "arn:aws:sts::%s:assumed-role/broom-break-glass/%s" % (ACCOUNT, tag)
    issuer = identity["sessionContext"]["sessionIssuer"]
    issuer.update(arn="arn:aws:iam::%s:role/broom-break-glass" % ACCOUNT,
                  userName="broom-break-glass")
    return identity


@dataclasses.dataclass
class Run:
    """Broom's job, done by one role (``without``: the permission it lacks), in three
    scenarios, each a series of deliveries of its own events:

    - launch: one RunInstances event launching an untagged instance, an untagged
      termination-protected one, one whose Code tag DescribeInstances does not show
      yet, and a persistent spot instance with a wrong Code;
    - capped: one principal's 11 wrong codes, then 10 more (over the cap of 20 within
      the period: held, re-check scheduled), then the second event again;
    - refused: an exempt principal's launch whose report SNS refuses once, then the
      same event again (Lambda's retry).

    The template's role runs them all; a role without a permission runs the scenario
    NEEDED_FOR names (all of them for a permission it does not name).
    """

    without: str | None
    role: str
    env: dict = None
    ids: dict = dataclasses.field(default_factory=dict)
    records: dict = dataclasses.field(default_factory=dict)
    results: dict = dataclasses.field(default_factory=dict)
    problems: dict = dataclasses.field(default_factory=dict)

    DELIVERIES = {
        "launch": ["launch"],
        "capped": ["first", "second", "second"],  # the last: EventBridge delivers again
        "refused": ["exempt", "exempt"],  # SNS refuses the first report
    }

    @property
    def scenarios(self):
        if self.without in NEEDED_FOR:
            return [NEEDED_FOR[self.without][0]]
        return list(self.DELIVERIES)

    def prepare(self, ec2, tag):
        """Launch what the scenarios are about (auth off); ``tag`` names the run's
        principals, so that runs never share a per-principal count or a claim."""
        if "launch" in self.scenarios:
            [untagged] = launch(ec2=ec2)
            [protected] = launch(ec2=ec2)
            ec2.modify_instance_attribute(InstanceId=protected,
                                          DisableApiTermination={"Value": True})
            [late] = launch(ec2=ec2, tags={"Code": "LOL"})
            hide_tags_from_describe_instances(late)
            spot, request = persistent_spot_instance(ec2, {"Code": "NOPE"})
            self.ids.update(untagged=untagged, protected=protected, late=late, spot=spot,
                            request=request)
            self.records["launch"] = record(
                [untagged, protected, late, spot], tag + "-launch")
        if "capped" in self.scenarios:
            self.ids["first"] = launch(CAP // 2 + 1, ec2=ec2, tags={"Code": "NOPE"})
            self.ids["second"] = launch(CAP - CAP // 2, ec2=ec2, tags={"Code": "NOPE"})
            self.records["first"] = record(self.ids["first"], tag + "-capped")
            self.records["second"] = record(self.ids["second"], tag,
                                            self.records["first"]["userIdentity"])
        if "refused" in self.scenarios:
            [self.ids["exempt"]] = launch(ec2=ec2, tags={"Code": "NOPE"})
            self.records["exempt"] = record([self.ids["exempt"]], tag,
                                            break_glass_identity(tag))

    def instance_ids(self):
        return [i for key, value in self.ids.items() if key != "request"
                for i in (value if isinstance(value, list) else [value])]

    def work(self):
        """(run, the record names a scenario delivers in order), one per scenario."""
        return [(self, self.DELIVERIES[name]) for name in self.scenarios]

    def deliver(self, archive, config, names):
        for n, name in enumerate(names):
            self.results["%s#%d" % (name, n)] = run_archive(
                archive, config["Handler"], envelope(self.records[name]), env=self.env,
                timeout=config["Timeout"], function_name=FUNCTION,
                memory_mb=config["MemorySize"])

    def check(self, states, reports, schedules, filed):
        """The job's checks for the scenarios run (``filed``: the instance ids with a
        Security Hub finding); self.problems: the failed ones, and what was found
        instead."""
        ids, results = self.ids, self.results

        def check(name, ok, found):
            if not ok:
                self.problems[name] = found

        def failed(*names):
            return {n: results[n].error_message for n in names if not results[n].ok}

        def reported(instance_id):
            return [m["MessageAttributes"]["broom.outcome"]["Value"]
                    for m in reports.get(instance_id, ())]

        if "launch" in self.scenarios:
            check("launch event handled", not failed("launch#0"), failed("launch#0"))
            for name in ("untagged", "protected", "spot"):
                label = {"spot": "persistent spot"}.get(name, name)
                check("%s instance terminated" % label, states[ids[name]] == "terminated",
                      states[ids[name]])
            check("instance tagged late kept", states[ids["late"]] == "running",
                  states[ids["late"]])
            outcomes = {name: reported(ids[name]) for name in (
                "untagged", "protected", "spot", "late")}
            check("each violator reported once", outcomes == {
                "untagged": ["terminated"], "protected": ["terminated"],
                "spot": ["terminated"], "late": []}, outcomes)
            spot_reports = [m["Message"] for m in reports.get(ids["spot"], ())]
            check("spot report names its persistent request",
                  any(ids["request"] in m for m in spot_reports), spot_reports)
            violators = {ids[name] for name in ("untagged", "protected", "spot")}
            check("violators filed in Security Hub",
                  violators <= filed and ids["late"] not in filed,
                  sorted((violators | {ids["late"]}) & filed))

        if "capped" in self.scenarios:
            deliveries = ("first#0", "second#1", "second#2")
            check("capped events handled", not failed(*deliveries), failed(*deliveries))
            check("launches within the principal's cap terminated",
                  {states[i] for i in ids["first"]} == {"terminated"},
                  sorted({states[i] for i in ids["first"]}))
            check("launches over the principal's cap held",
                  {states[i] for i in ids["second"]} == {"running"}
                  and {tuple(reported(i)) for i in ids["second"]} == {("held-by-cap",)},
                  sorted({(states[i],) + tuple(reported(i)) for i in ids["second"]}))
            schedule = recheck.schedule_name(recheck.new_key(
                FUNCTION[len("custodian-"):], ACCOUNT, REGION,
                self.records["second"]["eventID"], 0))
            check("held instances' re-check scheduled", schedule in schedules, schedule)
            counts = {len(reports.get(i, ())) for i in ids["first"] + ids["second"]}
            check("repeated event not reported again", counts == {1}, sorted(counts))

        if "refused" in self.scenarios:
            exempt = ids["exempt"]
            check("refused report reported on retry",
                  not failed("exempt#1") and reported(exempt) == ["exempt"]
                  and states[exempt] == "running",
                  (failed("exempt#1"), reported(exempt), states[exempt]))


def envelope(detail):
    from broom.local.lambda_runner import eventbridge_envelope
    return eventbridge_envelope(detail, account=ACCOUNT, region=REGION)


def create_role(iam, name, document):
    iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY))
    iam.put_role_policy(RoleName=name, PolicyName=name, PolicyDocument=json.dumps(document))
    return "arn:aws:iam::%s:role/%s" % (ACCOUNT, name)


def role_env(aws, role_arn, region=REGION):
    """``aws.env()`` with a session of ``role_arn`` (made while auth is off)."""
    credentials = aws.client("sts", region=region).assume_role(
        RoleArn=role_arn, RoleSessionName="broom-iam-test")["Credentials"]
    return dict(aws.env(region=region), AWS_ACCESS_KEY_ID=credentials["AccessKeyId"],
                AWS_SECRET_ACCESS_KEY=credentials["SecretAccessKey"],
                AWS_SESSION_TOKEN=credentials["SessionToken"])


@pytest.fixture(scope="module")
def account(local_aws, tmp_path_factory):
    """What templates/account.yml creates (the roles with the template's policies as
    moto can check them), and policies/ec2-tags.yml deployed with auth off."""
    local_aws.reset()
    iam = local_aws.client("iam")
    create_role(iam, "broom-lambda", for_moto(template_role_policy()))
    scheduler = cfn_templates.role(cfn_templates.load("account.yml"), recheck.SCHEDULER_ROLE)
    iam.create_role(RoleName=recheck.SCHEDULER_ROLE, AssumeRolePolicyDocument=json.dumps(
        cfn_templates.resolve(scheduler["Properties"]["AssumeRolePolicyDocument"], REFS)))
    create_state_table(local_aws.client("dynamodb"))
    local_aws.client("scheduler").create_schedule_group(Name=recheck.SCHEDULE_GROUP)
    create_dead_letter_queue(local_aws.client("sqs"))
    local_aws.client("securityhub").enable_security_hub()
    inbox = server_inbox(local_aws)
    custodian_run(POLICY_FILE, tmp_path_factory.mktemp("deploy"), [REGION], local_aws.env())
    yield local_aws, inbox
    set_auth(local_aws, "inf")


@pytest.fixture(scope="module")
def runs(account):
    """The job done by the template's role, and by the role without each permission
    moto enforces, concurrently, with IAM enforcement on: {permission or None: Run}."""
    aws, inbox = account
    iam, ec2 = aws.client("iam"), aws.client("ec2")
    config, archive = published(aws, FUNCTION, REGION)
    document = template_role_policy()
    found = {None: Run(None, config["Role"])}
    for n, action in enumerate(ENFORCED):
        found[action] = Run(action, create_role(
            iam, "broom-lambda-without-%d" % n, for_moto(document, without=action)))
    for n, run in enumerate(found.values()):
        run.env = role_env(aws, run.role)
        run.prepare(ec2, "run%d" % n)
    work = [unit for run in found.values() for unit in run.work()]
    refused = [run.ids["exempt"] for run in found.values() if "exempt" in run.ids]
    with sns_refuses_once(refused), \
            iam_enforced(aws), ThreadPoolExecutor(max_workers=12) as pool:
        for done in [pool.submit(run.deliver, archive, config, names)
                     for run, names in work]:
            done.result()
    reports = by_instance_all(inbox.emails())
    states = instance_states(ec2, [i for run in found.values() for i in run.instance_ids()])
    schedules = {s["Name"] for s in aws.client("scheduler").list_schedules()["Schedules"]}
    filed = {f["Id"].split("/")[3] for page in aws.client("securityhub").get_paginator(
        "get_findings").paginate() for f in page["Findings"]}
    for run in found.values():
        run.check(states, reports, schedules, filed)
    return found


def by_instance_all(messages):
    """{instance id: [its notifications]} (by_instance keeps one per instance)."""
    found = {}
    for message in messages:
        attributes = message["MessageAttributes"]
        if "broom.instance_id" in attributes:
            found.setdefault(attributes["broom.instance_id"]["Value"], []).append(message)
    return found


def instance_states(ec2, instance_ids):
    states = {}
    for start in range(0, len(instance_ids), 200):
        response = ec2.describe_instances(InstanceIds=instance_ids[start:start + 200])
        for reservation in response["Reservations"]:
            for instance in reservation["Instances"]:
                states[instance["InstanceId"]] = instance["State"]["Name"]
    return states


# --- the tests --------------------------------------------------------------------------

def test_template_role_does_the_job_with_iam_enforced(runs):
    run = runs[None]

    assert run.problems == {}, logs(run)
    # The harness did what it says: SNS refused the first report, the role saw it.
    refused = run.results["exempt#0"]
    assert not refused.ok
    assert "could not be published" in refused.error_message


@pytest.mark.parametrize("action", cases())
def test_role_without_one_permission_fails_the_job(runs, action):
    assert action in NEEDED_FOR, (
        "no check of the job shows what %s is needed for: add a scenario to Run" % action)
    run = runs[action]
    _scenario, check = NEEDED_FOR[action]

    assert check in run.problems, (run.problems, logs(run))


def test_moto_checks_every_call_the_archive_makes_but_passing_a_role():
    """What this file proves depends on moto: if moto stops checking a call, its case
    above is skipped, and this says so."""
    assert {a for a, denied in MOTO_DENIES.items() if not denied} == {"iam:PassRole"}


def logs(run):
    return "\n".join("--- %s ok=%s %s\n%s" % (name, r.ok, r.error_message or "",
                                                r.logs[-3000:])
                     for name, r in run.results.items())
