"""What one Lambda invocation may spend, and what it leaves for its retry.

Lambda kills an invocation at its timeout: no ``finally`` runs, nothing is logged. So
every wait in Broom's handler (a back-off on throttling, a grace period) asks this
module first whether there is time for it, keeping ``MARGIN`` seconds to record what
is owed (``c7n_broom.owed``) before the end. Broom's handler calls ``start(context)``
once per invocation; without a context (``custodian run`` in pull mode, ``broom
replay``, tests) there is no deadline and only the attempt counts bound a retry.

It also collects what the invocation could not finish and must be retried for
(``retry_later``): Lambda retries only an invocation that raised, so Broom's handler
raises ``RetryLater`` after the policies ran, once everything else was done.
"""
import logging
import time

from botocore.exceptions import ClientError
from c7n.utils import backoff_delays

log = logging.getLogger("custodian.broom.invocation")

#: Seconds kept at the end of an invocation to record and settle what is owed.
MARGIN = 10
#: Throttling and transient service errors, as the AWS APIs Broom calls name them.
TRANSIENT = ("Throttling", "ThrottlingException", "Throttled", "RequestLimitExceeded",
             "TooManyRequestsException", "ProvisionedThroughputExceededException",
             "RequestThrottled", "InternalError", "InternalFailure", "InternalServerError",
             "InternalServerException", "ServiceUnavailable", "ServiceUnavailableException",
             "Unavailable", "KMSThrottlingException")


class RetryLater(RuntimeError):
    """The invocation left something owed that its retry finishes."""


class _State:
    deadline = None  # epoch seconds at which Lambda stops the invocation; None: no limit
    pending = []  # why the invocation must be retried
    unseen = {}  # {instance id: event key} of ids EC2 did not show


clock = time.time
sleep = time.sleep


def start(context=None):
    """Begin an invocation: its deadline from Lambda's ``context``, nothing pending."""
    _State.pending = []
    _State.unseen = {}
    remaining = getattr(context, "get_remaining_time_in_millis", None)
    _State.deadline = clock() + remaining() / 1000.0 if callable(remaining) else None


def remaining():
    """Seconds left before the deadline, or None without one."""
    return None if _State.deadline is None else _State.deadline - clock()


def affords(seconds):
    """True when waiting ``seconds`` still leaves MARGIN before the deadline."""
    left = remaining()
    return left is None or left - seconds > MARGIN


def lease_until(now, default=120):
    """Until when an invocation starting work at ``now`` (epoch seconds, the state
    table's clock) may hold an event: its deadline (a retry never waits for a lease
    its dead predecessor held), or ``default`` seconds without one."""
    left = remaining()
    return now + (default if left is None else max(left, 0))


def retry(func, *args, codes=TRANSIENT, max_attempts=5, min_delay=1, **kwargs):
    """``func(*args, **kwargs)``, retried with exponential back-off on ``codes``, never
    waiting past what the invocation affords: then the last error is raised (what it
    was for stays owed, for the next attempt)."""
    delays = backoff_delays(min_delay, max(min_delay, 2) ** max_attempts, jitter=True)
    for attempt, delay in enumerate(delays):
        try:
            return func(*args, **kwargs)
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code not in codes or attempt == max_attempts - 1 or not affords(delay):
                raise
            log.info("%s, retrying in %.1fs", code, delay)
        sleep(delay)
    return func(*args, **kwargs)


def retry_later(reason):
    """Note that this invocation must fail so Lambda retries it (``check``)."""
    log.warning("retry needed: %s", reason)
    _State.pending.append(reason)


def pending():
    return list(_State.pending)


def saw_unknown(instance_ids, event_key=""):
    """Instance ids an event names that DescribeInstances does not show."""
    for instance_id in instance_ids:
        _State.unseen[instance_id] = event_key


def accounted_for(instance_ids):
    """Ids whose report was given another way (an obligation's stored finding)."""
    for instance_id in instance_ids:
        _State.unseen.pop(instance_id, None)


def unseen():
    return list(_State.unseen)


def check():
    """Raise RetryLater when the invocation left something for its retry."""
    if _State.pending:
        reasons = list(dict.fromkeys(_State.pending))
        _State.pending = []
        raise RetryLater("; ".join(reasons))
