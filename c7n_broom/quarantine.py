"""Quarantine: instances with history are stopped, snapshotted and terminated over days.

Terminating an instance seconds after its launch loses nothing; terminating one that
has run for weeks loses what is on its volumes. With ``quarantine`` set,
``safe-terminate`` takes the instances it would terminate through a timeline instead:

1. first finding: a notice in the report ("will be stopped at T1 and terminated at
   T2 unless ..."), and a quarantine record in Broom's state table (never in tags:
   the owner can write those);
2. at T1 (``stop-after``): stopped (not hibernated). Fleet members are not stopped
   (their fleet would replace them), nor instances that cannot be (instance-store
   root, spot): the report says so;
3. at T2 (``terminate-after``): every attached EBS volume snapshotted
   (``CreateSnapshots``, tagged with the instance's tags and Broom's: see
   ``snapshot_tags``), then terminated; the report lists the snapshot ids, which
   ``broom restore`` turns back into an instance.

One step per run: a run re-judges every instance first (the policy's filters), so an
instance fixed in the meantime leaves quarantine (reported once as resolved), and a
person always gets at least one report between two steps. Termination and stop
protection are never cleared: such an instance is reported as needing a person, every
run, with who protected it when CloudTrail says. The cap applies to each step: more
stops (or terminations) due in one run than ``max-terminations`` and none of them is
made in that run.

The decisions are pure (``step``); the AWS calls are at the edges (``Quarantine``).
What is owed is written before the call where a repeat would do harm, and settled
after: a run that dies after StopInstances stops again (harmless); one that dies
after CreateSnapshots finds its snapshots by their ``broom:quarantine`` tag (only
those started after the record's last step: ``snapshots.reusable``).
"""
import json
import logging
import re
import time
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

from botocore.exceptions import ClientError
from c7n.exceptions import PolicyValidationError
from c7n.utils import local_session

from c7n_broom import (
    codes,
    cost,
    events,
    fleets,
    instances,
    launch,
    lookup,
    report,
    snapshots,
    state,
)
from c7n_broom.identity import creator_from_record
from c7n_broom.text import readable
from c7n_broom.validation import where

log = logging.getLogger("custodian.broom.quarantine")

#: ``0s``, ``15m``, ``24h``, ``7d``.
DURATION = re.compile(r"^(\d{1,6})([smhd])$")
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_KEEP = "30d"
#: The Code reason of an instance released from quarantine (compliant again).
ALLOWED = "allowed"
#: Set by ``released`` on a compliant instance under quarantine.
RELEASED = "c7n:broom-released"

SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["stop-after", "terminate-after"],
    "properties": {
        "stop-after": {"type": "string"},
        "terminate-after": {"type": "string"},
        "snapshot": {"type": "boolean"},
        "keep-snapshots": {"type": "string"},
    },
}

#: Steps a record can be at.
NOTICE, STOPPED, STOP_SKIPPED, SNAPSHOTTED, TERMINATED = (
    "notice", "stopped", "stop-skipped", "snapshotted", "terminated")
STEPS = (NOTICE, STOPPED, STOP_SKIPPED, SNAPSHOTTED, TERMINATED)
#: What a run does to one instance (``step``'s answer).
START, WAIT, STOP, SKIP_STOP, TERMINATE, NEEDS_PERSON = (
    "start", "wait", "stop", "skip-stop", "terminate", "needs-person")

#: EC2 refuses to stop it: instance-store root, some spot instances.
UNSTOPPABLE = ("UnsupportedOperation", "UnsupportedInstanceAttribute",
               "IncorrectSpotRequestState", "InvalidParameterCombination")
PROTECTED = "OperationNotPermitted"
#: CloudTrail lookups of who protected an instance, per run at most.
PROTECTION_LOOKUPS = 10

PERMISSIONS = (
    "ec2:StopInstances", "ec2:CreateSnapshots", "ec2:CreateTags", "ec2:DescribeSnapshots",
    "ec2:DescribeVolumes", "ec2:DescribeInstanceAttribute", "cloudtrail:LookupEvents",
    "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
    "dynamodb:BatchGetItem")


