"""One code path: ``broom whatif`` and the Lambda agree on the same records, and the
Athena route judges its rows as the file route judges the same records (mock_aws;
moto's Athena serves the results a test registers through moto's own API)."""
import copy
import json

import boto3
import pytest
import requests
import yaml
from click.testing import CliRunner

from broom.cli import cli
from broom.whatif import athena
from broom.whatif.evaluate import parse_when

import trail
from support import (
    ACCOUNT,
    REGION,
    create_fleet_event,
    create_state_table,
    launch,
    launch_fleet,
    load_policy,
    load_record,
    policy_file,
    run_instances_event,
)
from trail import create_tags, instance_id, log_file, run_instances

OUTCOME = {"terminate": "terminated", "exempt": "exempt", "none": None,
           "held-by-cap": "held-by-cap", "report-only": "would-terminate"}


def whatif_json(*args):
    result = CliRunner().invoke(cli, ["whatif", "--json", "--no-progress", *map(str, args)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)


def lambda_outcomes(inbox):
    return {m["MessageAttributes"]["broom.instance_id"]["Value"]:
            m["MessageAttributes"]["broom.outcome"]["Value"] for m in inbox.messages()}


def own_event_ids(events):
    """One recorded record made into several calls: each its own eventID, as
    CloudTrail gives them (whatif reports records sharing one as an anomaly)."""
    for number, event in enumerate(events):
        event["detail"]["eventID"] = "5e6f7a8b-1a2b-4c3d-8e9f-0a1b2c3d4e5%d" % number


def test_whatif_and_the_lambda_agree_on_the_same_records(inbox, tmp_path):
    """The shipped policy runs in mock_aws on each launch's EventBridge event; whatif
    reads the same CloudTrail records from a log file. Same verdict and action for
    every instance: tagged, untagged, wrong code, tagged just after launch, launched
    by the exempt break-glass role."""
    [data] = policy_file()["policies"]
    policy = load_policy(data)
    tagged, = launch(tags={"Code": "LOL"})
    untagged, = launch()
    wrong, = launch(tags={"Code": "NOPE"})
    late, = launch()
    glass, = launch()
    ec2 = boto3.client("ec2", region_name=REGION)
    ec2.create_tags(Resources=[late], Tags=[{"Key": "Code", "Value": "GGG"}])
    break_glass = copy.deepcopy(load_record("event-cloud-trail-run-instance-creator.json"))
    break_glass["userIdentity"] = trail.role("broom-break-glass", "bob", account=ACCOUNT)

    events = [run_instances_event([tagged], tags={"Code": "LOL"}),
              run_instances_event([untagged]),
              run_instances_event([wrong], tags={"Code": "NOPE"}),
              run_instances_event([late]),
              run_instances_event([glass], record=break_glass)]
    own_event_ids(events)
    for event in events:
        policy.push(event)
    records = [e["detail"] for e in events]
    tag_call = create_tags([late], {"Code": "GGG"}, 0, account=ACCOUNT)
    tag_call["eventTime"] = records[3]["eventTime"]  # within the grace period
    log_file(tmp_path, records + [tag_call])

    simulated = {i["instance_id"]: OUTCOME[i["action"]]
                 for launch_ in whatif_json(tmp_path)["launches"]
                 for i in launch_["instances"]}
    reported = lambda_outcomes(inbox)
    real = {i: reported.get(i) for i in (tagged, untagged, wrong, late, glass)}
    assert real == {tagged: None, untagged: "terminated", wrong: "terminated", late: None,
                    glass: "exempt"}
    assert simulated == real


def test_whatif_and_the_lambda_agree_on_the_cap_and_on_report_only(inbox, tmp_path):
    """The per-principal cap over two launches (Broom's state table in mock_aws), and
    an account in report-only mode through its var."""
    create_state_table()
    [data] = policy_file()["policies"]
    for action in data["actions"]:
        if action["type"] == "safe-terminate":
            action["max-terminations"] = 5
    path = tmp_path / "policy.yml"
    path.write_text(yaml.safe_dump({"policies": [data]}))
    first, second = launch(count=3, tags={"Code": "NOPE"}), launch(count=3, tags={
        "Code": "NOPE"})
    events = [run_instances_event(first, tags={"Code": "NOPE"}),
              run_instances_event(second, tags={"Code": "NOPE"})]
    own_event_ids(events)
    for event in events:
        load_policy(copy.deepcopy(data)).push(event)
    relaxed, = launch()
    relaxed_event = run_instances_event([relaxed])
    load_policy(copy.deepcopy(data), variables={"broom_enforcement": "report-only"}).push(
        relaxed_event)
    log_file(tmp_path / "capped", [e["detail"] for e in events])
    log_file(tmp_path / "relaxed", [relaxed_event["detail"]])

    def simulated(folder, *args):
        return {i["instance_id"]: OUTCOME[i["action"]]
                for launch_ in whatif_json(folder, "--policy", path, *args)["launches"]
                for i in launch_["instances"]}

    real = lambda_outcomes(inbox)
    assert {i: real[i] for i in first + second} == dict(
        {i: "terminated" for i in first}, **{i: "held-by-cap" for i in second})
    assert simulated(tmp_path / "capped") == {i: real[i] for i in first + second}
    assert real[relaxed] == "would-terminate"
    assert simulated(tmp_path / "relaxed", "--var", "broom_enforcement=report-only") == {
        relaxed: real[relaxed]}


def test_whatif_and_the_lambda_agree_on_instant_fleets(inbox, state_table, tmp_path):
    """CreateFleet records (Karpenter's shape, support.create_fleet_event) of fleets
    launched in mock_aws, and the RunInstances EC2 Fleet recorded for the untagged one
    (invokedBy ec2fleet.amazonaws.com): the Lambda reports that launch once, whatif
    judges its instances once, and both give the same outcome for every instance."""
    untagged = launch_fleet(2)
    tagged = launch_fleet(tags={"Code": "LOL"})
    wrong = launch_fleet(tags={"Code": "NOPE"})
    fleets = [create_fleet_event([untagged]),
              create_fleet_event([tagged], tags={"Code": "LOL"}),
              create_fleet_event([wrong], tags={"Code": "NOPE"})]
    for number, event in enumerate(fleets):  # three calls: three event ids
        event["detail"]["eventID"] = "3c5d7e9f-1a2b-4c3d-8e9f-0a1b2c3d4e5%d" % number
    by_fleet = run_instances_event(untagged)
    by_fleet["detail"]["userIdentity"] = dict(fleets[0]["detail"]["userIdentity"],
                                              invokedBy="ec2fleet.amazonaws.com")
    [data] = policy_file()["policies"]
    for event in fleets + [by_fleet]:
        load_policy(copy.deepcopy(data)).push(event)
    log_file(tmp_path, [e["detail"] for e in fleets + [by_fleet]])

    document = whatif_json(tmp_path)
    simulated = {i["instance_id"]: OUTCOME[i["action"]]
                 for launch_ in document["launches"] for i in launch_["instances"]}
    messages = inbox.messages()
    real = {m["MessageAttributes"]["broom.instance_id"]["Value"]:
            m["MessageAttributes"]["broom.outcome"]["Value"] for m in messages}
    assert real == dict({i: "terminated" for i in untagged + wrong})
    assert len(messages) == len(real)  # one report per instance, both records read
    assert simulated == dict(real, **{i: None for i in tagged})
    assert len(document["launches"]) == 3
    assert [launch_["creator"] for launch_ in document["launches"]] == [
        "KarpenterController-demo"] * 3
    assert "Launched by:    KarpenterController-demo" in messages[0]["Message"]


# --- Athena ----------------------------------------------------------------------------

def athena_row(record):
    """A result row as Athena returns it for athena.sql's columns: the userIdentity
    struct back as JSON with Glue's lower-cased field names, the request and response
    as the JSON strings the table stores."""
    def lower(value):
        if isinstance(value, dict):
            return {k.lower(): lower(v) for k, v in value.items()}
        return value

    values = {c: record.get(athena.FIELDS[c]) for c in athena.COLUMNS}
    values["useridentity"] = json.dumps(lower(record["userIdentity"]))
    for column in ("requestparameters", "responseelements"):
        values[column] = None if values[column] is None else json.dumps(values[column])
    return {"Data": [{} if values[c] is None else {"VarCharValue": values[c]}
                     for c in athena.COLUMNS]}


def serve_athena_results(records):
    header = {"Data": [{"VarCharValue": c} for c in athena.COLUMNS]}
    response = requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/athena/query-results",
        json={"account_id": "123456789012", "region": REGION, "results": [{
            "rows": [header] + [athena_row(r) for r in records],
            "column_info": [{"Name": c, "Type": "varchar"} for c in athena.COLUMNS]}]})
    assert response.status_code == 201


