"""The ``notify-creator`` action: tell the person who launched an instance, through c7n-mailer.

Broom's report goes to a team's topic; this action also writes to the creator
directly, in the message format of Custodian's ``notify`` action, on the SQS queue an
existing c7n-mailer deployment reads, so that c7n-mailer delivers it by e-mail (or
Slack, ``slack://ADDRESS``) with its own templates and transports.

The message (c7n ``notify``'s, which c7n-mailer's ``sqs_queue_processor`` reads):
the JSON ``{"policy", "action", "resources", "event", "account", "account_id",
"region", "version", "execution_id", "execution_start"}``, zlib-compressed, base64
encoded, with the SQS message attribute ``mtype`` = ``maidmsg/1.0``. It carries no
more than a template needs: the policy's name, description and resource type (not
its ``creators`` table), and the call, its time and who made it (not the access key
id, source IP address, user agent or request parameters). ``action.to``
holds the creator's address; ``resources`` the instances they launched, each with
Broom's finding under ``c7n:broom-report`` (outcome, Code, cost: the JSON document's
instance entry) when ``creator-report`` ran before this action.

Who gets mail (docs/reports.md, "Tell the creator"): an address is taken only from a
source the caller cannot choose.

1. ``creators``: a table in the policy mapping principals to addresses, merged with
   ``creators-from`` (a Custodian value source: a JSON object in S3, a file or a URL).
   Keys are an IAM ARN compared with the principal as IAM sees it (an assumed role's
   role ARN, a user's ARN), or ``role/NAME`` / ``user/NAME`` for that role or user in
   any account.
2. ``identity-center: true`` (the default): the session name of an AWS IAM Identity
   Center session, when it is an address. Identity Center sets that name to the
   user's name; the session's role lives under IAM's reserved path
   ``/aws-reserved/sso.amazonaws.com/``, where no one can create or change a role.
   Any other session name is chosen by whoever called AssumeRole
   (``--role-session-name victim@example.com``) and is never used as an address; nor
   is an IAM user name.
3. ``domains``: when set, only addresses in these domains are mailed.

Pure helpers first, AWS calls at the edge (``process``).
"""
import base64
import json
import logging
import re
import zlib

from botocore.exceptions import ClientError
from c7n.actions import EventAction
from c7n.exceptions import PolicyExecutionError, PolicyValidationError
from c7n.resolver import ValuesFrom
from c7n.utils import chunks, local_session, type_schema
from c7n.version import version

from c7n_broom import events, invocation
from c7n_broom.identity import creator_from_record
from c7n_broom.lambda_check import check_lambda_packaging
from c7n_broom.validation import check_schema, where

log = logging.getLogger("custodian.broom.mailer")

#: c7n's Notify.C7N_DATA_MESSAGE: what c7n-mailer expects in the ``mtype`` attribute.
DATA_MESSAGE = "maidmsg/1.0"
#: Where creator-report puts its finding on each resource it reported.
REPORTED = "c7n:broom-report"
#: An SQS message is at most 256 KB; leave room for attributes.
MESSAGE_BUDGET = 200 * 1024
#: The path IAM Identity Center creates its roles under (the start of the role's path:
#: IAM paths may hold ":" and "/", so a path that merely contains it proves nothing).
SSO_PATH = "role/aws-reserved/sso.amazonaws.com/"
_SSO_ROLE = re.compile(r"AWSReservedSSO_.+_[0-9a-f]{16}", re.ASCII)
# A plain address c7n-mailer and mail servers take as it is: ASCII, no spaces, quotes,
# commas or colons (c7n-mailer splits its targets on ":"), one "@", a dotted domain.
_ADDRESS = re.compile(
    r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}", re.ASCII)
DEFAULT_SUBJECT = "Broom: an EC2 instance you launched in {region} broke the Code tag rule"


def is_address(value):
    """True for a plain e-mail address Broom is willing to hand to c7n-mailer."""
    return (isinstance(value, str) and len(value) <= 254 and bool(_ADDRESS.fullmatch(value))
            and ".." not in value)


def in_domains(address, domains):
    """True when ``domains`` is empty or the address's domain is one of them."""
    domain = address.rpartition("@")[2].lower()
    return not domains or domain in {d.lower().lstrip("@") for d in domains}


def _table_key_matches(key, principal_arn):
    if key == principal_arn:
        return True
    kind, _, name = key.partition("/")
    if kind not in ("role", "user") or not name or "/" in name:
        return False
    resource = principal_arn.split(":", 5)[-1] if principal_arn.count(":") >= 5 else ""
    return resource.startswith(kind + "/") and resource.rpartition("/")[2] == name


def is_sso_role(principal_arn):
    """True for the ARN of a role IAM Identity Center created: an IAM role ARN whose
    path starts with SSO_PATH."""
    parts = principal_arn.split(":", 5)
    return (len(parts) == 6 and parts[0] == "arn" and parts[2] == "iam"
            and parts[5].startswith(SSO_PATH))


