"""``pytest -n auto``: each xdist worker runs its tests against a moto server of its
own, so one worker emptying its server (``fresh_aws``) never loses another's state."""
import os

from moto.core import DEFAULT_ACCOUNT_ID
from moto.sns.models import sns_backends

from support import REGION


def test_the_session_server_serves_this_process_alone(fresh_aws):
    """What a test creates through the server is in this process's moto backends: the
    server is this worker's (a thread of its process, on a port of its own)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = "parallel-%s" % worker
    arn = fresh_aws.client("sns").create_topic(Name=name)["TopicArn"]

    assert arn in sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics
    assert fresh_aws.endpoint_url == "http://127.0.0.1:%d" % fresh_aws.port
    assert fresh_aws.port > 0

    fresh_aws.reset()
    assert arn not in sns_backends[DEFAULT_ACCOUNT_ID][REGION].topics
