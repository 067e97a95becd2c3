"""Tests for broom.local.lambda_runner: running a Custodian Lambda archive without AWS."""
import copy
import io
import json
import zipfile
from pathlib import Path

import pytest
from c7n.config import Config
from c7n.credentials import SessionFactory
from c7n.mu import PolicyLambda
from c7n.policy import Policy
from c7n.resources import load_resources

from broom.local.aws import DEFAULT_ACCOUNT
from broom.local.lambda_runner import (
    RUNTIME_PACKAGES,
    LambdaRunnerError,
    archive_packages,
    eventbridge_envelope,
    run_archive,
)

from e2e_support import run_instances_record
from support import REGION, launch, make_zip, states

UNTAGGED_TERMINATOR = {
    "name": "broom-runner-test-untagged",
    "resource": "aws.ec2",
    "mode": {"type": "cloudtrail", "events": ["RunInstances"]},
    "filters": [{"tag:Code": "absent"}],
    "actions": ["terminate"],
}


@pytest.fixture(scope="module")
def terminator_policy(tmp_path_factory):
    """UNTAGGED_TERMINATOR, writing its Lambda-side output under pytest's tmp dir.

    c7n's handler sends output to /tmp unless the policy's own
    ``mode.execution-options.output_dir`` says otherwise.
    """
    data = copy.deepcopy(UNTAGGED_TERMINATOR)
    data["mode"]["execution-options"] = {"output_dir": str(tmp_path_factory.mktemp("lambda"))}
    return data


@pytest.fixture(scope="module")
def custodian_archive(terminator_policy, tmp_path_factory):
    """The archive stock c7n publishes for the policy (c7n + config.json + handler)."""
    load_resources(("aws.ec2",))
    config = Config.empty(region=REGION, output_dir=str(tmp_path_factory.mktemp("out")))
    policy = Policy(terminator_policy, config, session_factory=SessionFactory(REGION))
    return PolicyLambda(policy).get_archive().get_bytes()


def run_source(source, event=None, timeout=30):
    """Run ``source`` as h.py with handler ``h.run`` and no AWS settings."""
    return run_archive(make_zip({"h.py": source}), "h.run", event or {}, env={}, timeout=timeout)


def deliver(archive, aws, instance_id):
    event = eventbridge_envelope(run_instances_record([instance_id]), account=DEFAULT_ACCOUNT)
    return run_archive(archive, "custodian_policy.run", event, env=aws.env(), timeout=60)


# The stock Custodian archive, end to end against moto


def test_custodian_archive_terminates_untagged_instance_named_in_event(
        custodian_archive, terminator_policy, fresh_aws):
    [instance_id] = launch(ec2=fresh_aws.client("ec2"))

    result = deliver(custodian_archive, fresh_aws, instance_id)

    assert result.ok, result.logs
    assert result.value is True
    assert "Found resource ids:['%s']" % instance_id in result.logs
    assert states([instance_id], fresh_aws.client("ec2")) == {instance_id: "terminated"}
    output = Path(terminator_policy["mode"]["execution-options"]["output_dir"])
    assert (output / terminator_policy["name"] / "resources.json").exists()


def test_custodian_archive_spares_instance_with_code_tag(custodian_archive, fresh_aws):
    [instance_id] = launch(ec2=fresh_aws.client("ec2"), tags={"Code": "alpha"})

    result = deliver(custodian_archive, fresh_aws, instance_id)

    assert result.ok, result.logs
    assert states([instance_id], fresh_aws.client("ec2")) == {instance_id: "running"}


def test_custodian_archive_holds_c7n_and_the_stock_handler(custodian_archive, terminator_policy):
    with zipfile.ZipFile(io.BytesIO(custodian_archive)) as archive:
        names = set(archive.namelist())
        config = json.loads(archive.read("config.json"))

    assert archive_packages(custodian_archive) == ["c7n"]
    assert {"custodian_policy.py", "config.json"} <= names
    assert config["policies"] == [terminator_policy]


# Isolation: only the archive and the Lambda runtime's packages


