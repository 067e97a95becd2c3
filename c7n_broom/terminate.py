"""The ``safe-terminate`` action: terminate violators, with the safety Custodian lacks
in cloudtrail mode, and record what really happened to each instance."""
import logging
import re

from botocore.exceptions import ClientError
from c7n.actions import EventAction
from c7n.exceptions import PolicyValidationError
from c7n.resources.ec2 import Terminate
from c7n.utils import chunks, local_session, type_schema

from c7n_broom import codes, decisions, events, report
from c7n_broom.identity import UNKNOWN, creator_from_record
from c7n_broom.lambda_check import check_lambda_packaging
from c7n_broom.validation import check_schema
from c7n_broom.validation import where as element_where

log = logging.getLogger("custodian.broom.terminate")

OUTCOME = "c7n:broom-outcome"
ACCOUNT_ID = re.compile(r"^\d{12}$")


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
    - ``exempt-principals`` (ARN or role name patterns, ``*`` wildcards) and
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
                exempt-principals: ["arn:aws:iam::*:role/break-glass"]
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
        },
    )
    permissions = ("ec2:TerminateInstances",)  # plus ec2:ModifyInstanceAttribute with force

    def validate(self):
        where = element_where(self)
        enforcement = self.data.get("enforcement")
        if not codes.is_unset(enforcement) and enforcement not in decisions.ENFORCEMENT_MODES:
            raise PolicyValidationError(
                "%s: 'enforcement' must be one of %s (or an unset \"{variable}\"), got %r" % (
                    where, ", ".join(decisions.ENFORCEMENT_MODES), enforcement))
        accounts = self.data.get("exempt-accounts", ())
        for account in accounts if isinstance(accounts, list) else ():
            if not (isinstance(account, str) and (ACCOUNT_ID.match(account) or "{" in account)):
                raise PolicyValidationError(
                    "%s: 'exempt-accounts' takes 12-digit account ids in quotes, got %r" % (
                        where, account))
        check_schema(self)  # the rest, with types checked
        for pattern in self.data.get("exempt-principals", ()):
            if not pattern.strip() or pattern.strip("*") == "":
                raise PolicyValidationError(
                    "%s: 'exempt-principals' pattern %r would exempt everyone: name a "
                    "role or ARN" % (where, pattern))
        check_lambda_packaging(self.manager, self.type)
        return self

    def settings(self):
        enforcement = self.data.get("enforcement")
        if codes.is_unset(enforcement):
            enforcement = self.data.get("default-enforcement", decisions.ENFORCE)
        return decisions.Settings(
            enforcement=enforcement,
            cap=self.data.get("max-terminations", decisions.DEFAULT_CAP),
            fleet_instances=self.data.get("fleet-instances", decisions.ENFORCE),
            exempt_principals=tuple(self.data.get("exempt-principals", ())),
            exempt_accounts=tuple(self.data.get("exempt-accounts", ())))

    def process(self, resources, event=None):
        record = events.cloudtrail_record(event)
        creator = creator_from_record(record) if record else UNKNOWN
        plan = decisions.decide(resources, creator, self.manager.config.account_id or "",
                                self.settings())
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


def as_dict(outcome):
    return {"status": outcome.status, "detail": outcome.detail}
