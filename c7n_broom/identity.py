"""Who launched it: turn a CloudTrail ``userIdentity`` into a creator for a human report.

Pure functions on plain data (no AWS calls, no c7n imports; nested fields are read with
``c7n_broom.events.get_path``). CloudTrail documents the shapes in "CloudTrail
userIdentity element"; the original Broom crashed on every shape without a
``userName``. Here every input, however malformed, gives a :class:`Creator` whose
fields are strings holding what AWS recorded (stripped, length-capped), so that
exemptions match the true values. They are untrusted (session names and user names
are chosen by whoever made the call): a report escapes them when it is rendered,
through ``c7n_broom.text.readable``; never put a Creator field in a message any other
way.
"""
import dataclasses
import re
from dataclasses import dataclass, fields

from c7n_broom.events import get_path

#: Longest text kept per field: the longest ARN IAM allows. Real values are shorter, and
#: are never clipped (exemptions match on ``arn`` and ``role``); longer ones end in "...".
MAX_FIELD_LENGTH = 2048

_SSO_ROLE = re.compile(r"AWSReservedSSO_(?P<permission_set>.+)_[0-9a-f]{16}", re.ASCII)

# Session names chosen by tools or services rather than by a person.
_MEANINGLESS_SESSION = re.compile(
    r"""i-[0-9a-f]{8}(?:[0-9a-f]{9})?                             # EC2 instance profile
      | (?:botocore-session|aws-go-sdk|aws-sdk-[a-z]+(?:-session)?)-[0-9]+  # SDK defaults
      | AutoScaling
      | [0-9]+                                                     # numeric only
      | [0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}               # UUID
      | [0-9a-f]{32}                                               # e.g. ECS task id
    """,
    re.ASCII | re.IGNORECASE | re.VERBOSE,
)

# Service-linked roles that launch EC2 instances, by role name (an optional
# "_suffix" is allowed for custom Auto Scaling service-linked roles).
_SERVICE_LINKED_ROLES = {
    "AWSServiceRoleForAutoScaling": "Auto Scaling",
    "AWSServiceRoleForEC2Spot": "Spot",
    "AWSServiceRoleForEC2SpotFleet": "Spot Fleet",
    "AWSServiceRoleForEC2Fleet": "EC2 Fleet",
}

# Friendly names of the service principals seen in ``invokedBy`` for launches.
_SERVICE_LABELS = {
    "autoscaling.amazonaws.com": "Auto Scaling",
    "spot.amazonaws.com": "Spot",
    "spotfleet.amazonaws.com": "Spot Fleet",
    "ec2fleet.amazonaws.com": "EC2 Fleet",
    "ec2.amazonaws.com": "EC2",
}


