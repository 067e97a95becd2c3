"""``broom doctor``: is Broom deployed and able to act, in one account and region?

Read-only calls with the current credentials (``sts:GetCallerIdentity``,
``iam:GetRole``, ``sns:GetTopicAttributes``, ``dynamodb:DescribeTable`` /
``DescribeTimeToLive`` / ``Scan``, ``cloudtrail:DescribeTrails`` / ``GetTrailStatus`` /
``GetEventSelectors``, ``lambda:GetFunction``, ``events:DescribeRule`` /
``ListTargetsByRule``, ``sqs:GetQueueUrl`` / ``GetQueueAttributes``). The policies
are loaded as ``custodian run`` loads them in that account and region (their
``{account_id}`` and ``{region}`` filled, c7n-org vars left unset, so overrides
fall back to the policy's defaults), and what they would deploy is compared with
what is deployed.

What is checked (one line each, ``ok`` / ``warn`` / ``FAIL``):

- the execution role (``mode.role``) exists and trusts ``lambda.amazonaws.com``;
- the report topic exists, and its access policy lets the role publish: an Allow
  statement for ``sns:Publish`` whose principal is ``*``, the account or its root, or
  the role. Same-account topics need none (the role's IAM policy is enough), so
  there a missing statement is not a failure; the role's own IAM policy is not
  evaluated (``broom permissions`` prints what it should hold);
- the state table exists, with TTL enabled on ``expires``, and its resource policy
  (``dynamodb:GetResourcePolicy``) denies item writes to every principal but the
  policies' roles (evaluated with ``broom.scp_eval``; docs/security.md);
- the state table holds no obligation (a report SNS has not accepted, a re-check not
  scheduled: ``c7n_broom.owed``) unsettled for over an hour: one FAIL line each,
  naming its event and instances;
- a trail in the region logs management events (EventBridge gets no
  "AWS API Call via CloudTrail" events without one);
- each policy's function exists with the handler, runtime and role the policy names,
  and its EventBridge rule is enabled, matches ``source: aws.ec2`` and the policy's
  events (for a periodic policy such as the sweep: runs on the policy's schedule),
  and targets the function;
- the dead-letter queue exists and is empty;
- with a quarantine (``safe-terminate``'s ``quarantine``): the snapshots it took
  (``ec2:DescribeSnapshots``), each with its ``broom:expires`` date; a warning for
  those past it.
"""
import json
import time
from dataclasses import dataclass

from botocore.exceptions import BotoCoreError, ClientError

OK, WARN, FAIL = "ok", "warn", "FAIL"
TTL_ATTRIBUTE = "expires"
DEFAULT_TABLE = "broom-state"
#: An obligation unsettled this long (seconds) outlived the function's first retries.
OWED_FOR = 3600


class DoctorError(Exception):
    """Cannot check at all (credentials, region, policy file): one line."""


@dataclass(frozen=True)
class Check:
    status: str
    subject: str
    detail: str

    def line(self):
        return "%-4s %s: %s" % (self.status, self.subject, self.detail)


def error_code(error):
    return error.response.get("Error", {}).get("Code", "")


def load(paths, account_id, region):
    """The policies of ``paths`` as ``custodian run`` would deploy them here."""
    from c7n.config import Config

    from broom import policyfile

    config = Config.empty(region=region, account_id=account_id, dryrun=True)
    policies = []
    for path in paths:
        try:
            collection = policyfile.load(path, config)
        except policyfile.PolicyFileError as e:
            raise DoctorError(str(e))
        for policy in collection:
            policy.expand_variables(policy.get_variables())
            policies.append(policy)
    if not policies:
        raise DoctorError("no policy in %s" % ", ".join(map(str, paths)))
    return policies


def session_for(region):
    """A boto3 session and the account id, or DoctorError in one line."""
    import boto3
    from botocore.exceptions import ProfileNotFound

    from broom.environment import profile_message

    try:
        session = boto3.Session(region_name=region) if region else boto3.Session()
        if not session.region_name:
            raise DoctorError("no AWS region: pass --region or set AWS_DEFAULT_REGION")
        identity = session.client("sts").get_caller_identity()
    except DoctorError:
        raise
    except ProfileNotFound as e:
        raise DoctorError(profile_message(e))
    except (BotoCoreError, ClientError) as e:
        raise DoctorError("cannot use the current AWS credentials in %s: %s" % (
            region or "the default region", e))
    return session, identity["Account"]


