"""Broom's CloudFormation templates (templates/*.yml) as the tests read them.

PyYAML does not know CloudFormation's short-form functions (``!Sub``, ``!Ref``,
``!If``, ...): :func:`load` reads them as their long form (``{"Fn::Sub": ...}``,
``{"Ref": ...}``), and :func:`resolve` evaluates the few the role policies use, with
the values a test gives, as CloudFormation would.
"""
import copy
import functools
import re
from pathlib import Path

import yaml

TEMPLATES = Path(__file__).parent.parent / "templates"
NO_VALUE = "AWS::NoValue"

_FUNCTIONS = ("And", "Base64", "Cidr", "Equals", "FindInMap", "GetAZs", "GetAtt", "If",
              "ImportValue", "Join", "Not", "Or", "Select", "Split", "Sub", "ToJsonString")


class _Loader(yaml.SafeLoader):
    pass


def _construct(name):
    key = "Ref" if name == "Ref" else "Condition" if name == "Condition" else "Fn::" + name

    def construct(loader, node):
        if isinstance(node, yaml.ScalarNode):
            value = loader.construct_scalar(node)
            if name == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}
    return construct


for _name in _FUNCTIONS + ("Ref", "Condition"):
    _Loader.add_constructor("!" + _name, _construct(_name))


def load(name):
    """templates/NAME (e.g. ``account.yml``) as a dict, functions in long form: a copy
    of its own for the caller to change."""
    return copy.deepcopy(_parsed((TEMPLATES / name).read_text()))


@functools.lru_cache(maxsize=None)
def _parsed(text):
    """``text`` parsed once per run (the tests read each template many times)."""
    return yaml.load(text, Loader=_Loader)


def names():
    return sorted(p.name for p in TEMPLATES.glob("*.yml"))


def as_written(node):
    """``node`` with each ``Fn::Sub`` string left as written (``${AWS::AccountId}``...)."""
    if isinstance(node, dict):
        if set(node) == {"Fn::Sub"} and isinstance(node["Fn::Sub"], str):
            return node["Fn::Sub"]
        return {k: as_written(v) for k, v in node.items()}
    if isinstance(node, list):
        return [as_written(v) for v in node]
    return node


def resolve(node, refs, conditions=None):
    """``node`` evaluated: ``Ref`` and ``${...}`` from ``refs`` (pseudo parameters,
    parameters, ``Logical.Attribute``), ``Fn::If`` from ``conditions`` (name: bool),
    ``AWS::NoValue`` removed. Anything else it cannot evaluate raises KeyError."""
    conditions = conditions or {}
    if isinstance(node, dict):
        if len(node) == 1:
            [(key, value)] = node.items()
            if key == "Ref":
                return NO_VALUE if value == NO_VALUE else refs[value]
            if key == "Fn::Sub":
                return re.sub(r"\$\{([^}!]+)\}", lambda m: str(refs[m.group(1)]), value)
            if key == "Fn::GetAtt":
                return refs[".".join(value)]
            if key == "Fn::If":
                name, yes, no = value
                return resolve(yes if conditions[name] else no, refs, conditions)
        result = {}
        for k, v in node.items():
            v = resolve(v, refs, conditions)
            if v != NO_VALUE:
                result[k] = v
        return result
    if isinstance(node, list):
        return [v for v in (resolve(v, refs, conditions) for v in node) if v != NO_VALUE]
    return node


def resources(template, type_name):
    """{logical id: resource} of a template's resources of one type."""
    return {name: r for name, r in template["Resources"].items() if r["Type"] == type_name}


def role(template, role_name):
    """The AWS::IAM::Role resource named ``role_name`` (its RoleName)."""
    [found] = [r for r in resources(template, "AWS::IAM::Role").values()
               if r["Properties"]["RoleName"] == role_name]
    return found


def role_policy_document(template, role_name):
    """The one inline policy document of the role named ``role_name``."""
    [policy] = role(template, role_name)["Properties"]["Policies"]
    return policy["PolicyDocument"]


def actions_of(statement):
    action = statement.get("Action", ())
    return [action] if isinstance(action, str) else list(action)


def policy_documents(node):
    """Every IAM policy document anywhere in ``node`` (role, topic, bus, key policies,
    trust policies): dicts with a ``Statement``."""
    if isinstance(node, dict):
        if "Statement" in node:
            yield node
        for value in node.values():
            yield from policy_documents(value)
    elif isinstance(node, list):
        for value in node:
            yield from policy_documents(value)


def statements(document):
    found = document["Statement"]
    return [found] if isinstance(found, dict) else found
