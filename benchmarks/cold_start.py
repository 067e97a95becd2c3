"""Cold-start CPU of Broom's published archive, against a plain boto3 handler and stock c7n.

On a local AWS (moto's server), deploys policies/ec2-tags.yml and a stock c7n policy
(``tag:Code: absent``, ``terminate``, ``notify`` over SNS) with the stock ``custodian
run``, and zips a minimal plain-boto3 handler (DescribeInstances, TerminateInstances of
the instances without ``Code``, one SNS Publish). Each is then run the way Lambda runs
a new container (a fresh interpreter: imports, then one event) on a one-instance
violating launch, interleaved, ``--runs`` times; the figure is the CPU time (user +
sys) of that process, median over the runs. Broom's ``grace-seconds`` wait sleeps:
it costs wall time, not CPU.

    python benchmarks/cold_start.py [--runs 5]

Exits 1 when Broom's median is above 1.5x the plain handler's or above stock c7n's
(docs/development.md). CPU figures vary with the machine's load: compare the ratios.
"""
import argparse
import copy
import io
import resource
import statistics
import sys
import tempfile
import zipfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
IMAGE = "ami-12345678"
REGION = "us-east-1"
ACCOUNT = "123456789012"
TOPIC = "arn:aws:sns:%s:%s:broom-reports" % (REGION, ACCOUNT)
PLAIN_LIMIT = 1.5

PLAIN_HANDLER = '''\
import json
import os

import boto3

ec2 = boto3.client("ec2")
sns = boto3.client("sns")


def handler(event, context):
    items = event["detail"]["responseElements"]["instancesSet"]["items"]
    ids = [item["instanceId"] for item in items]
    reservations = ec2.describe_instances(InstanceIds=ids)["Reservations"]
    untagged = [i["InstanceId"] for r in reservations for i in r["Instances"]
                if not any(t["Key"] == "Code" for t in i.get("Tags", []))]
    if untagged:
        ec2.terminate_instances(InstanceIds=untagged)
        sns.publish(TopicArn=os.environ["TOPIC"], Subject="terminated",
                    Message=json.dumps({"terminated": untagged,
                                        "by": event["detail"]["userIdentity"]["arn"]}))
    return untagged
'''


def policies(workdir):
    """(path, function name) of Broom's policy file and of the stock c7n one."""
    [broom] = yaml.safe_load((REPO / "policies" / "ec2-tags.yml").read_text())["policies"]
    stock = {
        "name": "stock-require-code-tag", "resource": "aws.ec2",
        "mode": dict({k: broom["mode"][k] for k in ("role", "runtime", "memory", "timeout")},
                     type="cloudtrail", events=["RunInstances"]),
        "filters": [{"tag:Code": "absent"}],
        "actions": ["terminate", {
            "type": "notify", "to": ["ops@example.com"], "subject": "terminated",
            "transport": {"type": "sns", "topic": TOPIC}}]}
    files = []
    for data in (broom, stock):
        path = Path(workdir) / ("%s.yml" % data["name"])
        path.write_text(yaml.safe_dump({"policies": [data]}))
        files.append((path, "custodian-" + data["name"]))
    return files


def plain_archive():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", PLAIN_HANDLER)
    return buffer.getvalue()


def record(ec2):
    from broom.demo import DEMO_USER, run_instances_record

    instances = ec2.run_instances(ImageId=IMAGE, MinCount=1, MaxCount=1,
                                  InstanceType="t3.micro")["Instances"]
    return run_instances_record(instances, None, copy.deepcopy(DEMO_USER), REGION, ACCOUNT)


def cpu_of(run, launch):
    """CPU seconds (user + sys) of the child process ``run(launch)`` starts and waits
    for."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    result = run(launch)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if not result.ok:
        raise SystemExit("the handler failed: %s %s\n%s" % (
            result.error_type, result.error_message, result.logs[-3000:]))
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main():
    from broom.local.aws import LocalAws, create_lambda_role, create_state_table
    from broom.local.deploy import custodian_run, invoke_deployed
    from broom.local.lambda_runner import eventbridge_envelope, run_archive

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    samples = {"plain boto3": [], "stock c7n": [], "broom": []}
    with tempfile.TemporaryDirectory() as workdir, LocalAws() as aws:
        create_lambda_role(aws)
        aws.client("sns").create_topic(Name="broom-reports")
        create_state_table(aws.client("dynamodb"))
        (broom_path, broom), (stock_path, stock) = policies(workdir)
        for path in (broom_path, stock_path):
            custodian_run(path, Path(workdir) / "out", [REGION], aws.env())
        ec2 = aws.client("ec2")
        plain = plain_archive()
        plain_env = dict(aws.env(region=REGION), TOPIC=TOPIC)
        runs = {
            "plain boto3": lambda r: run_archive(
                plain, "handler.handler", eventbridge_envelope(r, ACCOUNT, REGION),
                plain_env, timeout=120),
            "stock c7n": lambda r: invoke_deployed(aws, stock, r, REGION),
            "broom": lambda r: invoke_deployed(aws, broom, r, REGION),
        }
        for _ in range(args.runs):
            for name, run in runs.items():
                launch = record(ec2)
                samples[name].append(cpu_of(run, launch))
    medians = {name: statistics.median(values) for name, values in samples.items()}
    for name, median in medians.items():
        print("%-12s cold start + one event: %4.0f ms CPU (median of %d; runs %s)" % (
            name, median * 1000, args.runs,
            ", ".join("%.0f" % (v * 1000) for v in samples[name])))
    to_plain = medians["broom"] / medians["plain boto3"]
    to_stock = medians["broom"] / medians["stock c7n"]
    print("broom / plain boto3: %.2fx (target %.1fx); broom / stock c7n: %.2fx (target 1.0x)"
          % (to_plain, PLAIN_LIMIT, to_stock))
    return 0 if to_plain <= PLAIN_LIMIT and to_stock <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
