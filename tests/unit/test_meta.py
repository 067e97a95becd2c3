"""Meta-tests: every Broom element is a well-formed Custodian element."""
import contextlib
import json
import re
import subprocess
import sys
import time

import boto3
import pytest
import yaml
from c7n.resources.ec2 import EC2

import c7n_broom
from c7n_broom import entry, recheck, source, validation

from support import (
    REGION,
    REPO,
    create_tags,
    iam_action,
    launch,
    load_policy,
    policy_file,
    run_instances_event,
    states,
)

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


#: Elements the shipped policies leave out: they need something Broom does not deploy
#: (notify-creator: a c7n-mailer queue). Their docstring examples stand in for them.
OPT_IN = {"notify-creator"}


def test_permissions_are_declared():
    elements = shipped_elements()
    assert {e.type for e in elements} == set(entry.FILTERS) | set(entry.ACTIONS) - OPT_IN
    for name in OPT_IN:
        for example in docstring_examples(entry.ACTIONS[name]):
            for data in example["policies"]:
                manager = load_policy(data).resource_manager
                elements += [e for e in manager.actions if e.type == name]
    assert OPT_IN <= {e.type for e in elements}
    for element in elements:
        permissions = element.get_permissions()
        assert permissions, element.type
        assert all(re.match(r"^[a-z0-9]+:[A-Za-z]+$", p) for p in permissions)


def test_safe_terminate_permissions_cover_force_the_counter_and_the_recheck():
    terminates = [e for e in shipped_elements() if e.type == "safe-terminate"]
    [forced] = [e for e in terminates if e.data.get("force")][:1]
    unforced = [e for e in terminates if not e.data.get("force")]
    assert unforced and all("ec2:ModifyInstanceAttribute" not in e.get_permissions()
                            for e in unforced)
    assert set(forced.get_permissions()) == {
        "ec2:TerminateInstances", "ec2:ModifyInstanceAttribute", "dynamodb:GetItem",
        "dynamodb:UpdateItem", "dynamodb:PutItem", "scheduler:CreateSchedule",
        "iam:PassRole"}


def test_allowed_codes_declares_what_it_reads():
    assert set(entry.FILTERS["allowed-codes"].permissions) == {
        "ec2:DescribeInstances", "ec2:DescribeTags", "dynamodb:GetItem"}


def test_creator_report_declares_what_it_reads_and_writes():
    assert set(entry.ACTIONS["creator-report"].permissions) == {
        "sns:Publish", "ec2:DescribeInstances", "ec2:DescribeSpotInstanceRequests",
        "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"}


class ApiCalls:
    """Every API call made while ``recording``, as IAM names it (``service:Operation``),
    refused ones included; wrapped around ``BaseClient._make_api_call``."""

    def __init__(self):
        self.made = set()
        self.on = False

    def __call__(self, original):
        def make_api_call(client, operation, params):
            if self.on:
                self.made.add(iam_action(client, operation))
            return original(client, operation, params)
        return make_api_call

    @contextlib.contextmanager
    def recording(self):
        self.on = True
        try:
            yield
        finally:
            self.on = False


@pytest.fixture
def api_calls(monkeypatch, protection, spot):
    """Calls recorded outside termination protection and the spot requests' ids."""
    from botocore.client import BaseClient
    calls = ApiCalls()
    monkeypatch.setattr(BaseClient, "_make_api_call", calls(BaseClient._make_api_call))
    return calls


def declared(policy):
    """What a policy's role must allow: c7n's aws.ec2 resource manager (describe and
    augment) and every filter and action."""
    manager = policy.resource_manager
    return set(manager.get_permissions()).union(
        *(element.get_permissions() for element in manager.filters + manager.actions))


def test_every_call_the_elements_make_is_a_permission_they_declare(
        inbox, state_table, protection, spot, api_calls, monkeypatch):
    """Each element on its widest path, against moto: allowed-codes waiting for the tags
    of an untagged launch, safe-terminate forcing a protected instance, counting in the
    state table, holding a launch over the cap and scheduling its re-check (the handler
    gives it the function's ARN), the re-check itself, creator-report on a persistent
    spot request's instance with the state table, and a tag-change report."""
    monkeypatch.setattr(recheck.Target, "function_arn",
                        "arn:aws:lambda:us-east-1:123456789012:function:broom")
    boto3.client("scheduler", region_name=REGION).create_schedule_group(
        Name=recheck.SCHEDULE_GROUP)
    [main] = policy_file("ec2-tags.yml")["policies"]
    [changed] = policy_file("ec2-tags-changed.yml")["policies"]
    main, changed = load_policy(main), load_policy(changed)
    [protected], [untagged] = launch(), launch()
    protection.protected.add(protected)
    _, spot_instance = spot.request("persistent")
    held = launch(count=21, tags={"Code": "NOPE"})
    [renamed] = launch(tags={"Code": "LOL"})

    with api_calls.recording():
        main.push(run_instances_event([protected, untagged, spot_instance]))
        main.push(run_instances_event(held))
    scheduler = boto3.client("scheduler", region_name=REGION)
    [schedule] = scheduler.list_schedules()["Schedules"]
    recheck_event = json.loads(scheduler.get_schedule(
        Name=schedule["Name"], GroupName=schedule["GroupName"])["Target"]["Input"])
    due = time.time() + 3600
    monkeypatch.setattr(recheck, "now", lambda: due)
    renaming = create_tags([renamed], {"Code": "NOPE"})
    with api_calls.recording():
        main.push(recheck_event)
        changed.push(renaming)

    assert set(states([protected, untagged, spot_instance]).values()) == {"terminated"}
    assert {"ec2:DescribeTags", "ec2:ModifyInstanceAttribute", "ec2:TerminateInstances",
            "ec2:DescribeSpotInstanceRequests", "scheduler:CreateSchedule", "sns:Publish",
            "dynamodb:UpdateItem", "dynamodb:PutItem"} <= api_calls.made  # all exercised
    assert api_calls.made - (declared(main) | declared(changed)) == set()


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


