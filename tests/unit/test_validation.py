"""Every option of every Broom element, given a bad value, is refused with a message
that names the policy and the option (issue 4, point 11).

A policy meets two validators, and a bad value must not get past either:

- the JSON schema (``type_schema`` of each element): ``custodian validate`` and
  ``custodian run`` check the file against it. c7n's schema errors name the policy, the
  option (``On instance['grace-seconds']``) and the value, not the element type;
- the elements' ``validate()``: the ONLY check ``c7n-org run`` makes (it expands each
  account's vars, then validates, with no schema: c7n_org/cli.py ``run_account``) and
  the one the Lambda handler makes before every event. Its messages start with
  ``policy:<name> filter:<type>`` or ``policy:<name> action:<type>``.

Before ``validate()`` re-checked each element's schema (c7n_broom/validation.py),
``c7n-org run`` deployed schema-invalid values as they were (checked: it deployed
``max-terminations: "20"`` and ``exempt-principals: broom-break-glass``, exit 0): the
validate() test below is what keeps that from coming back.
"""
import copy

import pytest
from c7n.exceptions import PolicyValidationError
from c7n.resources import load_resources
from c7n.schema import generate, validate

from support import DROP, launch, load_policy, policy_file, policy_with

POLICY = "broom-ec2-require-code-tag"
FILTER = "filter:allowed-codes"
TERMINATE = "action:safe-terminate"
REPORT = "action:creator-report"
LOOKUP = "action:lookup-creators"
FINDING = "action:security-hub-finding"
#: Elements only the sweep has are checked in it: {element: (policy file, its name)}.
IN_SWEEP = {LOOKUP: ("ec2-tags-sweep.yml", "broom-ec2-sweep-code-tag")}


def policy_of(element, **options):
    """(the policy data with the element's options changed, the policy's name)."""
    name, policy = IN_SWEEP.get(element, ("ec2-tags.yml", POLICY))
    return policy_with(element, name=name, **options), policy


def schema_errors(data):
    """c7n's schema errors for one policy, with the schema ``custodian validate`` checks
    a file against: the file's resource types are the ones it loads (a schema of every
    loaded type gives the same message after a search of seconds per policy)."""
    resource = data["resource"]
    load_resources((resource,))
    return validate({"policies": [data]}, generate((resource,)))


# --- the table: (element, options, vars, validate() says, schema says) ---------------
#
# ``validate() says`` is what follows "policy:<name> <element>: " in the message;
# ``schema says`` is c7n's schema message (None where the schema accepts the value and
# only validate() can know, e.g. an empty code list).

def row(element, options, validate_says, schema_says=None, variables=None):
    option = next(iter(options))
    value = options[option]
    return pytest.param(element, options, variables, validate_says, schema_says,
                        id="%s-%s-%s" % (element.split(":")[1], option,
                                         "unset" if value is DROP else ascii(value)))


ARN_LIKE = ("must be an SNS topic ARN like arn:aws:sns:us-east-1:123456789012:broom-reports "
            "(or a FIFO topic's, ending in .fifo)")

