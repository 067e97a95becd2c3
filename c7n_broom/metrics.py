"""Broom's CloudWatch metrics, as Embedded Metric Format (EMF) log lines.

In Lambda, a line the function writes to standard output becomes one CloudWatch Logs
event; a line that is a JSON object with an ``_aws.CloudWatchMetrics`` directive is
also turned into metrics by CloudWatch itself: no ``PutMetricData`` call, no
permission, no time spent waiting on an API. The line goes to standard output as it
is, not through ``logging``: Lambda's log handler prefixes each record with its level,
time and request id, and CloudWatch reads EMF only from a line that is JSON alone.

Namespace ``Broom``; every metric is a count (``Unit: Count``), summed per period:

- ``Judged`` (Policy): instances a policy judged (``allowed-codes`` saw them);
- ``Violations`` (Policy, Outcome): the violators a run reported, by what happened to
  them (``terminated``, ``held-by-cap``, ``exempt``, ``would-terminate`` for report-only,
  ``termination-failed``, ...: c7n_broom.report's outcome names); also summed per
  Policy alone and per Outcome alone (templates/account.yml alarms on
  Outcome=terminated);
- ``RefusedEvents`` (Policy): events the handler refused (malformed, or not AWS's
  record of a subscribed call);
- ``ReportFailures`` (Policy): reports that could not be published;
- ``Owed`` (Policy): what an invocation left owed for its retry (a termination
  throttled, a re-check not scheduled, ids EC2 did not show yet: c7n_broom.owed),
  counted as it fails for Lambda to retry it.

Outside Lambda (``custodian run`` on a laptop, unit tests) nothing is written unless
``BROOM_METRICS=emf`` is set; ``BROOM_METRICS=off`` silences it in Lambda too.
"""
import json
import os
import sys
import time

NAMESPACE = "Broom"
JUDGED, VIOLATIONS = "Judged", "Violations"
REFUSED, REPORT_FAILURES, OWED = "RefusedEvents", "ReportFailures", "Owed"


def enabled(environ=os.environ):
    setting = environ.get("BROOM_METRICS", "")
    if setting == "off":
        return False
    return setting == "emf" or bool(environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def line(metric, value, dimensions, dimension_sets, now):
    """One EMF document: ``metric`` = ``value`` under ``dimensions`` ({name: value}),
    aggregated by each of ``dimension_sets`` (lists of names; [] is no dimension).
    Pure."""
    document = {"_aws": {"Timestamp": int(now * 1000), "CloudWatchMetrics": [{
        "Namespace": NAMESPACE,
        "Dimensions": [list(names) for names in dimension_sets],
        "Metrics": [{"Name": metric, "Unit": "Count"}]}]}}
    document.update({name: str(value) for name, value in dimensions.items()})
    document[metric] = value
    return document


class Emitter:
    """Writes EMF lines to ``stream`` (standard output) when metrics are on; ``clock``
    gives their timestamp."""

    def __init__(self, stream=None, clock=time.time, environ=os.environ):
        self.stream, self.clock, self.environ = stream, clock, environ

    def write(self, document):
        if not enabled(self.environ):
            return
        stream = self.stream or sys.stdout
        stream.write(json.dumps(document, separators=(",", ":"), sort_keys=True) + "\n")
        stream.flush()

    def count(self, policy, metric, value=1):
        """A count per Policy, and in total (no dimension)."""
        if value:
            self.write(line(metric, value, {"Policy": policy}, (["Policy"], []),
                            self.clock()))

    def outcomes(self, policy, statuses):
        """``Violations`` per outcome, for the outcome statuses of one run's violators."""
        counted = {}
        for status in statuses:
            counted[status] = counted.get(status, 0) + 1
        for status, value in sorted(counted.items()):
            self.write(line(VIOLATIONS, value, {"Policy": policy, "Outcome": status},
                            (["Policy", "Outcome"], ["Policy"], ["Outcome"]), self.clock()))


#: The one emitter of the process (tests give it a stream and a clock).
EMITTER = Emitter()


def count(policy, metric, value=1):
    EMITTER.count(policy, metric, value)


def outcomes(policy, statuses):
    EMITTER.outcomes(policy, statuses)


def function_policy(policy_data):
    """The name of the policy a function runs (config.json), for metrics emitted
    before c7n loads it; "" when there is none."""
    names = [p.get("name") for p in (policy_data or {}).get("policies") or ()
             if isinstance(p, dict) and isinstance(p.get("name"), str)]
    return names[0] if names else ""
