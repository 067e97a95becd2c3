"""The pre-commit hook another repository uses: `custodian validate` with Broom loaded.

pre-commit installs this repository into an environment of its own (pip, from the
package registry), as it would for a user's repository.
"""
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from support import REPO

BIN = Path(sys.executable).parent


def try_hook(tmp_path, policy):
    repo = tmp_path / "policies-repo"
    repo.mkdir(parents=True)
    subprocess.run(["git", "init", "-q"], cwd=repo, check=True)
    shutil.copy(policy, repo / "policy.yml")
    return subprocess.run(
        [str(BIN / "pre-commit"), "try-repo", str(REPO), "custodian-validate",
         "--files", "policy.yml"], cwd=repo, capture_output=True, text=True, timeout=600,
        env={"PATH": "%s:/usr/bin:/bin" % BIN, "HOME": str(tmp_path),
             "PRE_COMMIT_HOME": str(tmp_path / "cache")})


def test_hook_validates_policies_that_use_broom_and_refuses_a_bad_one(tmp_path):
    good = try_hook(tmp_path / "good", REPO / "policies" / "ec2-tags.yml")
    assert good.returncode == 0, good.stdout + good.stderr
    assert "Passed" in good.stdout

    [data] = yaml.safe_load((REPO / "policies" / "ec2-tags.yml").read_text())["policies"]
    data["filters"][0]["codes"] = []
    bad_file = tmp_path / "bad.yml"
    bad_file.write_text(yaml.safe_dump({"policies": [data]}))
    bad = try_hook(tmp_path / "bad", bad_file)
    assert bad.returncode != 0
    assert "filter:allowed-codes" in bad.stdout