TABLE = [
    # allowed-codes
    row(FILTER, {"key": 5}, "'key': 5 is not of type 'string'", "5 is not of type 'string'"),
    row(FILTER, {"key": " "}, "'key' must name a field, e.g. tag:Code"),
    # No instance has an empty tag name: every instance would violate.
    row(FILTER, {"key": "tag:"}, "'key' must name a field, e.g. tag:Code"),
    row(FILTER, {"codes": "LOL,GGG"}, "'codes' must be a YAML list, e.g. [LOL, GGG]",
        "'LOL,GGG' is not of type 'array'"),
    row(FILTER, {"codes": 5}, "'codes': codes must be a list of strings or a comma "
        "separated string, got int", "5 is not of type 'array'"),
    row(FILTER, {"codes": []}, "'codes': the list of allowed codes is empty: every "
        "instance would violate"),
    row(FILTER, {"codes": ["LOL", 7]}, "'codes': codes must be strings, got 7 (quote them "
        "in YAML)"),
    row(FILTER, {"codes": ["LOL", " "]}, "'codes': codes must not be empty or whitespace "
        "only"),
    row(FILTER, {"codes": DROP}, "no allowed codes: add 'codes: [...]' or 'value_from'"),
    row(FILTER, {"value_from": {"url": "file:///codes.json"}},
        "set either 'codes' or 'value_from', not both"),
    row(FILTER, {"value_from": {}, "codes": DROP}, "'value_from': 'url' is a required "
        "property", "'url' is a required property"),
    row(FILTER, {"value_from": {"url": "file:///codes.yml", "format": "yaml"},
                 "codes": DROP}, "'value_from.format': 'yaml' is not one of ['csv', 'json'",
        "'yaml' is not one of ['csv', 'json'"),
    row(FILTER, {"codes-override": 5}, "'codes-override': codes must be a list of strings "
        "or a comma separated string, got int",
        "5 is not valid under any of the given schemas"),
    row(FILTER, {"codes-override": ""}, "'codes-override': the list of allowed codes is "
        "empty"),
    row(FILTER, {"codes-override": ["LOL", 5]}, "'codes-override': codes must be strings, "
        "got 5"),
    row(FILTER, {"codes-override": "{broom_codes}"}, "'codes-override': the list of "
        "allowed codes is empty", variables={"broom_codes": " , "}),
    # Braces left after expansion (issue 8): c7n does not expand a var's value, so they
    # come from one (``broom_codes: "{LOL},{GGG}"``) or from a placeholder that is not
    # a var name. Taken as "unset" or as literal codes before.
    row(FILTER, {"codes-override": "{broom_codes}"}, "'codes-override' is '{LOL},{GGG}': "
        "braces are allowed only as one whole \"{var_name}\" placeholder, and a var's "
        "value must not contain any; use LOL,GGG", variables={"broom_codes": "{LOL},{GGG}"}),
    row(FILTER, {"codes-override": "{broom_codes}"}, "'codes-override' is ['{LOL}', "
        "'GGG']: braces", variables={"broom_codes": ["{LOL}", "GGG"]}),
    row(FILTER, {"codes-override": "{broom-codes}"}, "'codes-override' is '{broom-codes}': "
        "braces are allowed only as one whole"),
    row(FILTER, {"codes": ["LOL", "{GGG}"]}, "'codes': code '{GGG}' contains braces"),
    row(FILTER, {"ignore-case": "no"}, "'ignore-case': 'no' is not of type 'boolean'",
        "'no' is not of type 'boolean'"),
    row(FILTER, {"grace-seconds": -1}, "'grace-seconds': -1 is less than the minimum of 0",
        "-1 is less than the minimum of 0"),
    row(FILTER, {"grace-seconds": 301}, "'grace-seconds': 301 is greater than the maximum "
        "of 300", "301 is greater than the maximum of 300"),
    row(FILTER, {"grace-seconds": "10"}, "'grace-seconds': '10' is not of type 'integer'",
        "'10' is not of type 'integer'"),
    # As long as ec2-tags.yml's 120 s timeout: the function would time out waiting.
    row(FILTER, {"grace-seconds": 120}, "'grace-seconds' (120) must be at most half the "
        "mode's timeout (120 s)"),
    row(FILTER, {"ignore_case": True}, "'ignore_case': unknown option 'ignore_case' "
        "(valid: codes, codes-override, grace-seconds, ignore-case, key, value_from)",
        "Additional properties are not allowed ('ignore_case' was unexpected)"),
    # safe-terminate
    row(TERMINATE, {"force": "no"}, "'force': 'no' is not of type 'boolean'",
        "'no' is not of type 'boolean'"),
    row(TERMINATE, {"enforcement": "dry-run"}, "'enforcement' must be one of enforce, "
        "report-only (or an unset \"{variable}\"), got 'dry-run'"),
    row(TERMINATE, {"enforcement": "Report-Only"}, "'enforcement' must be one of enforce, "
        "report-only (or an unset \"{variable}\"), got 'Report-Only'"),
    row(TERMINATE, {"enforcement": 5}, "'enforcement' must be one of enforce, report-only "
        "(or an unset \"{variable}\"), got 5", "5 is not of type 'string'"),
    row(TERMINATE, {"enforcement": "{broom_enforcement}"}, "'enforcement' must be one of "
        "enforce, report-only (or an unset \"{variable}\"), got 'off'",
        variables={"broom_enforcement": "off"}),
    row(TERMINATE, {"enforcement": "{broom_enforcement}"}, "'enforcement' is "
        "'{report-only}': braces are allowed only as one whole \"{var_name}\" "
        "placeholder, and a var's value must not contain any; use report-only",
        variables={"broom_enforcement": "{report-only}"}),
    row(TERMINATE, {"enforcement": "{broom enforcement}"}, "'enforcement' is "
        "'{broom enforcement}': braces are allowed only as one whole"),
    # Anything but report-only enforces: a misspelt report-only must not pass.
    row(TERMINATE, {"default-enforcement": "report_only"}, "'default-enforcement': "
        "'report_only' is not one of ['enforce', 'report-only']",
        "'report_only' is not one of ['enforce', 'report-only']"),
    row(TERMINATE, {"default-enforcement": 5}, "'default-enforcement': 5 is not one of "
        "['enforce', 'report-only']", "5 is not one of ['enforce', 'report-only']"),
    row(TERMINATE, {"max-terminations": 0}, "'max-terminations': 0 is less than the "
        "minimum of 1", "0 is less than the minimum of 1"),
    row(TERMINATE, {"max-terminations": "20"}, "'max-terminations': '20' is not of type "
        "'integer'", "'20' is not of type 'integer'"),
    row(TERMINATE, {"fleet-instances": "report_only"}, "'fleet-instances': 'report_only' "
        "is not one of ['enforce', 'report-only']",
        "'report_only' is not one of ['enforce', 'report-only']"),
    row(TERMINATE, {"exempt-principals": ["*"]}, "'exempt-principals' pattern '*' would "
        "exempt everyone: name a role or ARN"),
    row(TERMINATE, {"exempt-principals": [" "]}, "'exempt-principals' pattern ' ' would "
        "exempt everyone"),
    row(TERMINATE, {"exempt-principals": ["**"]}, "'exempt-principals' pattern '**' would "
        "exempt everyone"),
    # A string would be iterated as one pattern per character: nobody exempt.
    row(TERMINATE, {"exempt-principals": "broom-break-glass"}, "'exempt-principals': "
        "'broom-break-glass' is not of type 'array'",
        "'broom-break-glass' is not of type 'array'"),
    row(TERMINATE, {"exempt-principals": [5]}, "'exempt-principals.0': 5 is not of type "
        "'string'", "5 is not of type 'string'"),
    row(TERMINATE, {"exempt-accounts": ["12345"]}, "'exempt-accounts' takes 12-digit "
        "account ids in quotes, got '12345'"),
    row(TERMINATE, {"exempt-accounts": "123456789012"}, "'exempt-accounts': "
        "'123456789012' is not of type 'array'", "'123456789012' is not of type 'array'"),
    # An account id left unquoted in YAML is a number.
    row(TERMINATE, {"exempt-accounts": [123456789012]}, "'exempt-accounts' takes 12-digit "
        "account ids in quotes, got 123456789012", "123456789012 is not of type 'string'"),
    row(TERMINATE, {"exempt-accounts": ["{broom_exempt}"]}, "'exempt-accounts' holds "
        "'{111111111111}': braces", variables={"broom_exempt": "{111111111111}"}),
    row(TERMINATE, {"exempt-accounts": ["{broom-exempt}"]}, "'exempt-accounts' holds "
        "'{broom-exempt}': braces"),
    row(TERMINATE, {"cap-period": 10}, "'cap-period': 10 is less than the minimum of 60",
        "10 is less than the minimum of 60"),
    row(TERMINATE, {"cap-period": "1h"}, "'cap-period': '1h' is not of type 'integer'",
        "'1h' is not of type 'integer'"),
    row(TERMINATE, {"recheck-after": 0}, "'recheck-after': 0 is less than the minimum of 60",
        "0 is less than the minimum of 60"),
    row(TERMINATE, {"recheck-after": 30 * 24 * 3600}, "'recheck-after': 2592000 is greater "
        "than the maximum of 604800", "2592000 is greater than the maximum of 604800"),
    row(TERMINATE, {"state-table": "arn:aws:dynamodb:us-east-1:123456789012:table/broom"},
        "'state-table' must be a DynamoDB table name (3-255 letters, digits, '_', '-', "
        "'.'), got 'arn:aws:dynamodb:us-east-1:123456789012:table/broom'"),
    row(TERMINATE, {"unknown-creators": "terminate"}, "'unknown-creators': 'terminate' is "
        "not one of ['enforce', 'report-only']",
        "'terminate' is not one of ['enforce', 'report-only']"),
    row(TERMINATE, {"max_terminations": 5}, "'max_terminations': unknown option "
        "'max_terminations' (valid: cap-period, default-enforcement, enforcement, "
        "exempt-accounts, exempt-principals, fleet-instances, force, max-terminations, "
        "quarantine, recheck-after, state-table, unknown-creators)",
        "Additional properties are not allowed ('max_terminations' was unexpected)"),
    # quarantine (ec2-tags.yml's safe-terminate has force: true)
    row(TERMINATE, {"quarantine": {"stop-after": "1 day", "terminate-after": "7d"}},
        "'quarantine': '1 day' is not a duration: write a whole number and s, m, h or d "
        "(0s, 15m, 24h, 7d)"),
    row(TERMINATE, {"quarantine": {"stop-after": "7d", "terminate-after": "24h"}},
        "'quarantine': terminate-after (24h) must not be earlier than stop-after (7d)"),
    row(TERMINATE, {"quarantine": {"stop-after": "24h"}},
        "'quarantine': 'terminate-after' is a required property",
        "'terminate-after' is a required property"),
    row(TERMINATE, {"quarantine": {"stop-after": "0s", "terminate-after": "0s"}},
        "'force': true is refused with 'quarantine': Broom never clears the termination "
        "or stop protection of an instance with history"),
    # creator-report
    row(REPORT, {"topic": DROP}, "'topic' %s, got None" % ARN_LIKE,
        "'topic' is a required property"),
    row(REPORT, {"topic": "broom-reports"}, "'topic' %s, got 'broom-reports'" % ARN_LIKE),
    row(REPORT, {"topic": 5}, "'topic' %s, got 5" % ARN_LIKE, "5 is not of type 'string'"),
    row(REPORT, {"topic-override": "arn:aws:sqs:us-east-1:123456789012:q"},
        "'topic-override' %s, got 'arn:aws:sqs:us-east-1:123456789012:q'" % ARN_LIKE),
    row(REPORT, {"topic-override": "{broom_topic}"},
        "'topic-override' %s, got 'broom-reports'" % ARN_LIKE,
        variables={"broom_topic": "broom-reports"}),
    # A var's value is used as it is: {region} in it would reach SNS as written.
    row(REPORT, {"topic-override": "{broom_topic}"}, "'topic-override' is "
        "'arn:aws:sns:{region}:{account_id}:team': braces are allowed only",
        variables={"broom_topic": "arn:aws:sns:{region}:{account_id}:team"}),
    row(REPORT, {"topic-override": "{broom_topic}}"}, "'topic-override' is "
        "'{broom_topic}}': braces"),
    row(REPORT, {"topic-override": 5}, "'topic-override' %s, got 5" % ARN_LIKE,
        "5 is not of type 'string'"),
    # c7n-org keeps a var's type when the whole string is one placeholder.
    row(REPORT, {"topic-override": "{broom_topic}"}, "'topic-override' %s, got ['arn:aws:"
        "sns:us-east-1:123456789012:a']" % ARN_LIKE,
        variables={"broom_topic": ["arn:aws:sns:us-east-1:123456789012:a"]}),
    row(REPORT, {"max-messages": 0}, "'max-messages': 0 is less than the minimum of 1",
        "0 is less than the minimum of 1"),
    row(REPORT, {"max-messages": "20"}, "'max-messages': '20' is not of type 'integer'",
        "'20' is not of type 'integer'"),
    row(REPORT, {"fleet-report-period": -1}, "'fleet-report-period': -1 is less than the "
        "minimum of 0", "-1 is less than the minimum of 0"),
    row(REPORT, {"fleet-report-period": "1h"}, "'fleet-report-period': '1h' is not of "
        "type 'integer'", "'1h' is not of type 'integer'"),
    row(REPORT, {"state-table": 5}, "'state-table': 5 is not of type 'string'",
        "5 is not of type 'string'"),
    row(REPORT, {"state-table": "arn:aws:dynamodb:us-east-1:123456789012:table/broom"},
        "'state-table' must be a DynamoDB table name (3-255 letters, digits, '_', '-', "
        "'.'), got 'arn:aws:dynamodb:us-east-1:123456789012:table/broom'"),
    row(REPORT, {"state-table": "{broom_state_table}"}, "'state-table' is "
        "'{broom-state}': braces are allowed only as one whole",
        variables={"broom_state_table": "{broom-state}"}),
    row(REPORT, {"topic_override": "x"}, "'topic_override': unknown option "
        "'topic_override' (valid: chatbot-topic, cost, fleet-report-period, https-format, "
        "max-messages, state-table, topic, topic-override)",
        "Additional properties are not allowed ('topic_override' was unexpected)"),
    row(REPORT, {"topic": "arn:aws:sns:us-east-1:123456789012:reports.fifo.fifo"},
        "'topic' %s, got 'arn:aws:sns:us-east-1:123456789012:reports.fifo.fifo'" % ARN_LIKE),
    row(REPORT, {"chatbot-topic": "arn:aws:sqs:us-east-1:123456789012:q"},
        "'chatbot-topic' %s, got 'arn:aws:sqs:us-east-1:123456789012:q'" % ARN_LIKE),
    row(REPORT, {"https-format": "slack"}, "'https-format': 'slack' is not one of "
        "['json', 'chatbot']", "'slack' is not one of ['json', 'chatbot']"),
    row(REPORT, {"cost": "yes"}, "'cost': 'yes' is not of type 'boolean'",
        "'yes' is not of type 'boolean'"),
    # lookup-creators (in the sweep policy)
    row(LOOKUP, {"max-lookups": -1}, "'max-lookups': -1 is less than the minimum of 0",
        "-1 is less than the minimum of 0"),
    row(LOOKUP, {"max-lookups": 5000}, "'max-lookups': 5000 is greater than the maximum "
        "of 1000", "5000 is greater than the maximum of 1000"),
    row(LOOKUP, {"state-table": "a/b"}, "'state-table' must be a DynamoDB table name "
        "(3-255 letters, digits, '_', '-', '.'), got 'a/b'"),
    row(LOOKUP, {"max_lookups": 5}, "'max_lookups': unknown option 'max_lookups' "
        "(valid: max-lookups, state-table)",
        "Additional properties are not allowed ('max_lookups' was unexpected)"),
    # security-hub-finding
    row(FINDING, {"severity": "SEVERE"}, "'severity': 'SEVERE' is not one of "
        "['INFORMATIONAL', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL']",
        "'SEVERE' is not one of ['INFORMATIONAL', 'LOW', 'MEDIUM', 'HIGH', 'CRITICAL']"),
    row(FINDING, {"types": "Software and Configuration Checks"}, "'types': 'Software and "
        "Configuration Checks' is not of type 'array'",
        "'Software and Configuration Checks' is not of type 'array'"),
    row(FINDING, {"types": []}, "'types' needs at least one finding type"),
    row(FINDING, {"types": ["Made Up/Category"]}, "finding type 'Made Up/Category' must "
        "be 'namespace/category/classifier'"),
    row(FINDING, {"compliance": "OK"}, "'compliance': 'OK' is not one of ['FAILED', "
        "'PASSED']", "'OK' is not one of ['FAILED', 'PASSED']"),
]


