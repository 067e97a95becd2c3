"""Record selection and the bounded state of the simulation.

Only four EC2 calls matter: the launches (``events.LAUNCH_CALLS``: ``RunInstances``
and an instant fleet's ``CreateFleet``), and ``CreateTags`` / ``DeleteTags`` on their
instances within the grace period. Everything else (most of a trail) is dropped as
soon as it is read, before its time is even parsed.

Records are not in time order in a real trail, within one file or across files (each
region and account delivers its own files, about every 5 minutes). So the selected
records wait in a heap until the newest time seen is ``lateness`` seconds past them
(:class:`Reorder`), and come out in time order; a launch then waits in
:class:`Pending` until the stream passes its deadline, collecting the tag calls on its
instances. Both hold only what a few minutes of a trail selects: never the history.
A record older than what was already released (later than ``lateness``) is still used,
and counted as late; a launch read twice while it waits (overlapping sources) counts
once. An instant fleet's launch can be recorded twice, as the caller's ``CreateFleet``
and as the ``RunInstances`` records EC2 Fleet makes for it (``invokedBy``
``ec2fleet.amazonaws.com``): the records of one fleet launch (``events.report_key``)
that name instances already waiting join that launch, so each instance is judged
once, as the Lambda reports it once.
"""
import hashlib
import heapq
from dataclasses import dataclass, field
from datetime import datetime

import orjson

from broom.whatif import sources
from c7n_broom import events

EC2 = "ec2.amazonaws.com"
LAUNCHES = events.LAUNCH_CALLS
TAGGING = ("CreateTags", "DeleteTags")
NAMES = frozenset(LAUNCHES + TAGGING)
#: Seconds a record may arrive after records that are newer than it.
DEFAULT_LATENESS = 900
#: Seconds after its grace period that a launch still watches its instances' tags, to
#: say when a Code came too late (it changes no verdict).
WATCH_AFTER_GRACE = 300


@dataclass(frozen=True)
class Selection:
    """Which records the simulation reads: EC2's launch and tag calls, in a time window
    (``since`` inclusive, ``until`` exclusive; aware datetimes or None) and, when
    given, only some accounts and regions."""

    since: datetime | None = None
    until: datetime | None = None
    accounts: frozenset = frozenset()
    regions: frozenset = frozenset()
    #: Seconds past ``until`` that tag calls are still read (the last launches' grace
    #: period and watch).
    tag_slack: float = WATCH_AFTER_GRACE
    #: The launch calls the simulated policy subscribes to (of LAUNCHES).
    launches: frozenset = frozenset(LAUNCHES)

    def pick(self, record):
        """(epoch seconds, record) when the simulation needs the record, else None."""
        name = record.get("eventName")
        if name not in NAMES or record.get("eventSource") != EC2:
            return None
        if name in LAUNCHES and name not in self.launches:
            return None
        if self.accounts and record.get("recipientAccountId") not in self.accounts:
            return None
        if self.regions and record.get("awsRegion") not in self.regions:
            return None
        when = events.parse_time(record.get("eventTime"))
        if when is None or (self.since and when < self.since):
            return None
        if self.until and when >= self.until and (
                name in LAUNCHES or (when - self.until).total_seconds() >= self.tag_slack):
            return None
        return when.timestamp(), record

    def take(self, record):
        """(epoch seconds, record, digest of its content) when the simulation needs
        the record, else None: what the processes reading files hand over."""
        picked = self.pick(record)
        return None if picked is None else picked + (digest(record),)


def digest(record):
    """What tells a record's content from another's, whatever its keys' order."""
    return hashlib.blake2b(orjson.dumps(record, option=orjson.OPT_SORT_KEYS),
                           digest_size=16).digest()


class Reorder:
    """Releases records in time order once the newest time seen is ``lateness``
    seconds past them."""

    def __init__(self, lateness=DEFAULT_LATENESS):
        self.lateness = lateness
        self.heap = []
        self.newest = float("-inf")
        self.released = float("-inf")
        self.late = 0
        self.seq = 0

    def push(self, when, record):
        """Add a record; yield the records now due, oldest first."""
        if when < self.released:
            self.late += 1
        self.seq += 1
        heapq.heappush(self.heap, (when, self.seq, record))
        self.newest = max(self.newest, when)
        yield from self._release(self.newest - self.lateness)

    def flush(self):
        yield from self._release(float("inf"))

    def _release(self, upto):
        while self.heap and self.heap[0][0] <= upto:
            when, _, record = heapq.heappop(self.heap)
            self.released = max(self.released, when)
            yield when, record

    def __len__(self):
        return len(self.heap)


