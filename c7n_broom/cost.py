"""What an instance costs: the on-demand price from the AWS Price List API, and arithmetic.

Two parts, usable by any report:

- :func:`estimate` is pure: given an hourly price, the launch time and "now" (the end of
  the run: the report's time, or when EC2 says the instance was terminated), it gives
  the hours run, the cost so far and the cost per month (730 hours, AWS's own monthly
  figure). EC2 bills on-demand Linux and Windows instances per second with a
  60-second minimum; the estimate does the same (other platforms may bill per hour).
- :class:`PriceBook` looks prices up with ``pricing:GetProducts`` (the Price List API,
  served in us-east-1) with a short timeout and a single attempt, and caches them for
  the life of the process (a Lambda container): an instance type's price is fetched
  once per container. A failure (no permission, timeout, an answer it cannot read)
  gives a :class:`Cost` that is not ``known``, with the reason: the report then says
  "cost unknown" and nothing else changes. Failures are remembered for
  :data:`RETRY_AFTER` seconds, so one slow Price List API costs one timeout, not one per
  instance.

Prices are public list prices in USD, before discounts (Savings Plans, reserved
instances, credits) and without EBS volumes or data transfer: an estimate for a person
to weigh a launch, not a bill.
"""
import json
import logging
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from c7n.utils import local_session

from c7n_broom import events

log = logging.getLogger("custodian.broom.cost")

HOURS_PER_MONTH = 730
MINIMUM_SECONDS = 60
#: Seconds a failed lookup is remembered before it is tried again.
RETRY_AFTER = 300
PRICING_REGION = "us-east-1"
#: One attempt, no retry (botocore's ``max_attempts`` counts retries, not attempts):
#: at most 5 seconds lost when the API does not answer.
PRICING_CONFIG = Config(connect_timeout=2, read_timeout=3,
                        retries={"total_max_attempts": 1, "mode": "standard"})
PERMISSIONS = ("pricing:GetProducts",)

#: EC2's ``PlatformDetails`` -> the Price List's (operatingSystem, preInstalledSw,
#: licenseModel). A platform not listed has no price: "cost unknown".
PLATFORMS = {
    "Linux/UNIX": ("Linux", "NA", "No License required"),
    "Red Hat Enterprise Linux": ("RHEL", "NA", "No License required"),
    "Red Hat Enterprise Linux with HA": ("Red Hat Enterprise Linux with HA", "NA",
                                         "No License required"),
    "SUSE Linux": ("SUSE", "NA", "No License required"),
    "Ubuntu Pro": ("Ubuntu Pro", "NA", "No License required"),
    "Windows": ("Windows", "NA", "No License required"),
    "Windows BYOL": ("Windows", "NA", "Bring your own license"),
    "Windows with SQL Server Standard": ("Windows", "SQL Std", "No License required"),
    "Windows with SQL Server Web": ("Windows", "SQL Web", "No License required"),
    "Windows with SQL Server Enterprise": ("Windows", "SQL Ent", "No License required"),
    "Linux with SQL Server Standard": ("Linux", "SQL Std", "No License required"),
    "Linux with SQL Server Web": ("Linux", "SQL Web", "No License required"),
    "Linux with SQL Server Enterprise": ("Linux", "SQL Ent", "No License required"),
}
TENANCY = {"default": "Shared", "dedicated": "Dedicated", "host": "Host"}
# "User initiated (2026-01-01 10:00:00 GMT)": when EC2 stopped or terminated it.
_TRANSITION_TIME = re.compile(r"\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) (?:GMT|UTC)\)")


@dataclass(frozen=True)
class Cost:
    """What an instance cost. ``known`` is False when there is no price (``reason`` says
    why); amounts are USD, ``hours`` the time it ran."""

    known: bool
    hourly: float = 0.0
    hours: float = 0.0
    so_far: float = 0.0
    per_month: float = 0.0
    reason: str = ""
    currency: str = "USD"


def unknown(reason):
    return Cost(known=False, reason=reason)