@pytest.mark.parametrize("element, options, variables, validate_says, schema_says", TABLE)
def test_validate_names_the_policy_the_element_and_the_option(
        element, options, variables, validate_says, schema_says):
    """What c7n-org run and the Lambda handler see: vars expanded, then validate()."""
    data, name = policy_of(element, **options)
    with pytest.raises(PolicyValidationError) as error:
        load_policy(data, variables=variables)
    assert str(error.value).startswith("policy:%s %s: %s" % (name, element, validate_says))


SCHEMA_TABLE = [p for p in TABLE if p.values[4] is not None]


@pytest.mark.parametrize("element, options, variables, validate_says, schema_says",
                         [pytest.param(*p.values, id=p.id) for p in SCHEMA_TABLE])
def test_schema_names_the_policy_the_option_and_the_value(
        element, options, variables, validate_says, schema_says):
    """What custodian validate and custodian run report first."""
    data, name = policy_of(element, **options)
    errors = schema_errors(data)
    assert errors
    text = str(errors[0])
    assert "Error on policy:%s resource:aws.ec2" % name in text
    assert schema_says in text
    option = next(iter(options))
    assert ("['%s']" % option) in text or ("'%s'" % option) in schema_says


# notify-creator is in no shipped policy (it needs a c7n-mailer queue): its table runs
# on a policy of its own.
NOTIFY = "action:notify-creator"
QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/c7n-mailer"
NOTIFY_TABLE = [
    row(NOTIFY, {"queue": DROP}, "'': 'queue' is a required property",
        "'queue' is a required property"),
    row(NOTIFY, {"creators": {"role/ci": "not an address"}}, "'creators' maps 'role/ci' "
        "to 'not an address', which is not a plain e-mail address"),
    row(NOTIFY, {"creators": {"ci": "ci@example.com"}}, "'creators' key 'ci' must be an "
        "IAM ARN, role/NAME or user/NAME"),
    row(NOTIFY, {"creators-from": {"path": "x"}}, "'creators-from': 'url' is a required "
        "property"),
    row(NOTIFY, {"domains": "example.com"}, "'domains': 'example.com' is not of type "
        "'array'", "'example.com' is not of type 'array'"),
    row(NOTIFY, {"identity-center": "yes"}, "'identity-center': 'yes' is not of type "
        "'boolean'", "'yes' is not of type 'boolean'"),
    row(NOTIFY, {"slack": 1}, "'slack': 1 is not of type 'boolean'",
        "1 is not of type 'boolean'"),
    row(NOTIFY, {"template": 5}, "'template': 5 is not of type 'string'",
        "5 is not of type 'string'"),
    row(NOTIFY, {"subject": 5}, "'subject': 5 is not of type 'string'",
        "5 is not of type 'string'"),
]


