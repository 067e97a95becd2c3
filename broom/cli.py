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
    if click.get_current_context().invoked_subcommand in NEEDS_NO_AWS:
        from broom.environment import ignore_missing_profile

        ignore_missing_profile()


#: Commands that make no AWS call (whatif decides by its sources: broom.whatif.cli).
NEEDS_NO_AWS = frozenset(("demo", "scp", "permissions", "preflight"))


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
    click.echo("Reports published to broom-reports (%d), as an e-mail subscriber reads them:"
               % len(result.reports))
    for report in result.reports:
        click.echo("")
        click.echo("Subject: %s" % report["subject"])
        click.echo("-" * 72)
        click.echo(report["message"].rstrip("\n"))
        click.echo("-" * 72)
    click.echo("")
    schemas = sorted({r["document"]["schema"] for r in result.reports if r.get("document")})
    click.echo("The same publish gives SQS and Lambda subscribers of broom-reports each "
               "report as a JSON document (%s, schemas/broom.report-1.json) and, with the "
               "shipped https-format: chatbot, HTTPS subscribers (AWS Chatbot) a Slack/Teams "
               "card: docs/reports.md." % (", ".join(schemas) or "broom.report/1"))
    click.echo("")
    return result


@cli.command()
@click.argument("policy", type=click.Path(exists=True, dir_okay=False))
@click.argument("sources", nargs=-1, required=True, metavar="SOURCE...")
@click.option("--execute", is_flag=True,
              help="Run the policy's actions (terminate, report) and delete handled "
                   "queue messages. Default: show only.")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="A policy variable, as c7n-org vars set it (repeatable).")
@click.option("--region", default=None,
              help="Region of sqs://NAME queues (default: the AWS default region).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document (a list of results) on stdout.")
@click.option("--progress/--no-progress", default=None,
              help="Count events on stderr (default: when stderr is a terminal).")
@click.option("-s", "--output-dir", default=None, help="Custodian output directory.")
def replay(policy, sources, execute, variables, region, as_json, progress, output_dir):
    """Replay CloudTrail events through a cloudtrail-mode POLICY, in the current AWS
    credentials' account, in each event's region.

    A SOURCE is a file (a record, an EventBridge event or a CloudTrail log file, .json
    or .json.gz), a folder (the .json and .json.gz files under it, in name order) or a
    dead-letter queue: sqs://NAME or a queue URL. An EventBridge event is replayed as
    delivered (a re-check stays a re-check). With --execute a
    queue message is deleted once its event was handled; a dry run deletes nothing.

    Each event is handled on its own: one that fails is reported and the others go
    on. A file or message holding no CloudTrail record is named in a warning and
    skipped; an event of another account, or not AWS's, is refused. The last line
    counts events handled, acted on, failed, skipped and refused, and with --execute
    the queue messages left in the queue (not handled). Exit status: 0 when no event
    failed or was refused and no message was left, 1 otherwise.
    """
    import json
    import tempfile
    from contextlib import closing
    from pathlib import Path

    from broom.replay import PolicyCache, ReplayError

    values = parse_vars(variables, [policy])
    for source in sources:
        if not is_queue_source(source) and not Path(source).exists():
            raise click.BadParameter("no such file or folder: %s" % source,
                                     param_hint="SOURCE")
    show_progress = sys.stderr.isatty() if progress is None else progress
    tally = dict(read=0, matched=0, handled=0, acted=0, failed=0, skipped=0, refused=0,
                 inputs=0, left=0)
    results = []
    try:
        session, account_id = aws_session(region)
        with tempfile.TemporaryDirectory() as tmp:
            policies = PolicyCache(policy, output_dir or tmp, values, account_id)
            with closing(replay_inputs(session, sources, region, execute)) as inputs:
                for item in inputs:
                    if item.problem:
                        tally["inputs"] += 1
                        tally["left"] += bool(item.queued and execute)
                        click.echo("broom replay: skipped %s" % item.problem, err=True)
                        continue
                    failed = False
                    for record in item.records:
                        tally["read"] += 1
                        replayed = replay_event(policies, record, execute)
                        failed = failed or not replayed  # no policy listens: not handled
                        for result in replayed:
                            failed = failed or bool(result.error or result.refused)
                            count(tally, result, execute)
                            results.append(result)
                            if not as_json:
                                show_result(result)
                        if show_progress:
                            click.echo("\rbroom replay: %d event(s), %d failed" % (
                                tally["read"], tally["failed"]), err=True, nl=False)
                    if item.done and not failed:
                        delete(item)
                    elif item.done:
                        tally["left"] += 1
    except ReplayError as e:
        click.echo("broom replay failed: %s" % e, err=True)
        sys.exit(1)
    if show_progress:
        click.echo("", err=True)
    if as_json:
        click.echo(json.dumps([r.as_dict() for r in results], indent=2))
    summary = ("%(read)d event(s) read, %(matched)d matched a policy: %(handled)d handled, "
               "%(acted)d acted on, %(failed)d failed, %(skipped)d skipped" % tally)
    if tally["refused"]:
        summary += ", %(refused)d refused" % tally
    if tally["inputs"]:
        summary += "; %d input(s) skipped" % tally["inputs"]
    if tally["left"]:
        summary += "; %d message(s) left in the queue" % tally["left"]
    if not execute:
        summary = summary.replace(" acted on,", " would be acted on,")
        summary += " (dry run: nothing changed)"
    click.echo(summary, err=as_json)
    sys.exit(1 if tally["failed"] or tally["refused"] or tally["left"] else 0)