def estimate(hourly, launched, now):
    """The Cost of an instance priced ``hourly`` (USD) that ran from ``launched`` to
    ``now`` (aware datetimes): per second, at least 60 seconds; a launch time after
    ``now`` (clock skew) counts as the minimum."""
    seconds = max((now - launched).total_seconds(), MINIMUM_SECONDS)
    return Cost(known=True, hourly=hourly, hours=seconds / 3600,
                so_far=hourly * seconds / 3600, per_month=hourly * HOURS_PER_MONTH)


def total(costs):
    """(so far, per month, how many known, how many unknown) over Costs (None skipped)."""
    costs = [c for c in costs if c is not None]
    known = [c for c in costs if c.known]
    return (sum(c.so_far for c in known), sum(c.per_month for c in known),
            len(known), len(costs) - len(known))


#: States in which an instance no longer runs (EC2 bills no instance-hours for them).
NOT_RUNNING = ("shutting-down", "terminated", "stopping", "stopped")


def ended(resource, now):
    """When the instance stopped costing: the time EC2 gives in ``StateTransitionReason``
    for a terminated or stopped (or terminating, stopping) instance, else ``now``. A
    stopped instance's ``LaunchTime`` is its last start: it ran from then to its stop."""
    state = (resource.get("State") or {}).get("Name")
    found = _TRANSITION_TIME.search(str(resource.get("StateTransitionReason") or ""))
    if state in NOT_RUNNING and found:
        return datetime.strptime(found.group(1), "%Y-%m-%d %H:%M:%S").replace(
            tzinfo=timezone.utc)
    return now


def filters(instance_type, region, platform, tenancy="default"):
    """GetProducts filters for one on-demand instance price, or None for a platform the
    Price List cannot price (see PLATFORMS)."""
    if platform not in PLATFORMS or tenancy not in TENANCY:
        return None
    system, software, licence = PLATFORMS[platform]
    wanted = {"instanceType": instance_type, "regionCode": region,
              "operatingSystem": system, "preInstalledSw": software,
              "licenseModel": licence, "tenancy": TENANCY[tenancy],
              "capacitystatus": "Used", "marketoption": "OnDemand"}
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in wanted.items()]


def hourly_price(price_list):
    """The one USD hourly on-demand price in a GetProducts ``PriceList`` (JSON strings).

    Raises ValueError when there is none, or more than one distinct price (the filters
    did not pin one product), or the answer is not in the documented shape."""
    prices = set()
    for item in price_list:
        product = json.loads(item) if isinstance(item, str) else item
        for offer in product["terms"]["OnDemand"].values():
            for dimension in offer["priceDimensions"].values():
                if dimension.get("unit") == "Hrs":
                    prices.add(float(dimension["pricePerUnit"]["USD"]))
    prices.discard(0.0)
    if len(prices) != 1:
        raise ValueError("%d distinct hourly prices" % len(prices))
    price = prices.pop()
    if not 0 < price < 10000:
        raise ValueError("implausible hourly price %r" % price)
    return price


#: The Price List's usage type of standard EBS snapshot storage ends with this (a
#: region prefix such as ``EUW1-`` before it, none in us-east-1).
SNAPSHOT_USAGE = "EBS:SnapshotUsage"