def notify_policy(**options):
    action = {"type": "notify-creator", "queue": QUEUE}
    for option, value in options.items():
        if value is DROP:
            action.pop(option)
        else:
            action[option] = value
    return {"name": POLICY, "resource": "aws.ec2",
            "filters": [{"type": "allowed-codes", "codes": ["LOL"]}],
            "actions": [{"type": "creator-report",
                         "topic": "arn:aws:sns:us-east-1:123456789012:broom-reports"}, action]}


@pytest.mark.parametrize("element, options, variables, validate_says, schema_says",
                         NOTIFY_TABLE)
def test_notify_creator_validate_names_the_option(
        element, options, variables, validate_says, schema_says):
    with pytest.raises(PolicyValidationError) as error:
        load_policy(notify_policy(**options))
    assert str(error.value).startswith("policy:%s %s: %s" % (POLICY, element, validate_says))
    if schema_says:
        assert schema_says in str(schema_errors(notify_policy(**options))[0])


def test_every_option_of_every_element_is_in_the_table():
    from c7n_broom.entry import ACTIONS, FILTERS
    covered = {(p.values[0], option) for p in TABLE + NOTIFY_TABLE for option in p.values[1]}
    for kind, registry in (("filter", FILTERS), ("action", ACTIONS)):
        for name, element in registry.items():
            for option in element.schema["properties"]:
                if option != "type":
                    assert ("%s:%s" % (kind, name), option) in covered


