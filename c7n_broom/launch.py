"""One event, read once: the launch record every stage of the handler reads.

An event reaches Broom as a raw dict: an EventBridge "AWS API Call via CloudTrail"
envelope (or a bare CloudTrail record), possibly with the marker of a re-check Broom
scheduled. ``parse`` reads it once, at the edge, into a ``Launch``: what the call was,
who made it, when, the instances it names, the tags it asked for, whether AWS emitted
it for a call the function subscribes to, and Broom's own markers. The handler's flow
then reads it top to bottom: trust, resolve (a record CloudTrail cut), judge, act, owe,
tell.

``of(event)`` is the record of an event, parsed once: the handler parses the event it
receives (``remember``) and every element of the policies it runs reads that record
until it is done with it (``forget``). A re-check judges the record of the hold it
names, not what the event carried (``replace_record``). ``parse`` is pure: it accepts
any value and never raises.
"""
import dataclasses
import threading
import types
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Optional

from c7n_broom import events
from c7n_broom.identity import UNKNOWN, Creator, creator_from_record

#: ``Launch.trusted`` when no trust verdict was asked for (``parse`` without
#: subscriptions: a policy run outside the handler, a test).
UNJUDGED = None
_EMPTY = types.MappingProxyType({})


@dataclass(frozen=True)
class Launch:
    """What one event says, read once. Every field is derived from the event alone;
    ``record`` is the CloudTrail record read (for the helpers of ``events`` that take
    one, and for the stored findings); nothing here changes it."""

    #: The record's ``eventID``, ``eventName``, ``eventSource`` ("" when missing).
    event_id: str = ""
    event_name: str = ""
    event_source: str = ""
    #: The record's ``eventTime`` (None when missing or not a time).
    event_time: Optional[datetime] = None
    #: The envelope's ``account`` and ``region`` (what EventBridge set; for a bare
    #: record, the record's ``recipientAccountId`` and ``awsRegion``).
    account: str = ""
    region: str = ""
    #: The instances the record names as launched, in its order.
    instance_ids: tuple = ()
    #: Who made the call (``identity.UNKNOWN`` without a record).
    principal: Creator = UNKNOWN
    #: The tags the request asked for on its instances.
    request_tags: types.MappingProxyType = dataclasses.field(
        default_factory=lambda: _EMPTY, hash=False)
    #: True: AWS emitted it, for a subscribed call; False: refused (``distrust`` says
    #: why); None: not judged.
    trusted: Optional[bool] = UNJUDGED
    distrust: str = ""
    #: Why it cannot be acted on (a failed call, a launch naming no instance), or "".
    skip: str = ""
    #: A launch record whose instances CloudTrail replaced with ``{"omitted": true}``.
    omitted: bool = False
    #: The hold a re-check names (None for any other event); True for any event that
    #: claims to be a re-check (verified or not: ``recheck.verified``).
    hold_key: Optional[str] = None
    is_recheck: bool = False
    #: What repeat suppression keys reports on (``events.report_key``).
    report_key: str = ""
    #: What the event's obligations and its reports' FIFO deduplication are keyed on
    #: (``owed.event_key``): "" without a record.
    key: str = ""
    #: One log line naming the event (``events.summary``).
    summary: str = ""
    #: The CloudTrail record read (None when the event carries none).
    record: Optional[dict] = dataclasses.field(default=None, repr=False, compare=False)

    @property
    def has_record(self):
        return self.record is not None

    def age_seconds(self, now=None):
        """Seconds since the record's ``eventTime``; None when it has no valid one."""
        if self.event_time is None:
            return None
        return ((now or datetime.now(timezone.utc)) - self.event_time).total_seconds()


def _key(record, hold_key):
    key = events.report_key(record) if record is not None else ""
    if key == events.FLEET_LAUNCH:
        key += "#" + min(events.launched_instances(record) or [""])
    if key and hold_key:  # the re-check reports what it does
        key += "#recheck"
    return key


