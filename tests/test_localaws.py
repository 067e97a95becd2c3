"""Tests for c7n_broom.localaws: moto's server as the local AWS."""
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from c7n_broom.localaws import (
    DEFAULT_ACCOUNT, LocalAws, LocalAwsError, create_lambda_role)

REPO = Path(__file__).parent.parent
IMAGE = "ami-12345678"  # moto does not check image ids; describe_images is slow
OTHER_ACCOUNT = "111111111111"


@pytest.fixture(scope="module")
def local_aws():
    """One moto server for the module (starting one takes about half a second)."""
    with LocalAws() as aws:
        yield aws


@pytest.fixture(autouse=True)
def fresh_state(local_aws):
    local_aws.reset()


def launch(client):
    instances = client.run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1)["Instances"]
    return instances[0]["InstanceId"]


def instance_ids(client):
    return [instance["InstanceId"]
            for reservation in client.describe_instances()["Reservations"]
            for instance in reservation["Instances"]]


def test_server_on_a_free_port_serves_ec2_and_iam(local_aws):
    ec2 = local_aws.client("ec2")
    instance_id = launch(ec2)

    assert local_aws.port > 0
    assert local_aws.endpoint_url == "http://127.0.0.1:%d" % local_aws.port
    assert instance_ids(ec2) == [instance_id]
    assert create_lambda_role(local_aws) == "arn:aws:iam::%s:role/broom-lambda" % DEFAULT_ACCOUNT
    assert local_aws.client("iam").get_role(RoleName="broom-lambda")["Role"][
        "AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
            "Service": "lambda.amazonaws.com"}


def test_create_lambda_role_is_idempotent(local_aws):
    first = create_lambda_role(local_aws, name="broom-exec")
    assert create_lambda_role(local_aws, name="broom-exec") == first


def test_create_lambda_role_in_another_account(local_aws):
    arn = create_lambda_role(local_aws, account=OTHER_ACCOUNT)
    assert arn == "arn:aws:iam::%s:role/broom-lambda" % OTHER_ACCOUNT


def test_client_for_another_account_sees_only_that_account(local_aws):
    other = local_aws.client("ec2", account=OTHER_ACCOUNT)
    instance_id = launch(other)

    assert instance_ids(other) == [instance_id]
    assert instance_ids(local_aws.client("ec2")) == []
    assert local_aws.client("sts", account=OTHER_ACCOUNT).get_caller_identity()[
        "Account"] == OTHER_ACCOUNT


def test_env_lets_a_subprocess_reach_the_server(local_aws, monkeypatch):
    # Settings in the caller's environment that would otherwise send boto3 elsewhere.
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    monkeypatch.setenv("AWS_ENDPOINT_URL_EC2", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true")
    instance_id = launch(local_aws.client("ec2", region="eu-west-1"))
    script = (
        "import boto3, json\n"
        "ec2 = boto3.client('ec2')\n"
        "ids = [i['InstanceId'] for r in ec2.describe_instances()['Reservations']"
        " for i in r['Instances']]\n"
        "print(json.dumps({'region': ec2.meta.region_name, 'ids': ids}))\n")

    completed = subprocess.run(
        [sys.executable, "-c", script], env=local_aws.env(region="eu-west-1"),
        capture_output=True, text=True, timeout=60)

    assert completed.returncode == 0, completed.stderr
    assert json.loads(completed.stdout) == {"region": "eu-west-1", "ids": [instance_id]}


def test_env_holds_test_credentials_and_drops_profiles(local_aws, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "prod")
    monkeypatch.setenv("C7N_USE_STS_REGIONAL", "yes")
    monkeypatch.setenv("BROOM_UNRELATED", "kept")

    env = local_aws.env()

    assert env["AWS_ENDPOINT_URL"] == local_aws.endpoint_url
    assert env["AWS_ACCESS_KEY_ID"] == env["AWS_SECRET_ACCESS_KEY"] == "testing"
    assert env["AWS_DEFAULT_REGION"] == env["AWS_REGION"] == "us-east-1"
    assert "AWS_PROFILE" not in env
    assert "C7N_USE_STS_REGIONAL" not in env
    assert env["BROOM_UNRELATED"] == "kept"
    assert "[default]" in Path(env["AWS_CONFIG_FILE"]).read_text()


def test_session_clients_reach_the_server_whatever_the_profile(local_aws, monkeypatch):
    monkeypatch.setenv("AWS_PROFILE", "no-such-profile")
    instance_id = launch(local_aws.client("ec2"))

    ec2 = local_aws.session().client("ec2")

    assert instance_ids(ec2) == [instance_id]


def test_requested_port_in_use_raises_naming_the_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(LocalAwsError, match=r"127\.0\.0\.1:%d.*another port" % port):
            LocalAws(port=port).start()


def test_reset_forgets_every_resource(local_aws):
    ec2 = local_aws.client("ec2")
    launch(ec2)
    create_lambda_role(local_aws)

    local_aws.reset()

    assert instance_ids(ec2) == []
    assert local_aws.client("iam").list_roles()["Roles"] == []


def test_stop_frees_the_port_for_a_new_server():
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
    script = "import sys, c7n_broom.localaws; print('moto' in sys.modules)"
    completed = subprocess.run(
        [sys.executable, "-c", script], env={"PYTHONPATH": str(REPO), "PATH": ""},
        capture_output=True, text=True, timeout=60)
    assert completed.returncode == 0, completed.stderr
    assert completed.stdout.strip() == "False"
