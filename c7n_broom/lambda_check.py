"""Validation shared by Broom's elements: Lambda-mode policies must package the plugin."""
from c7n.exceptions import PolicyValidationError

PACKAGE = "c7n_broom"
HANDLER = "c7n_broom.handler.run"


def is_lambda_mode(mode):
    """True when a policy's mode runs in AWS Lambda (cloudtrail, periodic, ...)."""
    from c7n.policy import LambdaMode, execution

    mode_class = execution.get((mode or {}).get("type", "pull"))
    return mode_class is not None and issubclass(mode_class, LambdaMode)


def check_lambda_packaging(manager, element):
    """Raise PolicyValidationError unless a Lambda-mode policy ships and loads c7n_broom.

    c7n packages only ``c7n`` into the Lambda archive and its default handler imports
    no plugins, so without these two settings the deployed function would fail with
    "Invalid filter type".
    """
    if manager is None:
        return
    policy = manager.data
    mode = policy.get("mode") or {}
    if not is_lambda_mode(mode):
        return
    missing = []
    if PACKAGE not in (mode.get("packages") or ()):
        missing.append("packages: [%s]" % PACKAGE)
    if mode.get("handler") != HANDLER:
        missing.append("handler: %s" % HANDLER)
    if missing:
        raise PolicyValidationError(
            "policy:%s uses Broom's %s in %s mode: add %s under 'mode:' so the Lambda "
            "function ships and loads the c7n_broom plugin" % (
                policy.get("name", "?"), element, mode.get("type"), " and ".join(missing)))
