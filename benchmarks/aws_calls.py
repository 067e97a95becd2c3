"""AWS calls Broom makes for one launch event, against stock c7n doing the least.

In process against moto (mock_aws), with the state table and report topic deployed:
a RunInstances event naming N violating instances (no ``Code``: terminated, one
report each) pushed to policies/ec2-tags.yml, and the same event pushed to a stock
c7n policy (``tag:Code: absent``, ``terminate``, ``notify`` over SNS). Prints the
calls per event by operation, for each size (``--sizes``, 1 and 20 by default).

    python benchmarks/aws_calls.py [--sizes 1,20]

Exits 1 when Broom goes over its targets (docs/development.md): 12 calls for a
20-instance launch, stock c7n + 4 for one instance. The counts come from moto, so
they do not vary from run to run: a regression shows as a changed figure.
"""
import argparse
import copy
import logging
import sys
import tempfile

from scale import ACCOUNT, REGION, REPO, Calls, fake_aws_environment, launch, load_policy

STOCK = {
    "name": "stock-require-code-tag",
    "resource": "aws.ec2",
    "mode": {"type": "cloudtrail", "events": ["RunInstances"]},
    "filters": [{"tag:Code": "absent"}],
    "actions": ["terminate", {
        "type": "notify", "to": ["ops@example.com"], "subject": "terminated",
        "transport": {"type": "sns",
                      "topic": "arn:aws:sns:%s:%s:broom-reports" % (REGION, ACCOUNT)}}],
}


def deploy():
    import boto3

    from broom.local.aws import create_state_table

    boto3.client("sns", region_name=REGION).create_topic(Name="broom-reports")
    create_state_table(boto3.client("dynamodb", region_name=REGION))


def event_for(instances):
    from broom.demo import DEMO_USER, run_instances_record
    from broom.local.lambda_runner import eventbridge_envelope

    return eventbridge_envelope(run_instances_record(
        instances, {}, copy.deepcopy(DEMO_USER), REGION, ACCOUNT))


def calls_for(data, count, workdir):
    """{operation: calls} of pushing one ``count``-instance launch to the policy."""
    instances = launch(count, {"Team": "x"})
    policy = load_policy(data, workdir)
    with Calls() as calls:
        policy.push(event_for(instances))
    return dict(calls.counts)


def main():
    import yaml
    from moto import mock_aws

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,20")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    logging.getLogger("custodian").setLevel(logging.ERROR)
    [broom] = yaml.safe_load((REPO / "policies" / "ec2-tags.yml").read_text())["policies"]
    ok = True
    with tempfile.TemporaryDirectory() as workdir:
        fake_aws_environment(workdir)
        from c7n.resources import load_resources

        import c7n_broom  # noqa: F401  (registers Broom's elements)
        load_resources(("aws.ec2",))  # stock c7n's notify
        from c7n_broom.cost import PriceBook
        for size in sizes:
            figures = {}
            for name, data in (("broom", broom), ("stock c7n", STOCK)):
                with mock_aws():
                    deploy()
                    PriceBook.forget()  # a cold container: prices fetched once
                    figures[name] = calls_for(copy.deepcopy(data), size, workdir)
                print("%d instance(s), %s: %d calls (%s)" % (
                    size, name, sum(figures[name].values()), ", ".join(
                        "%s %d" % item for item in sorted(figures[name].items()))))
            broom_calls, stock = (sum(figures[n].values()) for n in ("broom", "stock c7n"))
            target = 12 if size >= 20 else stock + 4
            print("  broom: %d calls, target %d: %s" % (
                broom_calls, target, "ok" if broom_calls <= target else "OVER"))
            ok &= broom_calls <= target
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
