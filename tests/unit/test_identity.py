"""Tests for c7n_broom.identity: who launched it, from a CloudTrail userIdentity."""
import ast
import dataclasses
import json
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from c7n_broom import identity, report
from c7n_broom.identity import UNKNOWN, Creator, creator_from_record, resolve_creator

from support import IDENTITIES, assert_inert, load_record

FINDING = report.Finding(instance_id="i-0123456789abcdef0", region="us-east-1",
                         account_id="123456789012")
TERMINATED = report.Outcome(report.TERMINATED)


def load_identity(name):
    return json.loads((IDENTITIES / name).read_text())


def assert_report_safe(creator):
    """Every field is a plain str (as recorded, so possibly hostile); name and type are set;
    the report renders the creator inert: no control, format or bidi character, no markup,
    no extra line, in its one-line description and in the body."""
    for field in dataclasses.fields(Creator):
        assert type(getattr(creator, field.name)) is str
    assert creator.name
    assert creator.identity_type
    line = report.describe_creator(creator)
    assert type(line) is str and line and "\n" not in line
    assert_inert(line)
    body = report.body(FINDING, TERMINATED, creator)
    assert_inert(body)
    plain = Creator(name="x", role="x" if creator.role else "", session="x")
    assert len(body.splitlines()) == len(report.body(FINDING, TERMINATED, plain).splitlines())


# Recorded CloudTrail records (Cloud Custodian test data, see data/cloudtrail/SOURCES.md)


def test_iam_user_record_names_the_user():
    creator = creator_from_record(load_record("event-cloud-trail-run-instance-creator.json"))

    assert creator == Creator(
        name="c7nbot",
        identity_type="IAMUser",
        arn="arn:aws:iam::644160558196:user/c7nbot",
        account_id="644160558196",
        via="signin.amazonaws.com",
    )
    assert report.describe_creator(creator) == "c7nbot via signin.amazonaws.com"


def test_assumed_role_record_names_the_session_and_keeps_the_role():
    creator = creator_from_record(
        load_record("event-cloud-trail-run-instance-creator-assumed.json")
    )

    assert creator == Creator(
        name="Radiant",
        identity_type="AssumedRole",
        arn="arn:aws:sts::03412312600:assumed-role/GR_Dev_Developer/Radiant",
        account_id="076173845600",
        role="GR_Dev_Developer",
        session="Radiant",
    )
    assert report.describe_creator(creator) == "Radiant"


def test_root_record_invoked_by_autoscaling_says_the_service_acted_for_the_account():
    creator = creator_from_record(load_record("event-cloud-trail-run-instances.json"))

    assert creator == Creator(
        name="root",
        identity_type="Root",
        arn="arn:aws:iam::619193117841:root",
        account_id="619193117841",
        via="autoscaling.amazonaws.com",
        note="launched by Auto Scaling on behalf of the account",
    )
    assert report.describe_creator(creator) == (
        "root via autoscaling.amazonaws.com (launched by Auto Scaling on behalf of the account)"
    )


def test_record_inside_an_eventbridge_envelope_is_resolved():
    record = load_record("event-cloud-trail-run-instance-creator.json")
    envelope = {"detail-type": "AWS API Call via CloudTrail", "source": "aws.ec2", "detail": record}

    assert creator_from_record(envelope) == creator_from_record(record)


def test_record_resolves_like_its_user_identity():
    record = load_record("event-cloud-trail-run-instance-creator-assumed.json")

    assert creator_from_record(record) == resolve_creator(record["userIdentity"])


# Hand-written userIdentity shapes (data/identities/README.md)

ASSUMED_ARN = "arn:aws:sts::123456789012:assumed-role/{}/{}"
NOT_MEANINGFUL = "session name is not meaningful; role shown"

