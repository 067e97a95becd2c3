"""Fixtures for every test: fake credentials, moto, the report inbox, time.

``pytest tests/unit`` is the fast suite a contributor runs while editing (no server,
no subprocess); ``pytest`` runs it and tests/e2e (moto's server, the stock CLIs).
Helpers and constants are in tests/support.py: this file holds fixtures only.

The tests test the working tree: pytest.ini puts the repository root first on
``sys.path`` (``pythonpath = .``), and the session stops at once if ``c7n_broom`` or
``broom`` came from another copy that differs from it.
"""
import copy
import functools
from pathlib import Path

import botocore.client
import botocore.loaders
import botocore.session
import pytest
from moto import mock_aws

import broom
import c7n_broom  # noqa: F401  (registers Broom's elements)

import support
from support import REGION, FakeClock, Inbox, Protection, SpotRequests, create_state_table


def pytest_sessionstart(session):
    """Refuse to test a copy of Broom other than the working tree (plain ``pytest``
    would otherwise import the installed one), unless it is identical to it."""
    for package in (c7n_broom, broom):
        where = Path(package.__file__).resolve().parent
        if support.REPO.resolve() in where.parents:
            continue
        stale = support.stale_files(where.parent, packages=(package.__name__,),
                                    root_files=())
        if stale:
            pytest.exit("the tests imported %s from %s, not from the working tree %s, and "
                        "it differs (%s): run pytest with this repository's pytest.ini "
                        "(pythonpath = . puts the working tree first)" % (
                            package.__name__, where, support.REPO, ", ".join(stale)),
                        returncode=1)