def run(session, account_id, policies):
    """Every check, in order, as :class:`Check` values."""
    region = session.region_name
    checks = []
    roles = dict.fromkeys(p.data["mode"].get("role") for p in policies
                          if p.data["mode"].get("role"))
    for role in roles:
        checks.append(check_role(session, role))
    for topic in dict.fromkeys(t for p in policies for t in topics(p)):
        checks.append(check_topic(session, topic, account_id, list(roles)))
    writers = list(roles) + [p.data["mode"]["member-role"].replace("{account_id}", account_id)
                             for p in policies if p.data["mode"].get("member-role")]
    for table in dict.fromkeys(t for p in policies for t in tables(p)):
        checks.append(check_table(session, table, account_id, writers))
        # what is owed is listed whatever the table's own line says (a table without
        # its resource policy still holds reports nobody has seen)
        checks.extend(check_obligations(session, table))
    checks.append(check_trail(session, region))
    for policy in policies:
        checks.extend(check_function(session, policy))
    queues = dict.fromkeys((p.data["mode"].get("dead_letter_config") or {}).get("TargetArn")
                           for p in policies)
    for queue in filter(None, queues):
        checks.append(check_queue(session, queue))
    if any(quarantines(p) for p in policies):
        checks.append(check_snapshots(session))
    return checks


def quarantines(policy):
    """True when the policy's ``safe-terminate`` quarantines (takes snapshots)."""
    return any(a.type == "safe-terminate" and isinstance(a.data.get("quarantine"), dict)
               for a in policy.resource_manager.actions)


#: Snapshots listed by name in the snapshots line; more are counted.
LISTED_SNAPSHOTS = 20


def check_snapshots(session, now=None):
    """The snapshots Broom's quarantine took here, each with its ``broom:expires``
    date: warn about those past it (they are kept, and billed, until deleted)."""
    from datetime import datetime, timezone

    from c7n_broom import snapshots

    subject = "quarantine snapshots"
    now = now or datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        pages = session.client("ec2").get_paginator("describe_snapshots").paginate(
            OwnerIds=["self"], Filters=[{"Name": "tag:%s" % snapshots.TAG_KIND,
                                         "Values": [snapshots.KIND]}])
        found = [s for page in pages for s in page["Snapshots"]]
    except (BotoCoreError, ClientError) as e:
        return Check(WARN, subject, "cannot list them (ec2:DescribeSnapshots): %s" % e)
    if not found:
        return Check(OK, subject, "none")
    rows = []
    for snapshot in found:
        tags = {t["Key"]: t["Value"] for t in snapshot.get("Tags") or ()}
        rows.append((tags.get(snapshots.TAG_EXPIRES, ""), snapshot["SnapshotId"],
                     tags.get(snapshots.TAG_INSTANCE, "?"), snapshot.get("VolumeSize") or 0))
    rows.sort()
    expired = [r for r in rows if r[0] and r[0] <= now]
    listed = ", ".join("%s of %s (%d GiB, expires %s)" % (
        snapshot_id, instance_id, size, expires or "?")
        for expires, snapshot_id, instance_id, size in rows[:LISTED_SNAPSHOTS])
    more = len(rows) - LISTED_SNAPSHOTS
    detail = "%d, %d GiB: %s%s" % (len(rows), sum(r[3] for r in rows), listed,
                                   " and %d more" % more if more > 0 else "")
    if expired:
        return Check(WARN, subject, "%d past their %s date, still billed until deleted "
                     "(broom restore first if they are wanted; then aws ec2 "
                     "delete-snapshot): %s" % (len(expired), snapshots.TAG_EXPIRES, detail))
    return Check(OK, subject, detail)


def topics(policy):
    from c7n_broom.actions import CreatorReport

    return [a.topic for a in policy.resource_manager.actions if isinstance(a, CreatorReport)]


def tables(policy):
    from c7n_broom import codes

    found = []
    for element in policy.resource_manager.actions:
        if "state-table" in element.schema.get("properties", {}):
            table = element.data.get("state-table")
            found.append(DEFAULT_TABLE if codes.is_unset(table) else table)
    return found


