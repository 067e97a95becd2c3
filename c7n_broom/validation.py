"""Checks Broom's elements run in ``validate()``, each raising PolicyValidationError
with a message naming the policy, the element and the option, and what to change.

``custodian validate`` and ``custodian run`` check a policy against the JSON schema;
``c7n-org run`` and the Lambda handler do not, they only call ``validate()``, and
c7n-org does so after filling each account's vars. So each element re-checks its own
options against its schema here, with a message naming the policy, the element and
the option, before its own checks.

The Lambda runtime has no ``jsonschema`` (c7n's archive does not ship it), so this is
a small checker for the JSON-schema keywords Broom's element schemas use: type, enum,
minimum, maximum, items, required, properties, additionalProperties, oneOf,
patternProperties and the one ``$ref`` they hold (``value_from``).
"""
import logging
import re

from c7n.exceptions import PolicyValidationError
from c7n.filters import Filter
from c7n.resolver import ValuesFrom

from c7n_broom import codes, principals
from c7n_broom.lambda_check import is_lambda_mode

log = logging.getLogger("custodian.broom.validation")

REFS = {"#/definitions/filters_common/value_from": ValuesFrom.schema}
TYPES = {
    "string": lambda v: isinstance(v, str),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def where(element):
    """``policy:NAME filter:TYPE`` (or ``action:TYPE``) for messages."""
    policy = element.manager.data.get("name", "?") if element.manager else "?"
    kind = "filter" if isinstance(element, Filter) else "action"
    return "policy:%s %s:%s" % (policy, kind, element.type)


def problems(value, schema, path=()):
    """(path, message) pairs for what in ``value`` breaks ``schema``; empty if nothing."""
    schema = REFS.get(schema.get("$ref"), schema)
    if "oneOf" in schema:
        if not any(not problems(value, option, path) for option in schema["oneOf"]):
            return [(path, "%r is not valid under any of the given schemas" % (value,))]
        return []
    if "type" in schema and not TYPES[schema["type"]](value):
        return [(path, "%r is not of type %r" % (value, schema["type"]))]
    if "enum" in schema and value not in schema["enum"]:
        return [(path, "%r is not one of %r" % (value, schema["enum"]))]
    if "minimum" in schema and value < schema["minimum"]:
        return [(path, "%r is less than the minimum of %r" % (value, schema["minimum"]))]
    if "maximum" in schema and value > schema["maximum"]:
        return [(path, "%r is greater than the maximum of %r" % (value, schema["maximum"]))]
    found = []
    if isinstance(value, list) and "items" in schema:
        for index, item in enumerate(value):
            found += problems(item, schema["items"], path + (index,))
    if isinstance(value, dict):
        found += [(path, "%r is a required property" % name)
                  for name in schema.get("required", ()) if name not in value]
        properties = schema.get("properties", {})
        for name, item in value.items():
            if name in properties:
                found += problems(item, properties[name], path + (name,))
            elif "patternProperties" in schema:
                found += problems(item, schema["patternProperties"][""], path + (name,))
            elif schema.get("additionalProperties") in (False, "False"):
                found.append((path + (name,), "unknown option %r (valid: %s)" % (
                    name, ", ".join(sorted(p for p in properties if p != "type")))))
    return found


def check_var(element, option, value, item=False, fix=None):
    """Raise PolicyValidationError if an option that takes a c7n-org var holds braces
    it must not (``codes.var_error``)."""
    problem = codes.var_error(option, value, codes.policy_vars(element), item=item, fix=fix)
    if problem:
        raise PolicyValidationError("%s: %s" % (where(element), problem))


def check_schema(element):
    """Raise PolicyValidationError if the element's data breaks its own schema."""
    found = problems(element.data, element.schema)
    if found:
        path, message = found[0]
        raise PolicyValidationError("%s: '%s': %s" % (
            where(element), ".".join(str(p) for p in path), message))


TAG_EVENTS = ("CreateTags", "DeleteTags")


def check_no_force_on_tag_events(element):
    """Refuse ``force: true`` on an action of a policy run by tag-change events.

    Whoever may change an instance's tags could then get Broom to terminate it with
    its termination protection cleared: tag rights must not become terminate rights.
    """
    if element.data.get("force") is not True or not element.manager:
        return
    mode = element.manager.data.get("mode") or {}
    names = [e.get("event") if isinstance(e, dict) else e for e in mode.get("events") or ()]
    found = [name for name in TAG_EVENTS if name in names]
    if found:
        raise PolicyValidationError(
            "%s: 'force': true is refused in a policy run by %s events: whoever may "
            "change an instance's tags could get Broom to terminate it with its "
            "termination protection cleared. Set 'force: false' (a protected instance "
            "is then reported as not terminated)" % (where(element), "/".join(found)))


#: An SNS topic ARN (``creator-report``'s ``topic``, ``topic-override`` and
#: ``chatbot-topic``): a standard topic, or a FIFO one whose name ends in ``.fifo``.
TOPIC_ARN = re.compile(
    r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:(?:[A-Za-z0-9_-]{1,256}|[A-Za-z0-9_-]{1,251}\.fifo)$")
#: A DynamoDB table name (Broom's ``state-table`` option).
TABLE_NAME = re.compile(r"^[A-Za-z0-9_.-]{3,255}$")


def check_state_table(element):
    """Raise PolicyValidationError unless ``state-table`` is unset or a table name."""
    table = element.data.get("state-table")
    check_var(element, "state-table", table)
    if not codes.is_unset(table) and not TABLE_NAME.match(table):
        raise PolicyValidationError(
            "%s: 'state-table' must be a DynamoDB table name (3-255 letters, digits, "
            "'_', '-', '.'), got %r" % (where(element), table))


def check_exempt_accounts(element):
    """Raise PolicyValidationError unless each ``exempt-accounts`` item is a 12-digit
    account id (a string) or an unset var."""
    accounts = element.data.get("exempt-accounts", ())
    for account in accounts if isinstance(accounts, list) else ():
        check_var(element, "exempt-accounts", account, item=True)
        if not (isinstance(account, str) and (principals.ACCOUNT_ID.fullmatch(account)
                                              or codes.is_unset(account))):
            raise PolicyValidationError(
                "%s: 'exempt-accounts' takes 12-digit account ids in quotes, got %r" % (
                    where(element), account))


def check_exempt_principals(element):
    """Raise PolicyValidationError for an ``exempt-principals`` pattern outside the
    grammar of ``c7n_broom.principals``."""
    for pattern in element.data.get("exempt-principals", ()):
        if principals.unexpanded(pattern):
            continue  # checked once c7n or c7n-org fill it (never matches until then)
        try:
            principals.parse(pattern)
        except ValueError as e:
            raise PolicyValidationError("%s: 'exempt-principals' %s" % (where(element), e))


def check_grace_seconds(element):
    """Raise PolicyValidationError unless ``grace-seconds`` leaves a Lambda-mode policy
    time to act after waiting (at most half the mode's timeout)."""
    grace = element.data.get("grace-seconds", 0)
    mode = (element.manager.data.get("mode") or {}) if element.manager else {}
    timeout = mode.get("timeout", 900) if is_lambda_mode(mode) else None
    if timeout is not None and grace * 2 > timeout:
        raise PolicyValidationError(
            "%s: 'grace-seconds' (%s) must be at most half the mode's timeout (%s s), "
            "or the function times out while waiting and acts on nothing" % (
                where(element), grace, timeout))


def check_topics(element):
    """Raise PolicyValidationError unless ``topic`` is an SNS topic ARN and
    ``topic-override`` and ``chatbot-topic`` are one or unset (placeholders are
    checked once expanded)."""
    # A var's value is used as it is: no braces, not even {region}.
    check_var(element, "topic-override", element.data.get("topic-override"),
              fix="write the topic ARN out in full")
    for option in ("topic", "topic-override", "chatbot-topic"):
        value = element.data.get(option)
        if option != "topic" and codes.is_unset(value):
            continue
        if isinstance(value, str) and "{" in value:
            continue  # expanded later, at run time (custodian run, c7n-org)
        if not isinstance(value, str) or not TOPIC_ARN.match(value):
            raise PolicyValidationError(
                "%s: '%s' must be an SNS topic ARN like "
                "arn:aws:sns:us-east-1:123456789012:broom-reports (or a FIFO topic's, "
                "ending in .fifo), got %r" % (
                    where(element), option, value))


#: EventBridge schedule expressions: rate(1 hour), rate(30 minutes), cron(0 * * * ? *).
SCHEDULE = re.compile(
    r"^(rate\((1 (minute|hour|day)|([2-9]|[1-9][0-9]+) (minutes|hours|days))\)"
    r"|cron\(\S+( \S+){5}\))$")
DEFAULT_SCHEDULE = "rate(1 hour)"


def check_schedule(element):
    """A periodic-mode policy's ``mode.schedule``: an EventBridge schedule
    expression, or a c7n-org var left unset, which means DEFAULT_SCHEDULE.

    c7n-org fills ``"{broom_sweep_schedule}"`` from the account's vars; left
    unexpanded (no such var, or plain ``custodian run``) it is not a schedule
    EventBridge accepts, so it is replaced here by the hourly default, with a log
    line saying so. Any other value that is not a schedule expression is refused,
    naming the var to fix.
    """
    mode = element.manager.data.get("mode") if element.manager else None
    if not isinstance(mode, dict) or mode.get("type") != "periodic":
        return
    schedule = mode.get("schedule")
    if codes.is_unset(schedule):
        if schedule is not None:
            log.info("policy:%s mode.schedule %s is not set: %s",
                     element.manager.data.get("name", "?"), schedule, DEFAULT_SCHEDULE)
        mode["schedule"] = DEFAULT_SCHEDULE
        return
    if not isinstance(schedule, str) or not SCHEDULE.match(schedule):
        raise PolicyValidationError(
            "policy:%s mode.schedule must be an EventBridge schedule expression such "
            "as 'rate(1 hour)', 'rate(30 minutes)' or 'cron(0 * * * ? *)' (set through "
            "the c7n-org var broom_sweep_schedule), got %r" % (
                element.manager.data.get("name", "?"), schedule))


def check_attribution(element):
    """Raise PolicyValidationError when a periodic-mode policy terminates with
    exemptions but does not look creators up first (``lookup-creators``): every
    creator would be unknown, and an exempt principal's instances terminated.

    Pull mode (``custodian run`` of a policy without ``mode``, on demand) keeps its
    behaviour: creators are unknown there unless ``lookup-creators`` runs first.
    """
    manager = element.manager
    mode = (manager.data.get("mode") or {}) if manager else {}
    if mode.get("type") != "periodic" or not element.data.get("exempt-principals"):
        return
    for action in manager.data.get("actions") or ():
        kind = action.get("type") if isinstance(action, dict) else action
        if kind == "lookup-creators":
            return
        if kind == element.type:
            break
    raise PolicyValidationError(
        "%s: 'exempt-principals' need to know who launched each instance, and a "
        "periodic policy has no event that says: add '- type: lookup-creators' before "
        "this action (docs/sweep.md)" % where(element))
