"""Deploy a policy with the stock ``custodian`` command and run what it published.

Shared by ``broom demo`` and the end-to-end tests. The local AWS is moto's server
(:class:`broom.local.aws.LocalAws`); moto stores the Lambda function but cannot
invoke it, so :func:`invoke_deployed` takes the exact archive Custodian uploaded
(checked against the function's ``CodeSha256``) and runs its handler the way Lambda
would (:func:`broom.local.lambda_runner.run_archive`).
"""
import base64
import hashlib
import logging
import subprocess
import sys
from pathlib import Path

from broom.local.lambda_runner import eventbridge_envelope, run_archive

log = logging.getLogger("custodian.broom.localdeploy")

BIN = Path(sys.executable).parent


class DeployError(RuntimeError):
    """A stock command failed, or what it deployed is not what was expected."""


def stock_command(name, args, env, cwd=None, timeout=600):
    """Run a console script installed beside this interpreter (custodian, c7n-org).

    Returns the CompletedProcess; raises DeployError with the command's output when
    it exits non-zero.
    """
    command = [str(BIN / name)] + [str(a) for a in args]
    log.debug("running %s", " ".join(command))
    result = subprocess.run(command, env=env, cwd=cwd, capture_output=True, text=True,
                            timeout=timeout)
    if result.returncode != 0:
        raise DeployError("%s exited with %d:\n%s%s" % (
            " ".join(command[:2]), result.returncode, result.stdout, result.stderr))
    return result


def custodian_run(policy_path, output_dir, regions, env, extra=()):
    """``custodian run -s OUT --cache-period 0 POLICY -r R...`` (provisions Lambda modes)."""
    args = ["run", "-s", output_dir, "--cache-period", "0", *extra, policy_path]
    for region in regions:
        args += ["-r", region]
    return stock_command("custodian", args, env)


def code_sha256(archive):
    """Lambda's CodeSha256: base64 of the archive's SHA-256 digest."""
    return base64.b64encode(hashlib.sha256(archive).digest()).decode("ascii")


def published(aws, function_name, region, account=None):
    """The function's configuration and the exact archive bytes published for it."""
    from broom.local.aws import DEFAULT_ACCOUNT

    account = account or DEFAULT_ACCOUNT
    config = aws.client("lambda", region=region, account=account).get_function(
        FunctionName=function_name)["Configuration"]
    archive = aws.published_archive(function_name, region=region, account=account)
    if code_sha256(archive) != config["CodeSha256"]:
        raise DeployError("archive bytes of %s do not match its CodeSha256" % function_name)
    return config, archive


def invoke_deployed(aws, function_name, record, region, account=None, timeout=None,
                    function_account=None, envelope=None):
    """Deliver a CloudTrail record to a deployed function, as EventBridge would.

    ``record`` is a bare CloudTrail record; it is wrapped in an "AWS API Call via
    CloudTrail" envelope for ``account``/``region``. The function is looked up in
    ``function_account`` (default: ``account``; a hub receiving a member's event is
    another account) and its handler runs with credentials of the function's
    execution role, as Lambda runs it. ``envelope`` overrides envelope fields (a
    forged ``source``, say). Returns the InvocationResult.
    """
    from broom.local.aws import DEFAULT_ACCOUNT

    account = account or DEFAULT_ACCOUNT
    function_account = function_account or account
    config, archive = published(aws, function_name, region, function_account)
    event = dict(eventbridge_envelope(record, account=account, region=region),
                 **(envelope or {}))
    return run_archive(
        archive, config["Handler"], event, env=execution_env(aws, config, region),
        timeout=timeout or config["Timeout"], function_name=function_name,
        memory_mb=config["MemorySize"])


def execution_env(aws, config, region):
    """``aws.env(region)`` with the credentials of the function's execution role.

    Lambda runs a handler as its ``Role``; in moto, assuming that role yields
    credentials that act in the role's account, so a function deployed into another
    account (c7n-org) acts there and not in the default account.
    """
    credentials = aws.client("sts", region=region).assume_role(
        RoleArn=config["Role"], RoleSessionName=config["FunctionName"][:64])["Credentials"]
    env = aws.env(region=region)
    env.update({
        "AWS_ACCESS_KEY_ID": credentials["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": credentials["SecretAccessKey"],
        "AWS_SESSION_TOKEN": credentials["SessionToken"],
    })
    return env