# --- vars whose values hold braces, as c7n-org runs them (issue 8) ------------------

def run_in_account(data, account_vars, tmp_path):
    """c7n-org run for one account and region: c7n_org.cli.run_account itself."""
    from c7n_org.cli import run_account
    account = {"name": "shared-dev", "account_id": "123456789012",
               "regions": ["us-east-1"], "vars": account_vars}
    return run_account(account, "us-east-1", {"policies": [data]}, str(tmp_path / "out"),
                       0, str(tmp_path / "cache"), False, True, False)


@pytest.mark.parametrize("account_vars, says", [
    ({"broom_enforcement": "{report-only}"}, "%s: 'enforcement' is '{report-only}' (var "
     "broom_enforcement): a var's value must not contain braces; set broom_enforcement: "
     "report-only" % TERMINATE),
    ({"broom_codes": "{LOL},{GGG}"}, "%s: 'codes-override' is '{LOL},{GGG}' (var "
     "broom_codes): a var's value must not contain braces; set broom_codes: LOL,GGG"
     % FILTER),
    # The whole value looks like an unset placeholder: only the vars tell it apart.
    ({"broom_codes": "{LOL}"}, "%s: 'codes-override' is '{LOL}' (var broom_codes)" % FILTER),
    ({"broom_codes": ["{LOL}", "GGG"]}, "%s: 'codes-override' is ['{LOL}', 'GGG'] (var "
     "broom_codes): a var's value must not contain braces; set broom_codes: [LOL, GGG]"
     % FILTER),
    ({"broom_topic": "arn:aws:sns:{region}:{account_id}:team"}, "%s: 'topic-override' is "
     "'arn:aws:sns:{region}:{account_id}:team' (var broom_topic): a var's value must not "
     "contain braces; write the topic ARN out in full" % REPORT),
], ids=["enforcement", "codes", "codes-one-placeholder", "codes-list", "topic"])
def test_c7n_org_refuses_a_var_whose_value_holds_braces_and_names_it(
        aws, tmp_path, account_vars, says):
    [data] = policy_file("ec2-tags.yml")["policies"]
    with pytest.raises(PolicyValidationError) as error:
        run_in_account(data, account_vars, tmp_path)
    assert str(error.value).startswith("policy:%s %s" % (POLICY, says))


