"""``broom uninstall``: remove what ``custodian run`` deployed for Broom's policies.

The way c7n's own garbage collector (``tools/ops/mugc.py``) removes Custodian
functions: for each function, c7n's ``LambdaManager.remove`` takes its EventBridge
source away (the targets, then the rule; the invoke permission goes with the
function) and deletes the function. Unlike mugc it removes exactly the functions of
the policy files given, by the names c7n gives them (``function-prefix`` + policy
name), never every ``custodian-*`` function of the account; and first the pending
re-check schedules that target them (a schedule firing at a deleted function fails;
a held instance not re-checked stays, which is the safe side). Log groups only on
request: they are the record of what Broom did.

Each step finds what is there before it acts and treats "not found" as done, so a
run that dies half way is finished by running it again. Nothing here touches the
state table, the report topic, the dead-letter queue or snapshots (the templates'
resources: their stacks own them).
"""
import logging
from dataclasses import dataclass, field

from botocore.exceptions import ClientError

from c7n_broom.recheck import SCHEDULE_PREFIX

log = logging.getLogger("custodian.broom.uninstall")

#: Modes c7n deploys as a function behind an EventBridge rule named like it.
RULE_MODES = ("cloudtrail", "periodic", "ec2-instance-state", "asg-instance-state",
              "guard-duty", "phd")
NOT_FOUND = ("ResourceNotFoundException",)


class UninstallError(ValueError):
    """Nothing can be removed: the message says why, in one line."""


@dataclass
class Function:
    """What c7n's ``LambdaManager.remove`` needs of a function: its name, the name of
    its rule (the same, as c7n names them) and its event sources."""

    name: str
    events: list = field(default_factory=list)

    @property
    def event_name(self):
        return self.name

    def get_events(self, session_factory):
        return self.events


@dataclass
class Step:
    """One thing removed (or to remove): ``kind`` function, rule, schedule, log group."""

    region: str
    kind: str
    name: str
    detail: str = ""
    error: str = ""

    def line(self, dry_run):
        verb = "FAILED to remove" if self.error else "would remove" if dry_run else "removed"
        text = "%s %s %s %s" % (verb, self.region, self.kind, self.name)
        if self.detail:
            text += " (%s)" % self.detail
        if self.error:
            text += ": %s" % self.error
        return text


def functions(policies):
    """The functions the policies deploy, by name; the policies c7n does not deploy
    as a function behind a rule of its own are returned apart, by name."""
    from c7n import mu

    found, unsupported = {}, []
    for policy in policies:
        mode = policy.data.get("mode") or {}
        kind = mode.get("type", "pull")
        if kind == "pull":
            continue
        if kind not in RULE_MODES:
            unsupported.append("%s (mode %s)" % (policy.name, kind))
            continue
        name = mode.get("function-prefix", "custodian-") + policy.name
        found[name] = lambda session_factory, mode=mode: [
            mu.CloudWatchEventSource(mode, session_factory)]
    return found, unsupported


def error_text(error):
    return "%s: %s" % (error.response["Error"].get("Code"),
                       error.response["Error"].get("Message", ""))


def inventory(session, region, names):
    """``{function name: [Step...]}`` of what exists now for each function: the
    function (with its permission statements), its rule (with its targets)."""
    lam = session.client("lambda", region_name=region)
    events = session.client("events", region_name=region)
    found = {}
    for name in names:
        steps = []
        try:
            lam.get_function(FunctionName=name)
            try:
                policy = lam.get_policy(FunctionName=name)["Policy"]
                statements = policy.count('"Sid"')
            except ClientError as e:
                if e.response["Error"]["Code"] not in NOT_FOUND:
                    raise
                statements = 0
            steps.append(Step(region, "function", name,
                              "%d invoke permission(s)" % statements))
        except ClientError as e:
            if e.response["Error"]["Code"] not in NOT_FOUND:
                raise
        try:
            events.describe_rule(Name=name)
            targets = events.list_targets_by_rule(Rule=name)["Targets"]
            steps.insert(0, Step(region, "rule", name, "%d target(s)" % len(targets)))
        except ClientError as e:
            if e.response["Error"]["Code"] not in NOT_FOUND:
                raise
        found[name] = steps
    return found


def schedules(session, region, function_arns):
    """The pending re-check schedules (``broom-recheck-*``, any group) whose target
    is one of ``function_arns``, as Steps carrying their group."""
    client = session.client("scheduler", region_name=region)
    found = []
    for page in client.get_paginator("list_schedules").paginate(NamePrefix=SCHEDULE_PREFIX):
        for item in page["Schedules"]:
            if item.get("Target", {}).get("Arn") in function_arns:
                found.append(Step(region, "schedule", item["Name"],
                                  "group %s" % item.get("GroupName", "default")))
    return found


def uninstall(session, account_id, region, policies, dry_run=False, log_groups=False):
    """Remove (or with ``dry_run`` list) what the policies deployed in ``region``;
    returns the Steps, failed ones with their error."""
    from c7n import mu

    sources, _ = functions(policies)
    arns = {"arn:%s:lambda:%s:%s:function:%s" % (session.get_partition_for_region(region),
                                                region, account_id, name): name
            for name in sources}
    steps = schedules(session, region, set(arns))
    present = inventory(session, region, list(sources))
    if log_groups:
        logs = session.client("logs", region_name=region)
        for name in sources:
            group = "/aws/lambda/%s" % name
            pages = logs.get_paginator("describe_log_groups").paginate(
                logGroupNamePrefix=group)
            if any(g["logGroupName"] == group for p in pages for g in p["logGroups"]):
                present[name].append(Step(region, "log group", group))
    for name in sources:
        steps += present[name]
    if dry_run:
        return steps
    scheduler = session.client("scheduler", region_name=region)
    for step in [s for s in steps if s.kind == "schedule"]:
        _attempt(step, scheduler.delete_schedule, Name=step.name,
                 GroupName=step.detail.removeprefix("group "))

    regional = _Regional(session, region)

    def session_factory(*args, **kwargs):
        return regional

    manager = mu.LambdaManager(session_factory)
    for name, make_events in sources.items():
        mine = [s for s in present[name] if s.kind in ("rule", "function")]
        if mine:
            _attempt_all(mine, manager.remove, Function(name, make_events(session_factory)))
    if log_groups:
        logs = session.client("logs", region_name=region)
        for step in [s for s in steps if s.kind == "log group"]:
            _attempt(step, logs.delete_log_group, logGroupName=step.name)
    return steps


class _Regional:
    """A session whose clients default to one region (c7n's event sources call
    ``session_factory().client(service)``)."""

    def __init__(self, session, region):
        self._session = session
        self._region = region

    def client(self, service, **kwargs):
        kwargs.setdefault("region_name", self._region)
        return self._session.client(service, **kwargs)


def _attempt(step, call, **kwargs):
    try:
        call(**kwargs)
    except ClientError as e:
        if e.response["Error"]["Code"] not in NOT_FOUND:
            step.error = error_text(e)


def _attempt_all(steps, call, *args):
    try:
        call(*args)
    except ClientError as e:
        if e.response["Error"]["Code"] not in NOT_FOUND:
            for step in steps:
                step.error = error_text(e)