@dataclass
class Launch:
    """A launch waiting for its deadline, and what happened to its instances' tags.

    ``record`` is the launch record judged (a fleet's CreateFleet when one joined);
    ``records`` every record of the launch, that one first; ``tag_calls`` has one
    entry per instance to judge, in the record's order."""

    when: float
    record: dict
    grace: float
    #: instance id -> [(seconds after launch, call, {key: value or None} or None)]
    tag_calls: dict = field(default_factory=dict)
    records: list = field(default_factory=list)
    key: tuple = ()

    def join(self, record):
        """Another record of the same fleet launch (its CreateFleet is judged first)."""
        if record in self.records:
            return
        if events.field(record, "eventName") == "CreateFleet" and events.field(
                self.record, "eventName") != "CreateFleet":
            self.records.insert(0, record)
            self.record = record
        else:
            self.records.append(record)


class Pending:
    """Launches waiting for their deadline (launch time + grace + WATCH_AFTER_GRACE),
    keyed by instance id for the tag calls; ``due(now)`` hands over those whose
    deadline passed, in launch order, and forgets them."""

    def __init__(self, grace, watch=WATCH_AFTER_GRACE):
        self.grace = grace
        self.watch = watch
        self.queue = []  # (deadline, seq, Launch)
        self.by_instance = {}
        self.events = {}  # repeat_key -> Launch, while it waits
        self.seq = 0
        self.peak = 0
        self.repeats = 0  # records read again (the same eventID)
        self.joined = 0  # records of a fleet launch already waiting

    def add(self, when, record):
        """Wait for a launch's deadline. A repeat of a launch still waiting (the same
        eventID: overlapping sources, a file read twice) is dropped; a record of a
        fleet launch (``events.report_key``) joins the waiting launch of that kind
        that holds each instance it names, and waits only with those it adds."""
        key = repeat_key(record)
        if key in self.events:
            self.repeats += 1
            return
        instance_ids = events.launched_instances(record)
        if events.report_key(record) == events.FLEET_LAUNCH:
            owners = {i: self.by_instance.get(i) for i in instance_ids}
            joined = {i: owner for i, owner in owners.items() if owner is not None
                      and events.report_key(owner.record) == events.FLEET_LAUNCH}
            for owner in joined.values():
                owner.join(record)
            instance_ids = [i for i in instance_ids if i not in joined]
            if joined and not instance_ids:
                self.joined += 1
                return
        launch = Launch(when, record, self.grace, records=[record], key=key)
        self.events[key] = launch
        for instance_id in instance_ids:
            launch.tag_calls[instance_id] = []
            self.by_instance[instance_id] = launch
        self.seq += 1
        heapq.heappush(self.queue, (when + self.grace + self.watch, self.seq, launch))
        self.peak = max(self.peak, len(self.queue))
        return True

    def tag(self, when, record):
        """Note a CreateTags/DeleteTags call on pending instances."""
        call = record.get("eventName")
        changed = tag_set(record)
        for instance_id in tagged_resources(record):
            launch = self.by_instance.get(instance_id)
            if launch is not None and when >= launch.when:
                launch.tag_calls[instance_id].append((when - launch.when, call, changed))

    def due(self, now):
        while self.queue and self.queue[0][0] < now:
            yield self._pop()

    def drain(self):
        while self.queue:
            yield self._pop()

    def _pop(self):
        _, _, launch = heapq.heappop(self.queue)
        self.events.pop(launch.key, None)
        for instance_id in launch.tag_calls:
            if self.by_instance.get(instance_id) is launch:
                del self.by_instance[instance_id]
        return launch

    def __len__(self):
        return len(self.queue)


def repeat_key(record):
    """What tells a launch record from another: its eventID, time and instances."""
    return (record.get("eventID"), record.get("eventTime"),
            tuple(events.launched_instances(record)))