def parse_vars(variables, policy_paths=()):
    """``--var NAME=VALUE`` options as a dict; a name that neither Broom nor the
    policy files use is refused (broom.varnames)."""
    from broom.varnames import UnknownName, check_vars

    values = {}
    for item in variables:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise click.BadParameter("expected NAME=VALUE, got %r" % item, param_hint="--var")
        values[name] = value
    try:
        check_vars(values, policy_paths)
    except UnknownName as e:
        raise click.BadParameter(str(e), param_hint="--var")
    return values


def is_queue_source(source):
    from broom.replay import is_queue

    return is_queue(source)


def aws_session(region):
    """A boto3 session and its account id; ReplayError in one line when there are no
    usable credentials or no region."""
    import boto3
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
    )

    from broom.replay import ReplayError

    try:
        session = boto3.Session()
        sts = session.client("sts", region_name=region or session.region_name or "us-east-1")
        return session, sts.get_caller_identity()["Account"]
    except (NoCredentialsError, PartialCredentialsError) as e:
        raise ReplayError("no AWS credentials (set AWS_PROFILE or AWS_ACCESS_KEY_ID and "
                          "AWS_SECRET_ACCESS_KEY): %s" % e)
    except ProfileNotFound as e:
        from broom.environment import profile_message

        raise ReplayError(profile_message(e))
    except NoRegionError:
        raise ReplayError("no AWS region (set --region or AWS_DEFAULT_REGION)")
    except ClientError as e:
        raise ReplayError("the AWS credentials do not work (sts:GetCallerIdentity: %s)" % (
            e.response["Error"].get("Message") or e.response["Error"]["Code"]))


def replay_inputs(session, sources, region, execute):
    """Each file, then each message of each queue, as broom.replay.Input."""
    from botocore.exceptions import ClientError, NoRegionError

    from broom.replay import Queue, ReplayError, is_queue

    for source in sources:
        if not is_queue(source):
            yield from folder_inputs(source)
            continue
        try:
            queue = Queue(session, source, region)
        except NoRegionError:
            raise ReplayError("no AWS region for %s (set --region or AWS_DEFAULT_REGION)"
                              % source)
        except ClientError as e:
            raise ReplayError("%s: %s" % (source, e))
        try:
            yield from queue.inputs(execute)
        finally:
            queue.close()


def folder_inputs(source):
    """The input of a file, or of each CloudTrail log file under a folder (in name
    order, as broom whatif reads a folder); a folder holding none is one skipped input."""
    from broom.replay import Input, file_input
    from broom.whatif.sources import Skipped, local_files

    found = False
    for path in local_files(source):
        found = True
        if isinstance(path, Skipped):
            yield Input(path.label, problem="%s %s" % (path.label, path.why))
        else:
            yield file_input(path)
    if not found:
        yield Input(source, problem="%s holds no CloudTrail log file (*.json.gz, *.json)"
                    % source)


