"""The shape of every item Broom writes in its state table, checked where it is read.

Only Broom's roles may write the table (its resource policy and ``broom scp``), but
an item that does not have the shape Broom writes - a counter that is a string, an
obligation whose reports are not instance ids, an expiry years away, a sweep's creator that
is not an attribution - did not come from Broom. Such an item is treated as absent,
after one warning line: it never crashes a run, never silences a report, never holds
or exempts anyone.

``problem(item, now)`` is pure (no AWS calls): it says why a raw DynamoDB item (as
GetItem returns it) does not fit, or None. The writes that replace an item in one
conditional call (obligations' leases, fleet claims, counters) express the same rules in their
``ConditionExpression``; tests hold the two equal.
"""
import json
import logging
from decimal import Decimal, InvalidOperation

from c7n_broom.events import INSTANCE_ID
from c7n_broom.lookup import CREATOR_FIELDS

log = logging.getLogger("custodian.broom.state")

#: Clock skew allowed between Broom's invocations (seconds).
SKEW = 300
#: A fleet's report period is the policy's; a year is already absurd.
FLEET_PERIOD_LIMIT = 366 * 24 * 3600
#: No counter reaches this: a cap of 20 per hour.
COUNT_LIMIT = 10 ** 6
#: A hold is due at most ``recheck-after`` (7 days at most) after it is recorded,
#: and kept HOLD_TTL after that.
HOLD_DELAY_LIMIT = 7 * 24 * 3600
HOLD_TTL = 2 * 24 * 3600
HOLD_STATUSES = ("held", "settled")
#: An obligation is kept 15 days (c7n_broom.owed.OBLIGATION_TTL); a Lambda invocation
#: runs 15 minutes at most, so no lease Broom takes ends later than that from now.
OBLIGATION_TTL = 15 * 24 * 3600
LEASE_LIMIT = 15 * 60
#: A quarantine lasts its terminate-after plus keep-snapshots: three years is absurd.
QUARANTINE_LIMIT = 3 * 366 * 24 * 3600
QUARANTINE_INDEX_TTL = 400 * 24 * 3600


def kind(item):
    """The kind of an item: its key's first part (``report``, ``count``, ...)."""
    key = string(item, "pk")
    return key.split("#", 1)[0] if key else None


def string(item, name):
    """An S attribute's value, or None when absent or of another type."""
    value = item.get(name) if isinstance(item, dict) else None
    if not isinstance(value, dict) or set(value) != {"S"} or not isinstance(value["S"], str):
        return None
    return value["S"]


def number(item, name):
    """An N attribute's value as a Decimal, or None when absent or of another type."""
    value = item.get(name) if isinstance(item, dict) else None
    if not isinstance(value, dict) or set(value) != {"N"} or not isinstance(value["N"], str):
        return None
    try:
        parsed = Decimal(value["N"])
    except InvalidOperation:
        return None
    return parsed if parsed.is_finite() else None


def integer(item, name):
    """An N attribute holding a whole number, as an int; None otherwise."""
    value = number(item, name)
    if value is None or value != value.to_integral_value():
        return None
    return int(value)


def json_object(item, name):
    """An S attribute holding a JSON object, as a dict; None otherwise."""
    text = string(item, name)
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _expiry(item, now, lifetime):
    """Why ``expires`` does not fit: not a number, past, or further than ``lifetime``."""
    expires = number(item, "expires")
    if expires is None:
        return "expires is not a number"
    if expires <= now:
        return None  # lapsed: readers already treat it as absent, nothing to warn about
    if expires > now + lifetime + SKEW:
        return "expires %s is more than %ds away" % (expires, lifetime)
    return None


def string_set(item, name):
    """An SS attribute's values, as a set; None when absent or of another type."""
    value = item.get(name) if isinstance(item, dict) else None
    if not isinstance(value, dict) or set(value) != {"SS"} or not isinstance(value["SS"], list):
        return None
    found = value["SS"]
    return set(found) if all(isinstance(i, str) for i in found) else None


def _owe(item, now):
    for name in ("reports", "rechecks"):
        if name in item and string_set(item, name) is None:
            return "%s is not a string set" % name
    for name in ("findings", "counted"):
        if name in item and json_object(item, name) is None:
            return "%s is not a JSON object" % name
    lease = number(item, "lease")
    if lease is None or lease > now + LEASE_LIMIT + SKEW:
        return "lease is not a time within %ds" % LEASE_LIMIT
    if "attempts" in item and integer(item, "attempts") is None:
        return "attempts is not a whole number"
    return _expiry(item, now, OBLIGATION_TTL)


def _fleet(item, now):
    reported = number(item, "reported")
    if reported is None:
        return "reported is not a number"
    if reported > now + SKEW:
        return "reported %s is in the future" % reported
    return _expiry(item, now, FLEET_PERIOD_LIMIT)


