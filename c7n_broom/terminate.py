"""The ``safe-terminate`` action: terminate violators, with the safety Custodian lacks
in cloudtrail mode, and record what really happened to each instance (``OUTCOME``),
which ``outcomes`` reads back for ``creator-report``."""
import dataclasses
import logging
import time

from botocore.exceptions import ClientError
from c7n.actions import EventAction
from c7n.exceptions import PolicyValidationError
from c7n.resources.ec2 import Terminate
from c7n.utils import chunks, local_session, type_schema

from c7n_broom import (
    codes,
    decisions,
    instances,
    invocation,
    launch,
    owed,
    quarantine,
    recheck,
    report,
    state,
    sweep,
    validation,
)
from c7n_broom.events import get_path
from c7n_broom.lambda_check import check_lambda_packaging

log = logging.getLogger("custodian.broom.terminate")

OUTCOME = "c7n:broom-outcome"
#: Set on an instance whose termination was throttled: its report waits for the retry.
DEFERRED = "c7n:broom-deferred"
DEFAULT_CAP_PERIOD = 3600  # seconds over which max-terminations also counts per principal


class SafeTerminate(EventAction, Terminate):
    """Terminate violating instances, bounded and per instance.

    Like ``terminate`` (``force`` clears termination and stop protection), plus the
    safety cloudtrail mode lacks (it enforces neither ``max-resources`` nor dryrun):

    - ``max-terminations`` (default 20): more instances whose Code is set but not
      allowed, in one event or from one principal within ``cap-period`` seconds
      (default 3600, counted in ``state-table``), look like a bad code list: none of
      them is terminated, and they are checked again ``recheck-after`` seconds later
      (default 3600). Launches without a Code are never held.
    - ``enforcement``: ``enforce`` or ``report-only`` (reports say "would
      terminate"), per account through a c7n-org var (``"{broom_enforcement}"``);
      when unset, ``default-enforcement`` applies (default ``enforce``).
    - ``fleet-instances``: ``report-only`` leaves instances of an Auto Scaling group,
      Spot Fleet or EC2 Fleet to their fleet (default ``enforce``).
    - ``exempt-principals`` (the README's "Exemptions" grammar, shared with ``broom
      scp``; never session names) and ``exempt-accounts``: instances they launch are
      reported, not terminated.
    - In a sweep (no event: periodic or pull mode), each instance's own creator, as
      ``lookup-creators`` found it before this action: a creator not known yet keeps
      its instance while there are exemptions; ``unknown-creators: report-only``
      only reports instances whose creator CloudTrail cannot tell (default
      ``enforce``). The cap counts everything one sweep would terminate; what it
      holds, the next sweep sees again.

    - ``quarantine`` (``stop-after``, ``terminate-after``: ``0s``, ``15m``, ``24h``,
      ``7d``; ``snapshot``, default true; ``keep-snapshots``, default ``30d``): for
      instances with history (a sweep, tag changes), a notice first, then a stop,
      then snapshots and the termination, one step per run, recorded in
      ``state-table`` (``c7n_broom.quarantine``; docs/safety.md). ``force`` is
      refused beside it, and in a periodic policy.

    Each instance gets its own outcome under ``c7n:broom-outcome`` (one failure never
    stops the rest of the batch), which ``creator-report`` reports.

    :example:

    .. code-block:: yaml

        policies:
          - name: ec2-require-code-tag
            resource: aws.ec2
            filters:
              - type: allowed-codes
                codes: [LOL, GGG, BRB, YLO]
            actions:
              # without an event (pull mode), exemptions need each creator
              - type: lookup-creators
              - type: safe-terminate
                force: true
                max-terminations: 20
                enforcement: "{broom_enforcement}"
                exempt-principals: [broom-break-glass, "arn:aws:iam::*:role/ops/oncall"]
              - type: creator-report
                topic: arn:aws:sns:{region}:{account_id}:broom-reports
    """

    schema = type_schema(
        "safe-terminate",
        force={"type": "boolean"},
        enforcement={"type": "string"},
        **{
            "max-terminations": {"type": "integer", "minimum": 1},
            "fleet-instances": {"enum": list(decisions.ENFORCEMENT_MODES)},
            "default-enforcement": {"enum": list(decisions.ENFORCEMENT_MODES)},
            "exempt-principals": {"type": "array", "items": {"type": "string"}},
            "exempt-accounts": {"type": "array", "items": {"type": "string"}},
            "cap-period": {"type": "integer", "minimum": 60},
            "recheck-after": {"type": "integer", "minimum": 60, "maximum": 7 * 24 * 3600},
            "state-table": {"type": "string"},
            "unknown-creators": {"enum": list(decisions.ENFORCEMENT_MODES)},
            "quarantine": quarantine.SCHEMA,
        },
    )
    clock = staticmethod(time.time)

    def get_permissions(self):
        """terminate's (with ec2:ModifyInstanceAttribute for force), the state table's
        counter, and scheduling the re-check of what the cap holds."""
        extra = quarantine.PERMISSIONS if "quarantine" in self.data else ()
        return tuple(super().get_permissions()) + state.COUNTER_PERMISSIONS + (
            "scheduler:CreateSchedule", "iam:PassRole", "dynamodb:PutItem") + extra

    def validate(self):
        enforcement = self.data.get("enforcement")
        validation.check_var(self, "enforcement", enforcement)
        if not codes.is_unset(enforcement) and enforcement not in decisions.ENFORCEMENT_MODES:
            raise PolicyValidationError(
                "%s: 'enforcement' must be one of %s (or an unset \"{variable}\"), got %r" % (
                    validation.where(self), ", ".join(decisions.ENFORCEMENT_MODES),
                    enforcement))
        validation.check_exempt_accounts(self)
        validation.check_schema(self)  # the rest, with types checked
        validation.check_no_force_on_tag_events(self)
        quarantine.check(self)
        validation.check_state_table(self)
        validation.check_exempt_principals(self)
        validation.check_attribution(self)
        check_lambda_packaging(self.manager, self.type)
        return self

    def settings(self):
        """The policy's safety settings, for decisions.decide."""
        enforcement = self.data.get("enforcement")
        if codes.is_unset(enforcement):
            enforcement = self.data.get("default-enforcement", decisions.ENFORCE)
        return decisions.Settings(
            enforcement=enforcement,
            cap=self.data.get("max-terminations", decisions.DEFAULT_CAP),
            fleet_instances=self.data.get("fleet-instances", decisions.ENFORCE),
            exempt_principals=tuple(self.data.get("exempt-principals", ())),
            exempt_accounts=tuple(self.data.get("exempt-accounts", ())),
            unknown_creators=self.data.get("unknown-creators", decisions.ENFORCE))

    def process(self, resources, event=None):
        released = [r for r in resources if r.get(quarantine.RELEASED)]
        if released:  # fixed since their quarantine began: released, not judged
            resources = [r for r in resources if not r.get(quarantine.RELEASED)]
        delay = self.data.get("recheck-after", recheck.DEFAULT_DELAY)
        settings = self.settings()
        creators, unresolved = sweep.creators(resources)
        by_id, table = {r["InstanceId"]: r for r in resources}, state.for_element(self)
        obligation = None
        if creators:  # a sweep: each instance its own creator, no event to re-check
            settings = dataclasses.replace(settings, unit="one sweep")
            held_note = lambda held: sweep.NEXT_SWEEP  # noqa: E731
        else:  # an event: what it owes is recorded before acting (c7n_broom.owed)
            obligation = owed.for_run(self, launch.of(event).key, table)
            if obligation is not None and obligation.busy:
                return {}
            held_note = None
        hold, rechecked = None, set()
        if launch.of(event).is_recheck:  # only what a recorded, due hold holds
            hold = recheck.verified(table, event)
            rechecked = {r["InstanceId"] for r in recheck.held_resources(hold, resources)
                         } if hold else set()
            for r in resources:
                if r["InstanceId"] not in rechecked:
                    r[OUTCOME] = dataclasses.asdict(report.Outcome(
                        report.ANOMALY, "not held by a re-check Broom scheduled"))
            resources = [r for r in resources if r["InstanceId"] in rechecked]
        quarantined = quarantine.settings(self.data)
        if quarantined:  # the cap applies to each step instead (quarantine.Quarantine)
            rechecked |= {r["InstanceId"] for r in resources}
        plan = decisions.plan(
            resources, event, self.manager.config.account_id or "", settings,
            rechecked, lambda principal, n: self.count(principal, n, obligation),
            held_note, creators, unresolved)
        if not creators:
            self.owe(resources, event, plan, obligation, delay, by_id, table)
        for r in resources:
            if not plan[r["InstanceId"]].terminate:
                r[OUTCOME] = dataclasses.asdict(plan[r["InstanceId"]].outcome)
        doomed = [r for r in resources if plan[r["InstanceId"]].terminate]
        if len(doomed) < len(resources):
            log.info("policy:%s leaving %d of %d instances alone (see reports)",
                     self.manager.data.get("name"), len(resources) - len(doomed),
                     len(resources))
        if quarantined:
            if hold:
                recheck.settle(table, hold)
            return self.quarantine_step(quarantined, settings.cap, doomed,
                                        resources + released, event)
        outcomes, self.deferred = {}, set()
        if doomed:
            client = local_session(self.manager.session_factory).client("ec2")
            for batch in chunks(doomed, 100):
                outcomes.update(self.terminate_batch(client, batch))
            for r in doomed:
                r[OUTCOME] = dataclasses.asdict(outcomes[r["InstanceId"]])
                if r["InstanceId"] in self.deferred:
                    r[DEFERRED] = True  # reported by the retry that terminates it
        if hold:
            recheck.settle(table, hold)
        return {instance_id: o.status for instance_id, o in outcomes.items()}

    def quarantine_step(self, settings, cap, doomed, resources, event):
        """Take the instances it would terminate one quarantine step further, and
        release those ``allowed-codes`` kept as fixed since (quarantine.released)."""
        run = quarantine.Quarantine(self, settings, cap, clock=self.clock)
        outcomes = run.process(doomed, resources, event)
        outcomes.update(run.release([r for r in resources if r.get(quarantine.RELEASED)]))
        # the rest were left alone by decisions.plan (their outcome is set): exempt or
        # report-only ones leave quarantine
        left = [r for r in resources if r["InstanceId"] not in outcomes and r.get(
            OUTCOME, {}).get("status") in (report.EXEMPT, report.WOULD_TERMINATE)]
        for instance_id, note in run.end(left).items():
            found = report.Outcome(**next(r[OUTCOME] for r in resources
                                          if r["InstanceId"] == instance_id))
            outcomes[instance_id] = dataclasses.replace(
                found, detail="%s; %s" % (found.detail, note) if found.detail else note)
        for r in resources:
            if r["InstanceId"] in outcomes:
                r[OUTCOME] = dataclasses.asdict(outcomes[r["InstanceId"]])
        return {instance_id: o.status for instance_id, o in outcomes.items()}

    def owe(self, resources, event, plan, obligation, delay, by_id, table):
        """Record what the event owes (a report for each instance, a re-check for the
        held ones) before acting, then schedule the re-check of the held ones: a
        schedule that exists settles their re-check; one refused for a transient
        reason fails the invocation after the rest was done, so its retry creates it."""
        record = launch.of(event)
        config = self.manager.config
        held = [i for i, d in plan.items() if d.outcome and d.outcome.status == report.HELD]
        if obligation is not None:
            obligation.owe({r["InstanceId"]: owed.stored_finding(
                report.finding(r, record.record, config.region, config.account_id),
                plan[r["InstanceId"]]) for r in resources}, held, record.summary)
        if not held:
            return
        note, status = recheck.schedule_held(
            event, {i: instances.launch_marker(by_id[i]) for i in held}, delay,
            invocation.retry, table, self.manager.data.get("name"))
        if status == recheck.SCHEDULED and obligation is not None:
            obligation.settle(rechecks=held)
        elif status == recheck.TRANSIENT:
            invocation.retry_later("the re-check of %s could not be scheduled" % ", ".join(held))
        for instance_id in held:
            plan[instance_id] = decisions.Decision(False, report.Outcome(
                report.HELD, "%s. %s" % (plan[instance_id].outcome.detail, note)))

    def count(self, principal, n, obligation=None):
        """Count ``n`` more terminations by ``principal`` in the state table; the total
        over ``cap-period``, or None when unknown. An event is counted once: its
        redelivery (``obligation`` records what it counted) reads the total instead."""
        table = state.for_element(self)
        name, period = self.manager.data.get("name"), self.data.get(
            "cap-period", DEFAULT_CAP_PERIOD)
        if obligation is not None and principal in obligation.counted:
            return table.terminations(name, principal, period)
        total = table.add_terminations(name, principal, period, n)
        if obligation is not None and total is not None:
            obligation.counted[principal] = n
        return total

    def terminate_batch(self, client, batch):
        """Terminate a batch in one call; on a refusal, instance by instance. A batch
        still throttled (or refused by a service error) once the invocation's time for
        back-off is spent is not split up: its instances stay owed, and the
        invocation fails after the rest was done, so its retry terminates them."""
        try:
            response = invocation.retry(
                client.terminate_instances, InstanceIds=[i["InstanceId"] for i in batch])
        except ClientError as e:
            code = e.response["Error"]["Code"]
            if code in invocation.TRANSIENT:
                ids = [i["InstanceId"] for i in batch]
                invocation.retry_later("TerminateInstances %s for %s" % (code, ", ".join(ids)))
                self.deferred.update(ids)
                return {i: report.Outcome(report.FAILED, "%s: Broom tries again" % code)
                        for i in ids}
            if len(batch) == 1:
                return {batch[0]["InstanceId"]: self.terminate_one(client, batch[0], e)}
            log.warning("batch termination refused (%s): terminating one by one", code)
            result = {}
            for instance in batch:
                result.update(self.terminate_batch(client, [instance]))
            return result
        return terminated(response, batch)

    def terminate_one(self, client, instance, error):
        """The outcome for one instance whose termination was refused with ``error``."""
        instance_id = instance["InstanceId"]
        code = error.response["Error"]["Code"]
        if code in instances.UNKNOWN_ID_ERRORS:
            return report.Outcome(report.GONE, code)
        if code != "OperationNotPermitted" or not self.data.get("force"):
            log.error("instance %s NOT terminated: %s", instance_id, error)
            return report.Outcome(report.FAILED, "%s: %s" % (
                code, error.response["Error"].get("Message", "")))
        if instance.get("InstanceLifecycle") == "spot":
            log.error("spot instance %s is protected; force cannot clear it", instance_id)
            return report.Outcome(report.FAILED, (
                "protected spot instance: force cannot clear termination protection "
                "on spot instances (%s)" % code))
        try:
            self.disable_deletion_protection(client, [instance])
            response = invocation.retry(client.terminate_instances, InstanceIds=[instance_id])
        except ClientError as e:
            log.error("instance %s NOT terminated after clearing protection: %s",
                      instance_id, e)
            return report.Outcome(report.FAILED, "%s: %s" % (
                e.response["Error"]["Code"], e.response["Error"].get("Message", "")))
        return terminated(response, [instance])[instance_id]


