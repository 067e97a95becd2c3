"""Who launched an instance, without its event: CloudTrail ``LookupEvents``.

A sweep (``c7n_broom.sweep``) finds instances the event path never saw. Their
``RunInstances`` record is still in CloudTrail's event history for 90 days, and
``LookupEvents`` finds it by resource name (the instance id). The record's
``userIdentity`` goes through the same resolution as the event path
(``identity.creator_from_record``).

``LookupEvents`` allows 2 requests per second per account and region, shared with
everything else in the account: :class:`Lookup` spaces its calls ``interval`` seconds
apart (clock and sleep are injectable), makes at most ``budget`` calls per run, backs
off and retries on throttling (and stops for the run when that does not help), and
narrows each lookup to the hours around the instance's first launch, so that one page
usually answers.

A launch is any record the event path accepts (``events.LAUNCH_CALLS``):
``RunInstances``, or the ``CreateFleet`` of an instant fleet (docs/launch-paths.md).

Each instance gets an :class:`Attribution`: ``found`` (the creator), ``unknown`` for
good (launched before the event history begins, or CloudTrail holds no record: cached
like a found creator), or not settled yet: ``pending`` (budget used up, or the record
may not be delivered yet) or ``fault`` (denied, throttled, malformed record), both
looked up again by the next sweep.
"""
import json
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

from botocore.exceptions import ClientError

from c7n_broom import events
from c7n_broom.identity import UNKNOWN, Creator, creator_from_record
from c7n_broom.instances import DENIED

log = logging.getLogger("custodian.broom.lookup")

FOUND, UNKNOWN_FOR_GOOD, PENDING, FAULT = "found", "unknown", "pending", "fault"
SETTLED = (FOUND, UNKNOWN_FOR_GOOD)

#: CloudTrail's event history covers this much (management events).
HISTORY = timedelta(days=90)
#: CloudTrail delivers a record to the event history within about 15 minutes; an
#: instance younger than this without a record is looked up again later.
DELIVERY = timedelta(hours=1)
#: The window searched around an instance's first launch.
WINDOW = timedelta(hours=1)
#: LookupEvents: 2 requests per second per account and region. Broom stays under it.
INTERVAL = 0.6
DEFAULT_BUDGET = 200
PAGE_SIZE = 50
THROTTLED = ("ThrottlingException", "Throttling", "RequestLimitExceeded",
             "TooManyRequestsException")
#: Refusals for one request that leave the others possible.
BAD_REQUEST = ("InvalidLookupAttributesException", "InvalidTimeRangeException",
               "InvalidNextTokenException", "InvalidMaxResultsException")
RETRIES = 3
PERMISSION = "cloudtrail:LookupEvents"

#: What relaunches an instance, from the ``aws:`` tags AWS puts on it (its launcher
#: cannot set them), and the calls that create or change it: who made the latest of
#: them is who can fix what the fleet launches.
LAUNCH_TEMPLATE = "launch template"
FLEET_SOURCES = (
    ("aws:autoscaling:groupName", "Auto Scaling group",
     ("CreateAutoScalingGroup", "UpdateAutoScalingGroup")),
    ("aws:ec2launchtemplate:id", LAUNCH_TEMPLATE,
     ("CreateLaunchTemplate", "CreateLaunchTemplateVersion", "ModifyLaunchTemplate")),
    ("aws:ec2:fleet-id", "EC2 Fleet", ("CreateFleet", "ModifyFleet")),
    ("aws:ec2spot:fleet-request-id", "Spot Fleet request",
     ("RequestSpotFleet", "ModifySpotFleetRequest")),
)
#: Pages read per fleet at most (newest first): a busy group has many events.
FLEET_PAGES = 4


@dataclass(frozen=True)
class Attribution:
    """Who launched an instance, as far as CloudTrail says (``status``: one of FOUND,
    UNKNOWN_FOR_GOOD, PENDING, FAULT), and, unless found, why not (``reason``)."""

    status: str
    creator: Creator = UNKNOWN
    reason: str = ""

    @property
    def settled(self):
        """True when looking again cannot tell more: it may be cached."""
        return self.status in SETTLED

    def as_dict(self):
        return {"status": self.status, "reason": self.reason,
                "creator": {f: getattr(self.creator, f) for f in CREATOR_FIELDS}}

    @classmethod
    def from_dict(cls, data):
        """The Attribution ``as_dict`` gave, or None if ``data`` is not one."""
        if not isinstance(data, dict) or data.get("status") not in SETTLED + (PENDING, FAULT):
            return None
        fields = data.get("creator") if isinstance(data.get("creator"), dict) else {}
        creator = Creator(**{f: fields.get(f, "") for f in CREATOR_FIELDS})
        return cls(data["status"], creator, str(data.get("reason") or ""))


