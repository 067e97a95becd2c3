"""Pure helpers that read CloudTrail records. Every function accepts any value and never raises."""


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
        for tag in spec.get("tags") or ():
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
    return str(value)


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
