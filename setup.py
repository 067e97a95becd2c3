"""Packaging for Broom: the c7n_broom plugin, its autoloader and the ``broom`` command."""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PTH = "c7n_broom.pth"


POLICIES = sorted(name for name in os.listdir(os.path.join(HERE, "policies"))
                  if name.endswith(".yml"))


class build_py_with_pth(build_py):
    """Also place ``c7n_broom.pth`` at the root of site-packages, and ship the policies.

    The .pth file makes the stock ``custodian`` and ``c7n-org`` commands load Broom
    (c7n has no plugin discovery); see ``_c7n_broom_autoload.py``. The policy files
    are copied into ``c7n_broom/policies/`` so ``broom demo`` runs the shipped default.
    """

    def extra_files(self):
        files = [(os.path.join(HERE, PTH), os.path.join(self.build_lib, PTH))]
        for name in POLICIES:
            files.append((os.path.join(HERE, "policies", name),
                          os.path.join(self.build_lib, "c7n_broom", "policies", name)))
        return files

    def run(self):
        super().run()
        for source, target in self.extra_files():
            self.mkpath(os.path.dirname(target))
            self.copy_file(source, target, preserve_mode=0)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [t for _, t in self.extra_files()]


with open(os.path.join(HERE, "README.md"), encoding="utf-8") as f:
    long_description = f.read()

setup(
    name="c7n-broom",
    version="0.1.0",
    description="Cloud Custodian policy pack and plugin: terminate EC2 instances "
                "without an allowed Code tag and report who launched them",
    long_description=long_description,
    long_description_content_type="text/markdown",
    license="Apache-2.0",
    python_requires=">=3.11",
    packages=find_packages(include=["c7n_broom", "c7n_broom.*"]),
    py_modules=["_c7n_broom_autoload"],
    install_requires=[
        "c7n>=0.9.40,<0.10",
        "c7n-org>=0.6.40,<0.7",
        "boto3>=1.34,<2",
        "click>=8,<9",
    ],
    extras_require={
        "demo": ["moto[server]>=5.0.20,<6"],
        "test": [
            "moto[server]>=5.0.20,<6",
            "pytest>=8,<10",
            "hypothesis>=6.100,<7",
        ],
    },
    entry_points={"console_scripts": ["broom = c7n_broom.cli:cli"]},
    cmdclass={"build_py": build_py_with_pth},
    classifiers=[
        "Programming Language :: Python :: 3.11",
    ],
)