def parse(event, subscriptions=None):
    """The Launch of ``event`` (any value; never raises). With ``subscriptions`` (the
    (eventSource, eventName) pairs the function's cloudtrail-mode policies subscribe
    to, ``events.subscriptions``) it carries the trust verdict (``events.untrusted``)."""
    from c7n_broom import recheck  # the home of its marker, which reads this record

    record = events.cloudtrail_record(event)
    outer = event if isinstance(event, dict) else {}
    hold_key = recheck.hold_key(event)
    trusted, distrust = UNJUDGED, ""
    if subscriptions is not None and isinstance(event, dict):
        distrust = events.untrusted(event, subscriptions) or ""
        trusted = not distrust
    if record is None:
        return Launch(account=events.text(outer.get("account")),
                      region=events.text(outer.get("region")), trusted=trusted,
                      distrust=distrust, hold_key=hold_key,
                      is_recheck=recheck.is_recheck(event), summary=events.summary(event))
    return Launch(
        event_id=events.field(record, "eventID"),
        event_name=events.field(record, "eventName"),
        event_source=events.field(record, "eventSource"),
        event_time=events.parse_time(record.get("eventTime")),
        account=events.text(outer.get("account")) if record is not outer else
        events.field(record, "recipientAccountId"),
        region=events.text(outer.get("region")) if record is not outer else
        events.field(record, "awsRegion"),
        instance_ids=tuple(events.launched_instances(record)),
        principal=creator_from_record(record),
        request_tags=types.MappingProxyType(events.request_tags(record)),
        trusted=trusted, distrust=distrust,
        skip=events.skip_reason(event) or "",
        omitted=_omitted(record),
        hold_key=hold_key, is_recheck=recheck.is_recheck(event),
        report_key=events.report_key(record),
        key=_key(record, hold_key),
        summary=events.summary(event),
        record=record,
    )


def _omitted(record):
    from c7n_broom import omitted  # its alerting needs more than a parse does
    return bool(omitted.is_omitted(record))


# The event the handler is working on, as (event, its detail, its marker, its Launch):
# a Lambda container handles one event at a time. A hit needs the very same objects,
# so an event whose detail was replaced (a re-check, a resolved record) is read anew.
_current = None
_lock = threading.Lock()


def _identity(event):
    from c7n_broom.recheck import MARKER

    return (event.get("detail"), event.get(MARKER))


def remember(event, launch):
    """Make ``launch`` the record of ``event`` (what ``of`` returns) until ``forget``,
    and return it: the handler parses the event it receives once, at the edge."""
    global _current
    if isinstance(event, dict):
        with _lock:
            _current = (event, _identity(event), launch)
    return launch


def forget():
    """The handler is done with its event: ``of`` reads any event anew (a caller may
    change the dict in place and hand it over again)."""
    global _current
    with _lock:
        _current = None


def of(event):
    """The Launch of ``event``: the handler's (parsed once, with its trust verdict)
    while it works on that event; parsed from ``event`` otherwise (a policy run
    outside the handler: no trust verdict)."""
    with _lock:
        current = _current
    if current is not None and current[0] is event:
        detail, marker = _identity(event)
        if current[1][0] is detail and current[1][1] is marker:
            return current[2]
    return parse(event)


def replace_record(event, record):
    """Make ``record`` the CloudTrail record of ``event`` (a re-check judges the record
    of the hold it names): sets its ``detail`` and returns its Launch, keeping the
    trust verdict already given."""
    before = of(event)
    event["detail"] = record
    after = dataclasses.replace(parse(event), trusted=before.trusted,
                                distrust=before.distrust)
    with _lock:
        working = _current is not None and _current[0] is event
    return remember(event, after) if working else after


def resolved(event, before):
    """The Launch of ``event``, the event of ``before`` with its record's instances
    found (``omitted.resolve``), keeping ``before``'s trust verdict."""
    return remember(event, dataclasses.replace(
        parse(event), trusted=before.trusted, distrust=before.distrust))
