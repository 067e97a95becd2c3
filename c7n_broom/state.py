"""Broom's own state, in a DynamoDB table only Broom's role writes.

Repeat suppression and report throttling used to read marker tags on instances and
groups, which whoever Broom polices can set: a pre-set tag silenced a report. Here they
live in one table (default ``broom-state``, in the account and region Broom acts in):

=============  ==============================================  =======================
item ``pk``    what it records                                 written with
=============  ==============================================  =======================
``owe#``       what event E owes under policy P: the reports   UpdateItem, under a
               and re-checks not done yet (``c7n_broom.owed``) lease
``fleet#``     fleet F was reported at T                       PutItem, absent or
                                                               older than the period
``count#``     terminations by principal X in a time window    UpdateItem ADD
``sweep#``     a sweep's creator of instance I, and when it    BatchWriteItem
               was first reported (``c7n_broom.sweep``)
``hold#``      instances the cap held, their launch markers,   PutItem, absent only;
               the launch record, when due (``recheck``)       UpdateItem to settle
quarantine#    instance I's quarantine: timeline, step,        PutItem, the first
               snapshots (``c7n_broom.quarantine``)            only if absent
quarantine-    the ids under quarantine in an account and      UpdateItem ADD /
index#         region                                          DELETE
=============  ==============================================  =======================

Every item carries ``expires`` (epoch seconds), the table's TTL attribute; DynamoDB
deletes lapsed items within days, so reads and conditions also ignore them. An item
that does not have the shape Broom writes (``c7n_broom.items``) is ignored too, with
one warning: reads treat it as absent, claims and counters replace it.

State may only suppress a duplicate. When the table is missing or Broom's role may not
use it, every call answers "not seen before" (reports are sent, fleets not throttled)
and the counter answers ``None`` (unknown), after one warning naming the table and the
permission to add.
"""
import logging
import math
import time

from botocore.exceptions import ClientError
from c7n.utils import local_session

from c7n_broom import codes, invocation, items
from c7n_broom.instances import DENIED

log = logging.getLogger("custodian.broom.state")

DEFAULT_TABLE = "broom-state"
KEY = "pk"
TTL_ATTRIBUTE = "expires"

CHECK_FAILED = "ConditionalCheckFailedException"
TABLE_MISSING = ("ResourceNotFoundException",)
BUSY = ("ProvisionedThroughputExceededException", "ThrottlingException",
        "RequestLimitExceeded", "InternalServerError", "ServiceUnavailable")
UNAVAILABLE = TABLE_MISSING + DENIED + BUSY

#: What each use of the table needs in the role (scope them to the table's ARN).
REPORT_PERMISSIONS = ("dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem")
COUNTER_PERMISSIONS = ("dynamodb:GetItem", "dynamodb:UpdateItem")
SWEEP_PERMISSIONS = ("dynamodb:BatchGetItem", "dynamodb:BatchWriteItem")
#: Items per BatchGetItem and BatchWriteItem call (DynamoDB's limits).
BATCH_GET, BATCH_WRITE = 100, 25