def snapshot_filters(region):
    """GetProducts filters for EBS snapshot storage in ``region``."""
    return [{"Type": "TERM_MATCH", "Field": "productFamily", "Value": "Storage Snapshot"},
            {"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]


def snapshot_price(price_list):
    """USD per GB-month of standard EBS snapshot storage in a GetProducts ``PriceList``;
    ValueError when there is not exactly one."""
    prices = set()
    for item in price_list:
        product = json.loads(item) if isinstance(item, str) else item
        usage = product["product"]["attributes"].get("usagetype", "")
        if not usage.endswith(SNAPSHOT_USAGE):
            continue  # archive tier, fast snapshot restore, ...
        for offer in product["terms"]["OnDemand"].values():
            for dimension in offer["priceDimensions"].values():
                if dimension.get("unit") == "GB-Mo":
                    prices.add(float(dimension["pricePerUnit"]["USD"]))
    if len(prices) != 1:
        raise ValueError("%d distinct snapshot storage prices" % len(prices))
    price = prices.pop()
    if not 0 < price < 10:
        raise ValueError("implausible snapshot price %r" % price)
    return price


class PriceBook:
    """On-demand prices for a report, through one session factory.

    ``cost_of(resource, now)`` gives the Cost of an EC2 instance as c7n describes it.
    Prices live in a class-wide cache (the Lambda container's life).
    """

    _cache = {}
    _lock = threading.Lock()

    def __init__(self, session_factory, clock=time.time):
        self.session_factory = session_factory
        self.clock = clock
        self._client = None

    @classmethod
    def forget(cls):
        """Empty the cache (tests; a long-lived process that wants fresh prices)."""
        with cls._lock:
            cls._cache.clear()

    def client(self):
        if self._client is None:
            self._client = local_session(self.session_factory).client(
                "pricing", region_name=PRICING_REGION, config=PRICING_CONFIG)
        return self._client

    def cost_of(self, resource, now):
        """The Cost of ``resource`` (an EC2 instance) from launch to termination or ``now``."""
        launched = events.parse_time(resource.get("LaunchTime"))
        if launched is None:
            return unknown("launch time not known")
        platform = resource.get("PlatformDetails") or (
            "Windows" if resource.get("Platform") == "windows" else "Linux/UNIX")
        tenancy = (resource.get("Placement") or {}).get("Tenancy", "default")
        price = self.hourly(resource.get("InstanceType", ""), self.region_of(resource),
                            platform, tenancy)
        if isinstance(price, Cost):
            return price
        return estimate(price, launched, ended(resource, now))

    @staticmethod
    def region_of(resource):
        zone = (resource.get("Placement") or {}).get("AvailabilityZone", "")
        return zone[:-1] if zone[-1:].isalpha() else zone

    def hourly(self, instance_type, region, platform, tenancy="default"):
        """The hourly price (float) or an unknown Cost saying why there is none."""
        wanted = filters(instance_type, region, platform, tenancy)
        if not instance_type or not region or wanted is None:
            return unknown("no on-demand price for %s %s %s" % (
                platform or "?", instance_type or "?", tenancy))
        key = (instance_type, region, platform, tenancy)
        with self._lock:
            cached = self._cache.get(key) or self._cache.get("unreachable")
        if cached and (cached[1] is None or cached[1] > self.clock()):
            return cached[0]
        found = self._lookup(wanted)
        with self._lock:
            if not isinstance(found, Cost):
                self._cache[key] = (found, None)
            elif found.reason.startswith(("Price List API unreachable", "no permission")):
                self._cache["unreachable"] = (found, self.clock() + RETRY_AFTER)
            else:
                self._cache[key] = (found, self.clock() + RETRY_AFTER)
        return found

    def snapshot_gb_month(self, region):
        """USD per GB-month of EBS snapshot storage in ``region`` (float), or an
        unknown Cost saying why there is none; cached like instance prices."""
        key = ("snapshot", region)
        with self._lock:
            cached = self._cache.get(key) or self._cache.get("unreachable")
        if cached and (cached[1] is None or cached[1] > self.clock()):
            return cached[0]
        found = self._lookup(snapshot_filters(region), snapshot_price, 100)
        with self._lock:
            self._cache[key] = (found, None if not isinstance(found, Cost)
                                else self.clock() + RETRY_AFTER)
        return found

    def _lookup(self, wanted, read=hourly_price, results=10):
        try:
            response = self.client().get_products(
                ServiceCode="AmazonEC2", Filters=wanted, MaxResults=results)
            return read(response.get("PriceList", []))
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            # The code only: an endpoint that is not the Price List API answers with a
            # whole HTML page.
            log.warning("cost unknown: pricing:GetProducts failed with %s (HTTP %s)", code,
                        e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "?"))
            if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
                return unknown("no permission for pricing:GetProducts")
            return unknown("Price List API error %s" % code)
        except BotoCoreError as e:  # timeouts, no connection, no credentials
            log.warning("cost unknown: Price List API unreachable: %s", e)
            return unknown("Price List API unreachable (%s)" % type(e).__name__)
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            log.warning("cost unknown: unreadable Price List answer: %s", e)
            return unknown("unreadable Price List answer")