def test_unset_vars_still_mean_the_policy_defaults():
    [data] = policy_file("ec2-tags.yml")["policies"]
    policy = load_policy(data)
    [codes_filter] = policy.resource_manager.filters
    terminate, report = policy.resource_manager.actions[:2]
    assert codes_filter.allowed_codes() == ["LOL", "GGG", "BRB", "YLO"]
    assert terminate.settings().enforcement == "enforce"
    assert report.topic == "arn:aws:sns:us-east-1:123456789012:broom-reports"


# --- Lambda-mode packaging: every element, in every Lambda mode ----------------------

LAMBDA_MODES = {
    "cloudtrail": {"type": "cloudtrail", "events": ["RunInstances"]},
    "periodic": {"type": "periodic", "schedule": "rate(1 hour)"},
}
ELEMENTS = {
    FILTER: {"filters": [{"type": "allowed-codes", "codes": ["LOL"]}]},
    TERMINATE: {"actions": [{"type": "safe-terminate"}]},
    REPORT: {"actions": [{"type": "creator-report",
                          "topic": "arn:aws:sns:us-east-1:123456789012:broom-reports"}]},
}
PACKAGING = {
    "both-missing": ({}, "add packages: [c7n_broom] and handler: c7n_broom.handler.run "
                         "under 'mode:'"),
    "no-packages": ({"handler": "c7n_broom.handler.run"}, "add packages: [c7n_broom] "
                    "under 'mode:'"),
    "packages-without-broom": ({"packages": ["c7n_org"],
                                "handler": "c7n_broom.handler.run"},
                               "add packages: [c7n_broom] under"),
    "no-handler": ({"packages": ["c7n_broom"]}, "add handler: c7n_broom.handler.run under"),
    "stock-handler": ({"packages": ["c7n_broom"], "handler": "custodian_policy.run"},
                      "add handler: c7n_broom.handler.run under"),
}


