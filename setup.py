"""The build hook pyproject.toml cannot express: install ``c7n_broom.pth``.

c7n 0.9 discovers no plugins. The .pth file, at the root of site-packages, makes the
stock ``custodian`` and ``c7n-org`` commands load Broom (see ``_c7n_broom_autoload.py``).
The policy files are copied into ``broom/policies/`` so ``broom demo`` runs the shipped
default. Everything else about the package is in pyproject.toml.
"""
import os

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PTH = "c7n_broom.pth"


class build_py_with_pth(build_py):
    def extra_files(self):
        files = [(os.path.join(HERE, PTH), os.path.join(self.build_lib, PTH))]
        for name in sorted(os.listdir(os.path.join(HERE, "policies"))):
            if name.endswith(".yml"):
                files.append((os.path.join(HERE, "policies", name),
                              os.path.join(self.build_lib, "broom", "policies", name)))
        return files

    def run(self):
        super().run()
        for source, target in self.extra_files():
            self.mkpath(os.path.dirname(target))
            self.copy_file(source, target, preserve_mode=0)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [t for _, t in self.extra_files()]


setup(cmdclass={"build_py": build_py_with_pth})
