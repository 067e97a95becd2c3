"""Loading Custodian policy files for the ``broom`` commands, one way.

c7n loads and validates a file (schema, then each element's ``validate()``); every
problem becomes one :class:`PolicyFileError` line naming the file, which each command
prints as ``broom COMMAND failed: ...``.
"""
import yaml

#: c7n wants a region to load a policy; nothing a validate-only load does depends on it.
LOAD_REGION = "na"


class PolicyFileError(ValueError):
    """A policy file cannot be loaded; the message says which and why, in one line."""


def one_line(error):
    return " ".join(str(error).split())


def load(path, config=None):
    """The policies of a file as c7n loads them, validated; ``config`` defaults to
    ``custodian validate``'s (no credentials, no account lookup), which leaves
    variables unexpanded."""
    from c7n.config import Config
    from c7n.exceptions import PolicyValidationError
    from c7n.policy import load as load_file

    if config is None:
        config = Config.empty(dryrun=True, account_id="na", region=LOAD_REGION)
    data = read(path)
    try:
        problem = schema_problem(data)
        collection = None
        if not problem:  # the schema is checked: c7n's load only builds and validates
            collection = load_file(config, str(path), validate=False)
            for policy in collection or ():
                policy.validate()
    except (PolicyValidationError, OSError, ValueError) as e:
        problem = one_line(e)
    if problem:
        raise PolicyFileError("%s: %s" % (path, problem))
    return list(collection or ())


#: PyYAML's safe loader, in C when PyYAML was built with libyaml (several times faster).
SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def safe_load_file(path):
    """The YAML file's data, as ``yaml.safe_load`` reads it; raises OSError or
    yaml.YAMLError."""
    with open(path) as f:
        return yaml.load(f, Loader=SAFE_LOADER)  # noqa: S506 (a safe loader)


def read(path):
    """The file's data, once it is known to be YAML with a ``policies:`` list (c7n
    says less helpful things about those, or raises PyYAML's errors)."""
    try:
        data = safe_load_file(path)
    except (OSError, yaml.YAMLError) as e:
        raise PolicyFileError("%s: not a readable policy file (%s)" % (path, one_line(e)))
    if not isinstance(data, dict) or not isinstance(data.get("policies"), list):
        raise PolicyFileError("%s: no 'policies:' list at the top; a Custodian policy "
                              "file starts with 'policies:'" % path)
    return data


def load_checked(path):
    """``load`` (which checks the file first, see ``read``)."""
    return load(path)


def schema_problem(data):
    """c7n's first schema error for the file's data in one line (c7n's own message
    prints the whole JSON schema of the element), or None."""
    from c7n.resources import load_resources
    from c7n.schema import StructureParser, validate
    from jsonschema.exceptions import ValidationError

    structure = StructureParser()
    structure.validate(data)
    load_resources(structure.get_resource_types(data))
    errors = validate(data, resource_types=structure.get_resource_types(data))
    if not errors:
        return None
    error = errors[0]
    if not isinstance(error, ValidationError):
        return one_line(error)
    return describe(error, data)


def describe(error, data):
    """``policy:NAME filter:TYPE: 'option': what`` for a jsonschema error; an unknown
    option names the nearest known one and all of them."""
    from broom.varnames import hint

    path = list(error.absolute_path)
    policies = data.get("policies") or []
    policy = policies[path[1]] if len(path) > 1 and isinstance(path[1], int) else {}
    where = "policy:%s" % (policy.get("name", "?") if isinstance(policy, dict) else "?")
    kinds = [i for i, p in enumerate(path) if p in ("filters", "actions")]
    option = path[2:]
    if kinds:
        element = kinds[-1] + 1
        node = data
        for step in path[:element + 1]:
            node = node[step]
        kind = "filter" if path[kinds[-1]] == "filters" else "action"
        name = node.get("type") if isinstance(node, dict) else node
        where += " %s:%s" % (kind, name)
        option = path[element + 1:]
    said = ".".join(str(p) for p in option)
    where += ": '%s'" % said if said else ""
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties") or ()) - {"type"}
        unknown = [k for k in error.instance if k not in known and k != "type"]
        if unknown:
            return "%s: unknown option %r%s (valid: %s)" % (
                where, unknown[0], hint(str(unknown[0]), known), ", ".join(sorted(known)))
    return "%s: %s" % (where, one_line(error.message))
