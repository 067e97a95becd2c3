"""Pure helpers that read CloudTrail records and build the EventBridge events that carry
them. Every function accepts any value and never raises."""
import re
from datetime import datetime, timezone

from c7n_broom.text import as_text

#: EC2 instance ids: "i-" and 8 (before 2016) or 17 hexadecimal digits.
INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
#: The EventBridge ``detail-type`` of CloudTrail API calls; nothing else carries a record.
API_CALL = "AWS API Call via CloudTrail"
_MISSING = object()


def get_path(value, *path):
    """``value[k1][k2]...``, or None as soon as a level is missing or not a dict."""
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _items(value, *path):
    items = get_path(value, *path)
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict)]


def as_list(value):
    """A repeated element of an XML-derived record as a list.

    CloudTrail records some EC2 calls (CreateFleet) in the shape of EC2's XML
    response, where a list holding one element is recorded as that element alone:
    ``{"item": {...}}`` rather than ``{"item": [{...}]}``. None gives [].
    """
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


#: CloudTrail calls that launch EC2 instances and name them in their response:
#: RunInstances, and CreateFleet of type ``instant`` (docs/launch-paths.md).
LAUNCH_CALLS = ("RunInstances", "CreateFleet")


def is_launch(record):
    """True for the record of a call that launches instances (LAUNCH_CALLS)."""
    return field(record, "eventName") in LAUNCH_CALLS


def cloudtrail_record(event):
    """The CloudTrail record of an event.

    Accepts an EventBridge "AWS API Call via CloudTrail" envelope (the record is its
    ``detail``) or a bare record (what a CloudTrail log file holds in ``Records[]``).
    Returns None when the event carries no record.
    """
    if not isinstance(event, dict):
        return None
    detail = event.get("detail")
    if isinstance(detail, dict) and ("eventName" in detail or "userIdentity" in detail):
        return detail
    if "eventName" in event or "userIdentity" in event:
        return event
    return None


def request_tags(record, resource_type="instance"):
    """Tags the request asked for on resources of ``resource_type``, as a dict.

    CloudTrail records them for RunInstances under
    ``requestParameters.tagSpecificationSet.items[].{resourceType, tags[].{key, value}}``
    and for CreateFleet under ``requestParameters.CreateFleetRequest.TagSpecification``
    (see ``fleet_request_tags``).
    """
    if field(record, "eventName") == "CreateFleet":
        return fleet_request_tags(record, resource_type)
    tags = {}
    for spec in _items(record, "requestParameters", "tagSpecificationSet", "items"):
        if spec.get("resourceType") != resource_type:
            continue
        spec_tags = spec.get("tags")
        for tag in spec_tags if isinstance(spec_tags, list) else ():
            if isinstance(tag, dict) and isinstance(tag.get("key"), str):
                value = tag.get("value")
                tags[tag["key"]] = value if isinstance(value, str) else ""
    return tags


def fleet_request_tags(record, resource_type="instance"):
    """Tags a CreateFleet request asked for on resources of ``resource_type``.

    CloudTrail records the request in EC2's query shape:
    ``requestParameters.CreateFleetRequest.TagSpecification[].{ResourceType,
    Tag[].{Key, Value}}``, where a list of one may be recorded as the element alone
    and a value that looks like a number may be recorded as one. Only string values
    are kept: ``007`` recorded as 7 is not the tag EC2 holds, and a tag the record
    does not tell exactly is left to EC2 (DescribeInstances, DescribeTags) to say.
    """
    tags = {}
    specs = get_path(record, "requestParameters", "CreateFleetRequest", "TagSpecification")
    for spec in as_list(specs):
        if not isinstance(spec, dict) or spec.get("ResourceType") != resource_type:
            continue
        for tag in as_list(spec.get("Tag")):
            if (isinstance(tag, dict) and isinstance(tag.get("Key"), str)
                    and isinstance(tag.get("Value", ""), str)):
                tags[tag["Key"]] = tag.get("Value", "")
    return tags