def parse_duration(text):
    """Seconds in ``0s``, ``15m``, ``24h``, ``7d``; ValueError otherwise."""
    found = DURATION.match(text) if isinstance(text, str) else None
    if not found:
        raise ValueError("%r is not a duration: write a whole number and s, m, h or d "
                         "(0s, 15m, 24h, 7d)" % (text,))
    return int(found.group(1)) * UNITS[found.group(2)]


@dataclass(frozen=True)
class Settings:
    """A policy's ``quarantine`` option, in seconds."""

    stop_after: int
    terminate_after: int
    snapshot: bool = True
    keep: int = 30 * 86400


def settings(data):
    """The Settings of a ``safe-terminate``'s data, or None without ``quarantine``.
    Raises ValueError for a bad duration."""
    option = data.get("quarantine")
    if not isinstance(option, dict):
        return None
    return Settings(parse_duration(option.get("stop-after")),
                    parse_duration(option.get("terminate-after")),
                    option.get("snapshot", True),
                    parse_duration(option.get("keep-snapshots", DEFAULT_KEEP)))


def check(element):
    """Raise PolicyValidationError for a ``quarantine`` Broom cannot follow: a bad
    duration, terminate-after before stop-after, or ``force`` beside it; and for
    ``force`` in a sweep (periodic mode), whose instances all have history."""
    mode = (element.manager.data.get("mode") or {}) if element.manager else {}
    if element.data.get("force") is True and mode.get("type") == "periodic":
        raise PolicyValidationError(
            "%s: 'force': true is refused in a periodic policy (a sweep): the instances "
            "it finds have history, and Broom never clears a protection a person set "
            "on one. Set 'force: false' (a protected instance is then reported as "
            "needing a person); force is for the launch path (ec2-tags.yml) only" %
            where(element))
    if "quarantine" not in element.data:
        return
    try:
        found = settings(element.data)
    except ValueError as e:
        raise PolicyValidationError("%s: 'quarantine': %s" % (where(element), e))
    if found.terminate_after < found.stop_after:
        raise PolicyValidationError(
            "%s: 'quarantine': terminate-after (%s) must not be earlier than stop-after "
            "(%s)" % (where(element), element.data["quarantine"]["terminate-after"],
                      element.data["quarantine"]["stop-after"]))
    if element.data.get("force") is True:
        raise PolicyValidationError(
            "%s: 'force': true is refused with 'quarantine': Broom never clears the "
            "termination or stop protection of an instance with history (a person "
            "set it); set 'force: false', or remove the option. force is for the "
            "launch path (ec2-tags.yml) only" % where(element))


# -- the record --------------------------------------------------------------------

@dataclass(frozen=True)
class Record:
    """One instance's quarantine, as kept in the state table (``quarantine#`` item).
    ``instance`` is what ``broom restore`` needs (type, subnet, groups, profile, key,
    tags, block devices), set when the snapshots are taken."""

    instance_id: str
    first: int  # epoch seconds of the first finding
    stop_at: int
    terminate_at: int
    step: str = NOTICE
    step_at: int = 0
    policy: str = ""
    event: str = ""
    note: str = ""
    snapshots: tuple = ()
    instance: dict = field(default_factory=dict)
    allowed: tuple = ()

    @property
    def quarantine_id(self):
        return "%s@%d" % (self.instance_id, self.first)

    def as_item(self, key, expires):
        return {state.KEY: state._s(key), state.TTL_ATTRIBUTE: state._n(expires),
                "record": state._s(json.dumps({
                    "instance_id": self.instance_id, "first": self.first,
                    "stop_at": self.stop_at, "terminate_at": self.terminate_at,
                    "step": self.step, "step_at": self.step_at, "policy": self.policy,
                    "event": self.event, "note": self.note,
                    "snapshots": list(self.snapshots), "instance": self.instance,
                    "allowed": list(self.allowed)}, sort_keys=True))}

    @classmethod
    def from_item(cls, item, now=None):
        """The Record an item holds, or None (with a log line) when it does not parse
        or has lapsed."""
        try:
            if now is not None and float(item[state.TTL_ATTRIBUTE]["N"]) <= now:
                return None
            data = json.loads(item["record"]["S"])
            found = cls(
                instance_id=str(data["instance_id"]), first=int(data["first"]),
                stop_at=int(data["stop_at"]), terminate_at=int(data["terminate_at"]),
                step=data["step"], step_at=int(data.get("step_at") or 0),
                policy=str(data.get("policy") or ""), event=str(data.get("event") or ""),
                note=str(data.get("note") or ""),
                snapshots=tuple(str(s) for s in data.get("snapshots") or ()),
                instance=dict(data.get("instance") or {}),
                allowed=tuple(str(c) for c in data.get("allowed") or ()))
        except (KeyError, TypeError, ValueError) as e:
            log.warning("quarantine record %s ignored: it does not parse (%s)",
                        item.get(state.KEY, {}).get("S", "?"), e)
            return None
        if found.step not in STEPS:
            log.warning("quarantine record of %s ignored: unknown step %r",
                        found.instance_id, found.step)
            return None
        return found


