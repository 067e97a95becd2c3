"""A local AWS for demos and end-to-end tests: moto's standalone server.

``broom demo`` and the end-to-end tests run stock ``custodian`` / ``c7n-org`` against
moto's server on a loopback port instead of a real account::

    with LocalAws() as aws:
        role_arn = create_lambda_role(aws)
        subprocess.run(["custodian", "run", "-s", "out", "policies/ec2-tags.yml",
                        "--cache-period", "0"], env=aws.env(), check=True)
        aws.client("ec2").describe_instances()

moto is an optional dependency (``pip install 'c7n-broom[demo]'``): it is imported
only when a server starts, never when this module is imported.
"""
import functools
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import urllib.request

import boto3
import botocore.loaders
import botocore.session

log = logging.getLogger("custodian.broom.localaws")

#: The account moto acts as for the ``testing`` credentials.
DEFAULT_ACCOUNT = "123456789012"
DEFAULT_REGION = "us-east-1"
LOOPBACK = "127.0.0.1"
CREDENTIALS = {
    "aws_access_key_id": "testing",
    "aws_secret_access_key": "testing",
    "aws_session_token": "testing",
}

# Environment variables that would send a subprocess elsewhere (a real profile,
# another endpoint, real credentials) or that the design says not to set.
_INHERITED_AWS_VARS_TO_DROP = (
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_SECURITY_TOKEN",
    "AWS_ROLE_ARN",
    "AWS_ROLE_SESSION_NAME",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
    "C7N_USE_STS_REGIONAL",
)

