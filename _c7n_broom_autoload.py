"""Load the c7n_broom plugin into the stock ``custodian`` and ``c7n-org`` commands.

c7n 0.9 discovers no plugins, so Broom ships ``c7n_broom.pth``, which imports this
module at interpreter start-up. That runs in *every* Python process of the
environment, so this module does the least possible work: it imports nothing and
adds one finder to ``sys.meta_path``. The finder wakes up only when
``c7n.resources.ec2`` is imported (the module that defines the resource Broom
extends); once that module has executed it imports ``c7n_broom``, which registers
Broom's filter and action, and then removes itself.
"""
import sys

TRIGGER = "c7n.resources.ec2"
PLUGIN = "c7n_broom"


class _RegisterAfterExec:
    """Loader proxy: runs the real loader, then imports the plugin."""

    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        __import__(PLUGIN)


class BroomAutoload:
    """Meta path finder that defers to the others and wraps the trigger's loader."""

    @classmethod
    def find_spec(cls, fullname, path=None, target=None):
        if fullname != TRIGGER:
            return None
        uninstall()
        for finder in sys.meta_path:
            find_spec = getattr(finder, "find_spec", None)
            if find_spec is None:
                continue
            spec = find_spec(fullname, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = _RegisterAfterExec(spec.loader)
                return spec
        return None


def install():
    if BroomAutoload not in sys.meta_path and TRIGGER not in sys.modules:
        sys.meta_path.insert(0, BroomAutoload)


def uninstall():
    while BroomAutoload in sys.meta_path:
        sys.meta_path.remove(BroomAutoload)


install()
