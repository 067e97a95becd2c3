"""The one place that registers Broom's elements with Cloud Custodian.

Importing ``c7n_broom`` calls ``initialize_broom()``; so does the stock ``custodian``
command through the autoloader. Calling it again is harmless.
"""
from c7n.resources.ec2 import EC2

from c7n_broom import source
from c7n_broom.actions import CreatorReport
from c7n_broom.filters import AllowedCodes
from c7n_broom.mailer import NotifyCreator
from c7n_broom.securityhub import SecurityHubFinding
from c7n_broom.sweep import LookupCreators
from c7n_broom.terminate import SafeTerminate

FILTERS = {"allowed-codes": AllowedCodes}
ACTIONS = {"creator-report": CreatorReport, "safe-terminate": SafeTerminate,
           "notify-creator": NotifyCreator,
           "lookup-creators": LookupCreators,
           "security-hub-finding": SecurityHubFinding}


class NameClashError(RuntimeError):
    """Another element already uses one of Broom's names (the registry would overwrite it)."""


def _register(registry, elements):
    for name, element in elements.items():
        existing = registry.get(name)
        if existing is element:
            continue
        if existing is not None:
            raise NameClashError("aws.ec2 already has a %r element (%s.%s): Broom will not "
                                 "replace it" % (name, existing.__module__,
                                                 existing.__qualname__))
        registry.register(name, element)


def initialize_broom():
    """Register the allowed-codes filter and Broom's actions on aws.ec2."""
    _register(EC2.filter_registry, FILTERS)
    _register(EC2.action_registry, ACTIONS)
    source.register()
