"""Load the c7n_broom plugin into the stock ``custodian`` and ``c7n-org`` commands.

c7n 0.9 discovers no plugins, so Broom ships ``c7n_broom.pth``, which imports this
module at interpreter start-up. That runs in *every* Python process of the
environment, so this module does the least possible work: it imports nothing and
adds one finder to ``sys.meta_path``. The finder wakes up only when
``c7n.resources.ec2`` is imported (the module that defines the resource Broom
extends); once that module has executed it imports ``c7n_broom``, which registers
Broom's filter and action, and then removes itself.

It also defers one thing c7n's import does: c7n imports ``aws_xray_sdk`` when it is
installed (moto's server extra brings it in), whose recorder creates a boto3 client
for the X-Ray daemon at import time; with a misconfigured ``AWS_PROFILE`` that raises
``ProfileNotFound`` and every ``custodian`` command, ``custodian validate``
included, dies with a traceback. The finder wraps that one method so that the client
is created when it is first used (only when X-Ray tracing is switched on).
"""
import sys

TRIGGER = "c7n.resources.ec2"
PLUGIN = "c7n_broom"
XRAY_CONNECTOR = "aws_xray_sdk.core.sampling.connector"


class _AfterExec:
    """Loader proxy: runs the real loader, then ``then(module)``."""

    def __init__(self, loader, then):
        self._loader = loader
        self._then = then

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        self._then(module)


def _register(module):
    uninstall()
    __import__(PLUGIN)


class _ClientWhenUsed:
    """Stands for a client until an attribute of it is first read."""

    def __init__(self, create):
        self._create = create
        self._client = None

    def __getattr__(self, name):
        if self._client is None:
            self._client = self._create()
        return getattr(self._client, name)


def _defer_xray_client(module):
    connector = getattr(module, "ServiceConnector", None)
    create = getattr(connector, "_create_xray_client", None)
    if create is None:
        return  # another aws_xray_sdk: leave it as it is

    def create_when_used(self, *args, **kwargs):
        return _ClientWhenUsed(lambda: create(self, *args, **kwargs))

    connector._create_xray_client = create_when_used


HOOKS = {TRIGGER: _register, XRAY_CONNECTOR: _defer_xray_client}


class BroomAutoload:
    """Meta path finder that defers to the others and wraps the watched modules'
    loaders; it removes itself once the trigger has executed (the X-Ray connector is
    imported while it executes, when c7n's import starts there)."""

    _finding = False

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        then = HOOKS.get(fullname)
        if then is None or cls._finding:
            return None
        cls._finding = True
        try:
            for finder in sys.meta_path:
                find_spec = getattr(finder, "find_spec", None)
                if finder is cls or find_spec is None:
                    continue
                spec = find_spec(fullname, path, target)
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = _AfterExec(spec.loader, then)
                    return spec
        finally:
            cls._finding = False
        return None


def install():
    if BroomAutoload not in sys.meta_path and TRIGGER not in sys.modules:
        sys.meta_path.insert(0, BroomAutoload)


def uninstall():
    while BroomAutoload in sys.meta_path:
        sys.meta_path.remove(BroomAutoload)


install()
