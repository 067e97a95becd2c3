"""AWS Lambda entry point for Broom's policies (``mode.handler: c7n_broom.handler.run``).

c7n's own handler imports no plugins, so a policy using Broom's elements would fail
to load in Lambda; this one registers Broom first, then hands over to c7n.
"""
import c7n_broom  # noqa: F401  (registers the filter and action)
from c7n import handler as c7n_handler


def run(event, context):
    return c7n_handler.dispatch_event(event, context)