def _text(value):
    """Return ``value`` as a stripped string: str and numbers are kept, anything else is ''."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return str(value)
        except ValueError:  # an int too long for str() (sys.int_info.str_digits_check_threshold)
            return ""
    return ""


def _coerce(value):
    """Coerce ``value`` to a stripped string of at most MAX_FIELD_LENGTH characters, as
    recorded: not escaped (reports escape it when rendered, see c7n_broom.text)."""
    text = _text(value)
    return text if len(text) <= MAX_FIELD_LENGTH else text[: MAX_FIELD_LENGTH - 3] + "..."


def _arn_resource(arn):
    """Return the resource part of an ARN ("assumed-role/ROLE/SESSION"), or ''."""
    parts = arn.split(":", 5)
    return parts[5] if len(parts) == 6 and parts[0] == "arn" else ""


def _iam_arn(arn, *kinds):
    """Return ``arn`` if it is an IAM ARN of one of ``kinds`` (role, user, root), else ''."""
    parts = arn.split(":", 5)
    if len(parts) == 6 and parts[0] == "arn" and parts[2] == "iam" and not parts[3]:
        return arn if parts[5].partition("/")[0] in kinds else ""
    return ""


def _session_principal(identity, issuer):
    """aws:PrincipalArn of an assumed-role session: the issuing role's IAM ARN (with its
    path) from ``sessionIssuer.arn``, else built from ``arn:P:sts::A:assumed-role/ROLE/S``
    as ``arn:P:iam::A:role/ROLE`` (path unknown). The issuer is ignored when it names
    another role than the session ARN does."""
    parts = _text(identity.get("arn")).split(":", 5)
    resource = parts[5].split("/") if len(parts) == 6 and parts[0] == "arn" else []
    role = resource[1] if len(resource) == 3 and resource[0] == "assumed-role" else ""
    issuer_arn = _iam_arn(_text(get_path(issuer, "arn")), "role")
    if issuer_arn and (not role or issuer_arn.rpartition("/")[2] == role):
        return issuer_arn
    if role and parts[2] == "sts":
        return f"arn:{parts[1]}:iam::{parts[4]}:role/{role}"
    return ""


def _service_label(service):
    """Return a friendly name for a service principal such as autoscaling.amazonaws.com."""
    return _SERVICE_LABELS.get(service, service)


@dataclass(frozen=True)
class Creator:
    """Who made a CloudTrail call, for a human report.

    Every field is a string as the event recorded it (stripped, length-capped, NOT escaped:
    it may hold newlines or markup); ``name`` is never empty ("unknown" at worst).
    """

    name: str  # who, for a person: "alice@example.com", "GR_Dev_Developer", "root"
    identity_type: str = "Unknown"  # userIdentity.type as recorded
    arn: str = ""
    account_id: str = ""
    role: str = ""  # role name of an assumed role (SSO and service-linked roles included)
    session: str = ""  # session name of an assumed role
    via: str = ""  # userIdentity.invokedBy: the AWS service that acted for the principal
    note: str = ""  # short explanation for the reader, when one helps
    # The principal as IAM sees it (aws:PrincipalArn), what exemptions match: a session's
    # role ARN with its path, a user's or root's ARN; '' when there is none. Not compared:
    # it restates ``arn``/``role`` the way IAM does.
    principal_arn: str = dataclasses.field(default="", compare=False)

    def __post_init__(self):
        """Coerce every field to a stripped, length-capped str (kept as recorded)."""
        for field in fields(self):
            object.__setattr__(self, field.name, _coerce(getattr(self, field.name)))
        if not self.name:
            object.__setattr__(self, "name", "unknown")
        if not self.identity_type:
            object.__setattr__(self, "identity_type", "Unknown")


UNKNOWN = Creator(name="unknown", note="no CloudTrail userIdentity says who launched it")


def _creator(identity, kind, name, **details):
    """Build a Creator, taking arn, account and invokedBy from the userIdentity."""
    details.setdefault("via", _text(identity.get("invokedBy")))
    return Creator(
        name=name, identity_type=kind,
        arn=_text(identity.get("arn")), account_id=_text(identity.get("accountId")), **details
    )


def _iam_user(identity, kind):
    """IAMUser: userName, else the last part of the arn, else principalId."""
    arn_name = _arn_resource(_text(identity.get("arn"))).rpartition("/")[2]
    name = _text(identity.get("userName")) or arn_name or _text(identity.get("principalId"))
    return _creator(identity, kind, name,
                    principal_arn=_iam_arn(_text(identity.get("arn")), "user"))


def _service_linked(role, issuer_arn, via):
    """Return the service behind a service-linked role, or '' if the role is not one."""
    service = _SERVICE_LINKED_ROLES.get(role.partition("_")[0], "")
    path = _arn_resource(issuer_arn).split("/")
    if not service and len(path) > 2 and path[1] == "aws-service-role":
        service = _service_label(path[2])
    if not service and role.startswith("AWSServiceRoleFor"):
        service = _service_label(via) or "an AWS service"
    return service


def _assumed_role(identity, kind):
    """AssumedRole: the session name when a person chose it, else the role name.

    The role comes from ``sessionContext.sessionIssuer.userName`` or, when that is missing,
    from the arn ``arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION``.
    """
    issuer = get_path(identity, "sessionContext", "sessionIssuer")
    resource = _arn_resource(_text(identity.get("arn"))).split("/")
    from_arn = resource[1:3] if resource[0] == "assumed-role" and len(resource) == 3 else ["", ""]
    role = _text(get_path(issuer, "userName")) or from_arn[0]
    session = from_arn[1] or _text(identity.get("principalId")).rpartition(":")[2]
    via = _text(identity.get("invokedBy"))
    meaningful = bool(session) and not _MEANINGLESS_SESSION.fullmatch(session)

    service = _service_linked(role, _text(get_path(issuer, "arn")), via)
    sso = _SSO_ROLE.fullmatch(role)
    if service:
        name, note = role, f"launched by {service} through its service-linked role"
    elif sso:
        name = session if meaningful else role
        note = f"AWS IAM Identity Center (SSO) permission set {sso['permission_set']}"
    elif meaningful:
        name, note = session, ""
    elif role:
        name, note = role, "session name is not meaningful; role shown" if session else ""
    else:
        name, note = session or _text(identity.get("principalId")), ""
    return _creator(identity, kind, name, role=role, session=session, note=note,
                    principal_arn=_session_principal(identity, issuer))


def _federated_user(identity, kind):
    """FederatedUser: the name given to GetFederationToken, and the IAM user who called it."""
    arn_name = _arn_resource(_text(identity.get("arn"))).partition("federated-user/")[2]
    name = arn_name or _text(identity.get("principalId")).rpartition(":")[2]
    issuer = _text(get_path(identity, "sessionContext", "sessionIssuer", "userName"))
    note = "federated user from GetFederationToken"
    if issuer:
        note += f" called by IAM user {issuer}"
    arn = _text(identity.get("arn"))  # IAM sees arn:aws:sts::ACCOUNT:federated-user/NAME
    federated = arn if _arn_resource(arn).startswith("federated-user/") else ""
    return _creator(identity, kind, name or issuer, note=note, principal_arn=federated)


def _root(identity, kind):
    """Root: the account itself, possibly through a service (invokedBy) acting for it."""
    service = _text(identity.get("invokedBy"))
    note = f"launched by {_service_label(service)} on behalf of the account" if service else ""
    return _creator(identity, kind, "root", note=note,
                    principal_arn=_iam_arn(_text(identity.get("arn")), "root"))


def _aws_service(identity, kind):
    """AWSService: invokedBy is the service itself, so it is the name rather than ``via``."""
    name = _text(identity.get("invokedBy")) or _text(identity.get("principalId"))
    note = "an AWS service acting with its own credentials"
    return _creator(identity, kind, name, via="", note=note)


def _aws_account(identity, kind):
    """AWSAccount: a principal of another account; only its principalId and account are known."""
    account = _text(identity.get("accountId"))
    note = "a principal of another AWS account" + (f" ({account})" if account else "")
    return _creator(identity, kind, _text(identity.get("principalId")) or account, note=note)


def _identity_center_user(identity, kind):
    """IdentityCenterUser: the record holds a user id, not a user name."""
    user_id = _text(get_path(identity, "onBehalfOf", "userId"))
    store = _text(get_path(identity, "onBehalfOf", "identityStoreArn")).rpartition("/")[2]
    note = "AWS IAM Identity Center user id; look it up in identity store "
    note += store or "(not recorded)"
    return _creator(identity, kind, user_id, note=note if user_id else "")


def _federated_by_provider(identity, kind):
    """WebIdentityUser / SAMLUser: userName as given by the identity provider."""
    provider = _text(identity.get("identityProvider"))
    flavour = "SAML" if kind == "SAMLUser" else "web identity"
    note = f"{flavour} federation" + (f" through {provider}" if provider else "")
    name = _text(identity.get("userName")) or _text(identity.get("principalId"))
    return _creator(identity, kind, name, note=note)


def _best_effort(identity, kind):
    """Unknown or missing type: use whatever names the principal."""
    if _arn_resource(_text(identity.get("arn"))).startswith("assumed-role/"):
        return _assumed_role(identity, kind)
    candidates = (
        _text(identity.get("userName")),
        _arn_resource(_text(identity.get("arn"))).rpartition("/")[2],
        _text(identity.get("principalId")),
        _text(identity.get("invokedBy")),
        _text(identity.get("accountId")),
    )
    name = next((candidate for candidate in candidates if candidate), "")
    return _creator(identity, kind, name) if name or kind != "Unknown" else UNKNOWN


_RESOLVERS = {
    "IAMUser": _iam_user,
    "AssumedRole": _assumed_role,
    "FederatedUser": _federated_user,
    "Root": _root,
    "AWSService": _aws_service,
    "AWSAccount": _aws_account,
    "IdentityCenterUser": _identity_center_user,
    "WebIdentityUser": _federated_by_provider,
    "SAMLUser": _federated_by_provider,
}


def resolve_creator(user_identity) -> Creator:
    """Return the :class:`Creator` named by a CloudTrail ``userIdentity``.

    Accepts any value and never raises: anything that is not a dict gives :data:`UNKNOWN`.
    """
    if not isinstance(user_identity, dict):
        return UNKNOWN
    kind = _text(user_identity.get("type"))
    return _RESOLVERS.get(kind, _best_effort)(user_identity, kind or "Unknown")


def creator_from_record(record) -> Creator:
    """Return the creator of a CloudTrail record (or of an EventBridge event whose
    ``detail`` is one). Accepts any value and never raises."""
    if isinstance(record, dict) and "userIdentity" not in record:
        record = record.get("detail")
    return resolve_creator(get_path(record, "userIdentity"))