def creator_address(creator, table, identity_center=True, domains=()):
    """The address to notify for an identity.Creator, or "" (with nobody to trust).

    ``table`` maps principals (IAM ARN, ``role/NAME``, ``user/NAME``) to addresses; it
    wins over an Identity Center session name. See the module docstring."""
    principal = creator.principal_arn
    if principal:
        for key in sorted(table, key=lambda k: (k != principal, k)):  # exact ARN first
            if _table_key_matches(key, principal):
                address = table[key]
                return address if is_address(address) and in_domains(address, domains) else ""
    if (identity_center and creator.identity_type == "AssumedRole" and is_sso_role(principal)
            and _SSO_ROLE.fullmatch(creator.role) and is_address(creator.session)
            and in_domains(creator.session, domains)):
        return creator.session
    return ""


#: What c7n-mailer's templates read of the policy: not its ``creators`` table (every
#: address), its filters or its actions.
POLICY_FIELDS = ("name", "description", "resource")
#: What they read of the event: the call, when, and who made it; not the access key
#: id, source IP address, user agent or request parameters.
RECORD_FIELDS = ("eventName", "eventTime", "awsRegion", "recipientAccountId")
IDENTITY_FIELDS = ("type", "arn", "accountId", "userName")


def mail_policy(policy_data):
    """The part of the policy a c7n-mailer message carries."""
    return {k: policy_data[k] for k in POLICY_FIELDS if k in policy_data}


def mail_event(event):
    """The part of the event a c7n-mailer message carries (None without a record)."""
    record = events.cloudtrail_record(event)
    if record is None:
        return None
    detail = {k: record[k] for k in RECORD_FIELDS if k in record}
    identity = record.get("userIdentity")
    if isinstance(identity, dict):
        detail["userIdentity"] = {k: identity[k] for k in IDENTITY_FIELDS if k in identity}
    return {"detail": detail}


def message(policy_data, account_id, region, event, to, resources, action=None,
            execution_id="", execution_start=0.0):
    """The message c7n's ``notify`` action sends, for c7n-mailer (not yet packed), with
    no more of the policy and the event than its templates need."""
    action = dict(action or {})
    action.setdefault("type", "notify")
    action["to"] = list(to)
    return {"event": mail_event(event), "account_id": account_id, "account": account_id,
            "version": version, "region": region, "execution_id": execution_id,
            "execution_start": execution_start, "policy": mail_policy(policy_data),
            "action": action, "resources": resources}


def pack(data):
    """base64(zlib(JSON)) as c7n's notify packs it (c7n-mailer reverses exactly that)."""
    dumped = json.dumps(data, default=str)
    return base64.b64encode(zlib.compress(dumped.encode("utf-8"))).decode("ascii")


def unpack(body):
    """What c7n-mailer's sqs_queue_processor does with a body: a message published to
    an SNS topic arrives wrapped in SNS's JSON, a message sent to SQS directly does not."""
    try:
        body = json.loads(body)["Message"]
    except (ValueError, TypeError, KeyError):
        pass
    return json.loads(zlib.decompress(base64.b64decode(body)))


def batches(build, resources, budget=MESSAGE_BUDGET):
    """Packed messages built by ``build(resources)``, each under ``budget`` bytes:
    resources split in halves until each part fits (one resource always goes)."""
    packed = pack(build(resources))
    if len(packed) <= budget or len(resources) == 1:
        return [packed]
    half = len(resources) // 2
    return batches(build, resources[:half], budget) + batches(build, resources[half:], budget)


def queue_location(queue, region, account_id):
    """(region, queue URL) from a queue URL, ARN or name, as c7n's notify reads them."""
    if queue.startswith("https://"):
        host = queue[len("https://"):].split("/", 1)[0]
        parts = host.split(".")
        at = parts[1] if parts[0] == "sqs" else (
            "us-east-1" if parts[0] == "queue" else parts[0])
        return at, queue
    if queue.startswith("arn:"):
        _, _, _, at, owner, name = queue.split(":", 5)
        return at, "https://sqs.%s.amazonaws.com/%s/%s" % (at, owner, name)
    return region, "https://sqs.%s.amazonaws.com/%s/%s" % (region, account_id, queue)