@pytest.fixture
def history():
    a, b, c, d, e, f = (instance_id() for _ in range(6))
    fleet = trail.create_fleet([[e, f]], 45, tags={"Code": "LOL"})
    return [
        run_instances([a], 0, tags={"Code": "LOL"}),
        run_instances([b], 10, who=trail.role("karpenter", "node")),
        create_tags([b], {"Code": "GGG"}, 13),
        run_instances([c], 20, who=trail.root()),
        run_instances([d], 30, who=trail.role("broom-break-glass", "bob", path="ops/")),
        run_instances([], 40, error=("Client.UnauthorizedOperation", "denied")),
        fleet,
        trail.by_ec2_fleet(run_instances([e, f], 46, who=fleet["userIdentity"])),
        trail.create_fleet([], 50, fleet_type="request"),
    ]


def test_athena_rows_are_judged_as_the_same_records_in_files(aws, history, tmp_path,
                                                             monkeypatch):
    monkeypatch.setattr(athena, "POLL_SECONDS", 0)
    log_file(tmp_path, history)
    from_files = whatif_json(tmp_path)
    serve_athena_results(history)
    from_athena = whatif_json("--athena", "cloudtrail_db.cloudtrail_logs", "--since",
                              "2026-10-01", "--until", "2026-10-02", "--athena-output",
                              "s3://athena-results/broom/", "--region", REGION)

    def essence(document):
        return [{k: launch_[k] for k in ("event_id", "creator", "principal", "account",
                                         "region", "scp", "instances")}
                for launch_ in document["launches"]]

    assert essence(from_athena) == essence(from_files)
    assert [i["verdict"] for lt in from_files["launches"] for i in lt["instances"]] == [
        "compliant", "compliant", "violation", "violation", "compliant", "compliant"]
    assert from_athena["launches"][-1]["also_recorded_by"] == [history[7]["eventID"]]
    [execution] = boto3.client("athena", region_name=REGION).list_query_executions()[
        "QueryExecutionIds"]
    query = boto3.client("athena", region_name=REGION).get_query_execution(
        QueryExecutionId=execution)["QueryExecution"]
    assert query["ResultConfiguration"]["OutputLocation"].startswith("s3://athena-results/broom/")
    assert ("eventname IN ('CreateFleet', 'CreateTags', 'DeleteTags', 'RunInstances')"
            in query["Query"])
    assert "eventname NOT IN ('CreateFleet', 'RunInstances') AND" in query["Query"]