@pytest.mark.parametrize("package", ["c7n", "c7n_broom", "moto", "yaml"])
def test_handler_cannot_import_packages_outside_the_archive(package):
    result = run_source("import %s\n\ndef run(event, context):\n    return 1\n" % package)

    assert not result.ok
    assert result.error_type == "ModuleNotFoundError"
    assert result.error_message == "No module named '%s'" % package


def test_handler_imports_lambda_runtime_packages_and_nothing_from_site_packages():
    source = (
        "import importlib, sys\n"
        "def run(event, context):\n"
        "    files = {name: importlib.import_module(name).__file__ for name in event['names']}\n"
        "    return {'files': files, 'path': sys.path}\n")

    result = run_source(source, event={"names": list(RUNTIME_PACKAGES)})

    assert result.ok, result.logs
    assert all("/runtime/" in path for path in result.value["files"].values())
    assert not [entry for entry in result.value["path"] if "site-packages" in entry]


def test_handler_runs_in_archive_folder_with_event_and_lambda_context():
    source = (
        "import json, os\n"
        "def run(event, context):\n"
        "    with open('config.json') as f:\n"
        "        config = json.load(f)\n"
        "    return {'event': event, 'config': config,\n"
        "            'in_task_root': os.getcwd() == os.environ['LAMBDA_TASK_ROOT'],\n"
        "            'function_name': context.function_name,\n"
        "            'memory': context.memory_limit_in_mb,\n"
        "            'request_id': context.aws_request_id,\n"
        "            'remaining_ms': context.get_remaining_time_in_millis()}\n")
    archive = make_zip({"h.py": source, "config.json": '{"policies": []}'})

    result = run_archive(archive, "h.run", {"hello": "world"}, env={}, timeout=30,
                         function_name="custodian-broom-test", memory_mb=256)

    assert result.ok, result.logs
    assert result.value["event"] == {"hello": "world"}
    assert result.value["config"] == {"policies": []}
    assert result.value["in_task_root"] is True
    assert result.value["function_name"] == "custodian-broom-test"
    assert result.value["memory"] == 256
    assert result.value["request_id"] in result.logs
    assert 0 < result.value["remaining_ms"] <= 30000


# Failures are reported the way Lambda reports them


def test_handler_exception_gives_type_message_and_traceback():
    result = run_source("def run(event, context):\n    raise ValueError('no Code tag')\n")

    assert not result.ok
    assert (result.error_type, result.error_message) == ("ValueError", "no Code tag")
    assert "h.py" in result.traceback
    assert "ValueError: no Code tag" in result.logs


def test_handler_past_its_timeout_is_killed():
    result = run_source("import time\n\ndef run(event, context):\n    time.sleep(60)\n",
                        timeout=0.5)

    assert not result.ok
    assert result.error_type == "Timeout"
    assert result.error_message == "Task timed out after 0.50 seconds"
    assert result.duration_s < 10


def test_process_exit_without_result_is_an_exit_error():
    result = run_source("import os\n\ndef run(event, context):\n    os._exit(3)\n")

    assert (result.ok, result.error_type, result.exit_code) == (False, "Runtime.ExitError", 3)


def test_unserialisable_return_value_is_a_marshal_error():
    result = run_source("def run(event, context):\n    return object()\n")

    assert (result.ok, result.error_type) == (False, "Runtime.MarshalError")


def test_logs_hold_stdout_stderr_and_log_records():
    source = (
        "import logging, sys\n"
        "def run(event, context):\n"
        "    print('to stdout')\n"
        "    print('to stderr', file=sys.stderr)\n"
        "    logging.getLogger('custodian.test').warning('a log record')\n")

    result = run_source(source)

    assert result.ok, result.logs
    for text in ("START RequestId", "to stdout", "to stderr",
                 "[WARNING]", "a log record", "END RequestId"):
        assert text in result.logs


def test_peak_memory_is_the_childs_own():
    result = run_source("def run(event, context):\n    return 1\n")

    # A bare interpreter needs about 10 MB; the parent (pytest, moto, c7n) far more,
    # and Linux would carry the parent's peak into ru_maxrss across exec.
    assert 0 < result.max_rss_kb < 60_000


def test_handler_without_module_and_function_is_rejected():
    with pytest.raises(LambdaRunnerError, match="module.function"):
        run_archive(make_zip({}), "run", {}, env={})
