"""`broom demo`, run as users run it: the installed console script."""
import socket
import subprocess
import sys
from pathlib import Path

from support import POLICIES

BROOM = Path(sys.executable).parent / "broom"


def broom(*args, timeout=120):
    return subprocess.run([str(BROOM), *args], capture_output=True, text=True,
                          timeout=timeout)


def test_demo_terminates_the_two_violators_and_prints_their_reports():
    result = broom("demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for step in range(1, 7):
        assert "[%d/6]" % step in out
    assert "Broom kept the tagged instance and terminated the two others" in out
    after = out.split("Instances after Broom ran:")[1].split("Reports published")[0]
    states = dict(line.split()[0::2] for line in after.strip().splitlines())
    assert states == {"valid": "running", "missing": "terminated", "invalid": "terminated"}
    assert "Reports published to broom-reports (2)" in out
    assert out.count("Launched by:    alice@example.com") == 2
    assert "Subject: Broom terminated" in out
    assert "the instance has no Code tag" in out
    assert 'Code="WAT" is not an allowed code' in out
    # moto serves no Price List API: the cost is unknown, the report otherwise whole.
    assert out.count("Cost:           cost unknown (Price List API unreachable") == 2
    assert "Traceback" not in result.stderr
    assert ("The same publish gives SQS and Lambda subscribers of broom-reports each "
            "report as a JSON document (broom.report/1, schemas/broom.report-1.json)"
            in out)


def test_demo_refuses_a_port_that_is_taken():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = broom("demo", "--port", str(port))
    assert result.returncode == 1
    assert "broom demo failed" in result.stderr
    assert str(port) in result.stderr
    assert "[3/6]" not in result.stdout


def test_demo_names_the_missing_dependency():
    code = ("import sys; sys.modules['moto'] = None; sys.modules['moto.server'] = None; "
            "from broom.cli import cli; cli(['demo'])")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 1
    assert "moto[server] is not installed" in result.stderr
    assert "pip install" in result.stderr


def test_demo_needs_a_cloudtrail_mode_policy(tmp_path):
    broken = tmp_path / "broken.yml"
    broken.write_text("policies:\n  - name: broken\n    resource: aws.ec2\n"
                      "    filters:\n      - type: no-such-filter\n")
    result = broom("demo", "--policy", str(broken))
    assert result.returncode == 1
    assert "broom demo failed" in result.stderr
    assert "runs a policy on RunInstances events (mode: cloudtrail" in result.stderr


def test_demo_rejects_a_policy_with_an_unknown_element(tmp_path):
    policy = (POLICIES / "ec2-tags.yml").read_text()
    broken = tmp_path / "unknown-filter.yml"
    broken.write_text(policy.replace("type: allowed-codes", "type: allowed-codez"))
    result = broom("demo", "--policy", str(broken))
    assert result.returncode == 1
    assert "allowed-codez" in result.stderr
    assert "[4/6]" not in result.stdout