def record_key(account_id, region, instance_id):
    """One record per instance, whichever policy started it: the sweep carries on a
    quarantine the tag-change policy started."""
    return state._key("quarantine", account_id, region, instance_id)


def index_key(account_id, region):
    """The ids under quarantine in an account and region (a string set), so a sweep
    finds those the policy's filters no longer match (fixed, or gone)."""
    return state._key("quarantine-index", account_id, region)


# -- pure decisions ------------------------------------------------------------------

@dataclass(frozen=True)
class Facts:
    """What EC2 shows of an instance that a step depends on."""

    protection: str = ""  # "termination protection", "stop protection", or both
    fleet: tuple | None = None
    unstoppable: str = ""  # why EC2 cannot stop it


def unstoppable(resource):
    """Why EC2 cannot stop an instance, or "" (as far as its description tells)."""
    if resource.get("RootDeviceType") == "instance-store":
        return "its root device is an instance store"
    if resource.get("InstanceLifecycle") == "spot":
        return "it is a spot instance"
    return ""


def step(record, now, facts):
    """(what to do now, why) for one violating instance. Pure: no AWS calls.

    One step per run, in order: START (notice), then at ``stop_at`` STOP (or
    SKIP_STOP for a fleet member or an instance that cannot be stopped), then at
    ``terminate_at`` TERMINATE. A protected instance whose step is due gets
    NEEDS_PERSON, every run, and nothing else.
    """
    if record is None:
        return START, ""
    if record.step == TERMINATED:
        return WAIT, "already terminated"
    due = record.terminate_at if record.step != NOTICE else record.stop_at
    if now < due:
        return WAIT, ""
    if facts.protection:
        return NEEDS_PERSON, facts.protection
    if record.step == NOTICE:
        if facts.fleet:
            return SKIP_STOP, ("a member of %s %s, which would replace it if stopped: %s"
                               % (facts.fleet[0], facts.fleet[1], fleets.FIX[facts.fleet[0]]))
        if facts.unstoppable:
            return SKIP_STOP, "EC2 cannot stop it: %s" % facts.unstoppable
        return STOP, ""
    return TERMINATE, ""


def unchanged_since(resource, since):
    """True when the instance cannot have written to its volumes since ``since``
    (epoch seconds): it is stopped, and was not started since (EC2's LaunchTime is
    its last start). Pure."""
    launched = events.parse_time(resource.get("LaunchTime"))
    return instances.state(resource) == "stopped" and launched is not None and \
        launched.timestamp() <= since