def _count(item, now):
    count = integer(item, "count")
    if count is None or not 0 <= count < COUNT_LIMIT:
        return "count is not a whole number from 0 to %d" % COUNT_LIMIT
    expires = number(item, "expires")
    parts = (string(item, "pk") or "").rsplit("#", 2)
    try:
        window, index = int(parts[1]), int(parts[2])
    except (IndexError, ValueError):
        return "its key names no window"
    if expires != (index + 2) * window:
        return "expires is not the end of the window after its own"
    return None


def attribution(value):
    """Why a sweep's attribution (``lookup.Attribution.as_dict``) does not fit, or None."""
    if not isinstance(value.get("status"), str):
        return "its status is not a string"
    creator = value.get("creator", {})
    if not isinstance(creator, dict) or not all(
            isinstance(creator.get(f, ""), str) for f in CREATOR_FIELDS):
        return "its creator is not a set of strings"
    if not isinstance(value.get("reason", ""), str):
        return "its reason is not a string"
    return None


def _sweep(item, now):
    if "attribution" in item:
        found = json_object(item, "attribution")
        why = "attribution is not a JSON object" if found is None else attribution(found)
        if why:
            return why
    if "reported" in item:
        reported = number(item, "reported")
        if reported is None or reported > now + SKEW:
            return "reported is not a past time"
    from c7n_broom.sweep import CACHE_TTL
    return _expiry(item, now, CACHE_TTL)


def _sweep_fleet(item, now):
    owner = json_object(item, "owner")
    why = "owner is not a JSON object" if owner is None else attribution(owner)
    from c7n_broom.sweep import FLEET_TTL
    return why or _expiry(item, now, FLEET_TTL)


def _hold(item, now):
    if string(item, "status") not in HOLD_STATUSES:
        return "status is not one of %s" % ", ".join(HOLD_STATUSES)
    due = number(item, "due")
    if due is None or due > now + HOLD_DELAY_LIMIT + SKEW:
        return "due is not a time within %d days" % (HOLD_DELAY_LIMIT // 86400)
    record = json_object(item, "record")
    if record is None or not isinstance(record.get("eventName"), str):
        return "record is not a CloudTrail record"
    held = item.get("instances")
    held = held.get("M") if isinstance(held, dict) and set(held) == {"M"} else None
    if not isinstance(held, dict) or not held:
        return "instances is not a map of instance ids"
    for instance_id in held:
        if not INSTANCE_ID.fullmatch(instance_id) or string(held, instance_id) is None:
            return "instances holds %r, not an instance id and its launch marker" % (
                instance_id[:40])
    expires = number(item, "expires")
    if expires is None or expires > due + HOLD_TTL + SKEW:
        return "expires is not within %ds of its due time" % HOLD_TTL
    return None


def _quarantine(item, now):
    record = json_object(item, "record")
    if record is None:
        return "record is not a JSON object"
    instance_id = record.get("instance_id")
    key = string(item, "pk") or ""
    if not isinstance(instance_id, str) or not INSTANCE_ID.fullmatch(instance_id) \
            or not key.endswith("#" + instance_id):
        return "record names no instance id, or not its key's"
    from c7n_broom.quarantine import STEPS  # it imports this module's readers
    if record.get("step") not in STEPS:
        return "step is not one of %s" % ", ".join(STEPS)
    return _expiry(item, now, QUARANTINE_LIMIT)


def _quarantine_index(item, now):
    if string_set(item, "ids") is None:
        return "ids is not a string set"
    return _expiry(item, now, QUARANTINE_INDEX_TTL)


SHAPES = {"owe": _owe, "quarantine": _quarantine, "quarantine-index": _quarantine_index,
          "fleet": _fleet, "count": _count, "sweep": _sweep,
          "sweep-fleet": _sweep_fleet, "hold": _hold}


def problem(item, now):
    """Why ``item`` (a raw DynamoDB item) does not have the shape Broom writes, or None.

    An item that lapsed (``expires`` in the past) is not a problem: readers treat it
    as absent anyway.
    """
    if not isinstance(item, dict) or string(item, "pk") is None:
        return "it has no string key"
    check = SHAPES.get(kind(item))
    if check is None:
        return "Broom writes no item of kind %r" % kind(item)[:40]
    return check(item, now)


def warn(table, item, why):
    """The one warning line for an item Broom ignores."""
    log.warning("Broom's state table %s: item %s ignored, %s: Broom did not write it "
                "(only Broom's roles may write the table: docs/security.md)", table,
                (string(item, "pk") or "?")[:200], why)


def fits(table, item, now):
    """True when ``item`` has Broom's shape; otherwise one warning line, and False."""
    why = problem(item, now)
    if why:
        warn(table, item, why)
    return why is None
