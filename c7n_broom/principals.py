"""Who is exempt: the one grammar of ``exempt-principals``, for Broom and for its SCP.

A pattern names an IAM role (by name, by path and name, or by ARN), an IAM user (by
ARN) or a whole account (its 12-digit id); never a session name, which whoever assumes
a role chooses freely. Broom matches the principal as IAM sees it in
``aws:PrincipalArn`` (for an assumed-role session, the role's IAM ARN with its path;
for a user, its ARN) with IAM's ``ArnLike`` semantics, and ``broom scp`` writes the
same patterns into ``ArnNotLike`` / ``StringNotEquals`` conditions, so the two cannot
disagree. The README's "Exemptions" table lists the forms.

Pure functions, standard library only (this module ships in the Lambda archive).
"""
import functools
import re
from dataclasses import dataclass

ACCOUNT_ID = re.compile(r"\d{12}", re.ASCII)
PARTITIONS = ("aws", "aws-cn", "aws-us-gov")
WILDCARDS = "*?"
EXAMPLES = ("write a role name (broom-break-glass), a path and role name "
            "(ops/broom-break-glass), arn:aws:iam::ACCOUNT:role/NAME, "
            "arn:aws:iam::ACCOUNT:user/NAME or a 12-digit account id")

# IAM role and user names: letters, digits and +=,.@_- (plus the wildcards here).
_NAME = re.compile(r"[\w+=,.@*?-]+", re.ASCII)
# IAM path segments: printable ASCII except "/".
_PATH_SEGMENT = re.compile(r"[\x21-\x2e\x30-\x7e]+", re.ASCII)
_ACCOUNT_PATTERN = re.compile(r"[\d*?]+", re.ASCII)
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


@dataclass(frozen=True)
class Exemption:
    """One parsed ``exempt-principals`` pattern."""

    pattern: str  # as written in the policy
    arns: tuple = ()  # aws:PrincipalArn patterns (ArnLike)
    account: str = ""  # aws:PrincipalAccount

    def matches(self, principal_arn, principal_account):
        """True when a principal (its IAM ARN and account) is exempt, as the SCP decides."""
        if self.account:
            return principal_account == self.account
        return any(arn_like(principal_arn, arn) for arn in self.arns)


def parse(pattern):
    """The :class:`Exemption` a pattern stands for.

    Raises ValueError saying what to write instead for anything outside the grammar:
    STS session ARNs, patterns that would exempt everyone, blanks, non-strings.
    """
    if not isinstance(pattern, str):
        raise ValueError("pattern %r is not a string: %s" % (pattern, EXAMPLES))
    if not pattern.strip():
        raise ValueError("pattern %r would exempt everyone or no one: it is blank; %s" % (
            pattern, EXAMPLES))
    if ACCOUNT_ID.fullmatch(pattern):
        return Exemption(pattern, account=pattern)
    if pattern.startswith("arn:"):
        return _parse_arn(pattern)
    if pattern.isdigit():
        raise ValueError("pattern %r looks like an account id, which has 12 digits" % pattern)
    if ":" in pattern or _PLACEHOLDER.search(pattern):
        raise ValueError("pattern %r is not one Broom understands: %s" % (pattern, EXAMPLES))
    path, name = _path_and_name(pattern, pattern)
    if path:
        return Exemption(pattern, ("arn:*:iam::*:role/%s" % pattern,))
    return Exemption(pattern, ("arn:*:iam::*:role/%s" % name, "arn:*:iam::*:role/*/%s" % name))


def _path_and_name(pattern, resource):
    """(path segments, name) of ``[PATH/]NAME``, checked; ValueError otherwise."""
    *path, name = resource.split("/")
    if not name or not all(path):
        raise ValueError("pattern %r has an empty path segment: write PATH/NAME without a "
                         "leading, trailing or doubled '/', e.g. ops/broom-break-glass"
                         % pattern)
    if not name.strip(WILDCARDS):
        raise ValueError("pattern %r would exempt everyone: name a role or ARN, not only "
                         "wildcards (to exempt a whole account, write its 12-digit id)"
                         % pattern)
    if not _NAME.fullmatch(name):
        raise ValueError("pattern %r: %r is not an IAM name (letters, digits, +=,.@_- and "
                         "the wildcards * and ?)" % (pattern, name))
    for segment in path:
        if not _PATH_SEGMENT.fullmatch(segment):
            raise ValueError("pattern %r: %r is not an IAM path segment (printable ASCII, "
                             "no spaces)" % (pattern, segment))
    return path, name