IDENTITY_CASES = [
    # file, name, identity_type, role, session, words the note must contain
    ("sso-permission-set.json", "alice@example.com", "AssumedRole",
     "AWSReservedSSO_AdministratorAccess_0123456789abcdef", "alice@example.com",
     "AWS IAM Identity Center (SSO) permission set AdministratorAccess"),
    ("sso-permission-set-with-underscores.json", "bob", "AssumedRole",
     "AWSReservedSSO_Dev_Power_User_fedcba9876543210", "bob", "permission set Dev_Power_User"),
    ("service-linked-autoscaling.json", "AWSServiceRoleForAutoScaling", "AssumedRole",
     "AWSServiceRoleForAutoScaling", "AutoScaling", "launched by Auto Scaling"),
    ("service-linked-autoscaling-custom-suffix.json", "AWSServiceRoleForAutoScaling_WebTier",
     "AssumedRole", "AWSServiceRoleForAutoScaling_WebTier", "AutoScaling",
     "launched by Auto Scaling"),
    ("service-linked-spot.json", "AWSServiceRoleForEC2Spot", "AssumedRole",
     "AWSServiceRoleForEC2Spot", "1715000000000", "launched by Spot "),
    ("service-linked-spot-fleet.json", "AWSServiceRoleForEC2SpotFleet", "AssumedRole",
     "AWSServiceRoleForEC2SpotFleet", "1715000000000", "launched by Spot Fleet"),
    ("service-linked-ec2-fleet.json", "AWSServiceRoleForEC2Fleet", "AssumedRole",
     "AWSServiceRoleForEC2Fleet", "1715000000000", "launched by EC2 Fleet"),
    ("service-linked-other-service.json", "AWSServiceRoleForAmazonEKSNodegroup", "AssumedRole",
     "AWSServiceRoleForAmazonEKSNodegroup", "EKS",
     "launched by eks-nodegroup.amazonaws.com through its service-linked role"),
    ("session-instance-profile.json", "ci-runner", "AssumedRole", "ci-runner",
     "i-0123456789abcdef0", NOT_MEANINGFUL),
    ("session-botocore.json", "deployer", "AssumedRole", "deployer",
     "botocore-session-1715000000", NOT_MEANINGFUL),
    ("session-aws-go-sdk.json", "terraform", "AssumedRole", "terraform",
     "aws-go-sdk-1715000000000", NOT_MEANINGFUL),
    ("session-autoscaling-custom-role.json", "asg-launcher", "AssumedRole", "asg-launcher",
     "AutoScaling", NOT_MEANINGFUL),
    ("session-numeric.json", "batch-jobs", "AssumedRole", "batch-jobs", "1715000000",
     NOT_MEANINGFUL),
    ("session-uuid.json", "pipeline", "AssumedRole", "pipeline",
     "3f2b8c1e-9a4d-4e8f-b1c2-0d9e8f7a6b5c", NOT_MEANINGFUL),
    ("assumed-role-meaningful-session.json", "carol", "AssumedRole", "Developer", "carol", ""),
    ("assumed-role-without-session-context.json", "dave", "AssumedRole", "Developer", "dave",
     ""),
    ("untyped-assumed-role.json", "frank", "Unknown", "Developer", "frank", ""),
    ("federated-user.json", "bob", "FederatedUser", "", "",
     "GetFederationToken called by IAM user Alice"),
    ("aws-service.json", "ec2.amazonaws.com", "AWSService", "", "", "AWS service"),
    ("aws-account.json", "AIDAEXAMPLEUSERID123", "AWSAccount", "", "",
     "another AWS account (111122223333)"),
    ("identity-center-user.json", "544894e8-80c1-707f-60e3-3ba6510dfac1", "IdentityCenterUser",
     "", "", "Identity Center user id; look it up in identity store d-9067642ac7"),
    ("web-identity-user.json", "123456789012345678901", "WebIdentityUser", "", "",
     "web identity federation through accounts.google.com"),
    ("saml-user.json", "SamlExample", "SAMLUser", "", "",
     "SAML federation through bdGOnTesti4+ExamplexL/jEvs="),
    ("iam-user-without-user-name.json", "erin", "IAMUser", "", "", ""),
    ("iam-user-principal-id-only.json", "AIDAEXAMPLEUSERID123", "IAMUser", "", "", ""),
    ("root-console.json", "root", "Root", "", "", ""),
    ("unknown-type.json", "ANONYMOUS_PRINCIPAL", "Unknown", "", "", ""),
]


