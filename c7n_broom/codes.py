"""Pure logic of the Code tag rule: which values are allowed and why one is not.

No AWS calls and no c7n imports here, so the rule can be tested with plain data.
"""
import re
from dataclasses import dataclass

MISSING = "missing"
EMPTY = "empty"
INVALID = "invalid"

# A string option whose value is still an unexpanded ``{variable}`` placeholder was
# not given a value by c7n-org ``vars`` (Custodian leaves unknown placeholders as
# they are); Broom treats such an override as "not set".
_PLACEHOLDER = re.compile(r"^\{[^{}]*\}$")


@dataclass(frozen=True)
class Violation:
    """Why a tag value breaks the rule: ``reason`` is missing, empty or invalid."""

    reason: str
    value: str | None

    def describe(self, key="Code"):
        if self.reason == MISSING:
            return "no %s tag" % key
        if self.reason == EMPTY:
            return "%s tag is empty" % key
        return "%s tag value %r is not an allowed code" % (key, self.value)

    def as_dict(self):
        return {"reason": self.reason, "value": self.value}


def is_unset(value):
    """True when an override option was left as an unexpanded placeholder (or absent)."""
    return value is None or (isinstance(value, str) and bool(_PLACEHOLDER.match(value.strip())))


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
        if value.casefold() in {code.casefold() for code in allowed}:
            return None
    elif value in allowed:
        return None
    return Violation(INVALID, value)