def delete(item):
    """Delete a handled queue message; a refusal is a warning (the event was handled,
    the message will come back and be found handled)."""
    from botocore.exceptions import ClientError

    try:
        item.done()
    except ClientError as e:
        click.echo("broom replay: could not delete %s: %s" % (item.label, e), err=True)


def replay_event(policies, record, execute):
    from broom.replay import replay_record

    return replay_record(policies(events_region(record)), record, execute)


def count(tally, result, execute):
    tally["matched"] += 1
    if result.error:
        tally["failed"] += 1
    elif result.refused:
        tally["refused"] += 1
    elif result.skipped:
        tally["skipped"] += 1
    else:
        tally["handled"] += 1
        if any(i.verdict != "-" for i in result.instances):
            tally["acted"] += 1


def show_result(result):
    click.echo("%s %s %s in %s by %s" % (result.policy, result.event_name,
                                        result.event_time, result.region, result.creator))
    if result.skipped:
        click.echo("  skipped: %s" % result.skipped)
    if result.refused:
        click.echo("  refused: %s" % result.refused)
    for instance_id, verdict, outcome in result.instances:
        click.echo("  %s  %s  %s" % (instance_id, verdict, outcome))
    if result.error:
        click.echo("  failed: %s" % result.error)
    elif not (result.skipped or result.refused) and not any(
            i.verdict != "-" for i in result.instances):
        click.echo("  no %sinstance breaks the rule" % ("other " if result.instances else ""))


def events_region(event):
    from c7n_broom.events import cloudtrail_record, field

    return field(cloudtrail_record(event), "awsRegion") or "us-east-1"


@cli.command()
@click.option("--policy", type=click.Path(exists=True, dir_okay=False),
              help="Take codes and exemptions from this policy file "
                   "(default: the shipped policies/ec2-tags.yml).")
@click.option("--codes", help="Allowed codes, comma separated (instead of the policy's).")
@click.option("--compact", is_flag=True,
              help="Print minified JSON (AWS Organizations counts whitespace toward its "
                   "5,120-character limit).")
@click.option("--no-state-guard", "state_guard", flag_value=False, default=True,
              help="Leave out the statement that lets only Broom's roles write Broom's "
                   "state table (the table's own resource policy still does).")
@click.option("--admin", "admins", multiple=True, metavar="ARN_PATTERN",
              help="A principal (IAM ARN pattern, e.g. arn:aws:iam::*:role/platform-admin) "
                   "that may still manage what the SCP guards: Broom's state table and "
                   "the roles the exemptions name (repeatable).")
def scp(policy, codes, compact, state_guard, admins):
    """Print an AWS Organizations SCP that refuses launches without an allowed Code
    and guards Broom's own state."""
    from broom import scp as scp_module
    from broom.demo import default_policy
    from c7n_broom.codes import parse_codes

    try:
        allowed = parse_codes(codes) if codes is not None else None
        document = scp_module.policy_scp(policy or default_policy(), allowed,
                                         state_guard=state_guard, admins=admins)
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


@cli.command()
@click.option("-c", "--config", "config_path", required=True,
              type=click.Path(exists=True, dir_okay=False), help="c7n-org accounts file.")