def check_role(session, arn):
    name = arn.rsplit("/", 1)[-1]
    subject = "role %s" % name
    try:
        role = session.client("iam").get_role(RoleName=name)["Role"]
    except ClientError as e:
        if error_code(e) == "NoSuchEntity":
            return Check(FAIL, subject, "missing: create it (templates/account.yml)")
        return Check(WARN, subject, "cannot read it: %s" % error_code(e))
    trust = role.get("AssumeRolePolicyDocument") or {}
    if isinstance(trust, str):
        from urllib.parse import unquote
        trust = json.loads(unquote(trust))
    for statement in as_list(trust.get("Statement")):
        services = as_list((statement.get("Principal") or {}).get("Service"))
        if statement.get("Effect") == "Allow" and "lambda.amazonaws.com" in services \
                and any(a in ("sts:AssumeRole", "sts:*", "*")
                        for a in as_list(statement.get("Action"))):
            return Check(OK, subject, "exists, trusted by lambda.amazonaws.com")
    return Check(FAIL, subject, "does not trust lambda.amazonaws.com: add it to the "
                                "role's trust policy (templates/account.yml)")


def check_topic(session, arn, account_id, roles):
    subject = "topic %s" % arn
    topic_region, topic_account = arn.split(":")[3:5]
    try:
        attributes = session.client("sns", region_name=topic_region).get_topic_attributes(
            TopicArn=arn)["Attributes"]
    except ClientError as e:
        if error_code(e) == "NotFound":
            return Check(FAIL, subject, "missing: create it (templates/account.yml) or "
                                        "fix topic / broom_topic")
        return Check(WARN, subject, "cannot read it (%s): check it allows the role "
                                    "sns:Publish" % error_code(e))
    document = json.loads(attributes.get("Policy") or "{}")
    principals = {"*", account_id, "arn:aws:iam::%s:root" % account_id, *roles}
    for statement in as_list(document.get("Statement")):
        actions = {a.lower() for a in as_list(statement.get("Action"))}
        principal = statement.get("Principal")
        who = set(as_list(principal.get("AWS"))) if isinstance(principal, dict) \
            else set(as_list(principal))
        if statement.get("Effect") == "Allow" and actions & {"sns:publish", "sns:*", "*"} \
                and who & principals:
            return Check(OK, subject, "exists, its policy lets the account's roles publish")
    if topic_account == account_id:
        return Check(OK, subject, "exists, same account: the role's IAM policy grants "
                                  "sns:Publish")
    return Check(FAIL, subject, "its policy does not let %s publish: add an Allow "
                                "sns:Publish statement for it" % ", ".join(roles))


def check_table(session, name, account_id="", writers=()):
    subject = "table %s" % name
    client = session.client("dynamodb")
    try:
        arn = client.describe_table(TableName=name)["Table"]["TableArn"]
        ttl = client.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    except ClientError as e:
        if error_code(e) == "ResourceNotFoundException":
            return Check(FAIL, subject, "missing: create it (templates/account.yml)")
        return Check(WARN, subject, "cannot read it: %s" % error_code(e))
    if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING") \
            or ttl.get("AttributeName") != TTL_ATTRIBUTE:
        return Check(FAIL, subject, "TTL is not enabled on %r: enable it, or the table "
                                    "keeps every record" % TTL_ATTRIBUTE)
    try:
        document = json.loads(client.get_resource_policy(ResourceArn=arn)["Policy"])
    except ClientError as e:
        if error_code(e) == "PolicyNotFoundException":
            return Check(FAIL, subject, "no resource policy: any principal allowed "
                         "dynamodb:PutItem can forge Broom's state; deploy the one in "
                         "templates/account.yml (docs/security.md)")
        return Check(WARN, subject, "cannot read its resource policy: %s" % error_code(e))
    problem = guard_problem(document, arn, account_id, writers)
    if problem:
        return Check(FAIL, subject, problem)
    return Check(OK, subject, "exists, TTL on %r, only Broom's roles write items"
                 % TTL_ATTRIBUTE)