def test_athena_sql_is_partition_pruned_by_region_and_date():
    result = CliRunner().invoke(cli, [
        "whatif", "--athena", "trails.cloudtrail_logs", "--athena-sql", "--since",
        "2026-10-01", "--until", "2026-11-01", "--region", "us-east-1", "--region",
        "eu-west-1", "--account-id", "111122223333"], catch_exceptions=False)
    assert result.exit_code == 0
    sql = result.stdout
    assert 'FROM "trails"."cloudtrail_logs"' in sql
    assert "\"timestamp\" BETWEEN '2026/10/01' AND '2026/11/01'" in sql
    assert "region IN ('eu-west-1', 'us-east-1')" in sql
    assert "recipientaccountid IN ('111122223333')" in sql
    assert "eventsource = 'ec2.amazonaws.com'" in sql
    assert "eventtime >= '2026-10-01T00:00:00Z'" in sql
    assert "json_format(CAST(useridentity AS JSON)) AS useridentity" in sql


@pytest.mark.parametrize("args, message", [
    (["--athena", "t; DROP TABLE x", "--since", "2026-10-01"], "name the table"),
    (["--athena", "t", "--since", "2026-10-01", "--region", "us-east-1' OR 1=1 --"],
     "--region"),
    (["--athena", "t"], "--athena needs --since"),
    (["--athena-sql", "somewhere"], "go with --athena"),
])
def test_athena_refuses_what_it_cannot_quote_or_prune(args, message):
    result = CliRunner().invoke(cli, ["whatif", "--athena-sql", *args] if (
        "--athena" in args) else ["whatif", *args], catch_exceptions=False)
    assert result.exit_code == 1 and message in result.stderr


def test_a_failed_athena_query_is_a_one_line_error(aws, monkeypatch):
    class Failing:
        def start_query_execution(self, **params):
            return {"QueryExecutionId": "q1"}

        def get_query_execution(self, QueryExecutionId):
            return {"QueryExecution": {"Status": {
                "State": "FAILED", "StateChangeReason": "TABLE_NOT_FOUND: t"}}}

    with pytest.raises(athena.AthenaError, match="q1 FAILED: TABLE_NOT_FOUND"):
        list(athena.run(Failing(), "SELECT 1"))


def test_the_window_parses_dates_and_times_as_utc():
    assert parse_when("2026-10-01", "--since").isoformat() == "2026-10-01T00:00:00+00:00"
    assert parse_when("2026-10-01T12:00:00+02:00", "--since").hour == 12