CREATOR_FIELDS = ("name", "identity_type", "arn", "account_id", "role", "session", "via",
                  "note", "principal_arn")


def unknown(reason):
    return Attribution(UNKNOWN_FOR_GOOD, Creator(name="unknown", note=reason), reason)


def first_launch(resource):
    """When an instance was first launched: ``LaunchTime`` is its last start, so the
    attach time of its primary network interface (device 0) is used when earlier."""
    times = [events.parse_time(resource.get("LaunchTime"))]
    for eni in resource.get("NetworkInterfaces") or ():
        attachment = eni.get("Attachment") if isinstance(eni, dict) else None
        if isinstance(attachment, dict) and attachment.get("DeviceIndex") == 0:
            times.append(events.parse_time(attachment.get("AttachTime")))
    times = [t for t in times if t is not None]
    return min(times) if times else None


def fleet_sources(resource):
    """[(kind, id)] of what relaunches an instance: its group or fleet, and the launch
    template it was launched from, from the ``aws:`` tags AWS sets."""
    tags = {t.get("Key"): t.get("Value") for t in resource.get("Tags") or ()
            if isinstance(t, dict)}
    return [(kind, tags[key]) for key, kind, _ in FLEET_SOURCES
            if isinstance(tags.get(key), str) and tags[key]]


def change_record(lookup_events, names):
    """The first readable record among LookupEvents' ``Events`` (newest first) of a
    call in ``names`` that did not fail, or None. Pure."""
    for entry in lookup_events:
        if not isinstance(entry, dict) or entry.get("EventName") not in names:
            continue
        record = entry_record(entry)
        if record is not None and not record.get("errorCode"):
            return record
    return None


def entry_record(entry):
    """The CloudTrail record a LookupEvents entry carries (its ``CloudTrailEvent``
    JSON), or None when it is not one with a ``userIdentity``."""
    try:
        record = json.loads(entry.get("CloudTrailEvent") or "")
    except (TypeError, ValueError):
        return None
    if isinstance(record, dict) and isinstance(record.get("userIdentity"), dict):
        return record
    return None


def launch_record(instance_id, lookup_events):
    """(record, malformed): the launch record naming ``instance_id`` among
    LookupEvents' ``Events``, and how many launch entries could not be read. Pure.

    A launch record is one the event path accepts (``events.LAUNCH_CALLS``):
    RunInstances, or the CreateFleet of an instant fleet, whose XML-shaped response
    names the instances (``events.launched_instances``). A record of either that
    names other instances is not trusted for this one."""
    malformed = 0
    for entry in lookup_events:
        if not isinstance(entry, dict) or entry.get("EventName") not in events.LAUNCH_CALLS:
            continue
        record = entry_record(entry)
        if record is None:
            malformed += 1
            continue
        if record.get("errorCode") or events.fleet_launches_later(record):
            continue  # a failed call, or a fleet that launches later: no launch by its caller
        if record.get("eventName") != entry["EventName"]:
            malformed += 1  # the entry and its record disagree: not trusted
            continue
        if instance_id in events.launched_instances(record):
            return record, malformed
        malformed += 1  # a launch record for other instances: not trusted
    return None, malformed