def lambda_policy(element, mode, **mode_options):
    return dict({"name": "broom-lambda-check", "resource": "aws.ec2", "mode": dict(
        LAMBDA_MODES[mode], role="arn:aws:iam::123456789012:role/broom-lambda",
        **mode_options)}, **copy.deepcopy(ELEMENTS[element]))


@pytest.mark.parametrize("mode", LAMBDA_MODES)
@pytest.mark.parametrize("element", ELEMENTS)
@pytest.mark.parametrize("problem", PACKAGING)
def test_lambda_mode_without_the_plugin_says_what_to_add(problem, element, mode):
    mode_options, says = PACKAGING[problem]
    with pytest.raises(PolicyValidationError) as error:
        load_policy(lambda_policy(element, mode, **mode_options))
    assert str(error.value).startswith(
        "policy:broom-lambda-check uses Broom's %s in %s mode: " % (
            element.split(":")[1], mode))
    assert says in str(error.value)


@pytest.mark.parametrize("mode", LAMBDA_MODES)
@pytest.mark.parametrize("problem", PACKAGING)
def test_the_schema_accepts_lambda_mode_without_the_plugin(problem, mode):
    """So validate() is what catches it. The schema checks ``mode`` apart from the
    elements: one element stands for all three (c7n's schema check is the slow part)."""
    mode_options, _ = PACKAGING[problem]
    assert schema_errors(lambda_policy(REPORT, mode, **mode_options)) == []


