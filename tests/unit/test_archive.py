"""What ships to Lambda: the plugin, and only the plugin (c7n's own PolicyLambda)."""
import ast
import io
import sys
import zipfile

import yaml
from c7n.config import Config
from c7n.credentials import SessionFactory
from c7n.mu import PolicyLambda
from c7n.policy import Policy

from support import REGION, REPO

#: Every file of c7n_broom in the archive. A new module must be added here on purpose.
PLUGIN_FILES = {
    "c7n_broom/%s.py" % name for name in (
        "__init__", "actions", "codes", "decisions", "entry", "events", "filters",
        "fleets", "handler", "identity", "instances", "lambda_check", "omitted", "principals",
        "quarantine", "recheck", "report", "source", "state", "terminate", "text", "validation",
        "cost", "formats", "mailer", "snapshots",
        "lookup", "sweep", "items", "securityhub", "metrics",
        "invocation", "owed", "launch")}
#: What the plugin may import: itself, c7n, the AWS SDK Lambda provides, the stdlib.
ALLOWED_ROOTS = {"c7n_broom", "c7n", "boto3", "botocore"} | set(sys.stdlib_module_names)


def archive(policy_file="ec2-tags.yml"):
    [data] = yaml.safe_load((REPO / "policies" / policy_file).read_text())["policies"]
    policy = Policy(data, Config.empty(region=REGION, account_id="123456789012"),
                    session_factory=SessionFactory(REGION))
    return zipfile.ZipFile(io.BytesIO(PolicyLambda(policy).get_archive().get_bytes()))


def broom_files(zipped):
    return {name for name in zipped.namelist()
            if name.startswith("c7n_broom/") and "__pycache__" not in name}


def test_the_archive_holds_exactly_the_plugin():
    for policy_file in ("ec2-tags.yml", "ec2-tags-changed.yml", "ec2-tags-fixed.yml",
                        "ec2-tags-hub.yml",
                        "ec2-tags-sweep.yml"):
        zipped = archive(policy_file)
        assert broom_files(zipped) == PLUGIN_FILES, policy_file
        assert not [n for n in zipped.namelist() if n.startswith(("broom/", "moto/"))]


def imported_roots(source):
    roots = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_the_plugin_imports_only_c7n_the_aws_sdk_and_the_standard_library():
    zipped = archive()
    for name in sorted(broom_files(zipped)):
        outside = imported_roots(zipped.read(name).decode()) - ALLOWED_ROOTS
        assert not outside, "%s imports %s" % (name, ", ".join(sorted(outside)))
