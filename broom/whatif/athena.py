"""``broom whatif --athena TABLE``: the record selection as an Amazon Athena query.

For organisation trails too big to read on one machine: Athena scans the standard
CloudTrail table (AWS's "Querying AWS CloudTrail logs", with partition projection by
``region`` and ``timestamp`` = ``yyyy/MM/dd``) for the EC2 calls Broom needs (the
launches, RunInstances and CreateFleet, and the tag calls), in the time window,
pruned by those partitions; the rows come back page by page and are judged by the
same code as log files. ``sql`` is what ``--athena-sql`` prints.
"""
import re
import time
from datetime import timedelta

from broom.whatif import sources, stream

TABLE = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)?")
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")
ACCOUNT = re.compile(r"\d{12}")
COLUMNS = ("eventid", "eventtime", "eventname", "eventsource", "awsregion",
           "recipientaccountid", "errorcode", "errormessage", "useridentity",
           "requestparameters", "responseelements")
#: The record fields the columns hold; useridentity is a struct, read back as JSON.
FIELDS = {"eventid": "eventID", "eventtime": "eventTime", "eventname": "eventName",
          "eventsource": "eventSource", "awsregion": "awsRegion",
          "recipientaccountid": "recipientAccountId", "errorcode": "errorCode",
          "errormessage": "errorMessage", "useridentity": "userIdentity",
          "requestparameters": "requestParameters", "responseelements": "responseElements"}
#: Glue lower-cases struct field names; CloudTrail's userIdentity spells them so.
IDENTITY_KEYS = {k.lower(): k for k in (
    "type", "principalId", "arn", "accountId", "invokedBy", "accessKeyId", "userName",
    "sessionContext", "attributes", "mfaAuthenticated", "creationDate", "sessionIssuer",
    "webIdFederationData", "federatedProvider", "sourceIdentity", "ec2RoleDelivery",
    "onBehalfOf", "userId", "identityStoreArn", "identityProvider", "credentialId",
    "assumedRoot")}
POLL_SECONDS = 2
DONE = ("SUCCEEDED", "FAILED", "CANCELLED")


class AthenaError(ValueError):
    """The query cannot be built or did not succeed; the message says why."""


def quote_table(table):
    if not TABLE.fullmatch(table or ""):
        raise AthenaError("--athena %r: name the table as TABLE or DATABASE.TABLE (letters, "
                          "digits, _)" % table)
    return ".".join('"%s"' % part for part in table.split("."))


def _literals(values, pattern, option):
    for value in values:
        if not pattern.fullmatch(value):
            raise AthenaError("%s %r is not valid" % (option, value))
    return ", ".join("'%s'" % v for v in sorted(values))


def sql(table, since, until, regions=(), accounts=(), grace=0):
    """The SELECT for a window [since, until) (aware datetimes; ``since`` required),
    reading the tag calls up to ``grace`` + WATCH_AFTER_GRACE seconds past ``until``."""
    if since is None or until is None:
        raise AthenaError("--athena needs --since (and --until, default now): the query "
                          "is pruned to those days")
    if until <= since:
        raise AthenaError("--until must be after --since")
    tags_until = until + timedelta(seconds=grace + stream.WATCH_AFTER_GRACE)
    names = ", ".join("'%s'" % n for n in sorted(stream.NAMES))
    launches = ", ".join("'%s'" % n for n in sorted(stream.LAUNCHES))
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    where = [
        "eventsource = '%s'" % stream.EC2,
        "eventname IN (%s)" % names,
        "\"timestamp\" BETWEEN '%s' AND '%s'" % (since.strftime("%Y/%m/%d"),
                                                tags_until.strftime("%Y/%m/%d")),
        "eventtime >= '%s'" % since.strftime(stamp),
        "(eventtime < '%s' OR (eventname NOT IN (%s) AND eventtime < '%s'))" % (
            until.strftime(stamp), launches, tags_until.strftime(stamp)),
    ]
    if regions:
        where.append("region IN (%s)" % _literals(regions, REGION, "--region"))
    if accounts:
        where.append("recipientaccountid IN (%s)" % _literals(accounts, ACCOUNT,
                                                             "--account-id"))
    select = ",\n       ".join(
        "json_format(CAST(useridentity AS JSON)) AS useridentity" if c == "useridentity"
        else c for c in COLUMNS)
    return ("SELECT %s\nFROM %s\nWHERE %s\nORDER BY eventtime" % (
        select, quote_table(table), "\n  AND ".join(where)))


def camel_identity(value):
    if isinstance(value, dict):
        return {IDENTITY_KEYS.get(k, k): camel_identity(v) for k, v in value.items()
                if v is not None}
    return value


def record_of(row):
    """A CloudTrail record from a result row ({column: text or None})."""
    record = {}
    for column, name in FIELDS.items():
        value = row.get(column)
        if value is None:
            continue
        if column in ("useridentity", "requestparameters", "responseelements"):
            try:
                value = sources.loads(value)
            except sources.JSONError:
                value = None
            if column == "useridentity":
                value = camel_identity(value)
        record[name] = value
    return record


def run(client, query, output=None, workgroup=None, sleep=time.sleep):
    """Run the query; yield a sources.File per result page. AthenaError when Athena
    refuses it or it does not succeed."""
    from botocore.exceptions import ClientError

    params = {"QueryString": query}
    if output:
        params["ResultConfiguration"] = {"OutputLocation": output}
    if workgroup:
        params["WorkGroup"] = workgroup
    try:
        query_id = client.start_query_execution(**params)["QueryExecutionId"]
        while True:
            execution = client.get_query_execution(QueryExecutionId=query_id)["QueryExecution"]
            state = execution["Status"]["State"]
            if state in DONE:
                break
            sleep(POLL_SECONDS)
        if state != "SUCCEEDED":
            raise AthenaError("Athena query %s %s: %s" % (
                query_id, state, execution["Status"].get("StateChangeReason", "")))
        header = None
        for number, page in enumerate(client.get_paginator("get_query_results").paginate(
                QueryExecutionId=query_id)):
            rows = page["ResultSet"]["Rows"]
            if header is None:
                header = [c["Name"].lower() for c in
                          page["ResultSet"]["ResultSetMetadata"]["ColumnInfo"]]
            values = [[d.get("VarCharValue") for d in row["Data"]] for row in rows]
            if number == 0 and values and [v and v.lower() for v in values[0]] == header:
                values = values[1:]  # Athena's first row repeats the column names
            yield sources.File("athena:%s page %d" % (query_id, number + 1),
                               [record_of(dict(zip(header, v, strict=False)))
                                for v in values])
    except ClientError as e:
        raise AthenaError("Athena: %s" % (e.response["Error"].get("Message")
                                          or e.response["Error"]["Code"]))

