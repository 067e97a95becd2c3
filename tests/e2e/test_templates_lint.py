"""cfn-lint, the stock linter, accepts every CloudFormation template (a subprocess)."""
import subprocess
import sys

from support import REPO

TEMPLATES = REPO / "templates"


def test_cfn_lint_accepts_every_template():
    paths = sorted(TEMPLATES.glob("*.yml"))

    # cfn-lint's console script, started from this interpreter (no __main__ module).
    completed = subprocess.run(
        [sys.executable, "-c", "import sys; from cfnlint.runner import main; "
         "sys.argv[0] = 'cfn-lint'; sys.exit(main())", *map(str, paths)],
        capture_output=True, text=True, timeout=300)

    assert len(paths) == 4
    assert completed.returncode == 0, completed.stdout + completed.stderr