@pytest.fixture(autouse=True)
def aws_credentials(monkeypatch, tmp_path):
    """Fake credentials and no shared config, so nothing can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_SESSION_TOKEN",
                 "AWS_SECURITY_TOKEN", "C7N_USE_STS_REGIONAL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "aws-credentials"))


@pytest.fixture(autouse=True, scope="session")
def botocore_models_read_once():
    """Test speed only: botocore parses its JSON service models again for every
    Session, and builds a service model and a method table again for every client (c7n
    makes a Session per policy, and clients per action). One loader for the whole run
    (as broom.local.aws does for its sessions), one service model, one method table and
    one table of method names per service API make the mock_aws tests about three
    times faster. All are read-only once built."""
    methods = {}
    build_methods = botocore.client.ClientCreator._create_methods

    def create_methods(creator, service_model):
        key = (service_model.service_name, service_model.api_version)
        if key not in methods:
            methods[key] = build_methods(creator, service_model)
        return dict(methods[key])

    mappings = {}
    build_mapping = botocore.client.ClientCreator._create_name_mapping

    def create_name_mapping(creator, service_model):
        key = (service_model.service_name, service_model.api_version)
        if key not in mappings:
            mappings[key] = build_mapping(creator, service_model)
        return dict(mappings[key])

    models = {}
    load_model = botocore.client.ClientCreator._load_service_model

    def load_service_model(creator, service_name, api_version=None):
        key = (service_name, api_version)
        if key not in models:
            models[key] = load_model(creator, service_name, api_version)
        return models[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(botocore.session, "create_loader",
                      functools.lru_cache(maxsize=None)(botocore.loaders.create_loader))
        patch.setattr(botocore.client.ClientCreator, "_create_methods", create_methods)
        patch.setattr(botocore.client.ClientCreator, "_create_name_mapping",
                      create_name_mapping)
        patch.setattr(botocore.client.ClientCreator, "_load_service_model", load_service_model)
        yield


@pytest.fixture(autouse=True, scope="session")
def sns_signing_key_made_once():
    """Test speed only: moto signs every SNS notification it delivers with an RSA key it
    generates for each subscription (a tenth of a CPU second, in every test with a
    report inbox: a sixth of the CPU time of test_action, test_cap and test_terminate).
    One key for the whole run, in-process moto and the moto server alike; Broom checks
    no signature."""
    from moto.sns.models import Subscription

    key = functools.lru_cache(maxsize=None)(Subscription.private_key.__wrapped__)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Subscription, "private_key", lambda self: key(None))
        yield


@pytest.fixture(autouse=True, scope="session")
def library_work_done_once():
    """Test speed only: work the libraries repeat for every client or call, on inputs
    that do not change during a run, done once.

    - every botocore client copies its session's table of event handlers (hundreds of
      them, a tree of dicts and lists: a tenth of the unit suite's CPU time). The
      copies share the tree; a registration copies the nodes on its event's path;
    - every botocore client makes an SSL context (for HTTPS, which the tests never
      use: moto answers in process, its server on http://127.0.0.1): one serves all;
    - ``mock_aws`` makes thousands of ``responses`` callbacks (one per URL pattern of
      every service, for the ``requests`` library) each time it starts: the same ones
      serve every start;
    - moto lists the methods of a response class (``inspect.getmembers``) for every
      call it answers;
    - each botocore client copies its session's event aliaser with an empty cache of
      aliased event names, so every client works the same names out again;
    - c7n checks the JSON schema it generates against the JSON Schema meta-schema for
      every policy file it validates (``broom`` checks each file it loads): the check
      is kept per schema (by its text), so a broken element schema still fails.
    """
    from botocore.hooks import EventAliaser, _PrefixTrie
    from botocore.httpsession import URLLib3Session
    from c7n import schema as c7n_schema
    from moto.core import models as moto_models
    from moto.core import responses as moto_responses

    def share_handlers(trie):
        trie._shares = True  # neither trie changes a node it shares
        copied = _PrefixTrie.__new__(_PrefixTrie)
        copied.__dict__.update(_root=trie._root, _shares=True)
        return copied

    def on_own_path(change):
        """``change`` after copying the nodes on ``key``'s path (the rest stay shared)."""
        def change_own_path(trie, key, *args, **kwargs):
            if not trie.__dict__.get("_shares"):
                return change(trie, key, *args, **kwargs)
            node = trie._root = dict(trie._root, children=dict(trie._root["children"]))
            for part in key.split("."):
                child = node["children"].get(part)
                if child is None:
                    break
                child = dict(child, children=dict(child["children"]))
                if child["values"] is not None:
                    child["values"] = copy.copy(child["values"])
                node["children"][part] = child
                node = child
            return change(trie, key, *args, **kwargs)
        return change_own_path

    names_of = functools.lru_cache(maxsize=None)(moto_responses.method_names_from_class)
    copy_aliaser = EventAliaser.__copy__

    def copy_sharing_names(aliaser):
        copied = copy_aliaser(aliaser)
        copied._alias_name_cache = aliaser._alias_name_cache  # the same aliases
        return copied

    validator = c7n_schema.JsonSchemaValidator
    check_schema = validator.check_schema
    checked = set()

    def check_schema_once(cls, schema, *args, **kwargs):
        key = repr(schema)
        if key not in checked:
            check_schema(schema, *args, **kwargs)
            checked.add(key)

    made = {}

    def callback_response(method, url, callback, **options):
        key = (method, url, callback)
        if options:
            return make_callback_response(method=method, url=url, callback=callback,
                                          **options)
        if key not in made:
            made[key] = make_callback_response(method=method, url=url, callback=callback)
        return made[key]

    make_callback_response = moto_models.CallbackResponse
    ssl_context = functools.lru_cache(maxsize=None)(URLLib3Session._get_ssl_context)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(moto_models, "CallbackResponse", callback_response)
        patch.setattr(URLLib3Session, "_get_ssl_context", lambda session: ssl_context(None))
        patch.setattr(_PrefixTrie, "__copy__", share_handlers)
        patch.setattr(_PrefixTrie, "append_item", on_own_path(_PrefixTrie.append_item))
        patch.setattr(_PrefixTrie, "remove_item", on_own_path(_PrefixTrie.remove_item))
        patch.setattr(moto_responses, "method_names_from_class", names_of)
        patch.setattr(EventAliaser, "__copy__", copy_sharing_names)
        patch.setattr(validator, "check_schema", classmethod(check_schema_once))
        yield


@pytest.fixture
def aws(monkeypatch):
    """moto in-process (mock_aws): fast unit tests. Image ids are not checked, so
    moto's catalogue of public AMIs (built for every account and region) is skipped."""
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with mock_aws():
        yield


@pytest.fixture(scope="session")
def local_aws():
    """moto's standalone server on a free loopback port, for the stock CLIs: one for
    the whole session (tests/e2e/test_localaws.py starts a few more, to test LocalAws)."""
    from broom.local.aws import LocalAws
    with LocalAws(region=REGION) as server:
        yield server


@pytest.fixture
def fresh_aws(local_aws):
    """The local AWS server, emptied before the test."""
    local_aws.reset()
    return local_aws


@pytest.fixture(autouse=True, scope="session")
def policy_output(tmp_path_factory):
    """Where policies loaded by tests write their run logs and resources.json."""
    support.OUTPUT["dir"] = str(tmp_path_factory.mktemp("custodian-output"))
    return support.OUTPUT["dir"]


@pytest.fixture
def inbox(aws):
    return Inbox()


@pytest.fixture
def protection(monkeypatch):
    """EC2's termination protection (support.Protection); add instance ids to
    ``protection.protected``."""
    from botocore.client import BaseClient
    emulation = Protection()
    monkeypatch.setattr(BaseClient, "_make_api_call", emulation(BaseClient._make_api_call))
    return emulation


@pytest.fixture
def spot(aws, monkeypatch):
    """Spot requests in moto, their ids in DescribeInstances (support.SpotRequests)."""
    from botocore.client import BaseClient
    requests = SpotRequests()
    monkeypatch.setattr(BaseClient, "_make_api_call", requests(BaseClient._make_api_call))
    return requests


@pytest.fixture(autouse=True)
def fake_clock(monkeypatch):
    from c7n_broom import invocation
    from c7n_broom.filters import AllowedCodes
    from c7n_broom.source import ResilientDescribeEC2
    clock = FakeClock()
    monkeypatch.setattr(AllowedCodes, "clock", staticmethod(clock.monotonic))
    monkeypatch.setattr(AllowedCodes, "sleep", staticmethod(clock.sleep))
    monkeypatch.setattr(ResilientDescribeEC2, "sleep", staticmethod(clock.sleep))
    monkeypatch.setattr(invocation, "sleep", clock.sleep)  # back-off on throttling
    monkeypatch.setattr(invocation, "clock", clock.monotonic)  # the deadline's clock
    invocation.start()  # no deadline, nothing owed from another test
    return clock


@pytest.fixture
def state_table(aws):
    """The ``broom-state`` DynamoDB table, empty."""
    return create_state_table()


@pytest.fixture
def aged(aws, monkeypatch):
    """Instances launched long ago (support.Aged): set ``aged.ages[instance_id]``."""
    from botocore.client import BaseClient
    emulation = support.Aged()
    monkeypatch.setattr(BaseClient, "_make_api_call", emulation(BaseClient._make_api_call))
    return emulation


@pytest.fixture
def trail(aws, monkeypatch, fake_clock):
    """CloudTrail LookupEvents on botocore's Stubber (support.Trail), given to the
    sweep's lookup-creators, whose waits pass on the fake clock."""
    from c7n_broom.sweep import LookupCreators
    stubbed = support.Trail()
    monkeypatch.setattr(LookupCreators, "cloudtrail", lambda self: stubbed.client)
    monkeypatch.setattr(LookupCreators, "monotonic", staticmethod(fake_clock.monotonic))
    monkeypatch.setattr(LookupCreators, "sleep", staticmethod(fake_clock.sleep))
    yield stubbed
    stubbed.stubber.deactivate()