class NotifyCreator(EventAction):
    """Notify the person who launched the reported instances, through c7n-mailer.

    Sends c7n ``notify``'s message (base64 of zlib-compressed JSON, SQS attribute
    ``mtype``) to the queue a c7n-mailer deployment reads, addressed to the creator:
    an address from the ``creators`` table (and ``creators-from``, a value source
    holding a JSON object) keyed by IAM ARN, ``role/NAME`` or ``user/NAME``, or the
    session name of an AWS IAM Identity Center session (``identity-center``, on by
    default) when it is an address. A session name anyone could choose, or an IAM
    user name, is never taken as an address. ``domains`` limits the addresses mailed;
    ``slack: true`` also asks c7n-mailer for a Slack direct message. Put it after
    ``creator-report``: only the instances that report covered are mailed, with
    Broom's finding (outcome, Code, cost) under ``c7n:broom-report``. Only event modes
    know who launched an instance: a scheduled or manual run mails nobody.

    :example:

    .. code-block:: yaml

        policies:
          - name: ec2-require-code-tag
            resource: aws.ec2
            filters:
              - type: allowed-codes
                codes: [LOL, GGG]
            actions:
              - type: creator-report
                topic: arn:aws:sns:{region}:{account_id}:broom-reports
              - type: notify-creator
                queue: https://sqs.us-east-1.amazonaws.com/123456789012/c7n-mailer
                creators:
                  role/ci-deployer: platform-team@example.com
                  arn:aws:iam::123456789012:user/bob: bob@example.com
                identity-center: true
                domains: [example.com]
                template: default
    """

    schema = type_schema(
        "notify-creator",
        required=["queue"],
        queue={"type": "string"},
        creators={"type": "object", "patternProperties": {"": {"type": "string"}}},
        domains={"type": "array", "items": {"type": "string"}},
        slack={"type": "boolean"},
        template={"type": "string"},
        subject={"type": "string"},
        **{
            "creators-from": {"$ref": "#/definitions/filters_common/value_from"},
            "identity-center": {"type": "boolean"},
        },
    )
    permissions = ("sqs:SendMessage",)

    def validate(self):
        check_schema(self)
        for key, address in (self.data.get("creators") or {}).items():
            if not is_address(address):
                raise PolicyValidationError(
                    "%s: 'creators' maps %r to %r, which is not a plain e-mail address "
                    "(name@example.com)" % (where(self), key, address))
            if not (key.startswith("arn:") or re.fullmatch(r"(?:role|user)/[^/]+", key)):
                raise PolicyValidationError(
                    "%s: 'creators' key %r must be an IAM ARN, role/NAME or user/NAME"
                    % (where(self), key))
        check_lambda_packaging(self.manager, self.type)
        return self

    def table(self):
        """The ``creators`` table, ``creators-from`` merged in (the policy's wins)."""
        table = {}
        if "creators-from" in self.data:
            loaded = ValuesFrom(self.data["creators-from"], self.manager).get_values()
            if not isinstance(loaded, dict) or not all(
                    isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()):
                raise PolicyExecutionError(
                    "%s: 'creators-from' must hold one JSON object mapping principals to "
                    "addresses, got %s" % (where(self), type(loaded).__name__))
            table.update(loaded)
        table.update(self.data.get("creators") or {})
        return table

    def process(self, resources, event=None):
        reported = [r for r in resources if REPORTED in r]
        record = events.cloudtrail_record(event)
        if not reported or not record:
            return []
        creator = creator_from_record(record)
        address = creator_address(creator, self.table(), self.data.get("identity-center", True),
                                  self.data.get("domains", ()))
        if not address:
            log.info("no trusted address for %s (%s): creator not notified",
                     creator.name, creator.identity_type)
            return []
        to = [address] + (["slack://" + address] if self.data.get("slack") else [])
        config = self.manager.config
        region, url = queue_location(self.data["queue"], config.region, config.account_id)
        action = {"type": "notify", "template": self.data.get("template", "default"),
                  "subject": self.data.get("subject", DEFAULT_SUBJECT).replace(
                      "{region}", config.region).replace("{account_id}", config.account_id),
                  "transport": {"type": "sqs", "queue": self.data["queue"]}}

        def build(part):
            return message(self.manager.data, config.account_id, config.region, event, to,
                           [without_user_data(r) for r in part], action,
                           self.manager.ctx.execution_id, self.manager.ctx.start_time)

        client = local_session(self.manager.session_factory).client("sqs", region_name=region)
        sent = []
        for part in chunks(reported, 500):
            for body in batches(build, list(part)):
                try:
                    response = invocation.retry(  # back-off within the invocation's time
                        client.send_message, QueueUrl=url, MessageBody=body,
                        MessageAttributes={"mtype": {"DataType": "String",
                                                     "StringValue": DATA_MESSAGE}})
                except ClientError as e:
                    raise PolicyExecutionError("%s: could not send to c7n-mailer's queue %s: "
                                               "%s" % (where(self), url, e)) from e
                sent.append(response["MessageId"])
        log.info("notified %s of %d instance(s) through c7n-mailer", address, len(reported))
        return sent


def without_user_data(resource):
    """The resource as c7n's notify sends an EC2 instance: without its user data."""
    return {k: v for k, v in resource.items() if k != "UserData"}
