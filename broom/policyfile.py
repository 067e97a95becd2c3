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
    try:
        collection = load_file(config, str(path))
    except (PolicyValidationError, OSError, ValueError) as e:
        raise PolicyFileError("%s: %s" % (path, one_line(e)))
    return list(collection or ())


def load_checked(path):
    """``load``, after checking that the file is YAML with a ``policies:`` list (c7n
    says less helpful things about those)."""
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        raise PolicyFileError("%s: not a readable policy file (%s)" % (path, one_line(e)))
    if not isinstance(data, dict) or not isinstance(data.get("policies"), list):
        raise PolicyFileError("%s: no 'policies:' list at the top; a Custodian policy "
                              "file starts with 'policies:'" % path)
    return load(path)
