"""Run a Custodian Lambda archive the way AWS Lambda runs it, without AWS.

moto stores Lambda functions but cannot invoke them, so the demo and the end-to-end
tests run the archive here::

    archive = PolicyLambda(policy).get_archive().get_bytes()
    event = eventbridge_envelope(cloudtrail_record)
    result = run_archive(archive, "custodian_policy.run", event, env=aws.env())
    assert result.ok, result.logs

The archive is unzipped into a temporary folder and its handler runs in a fresh
``python -I -S`` process whose ``sys.path`` holds only that folder, the standard
library and the packages the Lambda Python runtime provides (boto3, botocore,
jmespath, s3transfer, dateutil, urllib3, six). Nothing else from this environment is
importable, so an archive that lacks a package fails here as it would in Lambda.
"""
import dataclasses
import functools
import importlib.util
import io
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
import zipfile
from typing import Any, Optional

from c7n_broom import events

log = logging.getLogger("custodian.broom.lambda_runner")

#: Import names the AWS Lambda Python runtime puts on sys.path besides the archive.
RUNTIME_PACKAGES = ("boto3", "botocore", "jmespath", "s3transfer", "dateutil", "urllib3", "six")

DEFAULT_FUNCTION_NAME = "custodian-broom"
DEFAULT_MEMORY_MB = 512
_DEFAULT_ACCOUNT = "123456789012"

# Runs in the child interpreter, which cannot import anything from this package.
_BOOTSTRAP = '''\
"""Lambda-like bootstrap written by broom.local.lambda_runner."""
import importlib
import json
import logging
import os
import resource
import sys
import time
import traceback


class LambdaContext:
    """The parts of Lambda's context object handlers use."""

    def __init__(self, spec):
        self.function_name = spec["function_name"]
        self.function_version = "$LATEST"
        self.invoked_function_arn = spec["function_arn"]
        self.memory_limit_in_mb = spec["memory_mb"]
        self.aws_request_id = spec["request_id"]
        self.log_group_name = "/aws/lambda/" + spec["function_name"]
        self.log_stream_name = "local/" + spec["request_id"]
        self._deadline = spec["deadline"]

    def get_remaining_time_in_millis(self):
        return max(0, int((self._deadline - time.time()) * 1000))


def configure_logging(request_id):
    """Format root log records like the Lambda Python runtime does."""
    class RequestId(logging.Filter):
        def filter(self, record):
            record.aws_request_id = request_id
            return True

    formatter = logging.Formatter(
        "[%(levelname)s]\\t%(asctime)s.%(msecs)03dZ\\t%(aws_request_id)s\\t%(message)s",
        "%Y-%m-%dT%H:%M:%S")
    formatter.converter = time.gmtime
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(formatter)
    handler.addFilter(RequestId())
    logging.getLogger().addHandler(handler)


def invoke(handler, event, context):
    module_name, function_name = handler.rsplit(".", 1)
    try:
        module = importlib.import_module(module_name.replace("/", "."))
        value = getattr(module, function_name)(event, context)
    except Exception as error:
        traceback.print_exc()
        return {"ok": False, "error_type": type(error).__name__,
                "error_message": str(error), "traceback": traceback.format_exc()}
    try:
        json.dumps(value)
    except (TypeError, ValueError) as error:
        return {"ok": False, "error_type": "Runtime.MarshalError",
                "error_message": "Unable to marshal response: %s" % error}
    return {"ok": True, "value": value}


def peak_rss_kb():
    """This process's peak resident memory in KiB.

    Linux keeps ru_maxrss across exec, so it would report the parent's peak when
    that was larger; VmHWM belongs to this program alone.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main(spec_path):
    with open(spec_path) as f:
        spec = json.load(f)
    sys.dont_write_bytecode = True
    sys.stdout.reconfigure(line_buffering=True)
    sys.path.insert(0, spec["task_root"])
    sys.path.append(spec["runtime_dir"])
    os.chdir(spec["task_root"])
    with open(spec["event_path"]) as f:
        event = json.load(f)
    context = LambdaContext(spec)
    configure_logging(context.aws_request_id)
    print("START RequestId: %s Version: $LATEST" % context.aws_request_id)
    result = invoke(spec["handler"], event, context)
    print("END RequestId: %s" % context.aws_request_id)
    result["max_rss_kb"] = peak_rss_kb()
    with open(spec["result_path"] + ".part", "w") as f:
        json.dump(result, f)
    os.replace(spec["result_path"] + ".part", spec["result_path"])


main(sys.argv[1])
'''