def launched_instances(record):
    """Instance ids a launch record (RunInstances, CreateFleet) names as launched, in
    the record's order.

    RunInstances: ``responseElements.instancesSet.items[].instanceId``. CreateFleet
    (type ``instant``; other types launch later and name nothing here):
    ``responseElements.CreateFleetResponse.fleetInstanceSet.item[].instanceIds.item[]``,
    each list possibly recorded as its only element; the ``errorSet`` beside it
    lists what could not be launched and names no instance.
    """
    if field(record, "eventName") == "CreateFleet":
        found = []
        response = get_path(record, "responseElements", "CreateFleetResponse")
        for launched in as_list(get_path(response, "fleetInstanceSet", "item")):
            found.extend(as_list(get_path(launched, "instanceIds", "item")))
    else:
        found = [item.get("instanceId")
                 for item in _items(record, "responseElements", "instancesSet", "items")]
    return [i for i in found if isinstance(i, str) and i.startswith("i-")]


def fleet_launches_later(record):
    """True for a CreateFleet record of type ``request`` or ``maintain``: such a fleet
    launches later, through EC2 Fleet's service-linked role and RunInstances records of
    its own; its CreateFleet names no instance and is not a launch by its caller."""
    fleet_type = field(record, "requestParameters", "CreateFleetRequest", "Type")
    return field(record, "eventName") == "CreateFleet" and fleet_type not in ("", "instant")


#: The ``invokedBy`` of the RunInstances records EC2 Fleet makes to launch a fleet's
#: instances (for an instant fleet, with its caller's identity).
EC2_FLEET = "ec2fleet.amazonaws.com"
#: The report key of every record of an EC2 Fleet's launch (``report_key``).
FLEET_LAUNCH = "fleet-launch"


def report_key(record):
    """What repeat suppression keys an instance's report on: the record's event id,
    except for an EC2 Fleet's launch, keyed on the launch itself ("fleet-launch"). An
    instant fleet's launch can reach Broom as two records, the CreateFleet its caller
    made and the RunInstances EC2 Fleet made for it (``invokedBy``
    ``ec2fleet.amazonaws.com``, set by AWS): one report for both. Other records keep
    one report per event."""
    fleet_made = (field(record, "eventName") == "RunInstances"
                  and field(record, "userIdentity", "invokedBy") == EC2_FLEET)
    if field(record, "eventName") == "CreateFleet" or fleet_made:
        return FLEET_LAUNCH
    return field(record, "eventID")


def with_instances(record, instance_ids):
    """The ``responseElements`` of a launch record of ``record``'s call naming exactly
    ``instance_ids``, in that call's shape (what the policies' ``ids`` read)."""
    if field(record, "eventName") == "CreateFleet":
        return {"CreateFleetResponse": {"fleetInstanceSet": {"item": [
            {"instanceIds": {"item": list(instance_ids)}}]}}}
    return {"instancesSet": {"items": [{"instanceId": i} for i in instance_ids]}}


def text(value):
    """A record field as a string ("" for missing or structured values)."""
    return "" if isinstance(value, (dict, list)) else as_text(value)


def field(record, *path):
    """A nested record field as a string; "" when missing."""
    return text(get_path(record, *path))


def envelope(record, account=None, region=None, event_id=None):
    """The EventBridge "AWS API Call via CloudTrail" event that delivers ``record``.

    ``account``, ``region`` and ``event_id`` default to the record's
    ``recipientAccountId``, ``awsRegion`` and ``eventID``; ``source`` and ``time``
    come from its ``eventSource`` and ``eventTime`` (Broom's records are EC2's).
    """
    service = field(record, "eventSource").split(".", 1)[0] or "ec2"
    return {
        "version": "0",
        "id": event_id or field(record, "eventID"),
        "detail-type": API_CALL,
        "source": "aws." + service,
        "account": account or field(record, "recipientAccountId"),
        "time": field(record, "eventTime"),
        "region": region or field(record, "awsRegion"),
        "resources": [],
        "detail": record,
    }


