"""Tests for broom.local.aws: moto's server as the local AWS.

Most use the session's server (the ``local_aws`` fixture of tests/conftest.py),
emptied before each test; the tests of starting and stopping a server start their own.
"""
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from broom.local.aws import DEFAULT_ACCOUNT, LocalAws, LocalAwsError, create_lambda_role

from support import REPO, launch

OTHER_ACCOUNT = "111111111111"


def instance_ids(client):
    return [instance["InstanceId"]
            for reservation in client.describe_instances()["Reservations"]
            for instance in reservation["Instances"]]


def test_server_on_a_free_port_serves_ec2_and_iam(fresh_aws):
    ec2 = fresh_aws.client("ec2")
    [instance_id] = launch(ec2=ec2)

    assert fresh_aws.port > 0
    assert fresh_aws.endpoint_url == "http://127.0.0.1:%d" % fresh_aws.port
    assert instance_ids(ec2) == [instance_id]
    assert create_lambda_role(fresh_aws) == "arn:aws:iam::%s:role/broom-lambda" % DEFAULT_ACCOUNT
    assert fresh_aws.client("iam").get_role(RoleName="broom-lambda")["Role"][
        "AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
            "Service": "lambda.amazonaws.com"}


def test_create_lambda_role_is_idempotent(fresh_aws):
    first = create_lambda_role(fresh_aws, name="broom-exec")
    assert create_lambda_role(fresh_aws, name="broom-exec") == first


def test_create_lambda_role_in_another_account(fresh_aws):
    arn = create_lambda_role(fresh_aws, account=OTHER_ACCOUNT)
    assert arn == "arn:aws:iam::%s:role/broom-lambda" % OTHER_ACCOUNT


def test_client_for_another_account_sees_only_that_account(fresh_aws):
    other = fresh_aws.client("ec2", account=OTHER_ACCOUNT)
    [instance_id] = launch(ec2=other)

    assert instance_ids(other) == [instance_id]
    assert instance_ids(fresh_aws.client("ec2")) == []
    assert fresh_aws.client("sts", account=OTHER_ACCOUNT).get_caller_identity()[
        "Account"] == OTHER_ACCOUNT


def test_env_refuses_the_price_list_api_moto_does_not_serve(fresh_aws):
    script = (
        "import boto3, botocore.exceptions\n"
        "try:\n"
        "    boto3.client('pricing', region_name='us-east-1').get_products("
        "ServiceCode='AmazonEC2')\n"
        "except botocore.exceptions.EndpointConnectionError:\n"
        "    print('refused')\n")
    completed = subprocess.run([sys.executable, "-c", script], env=fresh_aws.env(),
                               capture_output=True, text=True, timeout=60)
    assert completed.stdout.strip() == "refused", completed.stderr


def test_env_lets_a_subprocess_reach_the_server(fresh_aws, monkeypatch):
    # Settings in the caller's environment that would otherwise send boto3 elsewhere.
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    [instance_id] = launch(ec2=fresh_aws.client("ec2", region="eu-west-1"))
    script = (
        "import boto3, json\n"
        "ec2 = boto3.client('ec2')\n"
        "ids = [i['InstanceId'] for r in ec2.describe_instances()['Reservations']"
        " for i in r['Instances']]\n"
        "print(json.dumps({'region': ec2.meta.region_name, 'ids': ids}))\n")

    completed = subprocess.run(
        [sys.executable, "-c", script], env=fresh_aws.env(region="eu-west-1"),
        capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"region": "eu-west-1", "ids": [instance_id]}


def test_env_holds_test_credentials_and_drops_profiles(fresh_aws, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "prod")
    monkeypatch.setenv("C7N_USE_STS_REGIONAL", "yes")
    monkeypatch.setenv("BROOM_UNRELATED", "kept")

    env = fresh_aws.env()

    assert env["AWS_ENDPOINT_URL"] == fresh_aws.endpoint_url
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "us-east-1"
    assert "AWS_PROFILE" not in env
    assert "C7N_USE_STS_REGIONAL" not in env
    assert env["BROOM_UNRELATED"] == "kept"
    assert "[default]" in Path(env["AWS_CONFIG_FILE"]).read_text()


def test_session_clients_reach_the_server_whatever_the_profile(fresh_aws, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    [instance_id] = launch(ec2=fresh_aws.client("ec2"))

    ec2 = fresh_aws.session().client("ec2")

    assert instance_ids(ec2) == [instance_id]


def test_requested_port_in_use_raises_naming_the_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LocalAwsError, match=r"127\.0\.0\.1:%d.*another port" % port):
            LocalAws(port=port).start()


def test_reset_forgets_every_resource(fresh_aws):
    ec2 = fresh_aws.client("ec2")
    launch(ec2=ec2)
    create_lambda_role(fresh_aws)

    fresh_aws.reset()

    assert instance_ids(ec2) == []
    assert fresh_aws.client("iam").list_roles()["Roles"] == []


def test_stop_frees_the_port_for_a_new_server():
    # Starting and stopping is what is tested: the only servers besides the session's.
    first = LocalAws().start()
    port = first.port
    first.stop()

    with LocalAws(port=port) as second:
        assert second.client("sts").get_caller_identity()["Account"] == DEFAULT_ACCOUNT


def test_stopped_server_has_no_endpoint():
    aws = LocalAws()
    with pytest.raises(LocalAwsError, match="start"):
        aws.env()


def test_missing_moto_raises_an_install_hint(monkeypatch):
    monkeypatch.setitem(sys.modules, "moto.server", None)  # makes the import fail
    with pytest.raises(LocalAwsError, match=r"pip install 'c7n-broom\[demo\]'"):
        LocalAws().start()


def test_importing_localaws_does_not_import_moto():
    script = "import sys, broom.local.aws; print('moto' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", script], env={"PYTHONPATH": str(REPO), "PATH": ""},
        capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"
