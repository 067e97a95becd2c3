"""Packaging for Broom: the c7n_broom plugin, its autoloader and the ``broom`` command."""
import os

from setuptools import find_packages, setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
PTH = "c7n_broom.pth"


class build_py_with_pth(build_py):
    """Also place ``c7n_broom.pth`` at the root of site-packages.

    The .pth file makes the stock ``custodian`` and ``c7n-org`` commands load Broom
    (c7n has no plugin discovery); see ``_c7n_broom_autoload.py``.
    """

    def run(self):
        super().run()
        self.copy_file(os.path.join(HERE, PTH), os.path.join(self.build_lib, PTH),
                       preserve_mode=0)

    def get_outputs(self, include_bytecode=True):
        return super().get_outputs(include_bytecode) + [os.path.join(self.build_lib, PTH)]


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
    package_data={"c7n_broom": ["data/*"]},
    include_package_data=True,
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