def skip_reason(event):
    """Why a CloudTrail event cannot be acted on, or None when it can.

    A failed call (``errorCode``) launched or changed nothing; a launch record
    without instances in its ``responseElements`` names no instance: a RunInstances
    record with a null response, a CreateFleet that launched nothing (only an
    ``errorSet``), or one of type ``request`` or ``maintain``, which launches later
    with its own RunInstances records. Events that are not CloudTrail records
    (schedules, state changes) are not judged here.
    """
    record = cloudtrail_record(event)
    if record is None:
        return None
    if record.get("errorCode"):
        return "the call failed (%s: %s)" % (text(record.get("errorCode")),
                                             text(record.get("errorMessage"))[:200])
    if is_launch(record) and not launched_instances(record):
        why = ("is null" if record.get("responseElements") is None else
               "has no instance ids")
        if fleet_launches_later(record):
            why += " (a fleet of type %s launches later, by RunInstances)" % _show(
                field(record, "requestParameters", "CreateFleetRequest", "Type"))
        return "%s record names no launched instance (responseElements %s)" % (
            field(record, "eventName"), why)
    return None


def _kind(value):
    """The JSON type of a value, for messages: "null", "an array", "a number", ..."""
    if value is _MISSING:
        return "missing"
    if value is None:
        return "null"
    for types, name in ((bool, "a boolean"), ((int, float), "a number"), (str, "a string"),
                        (list, "an array"), (dict, "a JSON object")):
        if isinstance(value, types):
            return name
    return "a %s" % type(value).__name__


def _show(value, limit=60):
    """A short, single-line, ASCII-only rendering of an untrusted value for a log line."""
    try:
        shown = ascii(value)
    except ValueError:  # an int too long for str()
        shown = "<%s>" % _kind(value)
    return shown if len(shown) <= limit else shown[:limit - 3] + "..."


def malformed(event, cloudtrail=False):
    """Why c7n would raise on this event rather than handle it, or None.

    Every Lambda mode needs a JSON object whose ``detail``, when present, is an object
    (EventBridge Scheduler's ``"{}"`` too). With ``cloudtrail`` (the function runs
    cloudtrail-mode policies) the event must be an EventBridge "AWS API Call via
    CloudTrail" envelope: c7n reads ``detail.eventName`` and ``detail.eventSource``
    without checking them.
    """
    if not isinstance(event, dict):
        return "the event is %s, not a JSON object" % _kind(event)
    detail = event.get("detail", _MISSING)
    if detail == "{}":
        detail = {}
    if detail is not _MISSING and not isinstance(detail, dict):
        return "its detail is %s, not a JSON object" % _kind(detail)
    if not cloudtrail:
        return None
    if detail is _MISSING:
        return ("it has no detail: cloudtrail-mode policies need an EventBridge "
                "\"AWS API Call via CloudTrail\" event")
    for key in ("eventName", "eventSource"):
        value = detail.get(key, _MISSING)
        if not isinstance(value, str):
            return "its detail.%s is %s, not a string" % (key, _kind(value))
    return None


def unusable_ids(ids):
    """Why c7n cannot look up resource ids as its event mode extracted them, or None.

    c7n calls string methods on every id, and sends those with the instance prefix
    ``i-`` to DescribeInstances: one that is not an instance id can fail the SDK
    itself (a NUL, a lone surrogate) rather than come back as an EC2 error.
    """
    for value in ids or ():
        if not isinstance(value, str):
            return "resource id %s is %s, not a string" % (_show(value), _kind(value))
        if value.startswith("i-") and not INSTANCE_ID.fullmatch(value):
            return "%s is not an EC2 instance id (i- and 8 or 17 hex digits)" % _show(value)
    return None


#: How far an instance's LaunchTime may be from its RunInstances record's eventTime.
#: Both are stamped by AWS within a second of each other; the margin only absorbs
#: clock skew. Delivery delays and Lambda retries change neither of them.
LAUNCH_TOLERANCE = 120


