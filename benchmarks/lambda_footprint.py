"""Duration and peak memory of the packaged handler, against the policy's settings.

Deploys policies/ec2-tags.yml with the stock ``custodian run`` on a local AWS (moto's
server), then delivers RunInstances events of growing size to the published archive,
run the way Lambda runs it, and prints duration and peak RSS as fractions of the
policy's ``timeout`` and ``memory``. Exits 1 when any run exceeds either.

    python benchmarks/lambda_footprint.py [--sizes 3,100,500]

Sizes above the policy's ``max-terminations`` (20) measure the capped path (nothing
terminated, one digest report); ``--uncapped`` raises the cap to measure 500 real
terminations and the digest that follows.
"""
import argparse
import copy
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
IMAGE = "ami-12345678"


def policy_file(workdir, uncapped):
    document = yaml.safe_load((REPO / "policies" / "ec2-tags.yml").read_text())
    if uncapped:
        for action in document["policies"][0]["actions"]:
            if action["type"] == "safe-terminate":
                action["max-terminations"] = 100000
    path = Path(workdir) / "ec2-tags.yml"
    path.write_text(yaml.safe_dump(document))
    return path, document["policies"][0]


def record(instance_ids):
    from broom.demo import DEMO_USER, run_instances_record
    instances = [{"InstanceId": i, "ImageId": IMAGE, "InstanceType": "t3.micro"}
                 for i in instance_ids]
    return run_instances_record(instances, None, copy.deepcopy(DEMO_USER), "us-east-1",
                                "123456789012")


def main():
    from broom.local.aws import LocalAws, create_lambda_role
    from broom.local.deploy import custodian_run, invoke_deployed

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,100,500")
    parser.add_argument("--uncapped", action="store_true")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    failures = 0
    with tempfile.TemporaryDirectory() as workdir, LocalAws() as aws:
        path, data = policy_file(workdir, args.uncapped)
        create_lambda_role(aws)
        aws.client("sns").create_topic(Name="broom-reports")
        custodian_run(path, Path(workdir) / "out", ["us-east-1"], aws.env())
        name = "custodian-" + data["name"]
        timeout, memory = data["mode"]["timeout"], data["mode"]["memory"]
        print("policy: timeout %ss, memory %s MB%s" % (
            timeout, memory, " (cap raised)" if args.uncapped else ""))
        ec2 = aws.client("ec2")
        for size in sizes:
            ids = [i["InstanceId"] for i in ec2.run_instances(
                ImageId=IMAGE, MinCount=size, MaxCount=size,
                InstanceType="t3.micro")["Instances"]]
            result = invoke_deployed(aws, name, record(ids), "us-east-1")
            mb = result.max_rss_kb / 1024
            print("%4d instances: ok=%s  %6.1f s (%.0f%% of timeout)  %5.0f MB peak RSS "
                  "(%.0f%% of memory)" % (size, result.ok, result.duration_s,
                                         100 * result.duration_s / timeout, mb,
                                         100 * mb / memory))
            if not result.ok:
                print(result.logs[-3000:])
            failures += (not result.ok) + (result.duration_s > timeout) + (mb > memory)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
