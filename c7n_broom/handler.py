"""AWS Lambda entry point for Broom's policies (``mode.handler: c7n_broom.handler.run``).

c7n's own handler imports no plugins, so a policy using Broom's elements would fail
to load in Lambda; this one registers Broom first, reads the event once into its
launch record (``c7n_broom.launch``: what every later stage reads), then, with one log
line each:

- refuses events c7n would crash on (malformed: not the shape the policies read);
- refuses events AWS did not emit, or not for a call the policies subscribe to
  (``events.untrusted``): the EventBridge rule already matches only ``source:
  aws.ec2``, this is the second line of defence;
- looks up the instances of a launch record CloudTrail cut (``omitted``);
- skips events that cannot be acted on (failed calls, launch records, RunInstances
  or CreateFleet, naming no instance);
- logs one line per event it hands over to c7n, instead of c7n's full dump of the
  event (access key ids, source IPs, user agents), which is off unless the function's
  environment sets ``C7N_DEBUG_EVENT=yes``.
"""
import json
import logging
import os
import tempfile

from c7n import handler as c7n_handler
from c7n.cwe import CloudWatchEvents

import c7n_broom  # noqa: F401  (registers the filter and actions)
from c7n_broom import events, invocation, launch, metrics, omitted, recheck

log = logging.getLogger("custodian.broom.handler")
#: Back-off on throttling, never past the invocation's deadline (less its margin).
RETRY = invocation.retry
#: Until this age an event naming ids EC2 does not show is retried (Lambda retries a
#: failed invocation about one and three minutes after it); then they are reported.
UNSEEN_RETRY_SECONDS = 150

# c7n logs every event in full unless told otherwise; Broom logs one line instead.
c7n_handler.C7N_DEBUG_EVENT = os.environ.get("C7N_DEBUG_EVENT", "no") == "yes"

_c7n_init_config = c7n_handler.init_config


def _init_config(policy_config):
    """c7n's init_config, with its hard-coded ``/tmp`` output honouring ``TMPDIR``.

    In Lambda ``TMPDIR`` is unset and this is still ``/tmp``; when the archive runs
    locally (``broom demo``, tests) each run keeps its output in its own folder.
    """
    config = _c7n_init_config(policy_config)
    if config.get("output_dir") == "/tmp":  # nosec: Lambda's scratch space
        config["output_dir"] = tempfile.gettempdir()
    return config


c7n_handler.init_config = _init_config


def policy_data():
    """The function's config.json as c7n reads it.

    c7n loads config.json on its first event and keeps it; before that Broom reads the
    file itself. Without one (not in Lambda) there is nothing to read: c7n reports the
    missing file when it gets the event.
    """
    data = c7n_handler.policy_data
    if data is None:
        try:
            with open("config.json") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
    return data if isinstance(data, dict) else {}


def policy_modes():
    """The ``mode`` of each policy this function runs."""
    return [p.get("mode") or {} for p in policy_data().get("policies") or ()
            if isinstance(p, dict)]


def refusal(event):
    """Why c7n cannot be given this event (it would raise on it), or None."""
    modes = policy_modes()
    reason = events.malformed(
        event, cloudtrail=any(mode.get("type") == "cloudtrail" for mode in modes))
    if reason:
        return reason
    if event.get("detail") == "{}":  # EventBridge Scheduler; c7n turns it into {}
        event = dict(event, detail={})
    for mode in modes:
        reason = events.unusable_ids(CloudWatchEvents.get_ids(event, mode))
        if reason:
            return reason
    return None


def subscriptions():
    """The (eventSource, eventName) pairs the function's cloudtrail-mode policies
    subscribe to; None when it runs none (its events are not judged for trust)."""
    modes = policy_modes()
    if not any(mode.get("type") == "cloudtrail" for mode in modes):
        return None
    return events.subscriptions(modes, CloudWatchEvents.trail_events)


def run(event, context):
    invocation.start(context)
    reason = refusal(event)
    if reason:
        log.warning("refusing a malformed event: %s", reason)
        metrics.count(metrics.function_policy(policy_data()), metrics.REFUSED)
        return None
    # read once, at the edge: every later stage reads this record (c7n_broom.launch)
    record = launch.remember(event, launch.parse(event, subscriptions()))
    try:
        return handle(event, record, context)
    finally:
        launch.forget()  # the next delivery, even of this very dict, is read anew


def handle(event, record, context):
    """trust -> resolve -> (judge, act, owe, tell: the policies' elements) -> what
    is still owed, for an event read into ``record``."""
    if record.trusted is False:
        log.warning("refusing an event that is not AWS's record of a subscribed call: "
                    "%s (%s)", record.distrust, record.summary)
        metrics.count(metrics.function_policy(policy_data()), metrics.REFUSED)
        return None
    if record.omitted:  # the instances of a launch record CloudTrail cut
        resolved = omitted.resolve(event, policy_data(), RETRY)
        if resolved is None:
            return None
        event, record = resolved, launch.resolved(resolved, record)
    if record.skip:
        log.info("skipping %s event %s: %s", record.event_name or "?",
                 record.event_id or "?", record.skip)
        return None
    log.info("handling %s", record.summary)
    # judge (allowed-codes), act (safe-terminate), owe and tell (creator-report): each
    # element reads launch.of(event), this record
    recheck.Target.function_arn = getattr(context, "invoked_function_arn", None)
    result = c7n_handler.dispatch_event(event, context)
    unseen = invocation.unseen()
    if unseen:
        account_for_unseen(event, unseen)
    metrics.count(metrics.function_policy(policy_data()), metrics.OWED,
                  len(invocation.pending()))
    invocation.check()  # what is still owed fails the invocation: Lambda retries it
    return result


def account_for_unseen(event, instance_ids):
    """Instance ids the record names that EC2 does not show: while the event is fresh
    (EC2's eventual consistency), the invocation fails so Lambda retries it; once it
    is older than UNSEEN_RETRY_SECONDS (Lambda's last retry comes about three minutes
    after the first attempt), an alert names them."""
    age = launch.of(event).age_seconds()
    if age is not None and age <= UNSEEN_RETRY_SECONDS:
        invocation.retry_later("EC2 does not show %s yet" % ", ".join(instance_ids))
        return
    omitted.alert_unseen(event, policy_data(), instance_ids, invocation.retry)
