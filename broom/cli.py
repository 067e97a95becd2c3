"""The ``broom`` command: what the stock Custodian commands lack."""
import logging
import sys

import click

from broom.demo import DemoError

# Nothing here imports c7n or boto3 at start: `broom --help`, `broom --version` and
# shell completion work without any AWS configuration, even a broken one.


@click.group()
@click.version_option(package_name="c7n-broom", prog_name="broom")
@click.option("-v", "--verbose", is_flag=True, help="Show debug logs.")
def cli(verbose):
    """Broom: terminate EC2 instances without an allowed Code tag, report who launched them.

    Deploy and validate with the stock commands (`custodian run`, `c7n-org run`,
    `custodian validate`); `broom` adds what they lack. Shell completion:
    eval "$(_BROOM_COMPLETE=bash_source broom)" (zsh_source, fish_source).
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
    from broom.local.aws import LocalAwsError
    from broom.local.deploy import DeployError

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
    from broom.demo import run_demo

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


@cli.command()
@click.argument("policy", type=click.Path(exists=True, dir_okay=False))
@click.argument("event_files", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False))
@click.option("--execute", is_flag=True,
              help="Run the policy's actions (terminate, report). Default: show only.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="A policy variable, as c7n-org vars set it (repeatable).")
@click.option("-s", "--output-dir", default=None, help="Custodian output directory.")
def replay(policy, event_files, execute, variables, output_dir):
    """Replay CloudTrail events (records, EventBridge events or log files, .json or
    .json.gz) through a cloudtrail-mode POLICY, in the current AWS credentials'
    account, in each event's region."""
    import tempfile

    from broom.replay import PolicyCache, ReplayError, read_records, replay_record

    values = {}
    for item in variables:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter("expected NAME=VALUE, got %r" % item, param_hint="--var")
        values[name] = value
    with tempfile.TemporaryDirectory() as tmp:
        policies = PolicyCache(policy, output_dir or tmp, values)
        try:
            records = [r for path in event_files for r in read_records(path)]
            results = [result for record in records for result in replay_record(
                policies(events_region(record)), record, execute)]
        except ReplayError as e:
            click.echo("broom replay failed: %s" % e, err=True)
            sys.exit(1)
    for result in results:
        click.echo("%s %s %s in %s by %s" % (result.policy, result.event_name,
                                            result.event_time, result.region, result.creator))
        if result.skipped:
            click.echo("  skipped: %s" % result.skipped)
        for instance_id, verdict, outcome in result.instances:
            click.echo("  %s  %s  %s" % (instance_id, verdict, outcome))
        if not result.skipped and not result.instances:
            click.echo("  no instance breaks the rule")
    click.echo("%d event(s) read, %d matched a policy%s" % (
        len(records), len(results), "" if execute else " (dry run: nothing changed)"))


def events_region(record):
    from c7n_broom.events import field

    return field(record, "awsRegion") or "us-east-1"


@cli.command()
@click.option("--policy", type=click.Path(exists=True, dir_okay=False),
              help="Take codes and exemptions from this policy file "
                   "(default: the shipped policies/ec2-tags.yml).")
@click.option("--codes", help="Allowed codes, comma separated (instead of the policy's).")
@click.option("--compact", is_flag=True,
              help="Print minified JSON (AWS Organizations counts whitespace toward its "
                   "5,120-character limit).")
def scp(policy, codes, compact):
    """Print an AWS Organizations SCP that refuses launches without an allowed Code."""
    from broom import scp as scp_module
    from broom.demo import default_policy
    from c7n_broom.codes import parse_codes

    try:
        allowed = parse_codes(codes) if codes is not None else None
        document = scp_module.policy_scp(policy or default_policy(), allowed)
        text = scp_module.render(document, compact=compact)
    except (ValueError, DemoError) as e:
        click.echo("broom scp failed: %s" % e, err=True)
        sys.exit(1)
    click.echo(text)


@cli.command()
@click.option("--policy", "policies", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Policy file to grant (repeatable; default: every shipped policy).")
@click.option("--role", type=click.Choice(["account", "member", "hub"]), default="account",
              show_default=True,
              help="account: broom-lambda; member: a hub's broom-member; hub: the hub's "
                   "broom-lambda.")
@click.option("--account", default="ACCOUNT", show_default=True,
              help="The role's account id, for the resource ARNs.")
@click.option("--hub-account", default="HUB_ACCOUNT", show_default=True,
              help="With --role member: the hub's account id (its report topic).")
def permissions(policies, role, account, hub_account):
    """Print the IAM policy of Broom's execution role for the policies: what their
    elements declare, plus Lambda's logs and dead-letter queue, scoped to Broom's
    resources (templates/*.yml grant the same)."""
    from broom import permissions as permissions_module

    try:
        document, unscoped = permissions_module.role_policy(
            role, list(policies) or None, account, hub_account)
    except ValueError as e:
        click.echo("broom permissions failed: %s" % e, err=True)
        sys.exit(1)
    for action in unscoped:
        click.echo("broom permissions: no known resource scope for %s: granted on \"*\", "
                   "narrow it if IAM allows" % action, err=True)
    click.echo(permissions_module.render(document))
