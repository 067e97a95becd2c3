"""End to end: an invocation of the published archive killed mid-way (between the
termination and the report) is finished by the next one, on moto's server.

The stock ``custodian run`` deploys policies/ec2-tags.yml; the archive it published
runs the way Lambda runs it (broom.local.lambda_runner). SNS is pointed at a loopback
socket that accepts and never answers, so the first invocation hangs in its publish
until the runner kills it at the function's timeout, as Lambda does: no ``finally``
runs. The second invocation (Lambda's retry, with the same event) must report the
instance the first one terminated.
"""
import socket
import threading

import pytest

from broom.local.aws import create_lambda_role, create_state_table
from broom.local.deploy import custodian_run, execution_env, published
from broom.local.lambda_runner import eventbridge_envelope, run_archive

from e2e_support import function_name, policy_data, run_instances_record, server_inbox
from support import POLICIES, REGION, launch, states

POLICY_FILE = POLICIES / "ec2-tags.yml"
FUNCTION = function_name(policy_data(POLICY_FILE.name))
KILLED_AFTER = 25  # seconds: the first invocation's timeout


@pytest.fixture(scope="module")
def deployed(local_aws, tmp_path_factory):
    local_aws.reset()
    create_lambda_role(local_aws)
    create_state_table(local_aws.client("dynamodb", region=REGION))
    custodian_run(POLICY_FILE, tmp_path_factory.mktemp("deploy"), [REGION], local_aws.env())
    return local_aws


@pytest.fixture
def black_hole():
    """A loopback endpoint that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held, stop = [], threading.Event()

    def accept():
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue
    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.getsockname()[1]
    stop.set()
    thread.join()
    for connection in held:
        connection.close()
    server.close()


def test_an_invocation_killed_before_its_report_is_finished_by_the_retry(deployed,
                                                                         black_hole):
    inbox = server_inbox(deployed)
    ec2 = deployed.client("ec2")
    [instance] = launch(tags={"Code": "NOPE"}, ec2=ec2)
    config, archive = published(deployed, FUNCTION, REGION)
    event = eventbridge_envelope(run_instances_record([instance]))
    env = execution_env(deployed, config, REGION)

    killed = run_archive(archive, config["Handler"], event,
                         env=dict(env, AWS_ENDPOINT_URL_SNS=black_hole),
                         timeout=KILLED_AFTER, function_name=FUNCTION)

    assert killed.error_type == "Timeout", killed.logs[-4000:]
    assert states([instance], ec2) == {instance: "terminated"}
    assert inbox.emails() == []
    owed = deployed.client("dynamodb").scan(TableName="broom-state")["Items"]
    assert [item["reports"]["SS"] for item in owed if "reports" in item] == [[instance]]

    retried = run_archive(archive, config["Handler"], event, env=env,
                          timeout=config["Timeout"], function_name=FUNCTION)

    assert retried.ok, retried.logs[-4000:]
    [message] = inbox.emails()
    assert message["MessageAttributes"]["broom.instance_id"]["Value"] == instance
    assert message["MessageAttributes"]["broom.outcome"]["Value"] == "terminated"
    owed = deployed.client("dynamodb").scan(TableName="broom-state")["Items"]
    assert not [item for item in owed if "reports" in item]