@click.option("-u", "--use", "policy_paths", required=True, multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Policy file (repeatable).")
@click.option("-a", "--accounts", multiple=True, metavar="NAME/ID",
              help="Only these accounts, by name or id (repeatable, or comma separated).")
@click.option("-r", "--region", "regions", multiple=True,
              help="Regions instead of each account's (as c7n-org run -r).")
@click.option("--allow-var", "allow_vars", multiple=True, metavar="NAME",
              help="A var of your own that no policy file given uses (repeatable); "
                   "any other unknown var is an error.")
def preflight(config_path, policy_paths, accounts, regions, allow_vars):
    """Fill every account's vars into every policy as `c7n-org run` does and check
    the result, with no AWS calls: one line per problem, exit 1 if any."""
    from broom.preflight import PreflightError
    from broom.preflight import preflight as run_preflight

    try:
        result = run_preflight(config_path, policy_paths, accounts, regions, allow_vars)
    except PreflightError as e:
        click.echo("broom preflight failed: %s" % e, err=True)
        sys.exit(1)
    for warning in result.warnings:
        click.echo("warn: %s" % warning, err=True)
    for problem in result.problems:
        click.echo(problem)
    if result.problems:
        click.echo("%d problem(s); %s" % (len(result.problems), result.summary()), err=True)
        sys.exit(1)
    click.echo(result.summary())


@cli.command()
@click.option("--region", help="Region to check (default: the AWS configuration's).")
@click.option("--policy", "policies", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Deployed policy file (repeatable; default: the shipped "
                   "policies/ec2-tags.yml).")
def doctor(region, policies):
    """Check, read-only, with the current credentials, that Broom is deployed and
    able to act in one account and region: one line per check, exit 1 on a FAIL."""
    from broom import doctor as doctor_module
    from broom.demo import default_policy

    try:
        session, account_id = doctor_module.session_for(region)
        loaded = doctor_module.load(list(policies) or [default_policy()], account_id,
                                    session.region_name)
    except (doctor_module.DoctorError, DemoError) as e:
        click.echo("broom doctor failed: %s" % e, err=True)
        sys.exit(1)
    checks = doctor_module.run(session, account_id, loaded)
    for check in checks:
        click.echo(check.line())
    failed = [c for c in checks if c.status == doctor_module.FAIL]
    click.echo("%s (%s): %d checks, %d failed" % (account_id, session.region_name,
                                                  len(checks), len(failed)))
    if failed:
        sys.exit(1)


@cli.command()
@click.option("--region", "regions", multiple=True,
              help="Region to remove from (repeatable; default: the AWS configuration's).")
@click.option("--policy", "policies", multiple=True,
              type=click.Path(exists=True, dir_okay=False),
              help="Deployed policy file (repeatable; default: every shipped policy).")
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--log-groups", is_flag=True,
              help="Also delete the functions' log groups (/aws/lambda/NAME).")
def uninstall(regions, policies, dry_run, log_groups):
    """Remove what `custodian run` deployed for the policies, in the current
    credentials' account: each function's pending re-check schedules, EventBridge
    rule and targets, the function and its invoke permission (and with --log-groups
    its logs). The templates' resources (state table, topic, queue) stay. One line per
    thing removed; exit 1 if anything could not be removed."""
    from botocore.exceptions import ClientError

    from broom import doctor as doctor_module
    from broom import uninstall as uninstall_module
    from broom.demo import default_policy

    paths = list(policies) or sorted(default_policy().parent.glob("*.yml"))
    try:
        session, account_id = doctor_module.session_for(regions[0] if regions else None)
        loaded = doctor_module.load(paths, account_id, session.region_name)
    except (doctor_module.DoctorError, DemoError) as e:
        click.echo("broom uninstall failed: %s" % e, err=True)
        sys.exit(1)
    _, unsupported = uninstall_module.functions(loaded)
    for name in unsupported:
        click.echo("broom uninstall: skipped policy %s: not a function behind a rule of "
                   "its own" % name, err=True)
    steps = []
    for region in regions or [session.region_name]:
        try:
            found = uninstall_module.uninstall(session, account_id, region, loaded,
                                               dry_run=dry_run, log_groups=log_groups)
        except ClientError as e:
            click.echo("broom uninstall failed: %s: %s" % (
                region, uninstall_module.error_text(e)), err=True)
            sys.exit(1)
        for step in found:
            click.echo(step.line(dry_run))
        steps += found
    failed = [s for s in steps if s.error]
    click.echo("%s (%s): %d %s, %d failed%s" % (
        account_id, ", ".join(regions or [session.region_name]), len(steps) - len(failed),
        "to remove" if dry_run else "removed", len(failed),
        " (dry run: nothing changed)" if dry_run else ""))
    sys.exit(1 if failed else 0)


@cli.command()
@click.argument("instance_id")
@click.option("--region", help="The instance's region (default: the AWS configuration's).")
@click.option("--code", help="The Code tag of the replacement (one of the allowed codes; "
              "default: the instance's own, if it was allowed).")
@click.option("--dry-run", is_flag=True, help="Print the plan; register and launch nothing.")
@click.option("--state-table", default="broom-state", show_default=True,
              help="Broom's state table, where the quarantine recorded the instance.")
def restore(instance_id, region, code, dry_run, state_table):
    """Bring back an instance Broom's quarantine terminated, from its snapshots: an
    image of its volumes, launched with its type, subnet, security groups, instance
    profile, key pair and tags."""
    from broom import doctor as doctor_module
    from broom import restore as restore_module

    try:
        session, account_id = doctor_module.session_for(region)
        restore_module.restore(session, session.region_name, account_id, instance_id,
                               code, dry_run, state_table, echo=click.echo)
    except (doctor_module.DoctorError, restore_module.RestoreError) as e:
        click.echo("broom restore: %s" % e, err=True)
        sys.exit(1)


class ExitOneOnUsageError(click.Command):
    """A command whose usage errors exit 1, as its documented exit status says (2
    means an input was skipped), instead of click's 2."""

    def make_context(self, *args, **kwargs):
        try:
            return super().make_context(*args, **kwargs)
        except click.UsageError as e:
            e.exit_code = 1
            raise


@cli.command(cls=ExitOneOnUsageError)
@click.argument("sources", nargs=-1, metavar="SOURCE...")
@click.option("--policy", type=click.Path(exists=True, dir_okay=False),
              help="Policy file to simulate (default: the shipped policies/ec2-tags.yml).")
@click.option("--var", "variables", multiple=True, metavar="NAME=VALUE",
              help="A policy variable, as c7n-org vars set it (repeatable).")
@click.option("--since", help="Only launches at or after this time (2026-10-01, "
                              "2026-10-01T12:00:00Z; UTC unless it says).")
@click.option("--until", help="Only launches before this time.")
@click.option("--account-id", "accounts", multiple=True,
              help="Only this account (repeatable).")
@click.option("--region", "regions", multiple=True, help="Only this region (repeatable).")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document (launches, summary) on stdout.")
@click.option("--progress/--no-progress", default=None,
              help="Show progress on stderr (default: when stderr is a terminal).")
@click.option("--athena", "athena_table", metavar="[DATABASE.]TABLE",
              help="Select the records with an Athena query over this CloudTrail table "
                   "instead of reading SOURCEs.")
@click.option("--athena-output", metavar="s3://...", help="Athena query result location.")
@click.option("--athena-workgroup", help="Athena workgroup.")
@click.option("--athena-sql", is_flag=True, help="Print the Athena query and exit.")
@click.option("--reorder-window", type=click.IntRange(0), default=900, show_default=True,
              help="Seconds a record may arrive after newer ones (real trails are not in "
                   "time order).")
@click.option("--jobs", type=click.IntRange(1), default=None,
              help="Processes reading files (default: one per core; 1 reads them in turn).")
@click.option("--max-file-size", type=click.IntRange(1), default=256, show_default=True,
              metavar="MB", help="Skip a file that expands to more than this (a file not "
                                 "laid out as CloudTrail writes it: a sixteenth of it).")
@click.option("--html", "html_file", type=click.Path(dir_okay=False, writable=True),
              metavar="FILE", help="Also write one self-contained HTML page (summary, "
                                   "charts, filterable launches) to FILE.")
def whatif(sources, policy, variables, since, until, accounts, regions, as_json, progress,
           athena_table, athena_output, athena_workgroup, athena_sql, reorder_window, jobs,
           max_file_size, html_file):
    """What Broom and its SCP would have done with past launches, from CloudTrail.

    A SOURCE is a CloudTrail log file (.json.gz, .json), a folder of them, an
    s3://bucket/prefix of them, or the output of `aws cloudtrail lookup-events`.
    Each RunInstances is judged by the policy's own elements, with the tags of the
    request, the tags EC2 reports in the response and CreateTags calls within the
    grace period; and against the SCP `broom scp` prints for the policy. No AWS call
    but reading the sources. Exit status: 0, 1 on a usage or policy error, 2 when an
    input was skipped.
    """
    from broom.demo import default_policy
    from broom.whatif.cli import WhatifOptions, run_whatif

    try:
        values = parse_vars(variables, [policy or default_policy()])
    except click.BadParameter as e:
        e.exit_code = 1
        raise
    options = WhatifOptions(sources, policy, values, since, until, accounts,
                            regions, as_json, progress, athena_table, athena_output,
                            athena_workgroup, athena_sql, reorder_window, jobs,
                            max_file_size * 1_000_000, html_file)
    sys.exit(run_whatif(options, click.echo))
