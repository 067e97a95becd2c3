"""``source: broom-describe``: one unknown instance id no longer hides the others.

c7n resolves a CloudTrail event's instance ids with one DescribeInstances call. When
any id is unknown (just launched and not visible yet, or already gone) EC2 fails the
whole call with ``InvalidInstanceID.NotFound``, and c7n logs "event ids not resolved"
and drops every instance of the event (upstream c7n #10909 and friends). This source
keeps c7n's describe, and on that error looks the ids up with an ``instance-id``
filter instead, which EC2 answers with the instances it knows and no error (200 ids a
call, EC2's limit on filter values). It asks again for the ids EC2 did not know, in a
few rounds with short waits (EC2 is eventually consistent right after launch), before
giving up on them alone. The waits are per round, not per id: however many unknown
ids an event holds, they add up to 7 s, and 1,000 ids take about 20 calls.
"""
import logging
import time

from botocore.exceptions import ClientError
from c7n.exceptions import PolicyValidationError
from c7n.query import sources
from c7n.resources.ec2 import EC2, DescribeEC2
from c7n.utils import chunks

from c7n_broom import invocation
from c7n_broom.events import INSTANCE_ID
from c7n_broom.instances import MALFORMED, UNKNOWN_ID_ERRORS

log = logging.getLogger("custodian.broom.source")

NAME = "broom-describe"
RETRY_DELAYS = (1, 2, 4)  # seconds before each new round for ids EC2 does not know yet
FRESH_SECONDS = 300  # an event older than this names no instance EC2 has yet to show
FILTER_VALUES = 200  # EC2 refuses more values in one call (FilterLimitExceeded)


class ResilientDescribeEC2(DescribeEC2):
    """c7n's EC2 describe source; one unknown instance id no longer hides the others."""

    sleep = staticmethod(time.sleep)
    #: Waits before each new round; ``for_event_age`` drops them for old events.
    retry_delays = RETRY_DELAYS

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
            log.warning("DescribeInstances refused %d ids (%s): looking them up by filter",
                        len(ids), e.response["Error"]["Code"])
        resolved, waiting = [], ids
        for delay in tuple(self.retry_delays) + (None,):
            found = self.look_up(waiting)
            resolved.extend(found)
            seen = {r["InstanceId"] for r in found}
            unknown = [i for i in waiting if i not in seen]
            malformed = [i for i in unknown if not INSTANCE_ID.fullmatch(i)]
            if malformed:  # EC2 will never know these: skipped now, never retried
                log.warning("instances skipped, %s: %s", MALFORMED, ", ".join(malformed))
                unknown = [i for i in unknown if i not in malformed]
            if not unknown:
                break
            if delay is None or not invocation.affords(delay):
                log.warning("instances skipped, EC2 does not know them: %s",
                            ", ".join(unknown))
                invocation.saw_unknown(unknown)  # Broom's handler retries or reports them
                break
            self.sleep(delay)
            waiting = unknown
        return resolved

    def for_event_age(self, age):
        """Retry unknown ids only for an event at most FRESH_SECONDS old (or of
        unknown age): EC2's eventual consistency matters just after launch; an id an
        older event names and EC2 does not know is gone, and waiting will not help."""
        self.retry_delays = RETRY_DELAYS if age is None or age <= FRESH_SECONDS else ()
        return self

    def look_up(self, ids):
        """The instances EC2 knows among ``ids``, with no error for the others.

        An ``instance-id`` filter, 200 values a call, paginated and retried on
        throttling by c7n's own query (as c7n's describe is); instances come back as
        ``super().get_resources`` returns them (flattened, with ``ReservationId``).
        """
        found = []
        for batch in chunks(ids, FILTER_VALUES):
            found.extend(self.resources({"Filters": [{"Name": "instance-id",
                                                      "Values": batch}]}))
        return found


def register():
    """Make ``source: broom-describe`` valid (the schema lists c7n's global sources)."""
    if sources.get(NAME) is not ResilientDescribeEC2:
        sources.register(NAME, ResilientDescribeEC2)