@pytest.mark.parametrize(
    "filename, name, identity_type, role, session, note",
    IDENTITY_CASES,
    ids=[case[0].removesuffix(".json") for case in IDENTITY_CASES],
)
def test_identity_shapes_resolve_to_a_meaningful_name(
    filename, name, identity_type, role, session, note
):
    creator = resolve_creator(load_identity(filename))

    assert creator.name == name
    assert creator.identity_type == identity_type
    assert creator.role == role
    assert creator.session == session
    assert note in creator.note
    assert bool(creator.note) == bool(note)
    assert_report_safe(creator)


def test_every_identity_fixture_is_in_the_table():
    assert sorted(path.name for path in IDENTITIES.glob("*.json")) == sorted(
        case[0] for case in IDENTITY_CASES
    )


def test_sso_describe_names_the_person_and_the_permission_set():
    creator = resolve_creator(load_identity("sso-permission-set.json"))

    assert creator.arn == ASSUMED_ARN.format(creator.role, "alice@example.com")
    assert report.describe_creator(creator) == (
        "alice@example.com (AWS IAM Identity Center (SSO) permission set AdministratorAccess)"
    )


def test_service_linked_role_keeps_the_service_as_via():
    creator = resolve_creator(load_identity("service-linked-autoscaling.json"))

    assert creator.via == "autoscaling.amazonaws.com"
    assert creator.arn == ASSUMED_ARN.format("AWSServiceRoleForAutoScaling", "AutoScaling")
    assert creator.account_id == "123456789012"


def test_aws_service_is_the_name_not_the_via():
    creator = resolve_creator(load_identity("aws-service.json"))

    assert creator.via == ""
    assert report.describe_creator(creator) == (
        "ec2.amazonaws.com (an AWS service acting with its own credentials)"
    )


def test_aws_account_without_arn_describes_the_account():
    creator = resolve_creator(load_identity("aws-account.json"))

    assert report.describe_creator(creator) == (
        "AIDAEXAMPLEUSERID123 (a principal of another AWS account (111122223333))")


def test_assumed_role_without_arn_takes_the_session_from_the_principal_id():
    user_identity = load_identity("session-instance-profile.json")
    del user_identity["arn"]

    creator = resolve_creator(user_identity)

    assert (creator.name, creator.role, creator.session) == (
        "ci-runner", "ci-runner", "i-0123456789abcdef0"
    )


def test_sso_with_a_meaningless_session_shows_the_role():
    user_identity = load_identity("sso-permission-set.json")
    user_identity["arn"] = ASSUMED_ARN.format(
        "AWSReservedSSO_AdministratorAccess_0123456789abcdef", "botocore-session-1715000000"
    )

    creator = resolve_creator(user_identity)

    assert creator.name == "AWSReservedSSO_AdministratorAccess_0123456789abcdef"
    assert creator.note == "AWS IAM Identity Center (SSO) permission set AdministratorAccess"


def test_identity_center_user_without_user_id_is_unknown():
    creator = resolve_creator({"type": "IdentityCenterUser", "credentialId": "EXAMPLE"})

    assert creator.name == "unknown"
    assert creator.identity_type == "IdentityCenterUser"


def test_unrecognised_type_is_kept_and_user_name_used():
    creator = resolve_creator({"type": "SomethingNew", "userName": "grace"})

    assert (creator.name, creator.identity_type) == ("grace", "SomethingNew")


def test_unrecognised_type_without_names_is_kept_with_an_unknown_name():
    creator = resolve_creator({"type": "SomethingNew"})

    assert (creator.name, creator.identity_type) == ("unknown", "SomethingNew")


# Malformed and hostile input


