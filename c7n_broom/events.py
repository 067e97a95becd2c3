"""Pure helpers that read CloudTrail records. Every function accepts any value and never raises."""
import re

#: EC2 instance ids: "i-" and 8 (before 2016) or 17 hexadecimal digits.
INSTANCE_ID = re.compile(r"i-(?:[0-9a-f]{8}|[0-9a-f]{17})")
_MISSING = object()


def _get(value, *path):
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def _items(value, *path):
    items = _get(value, *path)
    if not isinstance(items, list):
        return []
    return [item for item in items if isinstance(item, dict)]


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

    CloudTrail records them under
    ``requestParameters.tagSpecificationSet.items[].{resourceType, tags[].{key, value}}``.
    """
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


def launched_instances(record):
    """Instance ids launched by a RunInstances record, in the record's order."""
    ids = []
    for item in _items(record, "responseElements", "instancesSet", "items"):
        instance_id = item.get("instanceId")
        if isinstance(instance_id, str) and instance_id.startswith("i-"):
            ids.append(instance_id)
    return ids


def text(value, default=""):
    """A record field as a string ("" for missing or structured values)."""
    if value is None or isinstance(value, (dict, list)):
        return default
    try:
        return str(value)
    except ValueError:  # an int too long for str() (sys.int_info.str_digits_check_threshold)
        return default


def field(record, *path):
    """A nested record field as a string; "" when missing."""
    return text(_get(record, *path))


def skip_reason(event):
    """Why a CloudTrail event cannot be acted on, or None when it can.

    A failed call (``errorCode``) launched or changed nothing; a RunInstances record
    without ``responseElements`` names no instance. Events that are not CloudTrail
    records (schedules, state changes) are not judged here.
    """
    record = cloudtrail_record(event)
    if record is None:
        return None
    if record.get("errorCode"):
        return "the call failed (%s: %s)" % (text(record.get("errorCode")),
                                             text(record.get("errorMessage"))[:200])
    if record.get("eventName") == "RunInstances" and not launched_instances(record):
        return "RunInstances record names no launched instance (responseElements %s)" % (
            "is null" if record.get("responseElements") is None else "has no instance ids")
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
