"""Pure logic of the Code tag rule: which values are allowed and why one is not.

No AWS calls and no c7n imports here, so the rule can be tested with plain data.
"""
import re
from dataclasses import dataclass

MISSING = "missing"
EMPTY = "empty"
INVALID = "invalid"
#: Where the allowed-codes filter records a match's Violation on the resource.
ANNOTATION = "c7n:broom-violation"

# A string option whose whole value is still one ``{var_name}`` placeholder was not
# given a value by c7n-org ``vars`` (Custodian leaves unknown placeholders as they
# are); Broom treats such an override as "not set". Only a Python identifier names a
# var Custodian can fill (``str.format`` reads ``{a.b}``, ``{a[0]}`` and ``{a-b}``
# otherwise). Custodian expands the policy's strings once and never a var's value, so
# any other brace after expansion comes from a var's value: see ``var_error``.
_PLACEHOLDER = re.compile(r"^\{[A-Za-z_][A-Za-z0-9_]*\}$")


@dataclass(frozen=True)
class Violation:
    """Why a tag value breaks the rule: ``reason`` is missing, empty or invalid."""

    reason: str
    value: str | None

    def as_dict(self):
        return {"reason": self.reason, "value": self.value}


def is_unset(value):
    """True when an override option is absent or exactly one unexpanded ``{var_name}``."""
    return value is None or (isinstance(value, str) and bool(_PLACEHOLDER.match(value.strip())))


def _has_braces(value):
    return isinstance(value, str) and ("{" in value or "}" in value)


def var_error(option, value, variables=None, item=False, fix=None):
    """Why the value of an option that takes a c7n-org var cannot be used, or None.

    After expansion the only braces an option may hold are one whole placeholder of
    a var the account did not set (``is_unset``). Any other brace comes from a var's
    value (``broom_enforcement: "{report-only}"``, ``broom_codes: "{LOL},{GGG}"``),
    which Custodian never expands, or from a placeholder that is not a var name:
    taken as it is it would mean "unset" or literal codes. ``variables`` are the vars
    the policy was expanded with, when known (``policy_vars``): a var whose value is
    exactly this one is named, and is what tells ``broom_codes: "{LOL}"`` from an
    unset ``{broom_codes}``. ``item`` words the message for one item of a list option;
    ``fix`` replaces the suggestion (the value without its braces).
    """
    items = value if isinstance(value, (list, tuple)) else [value]
    if not any(_has_braces(part) for part in items):
        return None
    names = sorted(name for name, given in (variables or {}).items() if given == value)
    if is_unset(value) and not names:
        return None  # the account set no such var: the option's default applies
    if fix is None:
        if isinstance(value, (list, tuple)):
            bare = "[%s]" % ", ".join(_unbraced(part) for part in value)
        else:
            bare = _unbraced(value) or '""'
        fix = "set %s: %s" % (names[0], bare) if names else "use %s" % bare
    said = "'%s' %s %r" % (option, "holds" if item else "is", value)
    if names:
        return "%s (var %s): a var's value must not contain braces; %s" % (
            said, ", ".join(names), fix)
    return ("%s: braces are allowed only as one whole \"{var_name}\" placeholder, and a "
            "var's value must not contain any; %s" % (said, fix))


def _unbraced(value):
    return value.replace("{", "").replace("}", "") if isinstance(value, str) else str(value)


def policy_vars(element):
    """The c7n-org vars a policy element was expanded with; {} when unknown.

    c7n-org puts the account, with its ``vars`` (org-wide vars merged in), in the
    policy's conditions before it expands the policy (c7n_org/cli.py
    ``run_account``). ``custodian run --vars-file`` and the Lambda handler (which
    runs the already expanded policy) keep no such record.
    """
    policy = getattr(getattr(getattr(element, "manager", None), "ctx", None), "policy", None)
    env = getattr(getattr(policy, "conditions", None), "env_vars", None)
    account = env.get("account") if isinstance(env, dict) else None
    found = account.get("vars") if isinstance(account, dict) else None
    return found if isinstance(found, dict) else {}


def parse_codes(value):
    """Turn a code list given as a YAML list or a comma separated string into a list.

    Raises ValueError with a message naming the problem; the caller adds the option name.
    """
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
        items = [item for item in items if item]
    elif isinstance(value, (list, tuple)):
        bad = [item for item in value if not isinstance(item, str)]
        if bad:
            raise ValueError("codes must be strings, got %s (quote them in YAML)" % (
                ", ".join(repr(b) for b in bad)))
        items = [item.strip() for item in value]
        if any(not item for item in items):
            raise ValueError("codes must not be empty or whitespace only")
    else:
        raise ValueError("codes must be a list of strings or a comma separated string, "
                         "got %s" % type(value).__name__)
    if not items:
        raise ValueError("the list of allowed codes is empty: every instance would violate")
    braced = [item for item in items if _has_braces(item)]
    if braced:
        raise ValueError("code %r contains braces: an unexpanded \"{variable}\" or a var's "
                         "value holding one; write the codes out" % braced[0])
    return items


def classify(value, allowed, ignore_case=False):
    """Return the Violation for a tag value, or None when the value is allowed.

    ``value`` is the tag value as read (None when the tag is absent).
    """
    if value is None:
        return Violation(MISSING, None)
    if not isinstance(value, str):
        return Violation(INVALID, str(value))
    if not value.strip():
        return Violation(EMPTY, value)
    if ignore_case:
        if any(same_ignoring_case(value, code) for code in allowed):
            return None
    elif value in allowed:
        return None
    return Violation(INVALID, value)


def same_ignoring_case(value, code):
    """True when ``value`` is ``code`` up to simple case, character by character.

    Each character must equal the code's, or be its other case under a one-to-one
    mapping that works both ways (``l``/``L``, ``é``/``É``), never crossing between
    ASCII and the rest. So ``lol`` and ``Lol`` match ``LOL``, while the foldings of
    ``str.casefold`` and ``str.upper`` do not apply: the Kelvin sign is not ``K``,
    ``ß`` is not ``SS``, dotless ``ı`` is not ``I``, ``ﬀ`` is not ``FF``, and
    fullwidth or other lookalike letters never match an ASCII code.
    """
    return len(value) == len(code) and all(
        _same_letter(v, c) for v, c in zip(value, code, strict=True))


def case_suggestion(value, allowed):
    """The allowed code ``value`` equals up to case ("lol" -> "LOL"), or ""."""
    if not isinstance(value, str):
        return ""
    return next((code for code in allowed if same_ignoring_case(value, code)), "")


def _same_letter(a, b):
    if a == b:
        return True
    if a.isascii() != b.isascii():
        return False
    return (a.lower() == b and b.upper() == a) or (b.lower() == a and a.upper() == b)
