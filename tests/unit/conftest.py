"""Unit tests: moto in process (``mock_aws``) and plain functions; no moto server and
no stock command (those are in tests/e2e). A unit test asking for the server fails
collection."""
from pathlib import Path

import pytest

HERE = Path(__file__).parent
SERVER = {"local_aws", "fresh_aws"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        uses = SERVER & set(getattr(item, "fixturenames", ()))
        if HERE in item.path.parents and uses:
            raise pytest.UsageError("%s uses moto's server (%s): move it to tests/e2e" % (
                item.nodeid, ", ".join(sorted(uses))))