class Lookup:
    """LookupEvents for one account and region, within the rate limit and a budget
    of ``budget`` calls; ``calls`` counts what was made."""

    def __init__(self, client, budget=DEFAULT_BUDGET, interval=INTERVAL,
                 clock=time.monotonic, sleep=time.sleep, now=None):
        self.client = client
        self.budget = budget
        self.interval = interval
        self.clock = clock
        self.sleep = sleep
        self.now = now or datetime.now(timezone.utc)
        self.calls = 0
        self.throttled = 0
        self.broken = None  # why no further call can succeed in this run
        self._last = None

    def attribute(self, instance_id, launched):
        """The Attribution of ``instance_id``, first launched at ``launched``."""
        if launched is None:
            return unknown("EC2 shows no launch time")
        if self.now - launched > HISTORY:
            return unknown("launched more than 90 days ago, before CloudTrail's event "
                           "history begins")
        if self.broken:
            return Attribution(FAULT, reason=self.broken)
        token, malformed = None, 0
        while True:
            if self.calls >= self.budget:
                return Attribution(PENDING, reason="the %d CloudTrail lookups of this run "
                                   "were used up; the next sweep goes on" % self.budget)
            params = dict(
                LookupAttributes=[{"AttributeKey": "ResourceName",
                                   "AttributeValue": instance_id}],
                StartTime=launched - WINDOW, EndTime=launched + WINDOW, MaxResults=PAGE_SIZE)
            if token:
                params["NextToken"] = token
            page, fault = self.call(params)
            if fault:
                return Attribution(FAULT, reason=fault)
            record, bad = launch_record(instance_id, page.get("Events") or ())
            malformed += bad
            if record:
                return Attribution(FOUND, creator_from_record(record))
            token = page.get("NextToken")
            if not token:
                break
        if malformed:
            return Attribution(FAULT, reason="CloudTrail returned %d launch record(s) "
                               "Broom could not read" % malformed)
        if self.now - launched < DELIVERY:
            return Attribution(PENDING, reason="CloudTrail has no launch record yet "
                               "(it can take 15 minutes)")
        return unknown("CloudTrail's event history has no launch record for it "
                       "(CloudTrail off, or the record is older than its history)")

    def fleet_owner(self, kind, fleet_id):
        """(Attribution, event name) of who last created or changed a fleet, group or
        launch template (``kind`` as in FLEET_SOURCES) within the event history."""
        names = next(n for _, k, n in FLEET_SOURCES if k == kind)
        if self.broken:
            return Attribution(FAULT, reason=self.broken), ""
        token = None
        for _ in range(FLEET_PAGES):
            if self.calls >= self.budget:
                return Attribution(PENDING, reason="lookups of this run used up"), ""
            params = dict(LookupAttributes=[{"AttributeKey": "ResourceName",
                                             "AttributeValue": fleet_id}],
                          StartTime=self.now - HISTORY, EndTime=self.now,
                          MaxResults=PAGE_SIZE)
            if token:
                params["NextToken"] = token
            page, fault = self.call(params)
            if fault:
                return Attribution(FAULT, reason=fault), ""
            record = change_record(page.get("Events") or (), names)
            if record:
                return Attribution(FOUND, creator_from_record(record)), record.get(
                    "eventName", "")
            token = page.get("NextToken")
            if not token:
                return unknown("no %s call in CloudTrail's 90 days" % "/".join(names)), ""
        return unknown("no %s call among its latest events" % "/".join(names)), ""

    def call(self, params):
        """(page, None), or (None, why it failed)."""
        for attempt in range(RETRIES + 1):
            self.wait()
            self.calls += 1
            try:
                return self.client.lookup_events(**params), None
            except ClientError as e:
                code = e.response["Error"]["Code"]
                if code in THROTTLED:
                    self.throttled += 1
                    if attempt < RETRIES and self.calls < self.budget:
                        self.sleep(self.interval * 2 ** (attempt + 1))
                        continue
                    # Others use the account's limit too: leave it to them, and to the
                    # next sweep, rather than spend the function's time backing off.
                    self.broken = ("CloudTrail kept throttling the lookups (%s); the next "
                                   "sweep goes on" % code)
                    log.warning("CloudTrail lookups throttled %d times in a row: no more "
                                "lookups in this run", RETRIES + 1)
                    return None, self.broken
                if code in DENIED:
                    self.broken = ("Broom's role may not call %s (%s): allow it, see "
                                   "docs/sweep.md" % (PERMISSION, code))
                    log.warning("CloudTrail lookups refused (%s): creators are reported "
                                "unknown; allow %s to Broom's role", code, PERMISSION)
                    return None, self.broken
                if code in BAD_REQUEST:
                    log.error("CloudTrail refused a lookup: %s", e)
                    return None, "CloudTrail refused the lookup (%s)" % code
                # Anything else would likely fail every lookup of the run: stop asking,
                # and report the violators with the reason rather than not at all.
                log.error("CloudTrail lookups failed, not tried again in this run: %s", e)
                self.broken = "CloudTrail lookups failed (%s)" % code
                return None, self.broken
        return None, "CloudTrail throttled the lookup"  # not reached

    def wait(self):
        """Sleep so that calls are at least ``interval`` seconds apart."""
        if self._last is not None:
            gap = self._last + self.interval - self.clock()
            if gap > 0:
                self.sleep(gap)
        self._last = self.clock()
