"""AWS Lambda entry point for Broom's policies (``mode.handler: c7n_broom.handler.run``).

c7n's own handler imports no plugins, so a policy using Broom's elements would fail
to load in Lambda; this one registers Broom first, skips events that cannot be acted
on (failed calls, RunInstances records naming no instance) with a log line, then
hands over to c7n.
"""
import logging
import tempfile

import c7n_broom  # noqa: F401  (registers the filter and actions)
from c7n import handler as c7n_handler
from c7n_broom import events

log = logging.getLogger("custodian.broom.handler")

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


def run(event, context):
    reason = events.skip_reason(event)
    if reason:
        record = events.cloudtrail_record(event)
        log.info("skipping %s event %s: %s", events.field(record, "eventName") or "?",
                 events.field(record, "eventID") or "?", reason)
        return None
    return c7n_handler.dispatch_event(event, context)
