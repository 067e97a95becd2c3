"""``source: broom-describe``: resolve an event's instances one bad id at a time.

c7n resolves a CloudTrail event's instance ids with one DescribeInstances call. When
any id is unknown (just launched and not visible yet, or already gone) EC2 fails the
whole call with ``InvalidInstanceID.NotFound``, and c7n logs "event ids not resolved"
and drops every instance of the event (upstream c7n #10909 and friends). This source
keeps c7n's describe, and on that error asks for the ids one by one, retrying an
unknown id briefly (EC2 is eventually consistent right after launch) before giving up
on it alone.
"""
import logging
import time

from botocore.exceptions import ClientError
from c7n.exceptions import PolicyValidationError
from c7n.query import sources
from c7n.resources.ec2 import EC2, DescribeEC2

log = logging.getLogger("custodian.broom.source")

NAME = "broom-describe"
UNKNOWN_ID_ERRORS = ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed")
RETRY_DELAYS = (1, 2, 4)  # seconds before asking again for an id EC2 does not know yet


class ResilientDescribeEC2(DescribeEC2):
    """c7n's EC2 describe source; one unknown instance id no longer hides the others."""

    sleep = staticmethod(time.sleep)

    def __init__(self, manager):
        if not isinstance(manager, EC2):
            raise PolicyValidationError(
                "policy:%s: 'source: %s' works only with resource aws.ec2" % (
                    manager.data.get("name", "?"), NAME))
        super().__init__(manager)

    def get_resources(self, ids, cache=True):
        try:
            return super().get_resources(ids, cache)
        except ClientError as e:
            if e.response["Error"]["Code"] not in UNKNOWN_ID_ERRORS:
                raise
            log.warning("DescribeInstances refused %d ids (%s): resolving them one by one",
                        len(ids), e.response["Error"]["Code"])
        resolved = []
        for instance_id in ids:
            resolved.extend(self.get_one(instance_id))
        return resolved

    def get_one(self, instance_id):
        """[instance] or [] when EC2 still does not know the id after the retries."""
        for delay in RETRY_DELAYS + (None,):
            try:
                return super().get_resources([instance_id])
            except ClientError as e:
                code = e.response["Error"]["Code"]
                if code not in UNKNOWN_ID_ERRORS:
                    raise
                if code == "InvalidInstanceID.Malformed" or delay is None:
                    log.warning("instance %s skipped: %s", instance_id, code)
                    return []
            self.sleep(delay)


def register():
    """Make ``source: broom-describe`` valid (the schema lists c7n's global sources)."""
    if sources.get(NAME) is not ResilientDescribeEC2:
        sources.register(NAME, ResilientDescribeEC2)