def moment(epoch):
    return datetime.fromtimestamp(epoch, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def keep_it(allowed, key="Code"):
    return ("unless its %s tag is set to one of %s. To keep it: set the tag (Broom "
            "then leaves it alone at its next run), or have it exempted in the policy" % (
                readable(key), ", ".join(readable(c) for c in allowed) or "(none)"))


def notice(record, key="Code"):
    """What the report says about an instance in quarantine, from its timeline."""
    return "quarantined: will be stopped at %s and terminated at %s %s" % (
        moment(record.stop_at), moment(record.terminate_at), keep_it(record.allowed, key))


def waiting(record, key="Code"):
    """The Outcome of a run that finds no step due."""
    if record.step == STOPPED:
        return report.Outcome(report.STOPPED, "stopped at %s; will be terminated at %s %s" % (
            moment(record.step_at), moment(record.terminate_at), keep_it(record.allowed, key)))
    if record.step in (STOP_SKIPPED, SNAPSHOTTED):
        return report.Outcome(report.QUARANTINED, "%s; will be terminated at %s %s" % (
            "not stopped (%s)" % record.note if record.note else "snapshotted",
            moment(record.terminate_at), keep_it(record.allowed, key)))
    return report.Outcome(report.QUARANTINED, notice(record, key))


def expires_at(record, settings_, now):
    """When Broom's snapshots of a quarantine expire (epoch seconds)."""
    return max(now, record.terminate_at) + settings_.keep


# -- AWS edges -----------------------------------------------------------------------

class Quarantine:
    """One run's quarantine steps for ``action`` (a ``safe-terminate`` with
    ``quarantine``); ``clock`` returns epoch seconds."""

    sleep = staticmethod(time.sleep)

    def __init__(self, action, settings_, cap, clock=time.time):
        self.action = action
        self.manager = action.manager
        self.settings = settings_
        self.cap = cap
        self.clock = clock
        self.now = int(clock())
        self.table = state.for_element(action, clock=clock)
        config = self.manager.config
        self.account_id, self.region = config.account_id or "", config.region
        self.policy = self.manager.data.get("name", "")
        self._ec2 = None
        self.lookups = 0

    @property
    def ec2(self):
        if self._ec2 is None:
            self._ec2 = local_session(self.manager.session_factory).client("ec2")
        return self._ec2

    def key(self, instance_id):
        return record_key(self.account_id, self.region, instance_id)

    # -- the run -----------------------------------------------------------------

    def process(self, doomed, resources, event):
        """Take each instance in ``doomed`` one step further; returns {id: Outcome}.
        In a run without an event (a sweep), quarantined instances the filters no
        longer match are judged again first (``resolve``)."""
        records = self.load([r["InstanceId"] for r in doomed])
        outcomes, due = {}, {STOP: [], SKIP_STOP: [], TERMINATE: []}
        protections = self.protections(doomed, records)
        for r in doomed:
            record = records.get(r["InstanceId"])
            facts = Facts(protections.get(r["InstanceId"], ""), fleets.fleet_of(r),
                          unstoppable(r))
            what, why = step(record, self.now, facts)
            if what == START:
                outcomes[r["InstanceId"]] = self.start(r, event)
            elif what == WAIT:
                outcomes[r["InstanceId"]] = waiting(record, key_of(r))
            elif what == NEEDS_PERSON:
                outcomes[r["InstanceId"]] = report.Outcome(report.NEEDS_PERSON, (
                    "%s, and Broom never clears a protection on an instance with "
                    "history (%s). A person must decide: remove the protection, or set "
                    "the %s tag" % (why, self.protected_by(r["InstanceId"]), key_of(r))))
            else:
                due[what].append((r, record, why))
        outcomes.update(self.capped(due[STOP], "stops", self.stop))
        for r, record, why in due[SKIP_STOP]:
            outcomes[r["InstanceId"]] = self.skip_stop(r, record, why)
        outcomes.update(self.capped(due[TERMINATE], "terminations", self.terminate))
        return outcomes

    def capped(self, due, what, act):
        """Act on each of ``due`` unless there are more than the cap: then on none."""
        if len(due) > self.cap:
            held = report.Outcome(report.HELD, (
                "%d %s due in one run exceed the cap of %d: Broom made none of them "
                "yet (a bad code list looks like this); the next run checks again" % (
                    len(due), what, self.cap)))
            return {r["InstanceId"]: held for r, _, _ in due}
        return {r["InstanceId"]: act(r, record) for r, record, _ in due}

    # -- the state table ---------------------------------------------------------

    def load(self, instance_ids):
        """{instance id: Record} of those in quarantine."""
        keys = {self.key(i): i for i in instance_ids}
        found = {}
        for key, item in self.table.get_items(list(keys)).items():
            record = Record.from_item(item, self.now)
            if record and record.instance_id == keys[key]:
                found[keys[key]] = record
        return found

    def save(self, record, expires=None):
        expires = expires or record.terminate_at + self.settings.keep
        self.table.call("PutItem", Item=record.as_item(self.key(record.instance_id), expires))

    def index(self, instance_ids, add=True):
        if not instance_ids:
            return
        self.table.call(
            "UpdateItem", Key={state.KEY: state._s(index_key(self.account_id, self.region))},
            UpdateExpression=("ADD #ids :ids SET #expires = :expires" if add else
                              "DELETE #ids :ids"),
            ExpressionAttributeNames=dict({"#ids": "ids"}, **(
                {"#expires": state.TTL_ATTRIBUTE} if add else {})),
            ExpressionAttributeValues=dict({":ids": {"SS": sorted(instance_ids)}}, **(
                {":expires": state._n(self.now + 400 * 86400)} if add else {})))

    def indexed(self):
        """The ids the index names."""
        response = self.table.call(
            "GetItem", Key={state.KEY: state._s(index_key(self.account_id, self.region))},
            ConsistentRead=True)
        item = (response or {}).get("Item") or {}
        return set(item.get("ids", {}).get("SS", ()))

    # -- steps -------------------------------------------------------------------

    def start(self, resource, event):
        """The first finding: record the timeline (only if no other run did), then
        the notice. Without the state table nothing is recorded, and the instance is
        only reported: no record, no step."""
        allowed = tuple((resource.get(codes.ANNOTATION) or {}).get("allowed") or ())
        record = Record(
            resource["InstanceId"], self.now, self.now + self.settings.stop_after,
            self.now + self.settings.terminate_after, NOTICE, self.now, self.policy,
            event_name(event, self.policy), allowed=allowed)
        try:
            written = self.table.call(
                "PutItem", Item=record.as_item(
                    self.key(record.instance_id),
                    record.terminate_at + self.settings.keep),
                ConditionExpression="attribute_not_exists(#pk) OR #expires < :now",
                ExpressionAttributeNames={"#pk": state.KEY,
                                          "#expires": state.TTL_ATTRIBUTE},
                ExpressionAttributeValues={":now": state._n(self.now)})
        except ClientError as e:
            if e.response["Error"]["Code"] != state.CHECK_FAILED:
                raise
            again = self.load([record.instance_id]).get(record.instance_id)
            return report.Outcome(report.QUARANTINED, notice(again or record,
                                                             key_of(resource)))
        if written is None:
            return report.Outcome(report.WOULD_TERMINATE, (
                "Broom's state table %s cannot be used, so no quarantine was recorded: "
                "the instance is only reported until it can" % self.table.name))
        self.index([record.instance_id])
        return report.Outcome(report.QUARANTINED, notice(record, key_of(resource)))

    def stop(self, resource, record):
        """StopInstances (never hibernate); the record moves on once EC2 confirms."""
        instance_id = resource["InstanceId"]
        try:
            response = self.manager.retry(self.ec2.stop_instances,
                                          InstanceIds=[instance_id], Hibernate=False)
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code in UNSTOPPABLE:
                return self.skip_stop(resource, record, "EC2 refused to stop it (%s)" % code)
            if code == PROTECTED:
                return report.Outcome(report.NEEDS_PERSON, (
                    "EC2 refused to stop it (%s): Broom never clears a protection on an "
                    "instance with history; a person must decide" % code))
            if code in instances.UNKNOWN_ID_ERRORS:
                return report.Outcome(report.GONE, code)
            log.error("instance %s NOT stopped: %s", instance_id, e)
            return report.Outcome(report.STOP_FAILED, "%s: %s" % (
                code, e.response["Error"].get("Message", "")))
        now = {s["InstanceId"]: s.get("CurrentState", {}).get("Name")
               for s in response.get("StoppingInstances", ())}.get(instance_id)
        if now not in ("stopping", "stopped"):
            return report.Outcome(report.STOP_FAILED,
                                  "EC2 did not confirm the stop (state %s)" % now)
        self.save(replace(record, step=STOPPED, step_at=self.now))
        return report.Outcome(report.STOPPED, "stopped at %s; will be %s at %s %s" % (
            moment(self.now), "snapshotted and terminated" if self.settings.snapshot
            else "terminated", moment(record.terminate_at),
            keep_it(record.allowed, key_of(resource))))

    def skip_stop(self, resource, record, why):
        self.save(replace(record, step=STOP_SKIPPED, step_at=self.now, note=why))
        return report.Outcome(report.QUARANTINED, (
            "not stopped: %s. It will be %s at %s %s" % (
                why, "snapshotted (what can be) and terminated" if self.settings.snapshot
                else "terminated", moment(record.terminate_at),
                keep_it(record.allowed, key_of(resource)))))

    def terminate(self, resource, record):
        """Snapshots first (recorded before the termination), then TerminateInstances."""
        instance_id = resource["InstanceId"]
        # Snapshots of an earlier attempt (its termination refused) do only while the
        # instance has not run since: else the work done since would be lost.
        again = record.step == SNAPSHOTTED and not unchanged_since(resource, record.step_at)
        if self.settings.snapshot and (record.step != SNAPSHOTTED or again):
            try:
                record = self.snapshot(resource, record, reuse=not again)
            except ClientError as e:
                log.error("instance %s NOT snapshotted, so not terminated: %s",
                          instance_id, e)
                return report.Outcome(report.FAILED, (
                    "snapshots could not be taken (%s), so Broom did not terminate it" %
                    e.response["Error"]["Code"]))
            except snapshots.SnapshotError as e:
                return report.Outcome(report.FAILED, "%s, so Broom did not terminate it" % e)
        try:
            response = self.manager.retry(self.ec2.terminate_instances,
                                          InstanceIds=[instance_id])
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code == PROTECTED:
                return report.Outcome(report.NEEDS_PERSON, (
                    "EC2 refused to terminate it (%s): Broom never clears a protection "
                    "on an instance with history; a person must decide" % code))
            log.error("instance %s NOT terminated: %s", instance_id, e)
            return report.Outcome(report.FAILED, "%s: %s" % (
                code, e.response["Error"].get("Message", "")))
        states = {t["InstanceId"]: t.get("CurrentState", {}).get("Name")
                  for t in response.get("TerminatingInstances", ())}
        if states.get(instance_id) not in instances.GONE_STATES:
            return report.Outcome(report.FAILED, "EC2 did not confirm the termination "
                                  "(state %s)" % states.get(instance_id))
        done = replace(record, step=TERMINATED, step_at=self.now)
        self.save(done, expires_at(record, self.settings, self.now))
        self.index([instance_id], add=False)
        note = " (not stopped: %s)" % record.note if record.note else ""
        if not done.snapshots:
            return report.Outcome(report.TERMINATED, "after quarantine%s; %s" % (
                note, "no snapshots (snapshot: false)" if not self.settings.snapshot
                else "no EBS volume to snapshot"))
        return report.Outcome(report.TERMINATED, (
            "after quarantine%s; snapshots %s kept until %s%s: restore it with broom "
            "restore %s" % (note, ", ".join(done.snapshots), moment(expires_at(
                record, self.settings, self.now)), self.snapshot_cost(done),
                instance_id)))

    def snapshot(self, resource, record, reuse=True):
        """CreateSnapshots of every attached EBS volume, tagged; the record then holds
        their ids and what ``broom restore`` needs. With ``reuse``, snapshots of this
        quarantine already there (a run that died after the call), started after the
        record's last step, are used instead."""
        instance_id = resource["InstanceId"]
        expires = expires_at(record, self.settings, self.now)
        found = self.manager.retry(
            self.ec2.describe_snapshots, OwnerIds=["self"], Filters=[{
                "Name": "tag:%s" % snapshots.TAG_QUARANTINE,
                "Values": [record.quarantine_id]}]).get("Snapshots", []) if reuse else []
        volumes = snapshots.ebs_volumes(resource)
        found = [s for s in snapshots.reusable(found, record.step_at) if s[1] in volumes]
        if volumes and {v for _, v, _ in found} >= set(volumes):
            taken = found
        elif not volumes:
            taken = []
        else:
            response = self.manager.retry(
                self.ec2.create_snapshots,
                InstanceSpecification={"InstanceId": instance_id, "ExcludeBootVolume": False},
                Description="Broom quarantine of %s" % instance_id,
                TagSpecifications=[{"ResourceType": "snapshot", "Tags": snapshots.snapshot_tags(
                    resource, record, moment(expires))}])
            made = [(s.get("SnapshotId"), s.get("VolumeId"))
                    for s in response.get("Snapshots", ())]
            taken = snapshots.confirm(self.ec2, self.manager.retry, made, self.sleep)
        bad = [t for t in taken if not t[0] or t[2] not in ("pending", "completed")]
        if bad or {v for _, v, _ in taken} < set(volumes):
            raise snapshots.SnapshotError(
                "EC2 did not confirm a snapshot of every EBS volume (%s)" % (
                    ", ".join("%s: %s" % (v, s) for _, v, s in bad) or "missing"))
        done = replace(record, step=SNAPSHOTTED, step_at=self.now,
                       snapshots=tuple(s for s, _, _ in taken),
                       instance=snapshots.blueprint(self.ec2, self.manager.retry,
                                                     resource, taken))
        self.save(done, expires)
        return done

    def snapshot_cost(self, record):
        """What the snapshots cost, for the report: their volumes' size and, when the
        policy's ``creator-report`` has ``cost``, the Price List's GB-month price."""
        size = sum(d.get("VolumeSize") or 0 for d in record.instance.get("Devices", ()))
        if not size:
            return ""
        if not any(a.type == "creator-report" and a.data.get("cost") is True
                   for a in self.manager.actions):
            return " (%d GiB of volumes)" % size
        price = cost.PriceBook(self.manager.session_factory).snapshot_gb_month(self.region)
        if isinstance(price, cost.Cost):
            return " (%d GiB of volumes; snapshot cost unknown: %s)" % (size, price.reason)
        return (" (%d GiB of volumes: at most %s a month at %s per GB-month; a snapshot "
                "bills only the blocks in use)" % (size, report.money(size * price),
                                                   report.money(price)))

    # -- protection --------------------------------------------------------------

    def protections(self, doomed, records):
        """{instance id: "termination protection" / "stop protection" / both} of the
        instances whose stop or termination is due (DescribeInstanceAttribute)."""
        found = {}
        for r in doomed:
            record = records.get(r["InstanceId"])
            what, _ = step(record, self.now, Facts())
            if what not in (STOP, TERMINATE):
                continue
            set_ = []
            for attribute, name in (("disableApiTermination", "termination protection"),
                                    ("disableApiStop", "stop protection")):
                try:
                    response = self.manager.retry(
                        self.ec2.describe_instance_attribute,
                        InstanceId=r["InstanceId"], Attribute=attribute)
                except ClientError as e:
                    if e.response["Error"]["Code"] in instances.UNKNOWN_ID_ERRORS:
                        break  # gone meanwhile: the step finds it so
                    if e.response["Error"]["Code"] in instances.DENIED:
                        # Not knowing is treated as protected: a person decides.
                        set_.append("whether %s is set is unknown (%s)" % (
                            name, e.response["Error"]["Code"]))
                        continue
                    raise
                key = attribute[0].upper() + attribute[1:]
                if (response.get(key) or {}).get("Value"):
                    set_.append("%s is set on it" % name)
            if set_:
                found[r["InstanceId"]] = "; ".join(set_)
        return found

    def protected_by(self, instance_id):
        """Who protected it, as CloudTrail's event history says (one lookup)."""
        if self.lookups >= PROTECTION_LOOKUPS:
            return "who set it was not looked up in this run"
        self.lookups += 1
        try:
            page = self.manager.retry(self.cloudtrail().lookup_events, LookupAttributes=[{
                "AttributeKey": "ResourceName", "AttributeValue": instance_id}],
                MaxResults=50)
        except ClientError as e:
            return "CloudTrail does not say who set it (%s)" % e.response["Error"]["Code"]
        record = protection_record(page.get("Events") or ())
        if record is None:
            return "CloudTrail's event history does not say who set it"
        return "set by %s at %s (%s)" % (
            report.describe_creator(creator_from_record(record)),
            readable(record.get("eventTime")), readable(record.get("eventName")))

    def cloudtrail(self):
        return local_session(self.manager.session_factory).client(
            "cloudtrail", region_name=self.region)

    # -- leaving quarantine ------------------------------------------------------

    def release(self, resources):
        """Those ``released`` kept in the run leave quarantine: {id: Outcome}, the
        report's once (their record and index entry are deleted)."""
        records = self.load([r["InstanceId"] for r in resources])
        outcomes = {}
        for r in resources:
            record = records.get(r["InstanceId"])
            self.table.call("DeleteItem", Key={state.KEY: state._s(self.key(r["InstanceId"]))})
            was = " It is stopped: start it again." if (
                record and record.step == STOPPED and instances.state(r) != "running") else ""
            outcomes[r["InstanceId"]] = report.Outcome(report.RESOLVED, (
                "its %s tag is allowed now: it left the quarantine started at %s.%s" % (
                    key_of(r), moment(record.first) if record else "?", was)))
        self.index([r["InstanceId"] for r in resources], add=False)
        return outcomes


    def end(self, resources):
        """End the quarantines of instances the policy now leaves alone (exempt, or
        the account switched to report-only): {id: what the report adds} for those
        that had one.
        Should the instance be enforced on again, it starts over with a notice,
        never from a step that fell due meanwhile."""
        listed = self.indexed() & {r["InstanceId"] for r in resources}
        if not listed:
            return {}
        for instance_id in sorted(listed):
            self.table.call("DeleteItem", Key={state.KEY: state._s(self.key(instance_id))})
        self.index(sorted(listed), add=False)
        return {i: "its quarantine ended; if Broom enforces on it again, a new notice "
                   "comes first" for i in listed}


def released(element, compliant):
    """The instances of ``compliant`` (judged compliant by ``element``, the policy's
    ``allowed-codes``, in a run without an event) that are under quarantine: kept in
    the run, annotated RELEASED, so that ``safe-terminate`` releases them and
    ``creator-report`` reports it once. Nothing in a policy without quarantine."""
    manager = element.manager
    action = next((a for a in manager.actions if a.type == "safe-terminate"
                   and isinstance(a.data.get("quarantine"), dict)), None)
    if action is None or not compliant:
        return []
    table = state.for_element(action)
    config = manager.config
    response = table.call("GetItem", Key={state.KEY: state._s(index_key(
        config.account_id or "", config.region))}, ConsistentRead=True)
    listed = set(((response or {}).get("Item") or {}).get("ids", {}).get("SS", ()))
    found = [r for r in compliant if r["InstanceId"] in listed]
    key = element.data.get("key", "tag:Code")
    for r in found:
        r[RELEASED] = True
        r[codes.ANNOTATION] = {"key": key, "value": element.get_resource_value(key, r),
                               "reason": ALLOWED, "allowed": list(element.allowed_codes())}
    return found


def key_of(resource):
    key = (resource.get(codes.ANNOTATION) or {}).get("key", "tag:Code")
    return key.split(":", 1)[1] if key.startswith("tag:") else key


def event_name(event, policy):
    record = launch.of(event)  # the event's record, read once by the handler
    if record.has_record:
        return "%s %s" % (record.event_name, record.event_id)
    return "sweep %s" % policy


def protection_record(lookup_events):
    """The latest record among LookupEvents' entries (newest first) that set
    termination or stop protection, or None. Pure."""
    for entry in lookup_events:
        if not isinstance(entry, dict) or entry.get("EventName") not in (
                "ModifyInstanceAttribute", "RunInstances"):
            continue
        record = lookup.entry_record(entry)
        if record is None or record.get("errorCode"):
            continue
        params = json.dumps(record.get("requestParameters") or {})
        if re.search(r'"disableApi(Termination|Stop)": \{"value": true\}', params) or \
                re.search(r'"disableApi(Termination|Stop)": true', params):
            return record
    return None
