"""Meta-tests: every Broom element is a well-formed Custodian element."""
import re

import pytest
import yaml
from c7n.resources.ec2 import EC2

import c7n_broom
from c7n_broom import entry
from conftest import REPO, load_policy

ELEMENTS = [("filter", name, cls) for name, cls in entry.FILTERS.items()] + [
    ("action", name, cls) for name, cls in entry.ACTIONS.items()]
IDS = ["%s:%s" % (kind, name) for kind, name, _ in ELEMENTS]


def registry(kind):
    return EC2.filter_registry if kind == "filter" else EC2.action_registry


@pytest.mark.parametrize("kind, name, cls", ELEMENTS, ids=IDS)
def test_registered_under_its_type_name(kind, name, cls):
    assert registry(kind).get(name) is cls
    assert cls.schema["properties"]["type"]["enum"] == [name]
    assert cls.type == name


@pytest.mark.parametrize("kind, name, cls", ELEMENTS, ids=IDS)
def test_schema_rejects_unknown_options(kind, name, cls):
    assert cls.schema["additionalProperties"] is False


def shipped_elements():
    """Every Broom element of the shipped policies, as loaded (get_permissions may
    depend on the options)."""
    found = []
    for path in sorted((REPO / "policies").glob("*.yml")):
        for data in yaml.safe_load(path.read_text())["policies"]:
            policy = load_policy(data)
            manager = policy.resource_manager
            found += [e for e in manager.filters + manager.actions
                      if e.type in entry.FILTERS or e.type in entry.ACTIONS]
    return found


def test_permissions_are_declared():
    elements = shipped_elements()
    assert {e.type for e in elements} == set(entry.FILTERS) | set(entry.ACTIONS)
    for element in elements:
        permissions = element.get_permissions()
        assert permissions, element.type
        assert all(re.match(r"^[a-z0-9]+:[A-Za-z]+$", p) for p in permissions)


def test_safe_terminate_permissions_cover_force_the_counter_and_the_recheck():
    terminates = [e for e in shipped_elements() if e.type == "safe-terminate"]
    [forced] = [e for e in terminates if e.data.get("force")][:1]
    [unforced] = [e for e in terminates if not e.data.get("force")]
    assert "ec2:ModifyInstanceAttribute" not in unforced.get_permissions()
    assert set(forced.get_permissions()) == {
        "ec2:TerminateInstances", "ec2:ModifyInstanceAttribute", "dynamodb:GetItem",
        "dynamodb:UpdateItem", "scheduler:CreateSchedule", "iam:PassRole"}


def test_filter_permissions_cover_the_calls_it_makes():
    assert set(entry.FILTERS["allowed-codes"].permissions) == {
        "ec2:DescribeInstances", "ec2:DescribeTags"}


def test_action_permissions_cover_the_calls_it_makes():
    assert set(entry.ACTIONS["creator-report"].permissions) == {
        "sns:Publish", "ec2:DescribeInstances", "ec2:DescribeSpotInstanceRequests",
        "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}


def docstring_examples(cls):
    blocks = re.findall(r"\.\. code-block:: yaml\n\n((?:[ ]{8,}.*\n|\n)+)", cls.__doc__)
    return [yaml.safe_load(re.sub(r"(?m)^ {8}", "", block)) for block in blocks]


@pytest.mark.parametrize("kind, name, cls", ELEMENTS, ids=IDS)
def test_docstring_examples_load_and_validate(kind, name, cls):
    examples = docstring_examples(cls)
    assert examples, "%s has no policy example in its docstring" % name
    for example in examples:
        for data in example["policies"]:
            policy = load_policy(data)
            types = [e.type for e in policy.resource_manager.filters +
                     policy.resource_manager.actions]
            assert name in types


def test_no_builtin_name_is_shadowed():
    """The registry overwrites silently: Broom must not take a name c7n uses."""
    import c7n.resources
    c7n.resources.load_resources(("aws.ec2",))
    for kind, name, cls in ELEMENTS:
        for other_name, other in registry(kind).items():
            if other is cls:
                assert other_name == name
        assert cls.__module__.startswith("c7n_broom.")


def test_registering_twice_is_harmless():
    entry.initialize_broom()
    entry.initialize_broom()
    assert EC2.filter_registry.get("allowed-codes") is entry.FILTERS["allowed-codes"]


def test_a_name_taken_by_another_element_is_refused():
    from c7n.filters import Filter

    class Impostor(Filter):
        pass

    taken = {"marked-for-op": Impostor}
    with pytest.raises(entry.NameClashError, match="marked-for-op"):
        entry._register(EC2.filter_registry, taken)
    assert EC2.filter_registry.get("marked-for-op") is not Impostor


@pytest.mark.parametrize("path", sorted((REPO / "policies").glob("*.yml")),
                         ids=lambda p: p.name)
def test_policy_files_follow_the_house_rules(path):
    document = yaml.safe_load(path.read_text())
    assert list(document) == ["policies"]
    for data in document["policies"]:
        assert re.match(r"^[a-z0-9]+(-[a-z0-9]+)*$", data["name"])
        assert len(data["name"]) < 54
        assert data.get("description", "").strip()


def test_lambda_mode_policy_without_the_plugin_settings_says_what_to_add():
    from c7n.exceptions import PolicyValidationError
    data = {"name": "no-plugin", "resource": "aws.ec2",
            "mode": {"type": "cloudtrail", "events": ["RunInstances"],
                     "role": "arn:aws:iam::123456789012:role/broom-lambda"},
            "filters": [{"type": "allowed-codes", "codes": ["LOL"]}]}
    with pytest.raises(PolicyValidationError) as e:
        load_policy(data)
    assert "packages: [c7n_broom]" in str(e.value)
    assert "handler: c7n_broom.handler.run" in str(e.value)
    data["mode"].update(packages=["c7n_broom"], handler="c7n_broom.handler.run")
    assert load_policy(data).name == "no-plugin"


def test_version_is_exposed():
    assert c7n_broom.__version__