class LambdaRunnerError(Exception):
    """The archive could not be run at all (bad handler string, missing runtime package)."""


@dataclasses.dataclass
class InvocationResult:
    """What one invocation returned, Lambda-style.

    ``error_type`` is the exception's class name (``ModuleNotFoundError``,
    ``ValueError``...), ``"Timeout"`` when the deadline passed,
    ``"Runtime.MarshalError"`` when the return value is not JSON, and
    ``"Runtime.ExitError"`` when the process ended without a result.
    ``duration_s`` is wall time including interpreter start (a cold start);
    ``max_rss_kb`` is the child's peak resident memory (None if it did not finish).
    """

    ok: bool
    value: Any = None
    error_type: Optional[str] = None
    error_message: Optional[str] = None
    traceback: Optional[str] = None
    logs: str = ""
    duration_s: float = 0.0
    max_rss_kb: Optional[int] = None
    exit_code: Optional[int] = None


def run_archive(archive_bytes, handler, event, env, timeout=120, *,
                function_name=DEFAULT_FUNCTION_NAME, memory_mb=DEFAULT_MEMORY_MB):
    """Unzip ``archive_bytes`` and call ``handler`` ("module.function") with ``event``.

    ``env`` is the child's whole environment (e.g. ``LocalAws.env()``); the reserved
    Lambda variables (``LAMBDA_TASK_ROOT``, ``AWS_LAMBDA_FUNCTION_NAME``, ``AWS_REGION``...)
    are added to it. After ``timeout`` seconds the process is killed and the result
    has ``error_type == "Timeout"``.
    """
    _check_handler(handler)
    with tempfile.TemporaryDirectory(prefix="broom-lambda-") as root:
        paths = _prepare(root, archive_bytes, event)
        spec = _invocation_spec(paths, handler, event, env, timeout, function_name, memory_mb)
        with open(paths["spec"], "w") as f:
            json.dump(spec, f)
        child_env = _lambda_env(env, paths, handler, function_name, memory_mb)
        log.debug("invoking %s from %s", handler, paths["task_root"])
        result = _run_child(paths, child_env, timeout)
    log.debug("%s finished in %.2fs: ok=%s error_type=%s",
              handler, result.duration_s, result.ok, result.error_type)
    return result


def eventbridge_envelope(record, account=None, region=None):
    """``c7n_broom.events.envelope`` for one delivery: a fresh event id, as EventBridge
    gives each event, and a ValueError for a record that lacks what the envelope is
    made of (a test's mistake, which the handler would refuse as untrusted).

    ``account`` and ``region`` default to the record's ``recipientAccountId`` and
    ``awsRegion``.
    """
    missing = [key for key in ("eventSource", "eventTime") if not record.get(key)]
    if not account and not record.get("recipientAccountId"):
        missing.append("recipientAccountId (or pass account=)")
    if not region and not record.get("awsRegion"):
        missing.append("awsRegion (or pass region=)")
    if missing:
        raise ValueError(
            "not a CloudTrail API call record, it lacks: %s" % ", ".join(missing))
    return events.envelope(record, account, region, event_id=str(uuid.uuid4()))


def archive_packages(archive_bytes):
    """Sorted names of the top-level packages (folders holding ``.py`` files) in a zip."""
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as archive:
        names = archive.namelist()
    return sorted({name.split("/", 1)[0] for name in names
                   if "/" in name and name.endswith(".py")})


def _check_handler(handler):
    module_name, _, function_name = handler.rpartition(".")
    if not module_name or not function_name:
        raise LambdaRunnerError(
            "handler %r is not of the form 'module.function' "
            "(e.g. custodian_policy.run)" % handler)