def terminated(response, resources):
    """Outcomes from a TerminateInstances response: what EC2 says each is becoming."""
    states = {t["InstanceId"]: get_path(t, "CurrentState", "Name")
              for t in response.get("TerminatingInstances", [])}
    result = {}
    for r in resources:
        now = states.get(r["InstanceId"])
        if now in instances.GONE_STATES:
            result[r["InstanceId"]] = report.Outcome(report.TERMINATED)
        else:
            result[r["InstanceId"]] = report.Outcome(
                report.FAILED, "EC2 did not confirm the termination (state %s)" % now)
    return result


def outcomes(manager, resources, terminates):
    """What happened to each instance, by id: as ``safe-terminate`` recorded it; else,
    when an earlier action ``terminates``, as EC2 shows it now; else only reported."""
    result = {r["InstanceId"]: report.Outcome(**r[OUTCOME])
              for r in resources if isinstance(r.get(OUTCOME), dict)}
    rest = [r["InstanceId"] for r in resources if r["InstanceId"] not in result]
    if rest and not terminates:
        result.update({i: report.Outcome(report.REPORTED) for i in rest})
    elif rest:
        states = instances.current_states(manager, rest)
        for instance_id in rest:
            now = states.get(instance_id)
            if now is None:
                result[instance_id] = report.Outcome(report.GONE)
            elif now in instances.GONE_STATES:
                result[instance_id] = report.Outcome(report.TERMINATED)
            else:
                result[instance_id] = report.Outcome(report.FAILED, "EC2 shows it %s" % now)
    return result