LAMBDA_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{
        "Effect": "Allow",
        "Principal": {"Service": "lambda.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }],
}

_START_TIMEOUT_S = 30


class LocalAwsError(Exception):
    """The local AWS could not be started or reached."""


class LocalAws:
    """moto's server on a loopback port, plus what clients need to reach it.

    ``port=0`` picks a free port; read it back from :attr:`port` or
    :attr:`endpoint_url`. Use as a context manager, or call :meth:`start` and
    :meth:`stop`.
    """

    def __init__(self, port=0, region=DEFAULT_REGION):
        self.requested_port = port
        self.region = region
        self.port = None
        self._server = None
        self._config_dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    def __repr__(self):
        state = self.endpoint_url if self._server else "stopped"
        return "<LocalAws %s>" % state

    @property
    def endpoint_url(self):
        """``http://127.0.0.1:PORT`` of the running server."""
        self._require_running()
        return "http://%s:%d" % (LOOPBACK, self.port)

    def _require_running(self):
        if self._server is None:
            raise LocalAwsError("LocalAws is not running: call start() first")

    def start(self):
        """Start the server in a daemon thread and return ``self``."""
        if self._server is not None:
            return self
        server_class = _import_moto_server()
        if self.requested_port:
            _check_port_free(self.requested_port)
        server = server_class(ip_address=LOOPBACK, port=self.requested_port, verbose=False)
        _start_with_timeout(server, self.requested_port)
        self._server = server
        self.port = server.get_host_and_port()[1]
        self._config_dir = _write_aws_config(self.endpoint_url, self.region)
        log.info("local AWS (moto) listening on %s", self.endpoint_url)
        return self

    def stop(self):
        """Stop the server, free its port and remove its config files."""
        if self._server is None:
            return
        self._server.stop()
        self._server = None
        shutil.rmtree(self._config_dir, ignore_errors=True)
        self._config_dir = None
        log.info("local AWS on port %d stopped", self.port)

    def reset(self):
        """Forget every resource in every account and region (``POST /moto-api/reset``).

        moto's backends are global to the process: this also clears the state of any
        in-process ``mock_aws`` in the same interpreter.
        """
        request = urllib.request.Request(
            self.endpoint_url + "/moto-api/reset", data=b"", method="POST")
        no_proxy = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with no_proxy.open(request, timeout=30) as response:
            response.read()

    def published_archive(self, function_name, region=None, account=DEFAULT_ACCOUNT):
        """The exact zip bytes last uploaded for a Lambda function.

        moto's API does not hand the code back, but its server runs in this process:
        read the bytes from its Lambda backend. Compare their SHA-256 with the
        function's ``CodeSha256`` to prove they are what was published.
        """
        from moto.awslambda.models import lambda_backends

        self._require_running()
        backend = lambda_backends[account][region or self.region]
        return backend.get_function(function_name).code_bytes

    def env(self, region=None):
        """Environment for a subprocess (``custodian``, ``c7n-org``) to use this server.

        A copy of ``os.environ`` with test credentials, ``AWS_ENDPOINT_URL`` and the
        region set, the user's profiles, config files, per-service endpoints and
        ambient credential sources removed. moto serves no Price List API (it answers
        with an HTTP 500 and prints a traceback): ``pricing`` goes to a loopback port
        nothing listens on, so a report's price lookup fails at once, as without
        network access, and the report says "cost unknown".
        """
        self._require_running()
        region = region or self.region
        env = {key: value for key, value in os.environ.items()
               if key not in _INHERITED_AWS_VARS_TO_DROP
               and not key.startswith("AWS_ENDPOINT_URL_")}
        env.update({
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_ACCESS_KEY_ID": CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": CREDENTIALS["aws_secret_access_key"],
            "AWS_SESSION_TOKEN": CREDENTIALS["aws_session_token"],
            "AWS_DEFAULT_REGION": region,
            "AWS_REGION": region,
            "AWS_CONFIG_FILE": os.path.join(self._config_dir, "config"),
            "AWS_SHARED_CREDENTIALS_FILE": os.path.join(self._config_dir, "credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ENDPOINT_URL_PRICING": UNSERVED,
        })
        for name in ("NO_PROXY", "no_proxy"):  # never send loopback calls to a proxy
            env[name] = ",".join(filter(None, (env.get(name), LOOPBACK)))
        return env

    def session(self, region=None):
        """A boto3 Session whose clients reach this server.

        Its profile comes from a config file naming this server's endpoint, so
        ``session.client("ec2")`` needs no ``endpoint_url`` (an ``AWS_ENDPOINT_URL_*``
        variable in this process would still win: :meth:`client` is immune to that).
        """
        self._require_running()
        botocore_session = _isolated_botocore_session(self._config_dir)
        return boto3.Session(
            botocore_session=botocore_session, region_name=region or self.region,
            **CREDENTIALS)

    def client(self, service, region=None, account=None):
        """A boto3 client for ``service`` on this server.

        ``account`` (12 digits) gives a client acting as that account, through
        ``sts:AssumeRole`` as moto maps assumed credentials to their account.
        """
        session = self.session(region)
        if account and account != DEFAULT_ACCOUNT:
            session = self._assumed_session(session, account)
        return session.client(service, endpoint_url=self.endpoint_url)

    def _assumed_session(self, session, account):
        sts = session.client("sts", endpoint_url=self.endpoint_url)
        credentials = sts.assume_role(
            RoleArn="arn:aws:iam::%s:role/broom-localaws" % account,
            RoleSessionName="broom-localaws")["Credentials"]
        return boto3.Session(
            botocore_session=_isolated_botocore_session(self._config_dir),
            region_name=session.region_name,
            aws_access_key_id=credentials["AccessKeyId"],
            aws_secret_access_key=credentials["SecretAccessKey"],
            aws_session_token=credentials["SessionToken"])


def create_lambda_role(aws, name="broom-lambda", account=None):
    """Create the Lambda execution role policies name in ``mode.role``; return its ARN.

    Idempotent: an existing role of that name is returned as it is.
    """
    iam = aws.client("iam", account=account)
    try:
        role = iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(LAMBDA_TRUST_POLICY),
            Description="Execution role for Broom's Custodian Lambda functions")["Role"]
    except iam.exceptions.EntityAlreadyExistsException:
        role = iam.get_role(RoleName=name)["Role"]
    return role["Arn"]


def create_state_table(dynamodb, name="broom-state"):
    """Create Broom's state table as templates/account.yml does (key ``pk``, TTL on
    ``expires``, on-demand, only broom-lambda writes items) with a DynamoDB client;
    return its name."""
    from broom import guards

    arn = dynamodb.create_table(
        TableName=name, BillingMode="PAY_PER_REQUEST",
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
    )["TableDescription"]["TableArn"]
    dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
        "Enabled": True, "AttributeName": "expires"})
    partition, account = arn.split(":")[1], arn.split(":")[4]
    dynamodb.put_resource_policy(ResourceArn=arn, Policy=json.dumps(guards.table_policy(
        arn, [guards.role_arn("broom-lambda", account, partition)])))
    return name


def _import_moto_server():
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as error:
        raise LocalAwsError(
            "moto[server] is not installed: pip install 'c7n-broom[demo]'") from error
    # The server logs every request through werkzeug at INFO; keep demos readable.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    return ThreadedMotoServer