def guard_problem(document, table_arn, account_id, writers):
    """Why the table's resource policy does not keep every principal but ``writers``
    from writing items, or None."""
    from broom import guards, scp_eval

    stranger = ("arn:aws:iam::%s:role/not-broom" % account_id, account_id)
    try:
        open_to = [a for a in guards.ITEM_WRITES if not scp_eval.denied_by(
            document, scp_eval.request(a, table_arn, stranger))]
        blocked = [w for w in writers if scp_eval.denied_by(
            document, scp_eval.request("dynamodb:PutItem", table_arn, (w, account_id)))]
    except (KeyError, TypeError, AttributeError) as e:
        return "its resource policy cannot be checked (%s): deploy the one in " \
               "templates/account.yml" % e
    if open_to:
        return ("its resource policy lets other principals call %s: deploy the one in "
                "templates/account.yml" % ", ".join(open_to))
    if blocked:
        return "its resource policy denies Broom's role %s: add it to the exception" % (
            ", ".join(blocked))
    return None


def check_obligations(session, name, now=None, older_than=OWED_FOR):
    """One FAIL per event whose report or re-check is still owed ``older_than``
    seconds after Broom first recorded it (none when nothing is: the table's own line
    says it is fine)."""
    from c7n_broom import owed

    subject = "table %s" % name
    now = time.time() if now is None else now
    try:
        found = owed.unsettled(session.client("dynamodb"), name, older_than, now)
    except ClientError as e:
        if error_code(e) == "ResourceNotFoundException":  # the table's line says so
            return []
        return [Check(WARN, subject, "cannot list what is owed: %s" % error_code(e))]
    return [Check(FAIL, subject, describe_obligation(key, item, now))
            for key, item in sorted(found)]


def describe_obligation(key, item, now):
    """What an unsettled obligation owes, since when, and how to settle it."""
    _, policy, event = (key.split("#", 2) + ["", ""])[:3]
    owes = []
    reports = sorted(item.get("reports", {}).get("SS", ()))
    rechecks = sorted(item.get("rechecks", {}).get("SS", ()))
    if reports:
        owes.append("the report of %s" % ", ".join(reports))
    if rechecks:
        owes.append("the re-check of %s" % ", ".join(rechecks))
    hours = (now - float(item.get("created", {}).get("N", now))) / 3600
    return ("policy %s owes %s for %.1f h (%s attempt(s); %s): replay the event with "
            "`broom replay --execute` (its dead-letter queue, or its CloudTrail log file)"
            % (policy, " and ".join(owes), hours, item.get("attempts", {}).get("N", "?"),
               item.get("summary", {}).get("S") or event))


def check_trail(session, region):
    subject = "cloudtrail in %s" % region
    client = session.client("cloudtrail")
    try:
        trails = client.describe_trails(includeShadowTrails=True)["trailList"]
    except ClientError as e:
        return Check(WARN, subject, "cannot list trails: %s" % error_code(e))
    seen = []
    for trail in trails:
        home = session.client("cloudtrail", region_name=trail.get("HomeRegion") or region)
        try:
            logging_on = home.get_trail_status(Name=trail["TrailARN"]).get("IsLogging")
            selectors = home.get_event_selectors(TrailName=trail["TrailARN"])
        except ClientError as e:
            seen.append("%s (%s)" % (trail["Name"], error_code(e)))
            continue
        if not logging_on:
            seen.append("%s (not logging)" % trail["Name"])
        elif not management_events(selectors):
            seen.append("%s (no write management events)" % trail["Name"])
        else:
            return Check(OK, subject, "trail %s logs management events" % trail["Name"])
    return Check(FAIL, subject, "no trail logs management events here%s: EventBridge gets "
                                "no RunInstances without one; start or create a trail" % (
                                    " (%s)" % ", ".join(seen) if seen else ""))


def management_events(selectors):
    """True when a trail's selectors include write management events."""
    basic = selectors.get("EventSelectors")
    advanced = selectors.get("AdvancedEventSelectors")
    if not basic and not advanced:
        return True  # a trail's default: all management events
    for selector in basic or ():
        if selector.get("IncludeManagementEvents", True) and \
                selector.get("ReadWriteType", "All") in ("All", "WriteOnly"):
            return True
    for selector in advanced or ():
        for item in selector.get("FieldSelectors", ()):
            if item.get("Field") == "eventCategory" and "Management" in item.get("Equals", ()):
                return True
    return False