def _parse_arn(pattern):
    parts = pattern.split(":", 5)
    if len(parts) != 6:
        raise ValueError("pattern %r is not an ARN: %s" % (pattern, EXAMPLES))
    _, partition, service, region, account, resource = parts
    kind, _, rest = resource.partition("/")
    if service == "sts":
        if kind == "assumed-role":
            raise ValueError(
                "pattern %r names a role session, and anyone who assumes a role picks "
                "the session name: match the role: arn:%s:iam::%s:role/%s" % (
                    pattern, partition, account or "ACCOUNT", rest.partition("/")[0] or "NAME"))
        raise ValueError("pattern %r is an STS ARN, which names a session, not a principal: "
                         "%s" % (pattern, EXAMPLES))
    if service == "iam" and resource == "root":
        raise ValueError("pattern %r names an account's root user: exempt the whole account "
                         "with its 12-digit id instead, or name a role or user" % pattern)
    if service != "iam" or kind not in ("role", "user"):
        raise ValueError("pattern %r is not an IAM role or user ARN: %s" % (pattern, EXAMPLES))
    if partition not in PARTITIONS + ("*",):
        raise ValueError("pattern %r: unknown partition %r (one of %s, or *)" % (
            pattern, partition, ", ".join(PARTITIONS)))
    if region:
        raise ValueError("pattern %r: IAM ARNs have no region: write arn:%s:iam::%s:%s" % (
            pattern, partition, account, resource))
    if not _ACCOUNT_PATTERN.fullmatch(account) or (
            not any(w in account for w in WILDCARDS) and not ACCOUNT_ID.fullmatch(account)):
        raise ValueError("pattern %r: the account must be 12 digits or a wildcard, got %r" % (
            pattern, account))
    _path_and_name(pattern, rest)
    return Exemption(pattern, (pattern,))


def unexpanded(pattern):
    """The ``{variable}`` a pattern still holds (not filled by c7n or c7n-org), or ''."""
    found = _PLACEHOLDER.search(pattern) if isinstance(pattern, str) else None
    return found.group(0) if found else ""


def arn_like(value, pattern):
    """IAM's ArnLike: each of the six ``:``-separated parts is matched on its own,
    case-sensitively; ``*`` matches any run of characters, ``?`` exactly one."""
    values, patterns = value.split(":", 5), pattern.split(":", 5)
    return len(values) == len(patterns) == 6 and all(
        _wildcard(part).fullmatch(given) for given, part in zip(values, patterns, strict=True))


@functools.lru_cache(maxsize=256)
def _wildcard(part):
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                              for c in part), re.DOTALL)


def principal_account(creator):
    """``aws:PrincipalAccount`` of a creator: its principal ARN's account, else its own."""
    parts = (creator.principal_arn or "").split(":")
    for account in (parts[4] if len(parts) > 4 else "", creator.account_id):
        if ACCOUNT_ID.fullmatch(account or ""):
            return account
    return ""


def exempting(creator, patterns):
    """The first of ``patterns`` that exempts ``creator`` (an identity.Creator), or None.

    A pattern that does not parse exempts nobody (``safe-terminate`` refuses such
    patterns when it validates; one left with an unexpanded ``{variable}`` stays inert).
    """
    account = principal_account(creator)
    for pattern in patterns:
        try:
            exemption = parse(pattern)
        except ValueError:
            continue
        if exemption.matches(creator.principal_arn or "", account):
            return pattern
    return None


def scp_conditions(patterns):
    """The SCP conditions that leave the principals of ``patterns`` alone.

    ``{"ArnNotLike": {"aws:PrincipalArn": [...]}, "StringNotEquals":
    {"aws:PrincipalAccount": [...]}}``, each only when some pattern needs it. In a Deny
    statement they are ANDed with its other conditions: the statement applies only to
    principals no pattern names. Raises ValueError for a pattern outside the grammar.
    """
    exemptions = [parse(pattern) for pattern in patterns]
    arns = sorted({arn for exemption in exemptions for arn in exemption.arns})
    accounts = sorted({exemption.account for exemption in exemptions if exemption.account})
    conditions = {}
    if arns:
        conditions["ArnNotLike"] = {"aws:PrincipalArn": arns}
    if accounts:
        conditions["StringNotEquals"] = {"aws:PrincipalAccount": accounts}
    return conditions