def untrusted(event, subscriptions):
    """Why an EventBridge event must not be acted on as a CloudTrail API call, or None.

    Only AWS emits events whose ``source`` starts with ``aws.`` (``PutEvents``
    refuses them), and EventBridge itself sets ``account`` and ``region`` (on events
    forwarded between buses too: they keep the account and region they came from).
    So the envelope must be AWS's CloudTrail API-call event for a call the
    function's policies subscribe to (``subscriptions``: a set of (eventSource,
    eventName) pairs), and the record inside must name the same account and region
    as the envelope: a record copied into another account's event, or a region's
    event carrying another region's record, is refused.
    """
    record = event.get("detail") if isinstance(event, dict) else None
    if not isinstance(record, dict):
        return "it carries no CloudTrail record"
    source = text(event.get("source"))
    service = field(record, "eventSource").split(".", 1)[0]
    if not source.startswith("aws.") or source != "aws." + service:
        return "source %s is not the AWS source of %s" % (
            _show(event.get("source")), _show(field(record, "eventSource")))
    if event.get("detail-type") != API_CALL:
        return "detail-type %s is not %r" % (_show(event.get("detail-type")), API_CALL)
    call = (field(record, "eventSource"), field(record, "eventName"))
    if call not in subscriptions:
        return "%s %s is not a call this function subscribes to" % (
            _show(call[0]), _show(call[1]))
    for envelope_key, record_key in (("account", "recipientAccountId"),
                                     ("region", "awsRegion")):
        if text(event.get(envelope_key)) != field(record, record_key):
            return "the envelope's %s %s differs from the record's %s %s" % (
                envelope_key, _show(event.get(envelope_key)), record_key,
                _show(record.get(record_key)))
    return None


def parse_time(value):
    """A timezone-aware datetime from an ISO 8601 string or a datetime; None if neither."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def age_seconds(record, now=None):
    """Seconds since a record's ``eventTime``; None when it has no valid one."""
    event_time = parse_time(get_path(record, "eventTime"))
    if event_time is None:
        return None
    return ((now or datetime.now(timezone.utc)) - event_time).total_seconds()


def launch_mismatch(record, launch_time):
    """Why a launch record (RunInstances, CreateFleet) cannot be the launch of an
    instance with this LaunchTime, or None. Records of other calls are not judged here.

    A record naming an instance launched at another time is forged or stale (a
    replayed log file, a dead-letter message, an instance stopped and started since):
    Broom must not act on it. An instant CreateFleet launches while the call runs,
    as RunInstances does, so the same tolerance applies.
    """
    if not is_launch(record):
        return None
    call = field(record, "eventName")
    event_time = parse_time(record.get("eventTime"))
    if event_time is None:
        return "the %s record has no valid eventTime (%s)" % (call, _show(
            record.get("eventTime")))
    launched = parse_time(launch_time)
    if launched is None:
        return "EC2 shows no launch time for it"
    if abs((launched - event_time).total_seconds()) > LAUNCH_TOLERANCE:
        return "EC2 shows it launched at %s, but the %s record is from %s" % (
            launched.strftime("%Y-%m-%dT%H:%M:%SZ"), call,
            event_time.strftime("%Y-%m-%dT%H:%M:%SZ"))
    return None


def subscriptions(modes, shortcuts=None):
    """The (eventSource, eventName) pairs cloudtrail-mode policies subscribe to.

    ``modes`` are the policies' ``mode`` blocks; ``shortcuts`` maps c7n's named
    events (``mode.events: [RunInstances]``) to their ``{source, ...}`` definition
    (``c7n.cwe.CloudWatchEvents.trail_events``).
    """
    pairs = set()
    for mode in modes:
        if not isinstance(mode, dict) or mode.get("type") != "cloudtrail":
            continue
        for item in mode.get("events") or ():
            if isinstance(item, str):
                item = dict((shortcuts or {}).get(item) or {}, event=item)
            if isinstance(item, dict) and item.get("source") and item.get("event"):
                pairs.add((item["source"], item["event"]))
    return pairs


def summary(event):
    """One log line naming an event, without its credentials and network details
    (access key id, source IP address, user agent) or its size."""
    record = cloudtrail_record(event) or {}
    ids = launched_instances(record) or [
        item["resourceId"] for item in _items(record, "requestParameters", "resourcesSet",
                                               "items")
        if isinstance(item.get("resourceId"), str)]
    outer = event if isinstance(event, dict) else {}
    return "event %s %s account %s region %s instances %s" % (
        _show(record.get("eventID")), _show(record.get("eventName")),
        _show(outer.get("account")), _show(outer.get("region")),
        _show(",".join(ids) or "-", 400))