def check_function(session, policy):
    from c7n.mu import CloudWatchEventSource, PolicyLambda

    wanted = PolicyLambda(policy)
    subject = "function %s" % wanted.name
    try:
        config = session.client("lambda").get_function(
            FunctionName=wanted.name)["Configuration"]
    except ClientError as e:
        if error_code(e) == "ResourceNotFoundException":
            return [Check(FAIL, subject, "missing: deploy it (custodian run or c7n-org run)")]
        return [Check(WARN, subject, "cannot read it: %s" % error_code(e))]
    differ = ["%s is %r, the policy says %r" % (name, config.get(key), value)
              for name, key, value in (("handler", "Handler", wanted.handler),
                                       ("runtime", "Runtime", wanted.runtime),
                                       ("role", "Role", wanted.role))
              if config.get(key) != value]
    checks = [Check(FAIL, subject, "%s: deploy again" % "; ".join(differ)) if differ
              else Check(OK, subject, "handler, runtime and role match the policy")]
    mode = policy.data["mode"]
    if mode.get("type") == "periodic":
        checks.append(check_schedule(session, wanted.name, config["FunctionArn"],
                                     mode.get("schedule")))
        return checks
    expected = json.loads(CloudWatchEventSource(mode, None).render_event_pattern())
    checks.append(check_rule(session, wanted.name, config["FunctionArn"], expected))
    return checks


def read_rule(session, name, missing):
    """(rule, its targets), or a Check saying why they cannot be read (``missing``:
    what a missing rule means)."""
    subject = "rule %s" % name
    client = session.client("events")
    try:
        return client.describe_rule(Name=name), client.list_targets_by_rule(
            Rule=name)["Targets"]
    except ClientError as e:
        if error_code(e) == "ResourceNotFoundException":
            return Check(FAIL, subject, "missing: %s; deploy again" % missing)
        return Check(WARN, subject, "cannot read it: %s" % error_code(e))


def rule_check(name, problems, fine):
    if problems:
        return Check(FAIL, "rule %s" % name, "%s: deploy again" % "; ".join(problems))
    return Check(OK, "rule %s" % name, fine)


def check_schedule(session, name, function_arn, schedule):
    """A periodic policy's rule: enabled, on the policy's schedule, targeting it."""
    found = read_rule(session, name, "the function never runs")
    if isinstance(found, Check):
        return found
    rule, targets = found
    problems = []
    if rule.get("State") != "ENABLED":
        problems.append("it is %s" % rule.get("State"))
    if rule.get("ScheduleExpression") != schedule:
        problems.append("it runs on %s, the policy says %s" % (
            rule.get("ScheduleExpression") or "no schedule", schedule))
    if not any(t.get("Arn") == function_arn for t in targets):
        problems.append("it does not target the function")
    return rule_check(name, problems, "enabled, runs on %s, targets the function" % schedule)


def check_rule(session, name, function_arn, expected):
    found = read_rule(session, name, "the function gets no events")
    if isinstance(found, Check):
        return found
    rule, targets = found
    pattern = json.loads(rule.get("EventPattern") or "{}")
    problems = []
    if rule.get("State") != "ENABLED":
        problems.append("it is %s" % rule.get("State"))
    if "aws.ec2" not in as_list(pattern.get("source")):
        problems.append("its pattern does not hold source aws.ec2")
    detail, want = pattern.get("detail") or {}, expected.get("detail") or {}
    for key in ("eventSource", "eventName"):
        missing = set(as_list(want.get(key))) - set(as_list(detail.get(key)))
        if missing:
            problems.append("its pattern lacks %s %s" % (key, ", ".join(sorted(missing))))
    if not any(t.get("Arn") == function_arn for t in targets):
        problems.append("it does not target the function")
    return rule_check(name, problems,
                      "enabled, matches the policy's events, targets the function")


def check_queue(session, arn):
    queue_region, queue_account, name = arn.split(":")[3:6]
    subject = "queue %s" % name
    client = session.client("sqs", region_name=queue_region)
    try:
        url = client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=queue_account)
        count = int(client.get_queue_attributes(
            QueueUrl=url["QueueUrl"], AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]["ApproximateNumberOfMessages"])
    except ClientError as e:
        if error_code(e) in ("AWS.SimpleQueueService.NonExistentQueue",
                             "QueueDoesNotExist"):
            return Check(FAIL, subject, "missing: failed events are lost; create it "
                                        "(templates/account.yml)")
        return Check(WARN, subject, "cannot read it: %s" % error_code(e))
    if count:
        return Check(FAIL, subject, "%d failed event(s) waiting: read them (sqs "
                                    "receive-message), fix the cause, replay them with "
                                    "broom replay, then purge the queue" % count)
    return Check(OK, subject, "exists, empty")


def as_list(value):
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]