# Nothing c7n registers itself is replaced: checked against c7n's registries as they
# are before Broom registers, in an interpreter where the autoloader is switched off.
BUILTINS = """\
import json, sys
sys.meta_path[:] = [f for f in sys.meta_path
                    if getattr(f, "__module__", None) != "_c7n_broom_autoload"]
from c7n.query import sources
from c7n.resources import load_resources
from c7n.resources.ec2 import EC2
load_resources(("aws.ec2",))
print(json.dumps({"filter": sorted(EC2.filter_registry.keys()),
                  "action": sorted(EC2.action_registry.keys()),
                  "source": sorted(sources.keys()),
                  "plugin": sorted(m for m in sys.modules if m.split(".")[0] == "c7n_broom")}))
"""


@pytest.fixture(scope="module")
def builtins():
    """c7n's own aws.ec2 filters and actions, and its sources (a ``python -I`` child)."""
    completed = subprocess.run([sys.executable, "-I", "-c", BUILTINS], capture_output=True,
                               text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
    return json.loads(completed.stdout)


def test_no_builtin_name_is_shadowed(builtins):
    """The registries overwrite silently: Broom must not take a name c7n uses."""
    assert builtins["plugin"] == []  # c7n's registries only
    assert {"terminate", "mark-for-op"} <= set(builtins["action"])  # c7n's, as read
    assert {"value", "instance-age", "marked-for-op"} <= set(builtins["filter"])
    assert "describe" in builtins["source"]
    assert not set(entry.FILTERS) & set(builtins["filter"])
    assert not set(entry.ACTIONS) & set(builtins["action"])
    assert source.NAME not in builtins["source"]
    for _, _, cls in ELEMENTS:
        assert cls.__module__.startswith("c7n_broom.")


# Every JSON-schema keyword of Broom's element schemas is one validation.problems()
# checks: c7n-org and the Lambda handler validate with it alone, not with jsonschema.

PROBLEMS_HANDLES = {"type", "enum", "minimum", "maximum", "items", "required", "properties",
                    "additionalProperties", "oneOf", "patternProperties", "$ref"}


def schema_keywords(schema):
    """(keyword, value) of every subschema of ``schema``, recursively (the names under
    properties and patternProperties are option names, not keywords)."""
    found = []
    for keyword, value in schema.items():
        found.append((keyword, value))
        if keyword in ("properties", "patternProperties"):
            subschemas = list(value.values())
        elif keyword == "oneOf":
            subschemas = value
        elif keyword in ("items", "additionalProperties") and isinstance(value, dict):
            subschemas = [value]
        elif keyword == "$ref":
            subschemas = [validation.REFS[value]] if value in validation.REFS else []
        else:
            subschemas = []
        for subschema in subschemas:
            found += schema_keywords(subschema)
    return found


@pytest.mark.parametrize("kind, name, cls", ELEMENTS, ids=IDS)
def test_schema_uses_only_keywords_the_validator_checks(kind, name, cls):
    found = schema_keywords(cls.schema)
    assert {keyword for keyword, _ in found} <= PROBLEMS_HANDLES
    for keyword, value in found:
        if keyword == "type":
            assert value in validation.TYPES, value
        if keyword == "$ref":
            assert value in validation.REFS, value
        if keyword == "patternProperties":
            assert list(value) == [""], value  # problems() reads the "" pattern only


def test_schema_keywords_walk_every_subschema():
    keywords = {keyword for kind, name, cls in ELEMENTS
                for keyword, _ in schema_keywords(cls.schema)}
    assert keywords == PROBLEMS_HANDLES  # each keyword problems() handles is in use


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


def test_accounts_file_matches_c7n_org_schema():
    import jsonschema
    from c7n_org.cli import CONFIG_SCHEMA
    config = yaml.safe_load((REPO / "accounts.yml").read_text())
    jsonschema.validate(config, CONFIG_SCHEMA)
    assert len(config["accounts"]) == 3
    for account in config["accounts"]:
        assert isinstance(account["account_id"], str) and len(account["account_id"]) == 12
        assert account["role"].startswith("arn:aws:iam::%s:role/" % account["account_id"])
        assert account["regions"] and account["tags"]