@pytest.mark.parametrize(
    "value",
    [None, "", "IAMUser", 42, 4.2, True, [], ["IAMUser"], {}, {"type": None}, {"type": ["x"]}],
    ids=repr,
)
def test_values_without_identity_give_unknown(value):
    assert resolve_creator(value) == UNKNOWN
    assert creator_from_record(value) == UNKNOWN
    assert creator_from_record({"userIdentity": value}) == UNKNOWN


def test_unknown_is_a_report_safe_unknown_creator():
    assert UNKNOWN.name == "unknown"
    assert UNKNOWN.identity_type == "Unknown"
    assert report.describe_creator(UNKNOWN) == (
        "unknown (no CloudTrail userIdentity says who launched it)"
    )


def test_iam_user_with_wrong_typed_fields_falls_back_to_the_arn():
    creator = resolve_creator({
        "type": "IAMUser",
        "userName": {"nested": "dict"},
        "arn": "arn:aws:iam::123456789012:user/heidi",
        "accountId": 123456789012,
        "invokedBy": ["signin.amazonaws.com"],
    })

    assert creator == Creator(
        name="heidi",
        identity_type="IAMUser",
        arn="arn:aws:iam::123456789012:user/heidi",
        account_id="123456789012",
    )


def test_assumed_role_with_wrong_typed_session_context_uses_the_arn():
    creator = resolve_creator({
        "type": "AssumedRole",
        "arn": ASSUMED_ARN.format("Developer", "ivan"),
        "sessionContext": ["not", "a", "dict"],
    })

    assert (creator.name, creator.role, creator.session) == ("ivan", "Developer", "ivan")


def test_integer_too_long_for_str_is_dropped():
    creator = resolve_creator({"type": "AWSAccount", "accountId": 10**5000, "principalId": "x"})

    assert creator.account_id == ""
    assert creator.name == "x"


def test_control_characters_in_a_session_name_are_kept_and_escaped_in_the_report():
    user_identity = {
        "type": "AssumedRole",
        "arn": ASSUMED_ARN.format("Developer", "mallory\nTERMINATED BY: root\r"),
    }

    creator = resolve_creator(user_identity)

    assert creator.name == "mallory\nTERMINATED BY: root"  # as recorded (stripped)
    lines = report.body(FINDING, TERMINATED, creator).splitlines()
    assert "Launched by:    mallory\\x0aTERMINATED BY: root" in lines
    assert not any(line.startswith("TERMINATED BY") for line in lines)
    assert_report_safe(creator)


def test_bidirectional_override_is_kept_and_escaped_in_the_report():
    creator = resolve_creator({"type": "IAMUser", "userName": "evil\u202etxt.exe"})

    assert creator.name == "evil\u202etxt.exe"
    assert report.describe_creator(creator) == "evil\\u202etxt.exe"


def test_markup_in_a_session_name_is_kept_and_inert_in_the_report():
    creator = resolve_creator({
        "type": "AssumedRole", "arn": ASSUMED_ARN.format("Developer", "<!here>@everyone")})

    assert creator.session == creator.name == "<!here>@everyone"
    assert report.describe_creator(creator) == "&lt;\uff01here&gt;\uff20everyone"
    assert_report_safe(creator)


def test_very_long_values_are_clipped():
    creator = resolve_creator({"type": "IAMUser", "userName": "a" * 100_000})

    assert len(creator.name) == identity.MAX_FIELD_LENGTH
    assert creator.name.endswith("...")


def test_long_but_valid_arn_is_kept_whole_for_exemption_matching():
    arn = "arn:aws:iam::123456789012:user/" + "team/" * 100 + "judy"

    creator = resolve_creator({"type": "IAMUser", "arn": arn})

    assert (creator.name, creator.arn) == ("judy", arn)


def test_creator_built_directly_is_coerced_too_and_escaped_when_rendered():
    creator = Creator(name=" \n", identity_type=None, arn=123, note="line one\nline two")

    assert creator == Creator(name="unknown", arn="123", note="line one\nline two")
    assert report.describe_creator(creator) == "unknown (line one\\x0aline two)"