def _prepare(root, archive_bytes, event):
    """Lay out ``root``: the unzipped archive, runtime package links, tmp, event, bootstrap."""
    paths = {
        "task_root": os.path.join(root, "task"),
        "runtime_dir": os.path.join(root, "runtime"),
        "tmp": os.path.join(root, "tmp"),
        "bootstrap": os.path.join(root, "bootstrap.py"),
        "event_path": os.path.join(root, "event.json"),
        "spec": os.path.join(root, "spec.json"),
        "result_path": os.path.join(root, "result.json"),
        "logs": os.path.join(root, "logs.txt"),
    }
    for folder in ("task_root", "runtime_dir", "tmp"):
        os.mkdir(paths[folder])
    with zipfile.ZipFile(io.BytesIO(archive_bytes)) as archive:
        archive.extractall(paths["task_root"])
    for source in _runtime_package_paths():
        os.symlink(source, os.path.join(paths["runtime_dir"], os.path.basename(source)))
    with open(paths["bootstrap"], "w") as f:
        f.write(_BOOTSTRAP)
    with open(paths["event_path"], "w") as f:
        json.dump(event, f)
    return paths


@functools.lru_cache(maxsize=None)
def _runtime_package_paths():
    """Where this environment holds each package of :data:`RUNTIME_PACKAGES`."""
    locations = []
    for name in RUNTIME_PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None:
            raise LambdaRunnerError(
                "%s is not installed; the Lambda runtime provides it, so install it "
                "here to run Lambda archives locally" % name)
        if spec.submodule_search_locations:
            locations.append(list(spec.submodule_search_locations)[0])
        else:
            locations.append(spec.origin)
    return tuple(locations)


def _invocation_spec(paths, handler, event, env, timeout, function_name, memory_mb):
    region = _region(env) or "us-east-1"
    account = event.get("account") if isinstance(event, dict) else None
    return {
        "task_root": paths["task_root"],
        "runtime_dir": paths["runtime_dir"],
        "event_path": paths["event_path"],
        "result_path": paths["result_path"],
        "handler": handler,
        "function_name": function_name,
        "function_arn": "arn:aws:lambda:%s:%s:function:%s" % (
            region, account or _DEFAULT_ACCOUNT, function_name),
        "memory_mb": memory_mb,
        "request_id": str(uuid.uuid4()),
        "deadline": time.time() + timeout,
    }


def _region(env):
    return env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")


def _lambda_env(env, paths, handler, function_name, memory_mb):
    """``env`` plus the variables Lambda reserves and sets itself."""
    child_env = dict(env)
    child_env.update({
        "LAMBDA_TASK_ROOT": paths["task_root"],
        "LAMBDA_RUNTIME_DIR": paths["runtime_dir"],
        "_HANDLER": handler,
        "AWS_LAMBDA_FUNCTION_NAME": function_name,
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
        "AWS_EXECUTION_ENV": "AWS_Lambda_python%d.%d" % sys.version_info[:2],
        "TMPDIR": paths["tmp"],
    })
    if _region(env):
        child_env["AWS_REGION"] = _region(env)
    return child_env


def _run_child(paths, child_env, timeout):
    """Run the bootstrap, kill it at ``timeout``, and read what it left behind."""
    command = [sys.executable, "-I", "-S", paths["bootstrap"], paths["spec"]]
    started = time.monotonic()
    with open(paths["logs"], "wb") as logs:
        child = subprocess.Popen(
            command, cwd=paths["task_root"], env=child_env, stdin=subprocess.DEVNULL,
            stdout=logs, stderr=subprocess.STDOUT, start_new_session=True)
        timed_out = False
        try:
            child.wait(timeout)
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            # Also on KeyboardInterrupt: the child runs in its own session, so
            # nothing else would stop it.
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
    exit_code = child.returncode
    duration = time.monotonic() - started
    with open(paths["logs"], errors="replace") as f:
        output = f.read()
    if timed_out:
        return InvocationResult(
            ok=False, error_type="Timeout",
            error_message="Task timed out after %.2f seconds" % timeout,
            logs=output, duration_s=duration, exit_code=exit_code)
    return _read_result(paths["result_path"], output, duration, exit_code)


def _read_result(result_path, output, duration, exit_code):
    if not os.path.exists(result_path):
        return InvocationResult(
            ok=False, error_type="Runtime.ExitError",
            error_message="the process exited with status %d before returning a result"
            % exit_code, logs=output, duration_s=duration, exit_code=exit_code)
    with open(result_path) as f:
        result = json.load(f)
    return InvocationResult(logs=output, duration_s=duration, exit_code=exit_code, **result)
