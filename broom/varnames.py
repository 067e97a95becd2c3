"""Var and key names: the ones Broom knows, and the one check of unknown names.

Custodian and c7n-org leave a ``{placeholder}`` nobody fills as it is, and Broom
reads an unfilled override as "not set": a misspelt var (``broom_code`` for
``broom_codes``) silently keeps the policy's defaults, and since Broom enforces by
default, it would terminate the instances of the team whose code list was misspelt.
So a name nothing uses is an error, naming the nearest known name; vars of the
user's own policies are known when a policy file given uses them, or when allowed
by name (``--allow-var``). ``broom preflight``, ``broom whatif --var`` and ``broom
replay --var`` share this check.
"""
import difflib
import re

#: The c7n-org vars Broom's shipped policies read (README: "Deploy to many accounts").
BROOM_VARS = ("broom_codes", "broom_topic", "broom_enforcement",
              "broom_tag_change_enforcement", "broom_sweep_schedule")
#: ``{name}`` as Custodian fills it (a Python identifier).
PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


class UnknownName(ValueError):
    """A var or key nothing knows; the message names it and the nearest known one."""


def placeholders(data):
    """The ``{name}`` placeholders in every string of ``data`` (a policy file's data)."""
    found = set()
    if isinstance(data, dict):
        for key, value in data.items():
            found |= placeholders(key) | placeholders(value)
    elif isinstance(data, (list, tuple)):
        for item in data:
            found |= placeholders(item)
    elif isinstance(data, str):
        found.update(PLACEHOLDER.findall(data))
    return found


def builtin_vars():
    """The names c7n fills itself (``account_id``, ``region``, ``now``, ...), read from
    ``Policy.get_variables`` so that they follow the installed c7n."""
    from c7n.config import Config
    from c7n.policy import Policy

    policy = Policy({"name": "names", "resource": "aws.ec2"},
                    Config.empty(region="us-east-1", account_id="000000000000"))
    return frozenset(policy.get_variables({}))


def nearest(name, known):
    """The known name closest to ``name``, or None when none is close."""
    matches = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return matches[0] if matches else None


def hint(name, known):
    """`` (did you mean NAME?)`` or an empty string."""
    close = nearest(name, known)
    return " (did you mean %s?)" % close if close else ""


def unknown_vars(names, policy_data=(), allowed=(), allow_option=True):
    """The names among ``names`` (vars given to policies) that neither Broom's
    policies, nor any of ``policy_data`` (the policy files' data), nor ``allowed``
    use, each as ``(name, message)``; ``allow_option``: the message offers
    ``--allow-var``."""
    used = set(BROOM_VARS) | set(allowed)
    for data in policy_data:
        used |= placeholders(data)
    return [(name, "unknown var %r%s: Broom's vars are %s; a var of your own policies "
                   "must appear in a policy file given%s" % (
                       name, hint(name, used), ", ".join(BROOM_VARS),
                       " or be allowed with --allow-var NAME" if allow_option else ""))
            for name in sorted(set(names) - used)]


def check_vars(values, policy_paths):
    """Raise UnknownName for the first var in ``values`` (``--var NAME=VALUE``) that
    neither Broom nor the policy files use. An unreadable file is left to the loader,
    which says what is wrong with it."""
    import yaml

    from broom.policyfile import safe_load_file

    datas = []
    for path in policy_paths:
        try:
            datas.append(safe_load_file(path))
        except (OSError, yaml.YAMLError):
            continue
    found = unknown_vars(values, datas, allow_option=False)
    if found:
        raise UnknownName(found[0][1])


def unknown_keys(data, known):
    """``(key, message)`` for each key of the mapping ``data`` not in ``known``."""
    return [(key, "unknown key %r%s (known: %s)" % (key, hint(str(key), known),
                                                     ", ".join(sorted(known))))
            for key in data if key not in known]
