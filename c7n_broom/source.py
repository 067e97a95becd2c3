"""``source: broom-describe``: resolve an event's instances one bad id at a time.

c7n resolves a CloudTrail event's instance ids with one DescribeInstances call. When
any id is unknown (just launched and not visible yet, or already gone) EC2 fails the
whole call with ``InvalidInstanceID.NotFound``, and c7n logs "event ids not resolved"
and drops every instance of the event (upstream c7n #10909 and friends). This source
keeps c7n's describe, and on that error asks for the ids one by one, then asks again
for those EC2 did not know, in a few rounds with short waits (EC2 is eventually
consistent right after launch), before giving up on them alone. The waits are per
round, not per id: however many unknown ids an event holds, they add up to 7 s.
"""
import logging
import time

from botocore.exceptions import ClientError
from c7n.exceptions import PolicyValidationError
from c7n.query import sources
from c7n.resources.ec2 import EC2, DescribeEC2

log = logging.getLogger("custodian.broom.source")

NAME = "broom-describe"
NOT_FOUND = "InvalidInstanceID.NotFound"
UNKNOWN_ID_ERRORS = (NOT_FOUND, "InvalidInstanceID.Malformed")
RETRY_DELAYS = (1, 2, 4)  # seconds before each new round for ids EC2 does not know yet


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
        ids = list(dict.fromkeys(ids))  # an id named twice is one instance
        try:
            return super().get_resources(ids, cache)
        except ClientError as e:
            if e.response["Error"]["Code"] not in UNKNOWN_ID_ERRORS:
                raise
            log.warning("DescribeInstances refused %d ids (%s): resolving them one by one",
                        len(ids), e.response["Error"]["Code"])
        resolved, waiting = [], ids
        for delay in RETRY_DELAYS + (None,):
            unknown = []
            for instance_id in waiting:
                found = self.get_one(instance_id)
                if found is None:
                    unknown.append(instance_id)
                else:
                    resolved.extend(found)
            if not unknown:
                break
            if delay is None:
                log.warning("instances skipped, EC2 does not know them: %s",
                            ", ".join(unknown))
                break
            self.sleep(delay)
            waiting = unknown
        return resolved

    def get_one(self, instance_id):
        """[instance], [] for a malformed id, None while EC2 does not know the id."""
        try:
            return super().get_resources([instance_id])
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code == NOT_FOUND:
                return None
            if code in UNKNOWN_ID_ERRORS:
                log.warning("instance %s skipped: %s", instance_id, code)
                return []
            raise


def register():
    """Make ``source: broom-describe`` valid (the schema lists c7n's global sources)."""
    if sources.get(NAME) is not ResilientDescribeEC2:
        sources.register(NAME, ResilientDescribeEC2)