def _check_port_free(port):
    """Raise LocalAwsError if something already listens on the loopback ``port``."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    # werkzeug binds with SO_REUSEADDR: do the same so TIME_WAIT is not "in use".
    probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        probe.bind((LOOPBACK, port))
    except OSError as error:
        raise _port_in_use(port, error) from error
    finally:
        probe.close()


def _port_in_use(port, error):
    return LocalAwsError(
        "cannot listen on %s:%d (%s): stop whatever uses port %d, "
        "or pick another port (0 picks a free one)"
        % (LOOPBACK, port, error.strerror or error, port))


def _start_with_timeout(server, port):
    """Start ``server``; fail instead of hanging if its thread cannot bind.

    ThreadedMotoServer.start() waits forever when the bind in its thread fails
    (for instance when another process takes the port after our check).
    """
    starter = threading.Thread(target=server.start, daemon=True, name="broom-localaws-start")
    starter.start()
    starter.join(_START_TIMEOUT_S)
    if starter.is_alive():
        raise _port_in_use(port, OSError("server did not start in %ds" % _START_TIMEOUT_S))


def _write_aws_config(endpoint_url, region):
    """Write a shared config and credentials file pointing at the local server."""
    config_dir = tempfile.mkdtemp(prefix="broom-localaws-")
    with open(os.path.join(config_dir, "config"), "w") as config:
        config.write("[default]\nregion = %s\nendpoint_url = %s\n" % (region, endpoint_url))
    with open(os.path.join(config_dir, "credentials"), "w") as credentials:
        credentials.write(
            "[default]\n" + "".join("%s = %s\n" % item for item in CREDENTIALS.items()))
    return config_dir


def _isolated_botocore_session(config_dir):
    """A botocore session reading only our config files, whatever AWS_PROFILE says.

    Its service models come from one loader shared by every such session: a fresh
    session parses them again for each client (0.2-0.6 s for EC2), a shared one once.
    """
    session = botocore.session.Session()
    session.register_component("data_loader", _shared_loader())
    session.set_config_variable("config_file", os.path.join(config_dir, "config"))
    session.set_config_variable("credentials_file", os.path.join(config_dir, "credentials"))
    session.set_config_variable("profile", "default")
    return session


@functools.lru_cache(maxsize=None)
def _shared_loader():
    """The process-wide botocore data loader (models are read-only once loaded)."""
    return botocore.loaders.create_loader()


#: A loopback endpoint nothing listens on (the discard port): calls to it are refused.
UNSERVED = "http://127.0.0.1:9"


class TopicInbox:
    """An SNS topic with an SQS queue subscribed: what a subscriber receives.

    ``sns`` and ``sqs`` are boto3 clients (of a LocalAws, or under ``mock_aws``).
    Creating the topic is idempotent, so an inbox can join a topic already in use; it
    receives what is published after it subscribed.
    """

    def __init__(self, sns, sqs, topic_name="broom-reports"):
        self.sqs = sqs
        self.topic_arn = sns.create_topic(Name=topic_name)["TopicArn"]
        queue_name = "%s-inbox-%d" % (topic_name, len(
            sns.list_subscriptions_by_topic(TopicArn=self.topic_arn)["Subscriptions"]))
        self.queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        sns.subscribe(TopicArn=self.topic_arn, Protocol="sqs", Endpoint=queue_arn)

    def messages(self):
        """SNS notifications received since the last call, as SQS delivers them
        (``Subject``, ``Message``, ``MessageAttributes`` of ``{Type, Value}``)."""
        received = []
        while True:
            batch = self.sqs.receive_message(
                QueueUrl=self.queue_url, MaxNumberOfMessages=10).get("Messages", [])
            if not batch:
                return received
            for message in batch:
                received.append(json.loads(message["Body"]))
                self.sqs.delete_message(
                    QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])

    def emails(self):
        """The notifications received since the last call, as an e-mail subscriber
        reads them: a Broom report's ``Message`` is its e-mail text (the JSON
        document's ``text``; SQS receives the document), the document itself is under
        ``Document``. Other messages are left as they are."""
        read = []
        for notification in self.messages():
            document = report_document(notification.get("Message", ""))
            if document is not None:
                notification = dict(notification, Message=document["text"],
                                    Document=document)
            read.append(notification)
        return read


def report_document(message):
    """The Broom JSON document a subscriber received as ``message``, or None."""
    try:
        document = json.loads(message)
    except ValueError:
        return None
    if isinstance(document, dict) and str(document.get("schema", "")).startswith(
            "broom.report/"):
        return document
    return None


def create_dead_letter_queue(sqs, name="broom-dead-letters"):
    """Create the queue the policies' ``mode.dead_letter_config`` names, as
    templates/account.yml does, with an SQS client; return its ARN. Idempotent."""
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    return sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