class StateTable:
    """Broom's state table, seen from one policy run.

    ``clock`` returns epoch seconds (tests pass their own). Once a call found the
    table unavailable, later calls do not try again in this run.
    """

    # botocore already retries throttling a few times; this adds a short back-off,
    # not minutes, and never past the invocation's deadline: state must not hold up
    # the reports.
    @staticmethod
    def retry(method, **params):
        return invocation.retry(method, codes=BUSY, max_attempts=3, **params)

    def __init__(self, session_factory, region, name=DEFAULT_TABLE, account_id="",
                 clock=time.time):
        self.session_factory = session_factory
        self.region = region
        self.name = name
        self.account_id = account_id
        self.clock = clock
        self.unavailable = None  # the error code that made it so
        self._client = None

    @property
    def arn(self):
        return "arn:aws:dynamodb:%s:%s:table/%s" % (
            self.region, self.account_id or "ACCOUNT", self.name)

    def client(self):
        if self._client is None:
            self._client = local_session(self.session_factory).client(
                "dynamodb", region_name=self.region)
        return self._client

    def call(self, operation, **params):
        """The DynamoDB call's response, or None once the table is unavailable;
        raises ClientError ConditionalCheckFailedException for the caller.

        Any other error makes the table unavailable for the rest of the run: raising
        here would fail the invocation after the terminations, and its retry skips
        terminated instances, so their reports would be lost. An error code Broom
        does not expect is logged as an error, with the whole message.
        """
        if self.unavailable:
            return None
        method = getattr(self.client(), _snake(operation))
        if not operation.startswith("Batch"):  # batch calls name the table in their items
            params["TableName"] = self.name
        try:
            return self.retry(method, **params)
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code == CHECK_FAILED:
                raise
            self.unavailable = code
            if code not in UNAVAILABLE:
                log.error("Broom's state table %s in %s: unexpected error on %s, used "
                          "as if the table were missing: %s", self.name, self.region,
                          operation, e)
                return None
            if code in TABLE_MISSING:
                fix = "create it (README: \"Broom's state table\")"
            elif code in DENIED:
                fix = "allow dynamodb:%s on %s to Broom's role" % (operation, self.arn)
            else:
                fix = "it is throttled: check its capacity (on-demand is recommended)"
            log.warning(
                "Broom's state table %s in %s cannot be used (%s on %s): %s. Until "
                "then reports are sent without repeat suppression or fleet throttling "
                "and the termination count is unknown.",
                self.name, self.region, code, operation, fix)
            return None

    def check_replaced(self, response, now):
        """Warn about an item a conditional write replaced because Broom did not
        write it (``ReturnValues: ALL_OLD``)."""
        old = (response or {}).get("Attributes")
        if old:
            items.fits(self.name, old, now)

    # -- fleet F reported at T -------------------------------------------------------

    def claim_fleet(self, policy, fleet, period):
        """(True, T) if fleet ``(kind, id)`` was not reported in the last ``period``
        seconds: it is recorded as reported at T. (False, None) if it was."""
        now = self.clock()
        try:
            response = self.call(
                "PutItem",
                Item={KEY: _s(self.fleet_key(policy, fleet)), "reported": _n(now),
                      TTL_ATTRIBUTE: _n(now + period)},
                ConditionExpression=(
                    "attribute_not_exists(#pk) OR #reported <= :cutoff OR NOT ("
                    "attribute_type(#reported, :N) AND #reported <= :soon AND "
                    "attribute_type(#expires, :N) AND #expires <= :far)"),
                ExpressionAttributeNames={"#pk": KEY, "#reported": "reported",
                                          "#expires": TTL_ATTRIBUTE},
                ExpressionAttributeValues={
                    ":cutoff": _n(now - period), ":N": _s("N"), ":soon": _n(now + items.SKEW),
                    ":far": _n(now + items.FLEET_PERIOD_LIMIT + items.SKEW)},
                ReturnValues="ALL_OLD")
        except ClientError as e:
            if e.response["Error"]["Code"] != CHECK_FAILED:
                raise
            return False, None
        self.check_replaced(response, now)
        return True, now

    def release_fleet(self, policy, fleet, when):
        """Undo ``claim_fleet`` at ``when`` (its report was not published)."""
        try:
            self.call("DeleteItem", Key={KEY: _s(self.fleet_key(policy, fleet))},
                      ConditionExpression="#reported = :when",
                      ExpressionAttributeNames={"#reported": "reported"},
                      ExpressionAttributeValues={":when": _n(when)})
        except ClientError as e:
            if e.response["Error"]["Code"] != CHECK_FAILED:  # another run reported it
                raise

    def fleet_key(self, policy, fleet):
        return _key("fleet", policy, self.account_id, self.region, *fleet)

    # -- terminations by a principal in a window ------------------------------------

    def add_terminations(self, policy, principal, window_seconds, n):
        """Count ``n`` more terminations for ``principal``; return the total over the
        current and the previous window (between one and two windows: it never counts
        less than the last ``window_seconds`` held), or None when unknown.

        The addition is atomic (UpdateItem ADD): concurrent invocations each see a
        distinct total. Count before terminating; what was counted and then held
        back stays counted, so a cap only gets stricter.
        """
        now = self.clock()
        current, previous = self._windows(policy, principal, window_seconds, now)
        total = self._add(current, n, now)
        if total is None:
            return None
        before = self._count(previous[0], now)
        if before is None:
            return None
        return total + before

    def _add(self, window, n, now):
        """Add ``n`` to the counter at ``window`` (key, expires); its new value, or None.

        A counter Broom did not write (not a whole number in range, or another
        expiry than its window's) is replaced by ``n``, with one warning."""
        key, expires = window
        names = {"#pk": KEY, "#count": "count", "#expires": TTL_ATTRIBUTE}
        values = {":N": _s("N"), ":zero": _n(0), ":max": _n(items.COUNT_LIMIT - 1),
                  ":expires": _n(expires)}
        fits = ("attribute_type(#count, :N) AND #count BETWEEN :zero AND :max "
                "AND #expires = :expires")
        for _ in range(3):
            try:
                response = self.call(
                    "UpdateItem", Key={KEY: _s(key)},
                    UpdateExpression="ADD #count :n SET #expires = :expires",
                    ConditionExpression="attribute_not_exists(#pk) OR (%s)" % fits,
                    ExpressionAttributeNames=names,
                    ExpressionAttributeValues=dict(values, **{":n": _n(n)}),
                    ReturnValues="UPDATED_NEW")
                if response is None:
                    return None
                # a fraction passes the condition: counted up, the cap only gets stricter
                return math.ceil(items.number(response["Attributes"], "count"))
            except ClientError as e:
                if e.response["Error"]["Code"] != CHECK_FAILED:
                    raise
            try:
                old = self.call(
                    "PutItem", Item={KEY: _s(key), "count": _n(n), TTL_ATTRIBUTE: _n(expires)},
                    ConditionExpression="attribute_exists(#pk) AND NOT (%s)" % fits,
                    ExpressionAttributeNames=names, ExpressionAttributeValues=values,
                    ReturnValues="ALL_OLD")
            except ClientError as e:  # another invocation replaced it first: add again
                if e.response["Error"]["Code"] != CHECK_FAILED:
                    raise
                continue
            if old is None:
                return None
            items.warn(self.name, old.get("Attributes") or {}, "not a counter Broom wrote")
            return n
        return None

    def terminations(self, policy, principal, window_seconds):
        """The same total as ``add_terminations`` returns, adding nothing; None when
        unknown."""
        now = self.clock()
        total = 0
        for key, _ in self._windows(policy, principal, window_seconds, now):
            count = self._count(key, now)
            if count is None:
                return None
            total += count
        return total

    def _windows(self, policy, principal, window_seconds, now):
        """(key, expires) of the current and the previous window."""
        return [(_key("count", policy, principal, window_seconds, i),
                 (i + 2) * window_seconds) for i in counted_windows(now, window_seconds)]

    def _count(self, key, now):
        response = self.call("GetItem", Key={KEY: _s(key)}, ConsistentRead=True)
        if response is None:
            return None
        item = response.get("Item")
        if not item or (items.number(item, TTL_ATTRIBUTE) or 0) <= now:
            return 0
        if not items.fits(self.name, item, now):
            return 0
        return items.integer(item, "count")


    def get_item(self, key):
        """The item at ``key`` as stored (consistent read), or None when there is none
        or the table cannot be read. Its shape is the caller's to check."""
        response = self.call("GetItem", Key={KEY: _s(key)}, ConsistentRead=True)
        return (response or {}).get("Item")

    # -- items read and written in batches (sweeps) ------------------------------------

    def get_items(self, keys):
        """{key: item} of the live items among ``keys`` (BatchGetItem, 100 at a
        time); what cannot be read is left out, as if never written."""
        found, now = {}, self.clock()
        for start in range(0, len(keys), BATCH_GET):
            wanted = {"Keys": [{KEY: _s(k)} for k in keys[start:start + BATCH_GET]]}
            for _ in range(3):
                response = self.call("BatchGetItem", RequestItems={self.name: wanted})
                if response is None:
                    return found
                for item in response.get("Responses", {}).get(self.name, ()):
                    if ((items.number(item, TTL_ATTRIBUTE) or 0) > now
                            and items.fits(self.name, item, now)):
                        found[item[KEY]["S"]] = item
                wanted = response.get("UnprocessedKeys", {}).get(self.name)
                if not wanted:
                    break
        return found

    def put_items(self, items):
        """Write ``items`` (each with its ``pk`` and ``expires``), 25 per call; what
        DynamoDB leaves unprocessed three times is dropped with a warning."""
        for start in range(0, len(items), BATCH_WRITE):
            pending = [{"PutRequest": {"Item": item}}
                       for item in items[start:start + BATCH_WRITE]]
            for _ in range(3):
                response = self.call("BatchWriteItem", RequestItems={self.name: pending})
                if response is None:
                    return
                pending = response.get("UnprocessedItems", {}).get(self.name)
                if not pending:
                    break
            if pending:
                log.warning("Broom's state table %s: %d items not written (throttled)",
                            self.name, len(pending))


def counted_windows(now, window_seconds):
    """The indexes of the windows a count at ``now`` adds up: the current one and the
    previous one (so a period's count never drops to zero at a window's edge)."""
    index = int(now // window_seconds)
    return index, index - 1


def _key(kind, *parts):
    return "#".join((kind,) + tuple(str(p) for p in parts))


def _s(value):
    return {"S": value}


def _n(value):
    return {"N": "%d" % value}


def _snake(operation):
    return "".join("_" + c.lower() if c.isupper() else c for c in operation).lstrip("_")


def for_element(element, clock=time.time):
    """The state table an action's ``state-table`` option names, where it acts."""
    name = element.data.get("state-table")
    manager = element.manager
    return StateTable(manager.session_factory, manager.config.region,
                      DEFAULT_TABLE if codes.is_unset(name) else name,
                      manager.config.account_id or "", clock=clock)
