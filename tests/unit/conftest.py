"""Unit tests: moto in process (``mock_aws``) and plain functions; no moto server and
no stock command (those are in tests/e2e). A unit test asking for the server fails
collection."""
import copy
from pathlib import Path

import pytest
from c7n import handler as c7n_handler
from c7n.config import Config
from c7n.resources.aws import AWS

from support import ACCOUNT, REGION, load_policy

HERE = Path(__file__).parent
SERVER = {"local_aws", "fresh_aws"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        uses = SERVER & set(getattr(item, "fixturenames", ()))
        if HERE in item.path.parents and uses:
            raise pytest.UsageError("%s uses moto's server (%s): move it to tests/e2e" % (
                item.nodeid, ", ".join(sorted(uses))))


@pytest.fixture
def deployed(monkeypatch, tmp_path):
    """Install policies the way c7n's handler holds them after a cold start: the
    content of config.json (policies as ``custodian run`` expanded them) and the
    execution options ``init_config`` builds from it."""
    def install(*policies):
        monkeypatch.setattr(c7n_handler, "policy_data", {
            "policies": [load_policy(copy.deepcopy(p)).data for p in policies]})
        monkeypatch.setattr(c7n_handler, "policy_config", AWS().initialize(Config.empty(
            region=REGION, account_id=ACCOUNT, output_dir=str(tmp_path), cache="",
            cache_period=0)))
    return install


@pytest.fixture
def handed_over(monkeypatch):
    """Events the Broom handler hands to c7n (c7n itself is not run)."""
    calls = []
    monkeypatch.setattr(c7n_handler, "dispatch_event",
                        lambda event, context: calls.append(event))
    return calls


@pytest.fixture(autouse=True)
def outside_lambda(monkeypatch):
    """Each test starts outside Lambda: handler.run keeps the invoking function's ARN
    (for the re-check schedules), which must not outlive the test that ran it."""
    from c7n_broom import recheck
    monkeypatch.setattr(recheck.Target, "function_arn", None)