@pytest.mark.parametrize("element", ELEMENTS)
def test_pull_mode_needs_no_packaging(element):
    data = dict({"name": "broom-pull", "resource": "aws.ec2"}, **ELEMENTS[element])
    assert load_policy(data).name == "broom-pull"


# --- source: broom-describe --------------------------------------------------------

@pytest.mark.parametrize("resource", ["aws.s3", "aws.asg", "aws.ebs"])
def test_broom_source_on_another_resource_names_the_policy(resource):
    load_resources((resource,))
    data = {"name": "not-ec2", "resource": resource, "source": "broom-describe"}
    assert schema_errors(data) == []  # the schema lists sources for every resource
    with pytest.raises(PolicyValidationError, match=(
            r"^policy:not-ec2: 'source: broom-describe' works only with resource aws.ec2$")):
        load_policy(data)


# --- value_from: checked when the codes are read --------------------------------------

@pytest.mark.parametrize("content, says", [
    ("[]", "'value_from': the list of allowed codes is empty"),
    ("[1, 2]", "'value_from': codes must be strings, got 1, 2"),
    ('["LOL", ""]', "'value_from': codes must not be empty"),
], ids=["empty", "numbers", "blank"])
def test_codes_read_with_value_from_are_checked_when_the_policy_runs(
        aws, tmp_path, content, says):
    (tmp_path / "codes.json").write_text(content)
    launch()
    data = {"name": "broom-value-from", "resource": "aws.ec2", "filters": [{
        "type": "allowed-codes",
        "value_from": {"url": "file://%s/codes.json" % tmp_path, "format": "json"}}]}
    policy = load_policy(data)
    with pytest.raises(PolicyValidationError) as error:
        policy.run()
    assert str(error.value).startswith("policy:broom-value-from %s: " % FILTER)
    assert says in str(error.value)


def test_value_from_a_missing_file_names_the_file(aws, tmp_path):
    launch()
    missing = tmp_path / "missing.json"
    data = {"name": "broom-value-from", "resource": "aws.ec2", "filters": [{
        "type": "allowed-codes", "value_from": {"url": "file://%s" % missing}}]}
    with pytest.raises(Exception, match=str(missing)):
        load_policy(data).run()
