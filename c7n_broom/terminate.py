"""The ``safe-terminate`` action: terminate violators, with the safety Custodian lacks
in cloudtrail mode, and record what really happened to each instance."""
import logging
import re
from datetime import datetime, timezone

import boto3

from botocore.exceptions import ClientError
from c7n.actions import EventAction
from c7n.exceptions import PolicyValidationError
from c7n.resources.ec2 import Terminate
from c7n.utils import chunks, local_session, type_schema

from c7n_broom import codes, decisions, events, principals, recheck, report, state
from c7n_broom.identity import UNKNOWN, creator_from_record
from c7n_broom.lambda_check import check_lambda_packaging
from c7n_broom.validation import (check_no_force_on_tag_events, check_schema,
                                  check_state_table)
from c7n_broom.validation import where as element_where

log = logging.getLogger("custodian.broom.terminate")

OUTCOME = "c7n:broom-outcome"
ACCOUNT_ID = re.compile(r"^\d{12}$")
DEFAULT_CAP_PERIOD = 3600  # seconds over which max-terminations also counts per principal


class SafeTerminate(EventAction, Terminate):
    """Terminate violating instances, bounded and per instance.

    Like ``terminate`` (with ``force`` clearing termination and stop protection),
    plus what cloudtrail mode lacks (``max-resources`` and dryrun are not enforced
    there):

    - ``max-terminations`` (default 20): when more instances would be terminated by
      one invocation, none is, and the report says why: a misconfigured code list
      must not wipe an account.
    - ``enforcement``: ``enforce`` or ``report-only`` (nothing terminated, reports
      say "would terminate"); point it at a c7n-org variable
      (``"{broom_enforcement}"``) to set it per account. When it is unset (or left
      an unexpanded placeholder), ``default-enforcement`` applies (default
      ``enforce``).
    - ``fleet-instances``: ``enforce`` (default) or ``report-only`` for instances of
      an Auto Scaling group, Spot Fleet or EC2 Fleet (which relaunch what is
      terminated until the fleet itself is fixed).
    - ``exempt-principals`` (role names, ``PATH/NAME``, IAM role or user ARN
      patterns with ``*``/``?``, or account ids: the grammar in the README's
      "Exemptions" table, shared with ``broom scp``; never session names) and
      ``exempt-accounts``: instances launched by them are reported, not terminated.

    Each instance gets its own outcome (terminated, failed with the error, exempt,
    held back, already gone) under ``c7n:broom-outcome``; one failure never stops
    the rest of the batch. ``creator-report`` puts the outcome in its message.

    :example:

    .. code-block:: yaml

        policies:
          - name: ec2-require-code-tag
            resource: aws.ec2
            filters:
              - type: allowed-codes
                codes: [LOL, GGG, BRB, YLO]
            actions:
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
        },
    )
    def get_permissions(self):
        """terminate's (with ec2:ModifyInstanceAttribute for force), the state table's
        counter, and scheduling the re-check of what the cap holds."""
        return tuple(super().get_permissions()) + state.COUNTER_PERMISSIONS + (
            "scheduler:CreateSchedule", "iam:PassRole")

    def validate(self):
        where = element_where(self)
        enforcement = self.data.get("enforcement")
        given = codes.policy_vars(self)
        problem = codes.var_error("enforcement", enforcement, given)
        if problem:
            raise PolicyValidationError("%s: %s" % (where, problem))
        if not codes.is_unset(enforcement) and enforcement not in decisions.ENFORCEMENT_MODES:
            raise PolicyValidationError(
                "%s: 'enforcement' must be one of %s (or an unset \"{variable}\"), got %r" % (
                    where, ", ".join(decisions.ENFORCEMENT_MODES), enforcement))
        accounts = self.data.get("exempt-accounts", ())
        for account in accounts if isinstance(accounts, list) else ():
            problem = codes.var_error("exempt-accounts", account, given, item=True)
            if problem:
                raise PolicyValidationError("%s: %s" % (where, problem))
            if not (isinstance(account, str) and (ACCOUNT_ID.match(account)
                                                  or codes.is_unset(account))):
                raise PolicyValidationError(
                    "%s: 'exempt-accounts' takes 12-digit account ids in quotes, got %r" % (
                        where, account))
        check_schema(self)  # the rest, with types checked
        check_no_force_on_tag_events(self)
        check_state_table(self)
        for pattern in self.data.get("exempt-principals", ()):
            if principals.unexpanded(pattern):
                continue  # checked once c7n or c7n-org fill it (never matches until then)
            try:
                principals.parse(pattern)
            except ValueError as e:
                raise PolicyValidationError("%s: 'exempt-principals' %s" % (where, e))
        check_lambda_packaging(self.manager, self.type)
        return self

    def settings(self, prior_terminations=0):
        enforcement = self.data.get("enforcement")
        if codes.is_unset(enforcement):
            enforcement = self.data.get("default-enforcement", decisions.ENFORCE)
        return decisions.Settings(
            enforcement=enforcement,
            cap=self.data.get("max-terminations", decisions.DEFAULT_CAP),
            fleet_instances=self.data.get("fleet-instances", decisions.ENFORCE),
            exempt_principals=tuple(self.data.get("exempt-principals", ())),
            exempt_accounts=tuple(self.data.get("exempt-accounts", ())),
            prior_terminations=prior_terminations)

    def process(self, resources, event=None):
        plan = self.plan(resources, event)
        for r in resources:
            if not plan[r["InstanceId"]].terminate:
                r[OUTCOME] = as_dict(plan[r["InstanceId"]].outcome)
        doomed = [r for r in resources if plan[r["InstanceId"]].terminate]
        if len(doomed) < len(resources):
            log.info("policy:%s leaving %d of %d instances alone (see reports)",
                     self.manager.data.get("name"), len(resources) - len(doomed),
                     len(resources))
        if not doomed:
            return {}
        client = local_session(self.manager.session_factory).client("ec2")
        outcomes = {}
        for batch in chunks(doomed, 100):
            outcomes.update(self.terminate_batch(client, batch))
        for r in doomed:
            r[OUTCOME] = as_dict(outcomes[r["InstanceId"]])
        return {instance_id: o.status for instance_id, o in outcomes.items()}

    def plan(self, resources, event):
        """decisions.decide, with what it needs from the event and Broom's state: the
        launch-time check, the per-principal count, and a re-check for what the cap holds."""
        record = events.cloudtrail_record(event)
        creator = creator_from_record(record) if record else UNKNOWN
        anomalies = {}
        for r in resources if record else ():
            reason = events.launch_mismatch(record, r.get("LaunchTime"))
            if reason:
                log.warning("instance %s: not terminated, %s (%s)", r["InstanceId"], reason,
                            events.summary(event))
                anomalies[r["InstanceId"]] = reason
        event_name = events.field(record, "eventName")
        rechecked = recheck.held_ids(event)
        uncapped = {r["InstanceId"] for r in resources
                    if decisions.cap_free(r, event_name) or r["InstanceId"] in rechecked}
        account = self.manager.config.account_id or ""
        plan = decisions.decide(resources, creator, account, self.settings(), anomalies,
                                uncapped)
        capped = [i for i, d in plan.items() if i not in uncapped and (
            d.terminate or d.outcome.status == report.HELD)]
        if capped:  # count them first: concurrent invocations each see their own total
            total = self.state().add_terminations(
                self.manager.data.get("name"), principal_key(creator),
                self.data.get("cap-period", DEFAULT_CAP_PERIOD), len(capped))
            prior = None if total is None else total - len(capped)
            plan = decisions.decide(resources, creator, account, self.settings(prior),
                                    anomalies, uncapped)
        held = [i for i, d in plan.items() if d.outcome and d.outcome.status == report.HELD]
        if held:
            note = self.schedule_recheck(event, held)
            for instance_id in held:
                plan[instance_id] = decisions.Decision(False, report.Outcome(
                    report.HELD, "%s. %s" % (plan[instance_id].outcome.detail, note)))
        return plan

    def state(self):
        return state.for_element(self)

    def schedule_recheck(self, event, instance_ids):
        """Schedule the re-check of held instances; say when, or why not, for the report."""
        delay = self.data.get("recheck-after", recheck.DEFAULT_DELAY)
        due = recheck.due_time(datetime.now(timezone.utc), delay)
        function_arn = recheck.Target.function_arn
        how = ("switch the account to report-only (c7n-org var broom_enforcement: "
               "report-only) or fix the code list before then to keep them")
        if not function_arn:
            return ("They are not re-checked automatically (not running in Lambda): "
                    "check them again with broom replay --execute")
        region = function_arn.split(":")[3]
        # The function's own credentials: in a hub the session acts in the member
        # account, but the schedule belongs beside the function.
        client = boto3.Session().client("scheduler", region_name=region)
        try:
            recheck.schedule(client, event, instance_ids, due, function_arn,
                             self.manager.retry)
        except ClientError as e:
            log.error("re-check of %s NOT scheduled: %s", ", ".join(instance_ids), e)
            return ("Broom could NOT schedule a re-check (%s): check them by hand, or "
                    "allow scheduler:CreateSchedule and iam:PassRole on %s to Broom's role"
                    % (e.response["Error"]["Code"], recheck.role_arn(function_arn)))
        except ValueError as e:
            log.error("re-check of %s NOT scheduled: %s", ", ".join(instance_ids), e)
            return "Broom could NOT schedule a re-check (%s): check them by hand" % e
        return ("Broom checks them again at %s and terminates those that still break "
                "the rule: %s" % (due.strftime("%Y-%m-%dT%H:%M:%SZ"), how))

    def terminate_batch(self, client, instances):
        """Terminate a batch in one call; on any refusal, instance by instance."""
        try:
            response = self.manager.retry(
                client.terminate_instances, InstanceIds=[i["InstanceId"] for i in instances])
        except ClientError as e:
            if len(instances) == 1:
                return {instances[0]["InstanceId"]: self.terminate_one(client, instances[0], e)}
            log.warning("batch termination refused (%s): terminating one by one",
                        e.response["Error"]["Code"])
            result = {}
            for instance in instances:
                result.update(self.terminate_batch(client, [instance]))
            return result
        return terminated(response, instances)

    def terminate_one(self, client, instance, error):
        """The outcome for one instance whose termination was refused with ``error``."""
        instance_id = instance["InstanceId"]
        code = error.response["Error"]["Code"]
        if code in ("InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed"):
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
            response = self.manager.retry(client.terminate_instances, InstanceIds=[instance_id])
        except ClientError as e:
            log.error("instance %s NOT terminated after clearing protection: %s",
                      instance_id, e)
            return report.Outcome(report.FAILED, "%s: %s" % (
                e.response["Error"]["Code"], e.response["Error"].get("Message", "")))
        return terminated(response, [instance])[instance_id]


def terminated(response, instances):
    """Outcomes from a TerminateInstances response: what EC2 says each is becoming."""
    states = {t["InstanceId"]: t.get("CurrentState", {}).get("Name")
              for t in response.get("TerminatingInstances", [])}
    result = {}
    for instance in instances:
        state = states.get(instance["InstanceId"])
        if state in ("shutting-down", "terminated"):
            result[instance["InstanceId"]] = report.Outcome(report.TERMINATED)
        else:
            result[instance["InstanceId"]] = report.Outcome(
                report.FAILED, "EC2 did not confirm the termination (state %s)" % state)
    return result


def principal_key(creator):
    """Who the per-principal cap counts: the IAM principal, not the session name."""
    return creator.principal_arn or creator.arn or creator.name


def as_dict(outcome):
    return {"status": outcome.status, "detail": outcome.detail}