def test_module_imports_only_the_standard_library():
    tree = ast.parse(Path(identity.__file__).read_text())
    imported = {alias.name.partition(".")[0] for node in ast.walk(tree)
                if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module.partition(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module}

    assert imported - {"c7n_broom"} <= sys.stdlib_module_names  # c7n_broom.events: pure


# Property tests: any JSON-like value, biased towards the real keys with wrong-typed values

IDENTITY_KEYS = [
    "type", "principalId", "arn", "accountId", "accessKeyId", "userName", "invokedBy",
    "sessionContext", "sessionIssuer", "attributes", "onBehalfOf", "userId",
    "identityStoreArn", "credentialId", "identityProvider", "userIdentity", "detail",
]
REALISTIC_TEXT = [
    "IAMUser", "AssumedRole", "FederatedUser", "Root", "AWSService", "AWSAccount",
    "IdentityCenterUser", "WebIdentityUser", "SAMLUser", "Unknown", "",
    "arn:aws:sts::123456789012:assumed-role/AWSReservedSSO_Admin_0123456789abcdef/a@b.c",
    "arn:aws:sts::123456789012:assumed-role/Role/i-0123456789abcdef0",
    "arn:aws:sts::123456789012:assumed-role/x",
    "arn:aws:sts::123456789012:federated-user/",
    "arn:aws:iam::123456789012:role/aws-service-role/",
    "arn:aws:iam::123456789012:role/aws-service-role/spot.amazonaws.com/AWSServiceRoleForX",
    "arn::::::", "arn", ":", "/", "AWSServiceRoleFor", "AWSReservedSSO__0123456789abcdef",
    "AWSServiceRoleForAutoScaling", "AWSServiceRoleForSomething", "Alice",
    "autoscaling.amazonaws.com", "AROAEXAMPLE:", "a\nb", "\u202e\u2028\x00\ud800",
]
UNSAFE_TEXT = st.text(st.characters(categories=["Cc", "Cf", "Cs", "Zl", "Zp", "Zs", "Ll"]))

scalars = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.text() | UNSAFE_TEXT
    | st.sampled_from(REALISTIC_TEXT)
)
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=6) | st.sampled_from(IDENTITY_KEYS), children,
                          max_size=4)
    ),
    max_leaves=12,
)
# A field is a realistic string, hostile text or a value of the wrong type.
field = st.sampled_from(REALISTIC_TEXT) | st.text() | UNSAFE_TEXT | json_values


def maybe(**keys):
    """Dicts holding any subset of ``keys``, or (sometimes) any JSON-like value instead."""
    return st.fixed_dictionaries({}, optional=keys) | json_values


identity_like = st.fixed_dictionaries({}, optional={
    "type": st.sampled_from(REALISTIC_TEXT[:10]) | json_values,
    "principalId": field, "arn": field, "accountId": field, "userName": field,
    "invokedBy": field, "identityProvider": field, "credentialId": field,
    "sessionContext": maybe(sessionIssuer=maybe(userName=field, arn=field), attributes=field),
    "onBehalfOf": maybe(userId=field, identityStoreArn=field),
})
anything = json_values | identity_like


@settings(max_examples=300, deadline=None)
@given(anything)
def test_resolve_creator_never_raises_and_stays_report_safe(value):
    assert_report_safe(resolve_creator(value))


@settings(max_examples=300, deadline=None)
@given(anything | st.builds(lambda ui: {"userIdentity": ui}, anything)
       | st.builds(lambda ui: {"detail": {"userIdentity": ui}}, anything))
def test_creator_from_record_never_raises_and_stays_report_safe(record):
    assert_report_safe(creator_from_record(record))


@settings(max_examples=300, deadline=None)
@given(st.builds(Creator, *[scalars] * 8))
def test_cleaning_a_creator_twice_changes_nothing(creator):
    assert Creator(**dataclasses.asdict(creator)) == creator
    assert_report_safe(creator)