def tagged_resources(record):
    items = events.get_path(record, "requestParameters", "resourcesSet", "items")
    return [item.get("resourceId") for item in items if isinstance(item, dict)] if isinstance(
        items, list) else []


def tag_set(record):
    """{key: value} of a CreateTags/DeleteTags request (value None: a DeleteTags key
    given without a value); None for a DeleteTags without tags (it deletes them all)."""
    items = events.get_path(record, "requestParameters", "tagSet", "items")
    if not isinstance(items, list):
        return None
    found = {}
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("key"), str):
            value = item.get("value")
            found[item["key"]] = value if isinstance(value, str) else None
    return found


def simulate(files, selection, grace, judge, lateness=DEFAULT_LATENESS, on_file=None):
    """Run the stream: ``files`` are sources.Read/File/Skipped; ``judge(launch)`` is called
    once per launch, in launch order, after its deadline; returns (skipped, stats).
    ``on_file(item, stats)`` is called after each file (progress)."""
    reorder, pending = Reorder(lateness), Pending(grace)
    stats = {"files": 0, "records": 0, "selected": 0, "later_fleets": 0}
    skipped = []

    def handle(when, record):
        for launch in pending.due(when):
            judge(launch)
        if record.get("eventName") in LAUNCHES:
            if events.fleet_launches_later(record) and not events.launched_instances(
                    record):
                # a fleet of type request or maintain: its service-linked role
                # launches later, with RunInstances records of its own (the Lambda
                # skips it: events.skip_reason)
                stats["later_fleets"] += 1
            else:
                # a failed call launched nothing: it is judged in turn all the same
                pending.add(when, record)
        elif record.get("errorCode"):
            return  # a failed tag call changed nothing
        else:
            pending.tag(when, record)

    pick = selection.pick
    seen = EventIds(lateness + grace + WATCH_AFTER_GRACE)
    for item in files:
        if isinstance(item, sources.Skipped):
            skipped.append(item)
        else:
            stats["files"] += 1
            if isinstance(item, sources.Read):  # selected as it was read
                stats["records"] += item.count
                picked = item.kept
            else:
                stats["records"] += len(item.records)
                picked = (p for p in map(pick, item.records) if p is not None)
            for when, record, *content in picked:
                stats["selected"] += 1
                if not seen.check(when, record, *content):
                    continue  # the first one read is the one used
                for when_due, due in reorder.push(when, record):
                    handle(when_due, due)
        if on_file:
            on_file(item, stats)
        del item  # one file in memory: not this one while the next is read
    for when, record in reorder.flush():
        handle(when, record)
    for launch in pending.drain():
        judge(launch)
    stats["late"] = reorder.late
    stats["repeats"] = pending.repeats
    stats["joined"] = pending.joined
    stats["peak_pending"] = pending.peak
    stats["conflicting_records"] = seen.conflicts
    stats["conflicting_event_ids"] = seen.examples
    return skipped, stats


class EventIds:
    """Records selected twice with the same ``eventID`` but not the same content: a
    trail that was tampered with, or two trails that disagree. Only the records of
    the last ``horizon`` seconds are remembered (what the stream holds anyway), so
    memory stays flat; a repeat with the same content (overlapping sources) is not an
    anomaly."""

    EXAMPLES = 10

    def __init__(self, horizon):
        self.horizon = horizon
        self.digests = {}  # eventID -> digest of the record
        self.order = []  # heap of (time, eventID)
        self.newest = float("-inf")
        self.conflicts = 0
        self.examples = []

    def check(self, when, record, content=None):
        """False when ``record`` conflicts with one read before (it is not used)."""
        event_id = record.get("eventID")
        if not isinstance(event_id, str):
            return True
        content = content or digest(record)
        known = self.digests.get(event_id)
        if known is None:
            self.digests[event_id] = content
            heapq.heappush(self.order, (when, event_id))
        elif known != content:
            self.conflicts += 1
            if len(self.examples) < self.EXAMPLES and event_id not in self.examples:
                self.examples.append(event_id)
            return False
        self.newest = max(self.newest, when)
        while self.order and self.order[0][0] < self.newest - self.horizon:
            _, old = heapq.heappop(self.order)
            self.digests.pop(old, None)
        return True
