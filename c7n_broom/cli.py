"""The ``broom`` command: what the stock Custodian commands lack."""
import logging
import sys

import click

from c7n_broom.demo import DemoError


@click.group()
@click.option("-v", "--verbose", is_flag=True, help="Show debug logs.")
def cli(verbose):
    """Broom: terminate EC2 instances without an allowed Code tag, report who launched them.

    Deploy and validate with the stock commands (`custodian run`, `c7n-org run`,
    `custodian validate`); `broom` adds what they lack.
    """
    logging.basicConfig(level=logging.DEBUG if verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for noisy in ("werkzeug", "botocore", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@cli.command()
@click.option("--port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Loopback port for the local AWS; 0 picks a free one.")
@click.option("--region", default="us-east-1", show_default=True)
@click.option("--policy", type=click.Path(exists=True, dir_okay=False),
              help="Policy file to deploy instead of the shipped policies/ec2-tags.yml.")
def demo(port, region, policy):
    """Run Broom's main job on a local AWS (moto), with no AWS account."""
    from c7n_broom.localaws import LocalAwsError
    from c7n_broom.localdeploy import DeployError

    try:
        result = run(port, region, policy)
    except (DemoError, DeployError, LocalAwsError) as e:
        click.echo("broom demo failed: %s" % e, err=True)
        sys.exit(1)
    problems = result.problems()
    if problems:
        for problem in problems:
            click.echo("broom demo failed: %s" % problem, err=True)
        sys.exit(1)
    click.echo("Demo finished in %.1f s: Broom kept the tagged instance and terminated "
               "the two others." % result.seconds)


def run(port, region, policy):
    from c7n_broom.demo import run_demo

    result = run_demo(click.echo, port=port, region=region, policy=policy)
    click.echo("")
    click.echo("Instances after Broom ran:")
    for label, instance_id in result.instances.items():
        click.echo("  %-8s %s  %s" % (label, instance_id, result.states.get(instance_id)))
    click.echo("")
    click.echo("Reports published to broom-reports (%d), as a subscriber receives them:" %
               len(result.reports))
    for report in result.reports:
        click.echo("")
        click.echo("Subject: %s" % report["subject"])
        click.echo("-" * 72)
        click.echo(report["message"].rstrip("\n"))
        click.echo("-" * 72)
    click.echo("")
    return result
