"""``broom whatif``: the command's plumbing (options, sources, exit status), kept out
of broom/cli.py so that ``broom --help`` imports none of it."""
import gc
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone

from broom.whatif import evaluate, output, sources, stream, workers

OK, USAGE, SKIPPED = 0, 1, 2


@dataclass
class WhatifOptions:
    sources: tuple
    policy: str | None
    variables: dict
    since: str | None
    until: str | None
    accounts: tuple
    regions: tuple
    as_json: bool
    progress: bool | None
    athena_table: str | None
    athena_output: str | None
    athena_workgroup: str | None
    athena_sql: bool
    reorder_window: int = stream.DEFAULT_LATENESS
    #: Worker processes reading files (None: one per core).
    jobs: int | None = None
    #: Bytes a file may expand to.
    max_file_size: int = sources.DEFAULT_LIMIT
    html: str | None = None  # --html FILE: the page too (broom/whatif/html.py)


def run_whatif(options, echo):
    """Run the command; returns its exit status."""
    from broom.demo import DemoError, default_policy
    from broom.whatif.athena import AthenaError

    def fail(message):
        echo("broom whatif failed: %s" % message, err=True)
        return USAGE

    try:
        since = options.since and evaluate.parse_when(options.since, "--since")
        until = options.until and evaluate.parse_when(options.until, "--until")
        if options.athena_table and options.sources:
            return fail("give SOURCEs or --athena TABLE, not both")
        if not options.athena_table and (options.athena_sql or options.athena_output
                                          or options.athena_workgroup):
            return fail("--athena-sql, --athena-output and --athena-workgroup go with "
                        "--athena TABLE")
        if not options.athena_table and not options.sources:
            return fail("no SOURCE: name CloudTrail log files, folders, s3://bucket/prefix "
                        "or lookup-events output (or use --athena TABLE)")
        if not options.athena_table and not any(map(sources.is_s3, options.sources)):
            from broom.environment import ignore_missing_profile

            ignore_missing_profile()  # local files only: no AWS call
        rule = evaluate.load_rule(
            options.policy or default_policy(), options.variables,
            options.accounts[0] if len(options.accounts) == 1 else None,
            options.regions[0] if len(options.regions) == 1 else None)
        if options.athena_table:
            from broom.whatif import athena

            query = athena.sql(options.athena_table, since,
                               until or datetime.now(timezone.utc), options.regions,
                               options.accounts, rule.grace)
            if options.athena_sql:
                echo(query)
                return OK
            files = athena.run(athena_client(options.regions), query,
                               options.athena_output, options.athena_workgroup)
        else:
            for source in options.sources:
                if not sources.is_s3(source) and not _exists(source):
                    return fail("no such file or folder: %s" % source)
        selection = stream.Selection(since or None, until or None,
                                     frozenset(options.accounts), frozenset(options.regions),
                                     rule.grace + stream.WATCH_AFTER_GRACE,
                                     rule.launch_calls)
        if not options.athena_table:
            files = workers.read_all(
                sources.read_sources(options.sources, s3_client, options.max_file_size),
                selection.take, options.max_file_size,
                options.jobs or workers.default_jobs())
        return simulate(rule, files, selection, options, echo)
    except (evaluate.WhatifError, AthenaError, DemoError, AwsSetupError) as e:
        return fail(e)


def _exists(path):
    from pathlib import Path

    return Path(path).exists()


class AwsSetupError(ValueError):
    """No usable credentials or region for S3 or Athena."""


def _client(service, region=None):
    import boto3
    from botocore.exceptions import NoRegionError, ProfileNotFound

    try:
        return boto3.Session().client(service, region_name=region)
    except ProfileNotFound as e:
        from broom.environment import profile_message

        raise AwsSetupError(profile_message(e))
    except NoRegionError:
        raise AwsSetupError("no AWS region for %s (set AWS_DEFAULT_REGION)" % service)


def s3_client():
    return _client("s3", None)


def athena_client(regions):
    return _client("athena", regions[0] if len(regions) == 1 else None)


@contextmanager
def _quiet_gc(young=50_000):
    """Python's cyclic garbage collector, made to work less while the records go by:
    what is loaded already (Custodian, boto3, the policy: hundreds of thousands of
    objects) is frozen out of its collections, and the youngest generation is
    collected after ``young`` allocations instead of 700. Records are dicts and lists
    without cycles that live until their launch is judged; with the defaults, full
    collections walking all of them took more time than reading them
    (benchmarks/whatif.py). Worker processes forked while it holds inherit it."""
    threshold = gc.get_threshold()
    gc.freeze()
    gc.set_threshold(young, *threshold[1:])
    try:
        yield
    finally:
        gc.set_threshold(*threshold)
        gc.unfreeze()


def simulate(rule, files, selection, options, echo):
    from botocore.exceptions import NoCredentialsError, PartialCredentialsError

    judge = evaluate.Judge(rule)
    out = (output.JsonOutput(lambda text: echo(text, nl=False)) if options.as_json
           else output.TextOutput(echo))
    if options.html:
        from broom.whatif.html import HtmlOutput

        out = HtmlOutput(options.html, out, options.policy or "policies/ec2-tags.yml")
    show_progress = sys.stderr.isatty() if options.progress is None else options.progress

    def on_file(item, stats):
        if isinstance(item, sources.Skipped):
            echo("broom whatif: skipped %s: %s" % (item.label, item.why), err=True)
        if show_progress:
            echo("\rbroom whatif: %d file(s), %d record(s), %d launch(es) judged" % (
                stats["files"], stats["records"], out.tally.launches), err=True, nl=False)

    try:
        with _quiet_gc():
            skipped, stats = stream.simulate(files, selection, rule.grace,
                                             lambda launch: out.launch(judge(launch)),
                                             options.reorder_window, on_file)
    except workers.BrokenProcessPool:
        raise evaluate.WhatifError("a process reading the files died (out of memory?): "
                                   "try a smaller --jobs or --max-file-size")
    except MemoryError:
        raise evaluate.WhatifError("out of memory: try a smaller --jobs or "
                                   "--max-file-size, or a smaller --reorder-window")
    except (NoCredentialsError, PartialCredentialsError) as e:
        raise AwsSetupError("no AWS credentials to read the sources (set AWS_PROFILE or "
                            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY): %s" % e)
    if show_progress:
        echo("", err=True)
    out.finish(stats, skipped)
    return SKIPPED if skipped else OK
