"""`broom doctor` lists what Broom still owes: obligations left unsettled in the state
table for over an hour (mock_aws; the obligations are left by a real failed publish)."""
import boto3
import pytest
from botocore.client import BaseClient
from botocore.exceptions import ClientError

from broom import doctor
from c7n_broom.actions import ReportDeliveryError

from support import REGION, launch, load_policy, policy_file, run_instances_event

HOUR = 3600


@pytest.fixture
def publish_fails(monkeypatch):
    original = BaseClient._make_api_call
    failing = {"on": True}

    def make_api_call(client, operation, params):
        if failing["on"] and operation in ("Publish", "PublishBatch"):
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}},
                              operation)
        return original(client, operation, params)
    monkeypatch.setattr(BaseClient, "_make_api_call", make_api_call)
    return failing


def push(event):
    [data] = policy_file("ec2-tags.yml")["policies"]
    load_policy(data).push(event)


def created():
    [item] = boto3.client("dynamodb", region_name=REGION).scan(TableName="broom-state")[
        "Items"]
    return float(item["created"]["N"])


def test_a_report_owed_for_over_an_hour_is_one_fail_line(inbox, state_table, publish_fails):
    [instance] = launch()
    event = run_instances_event([instance])
    with pytest.raises(ReportDeliveryError):
        push(event)
    session = boto3.Session(region_name=REGION)
    since = created()

    # Lambda's retries still have time.
    assert doctor.check_obligations(session, "broom-state", now=since + 60) == []

    [owed] = doctor.check_obligations(session, "broom-state", now=since + 2 * HOUR)
    assert owed.status == doctor.FAIL
    assert "the report of %s" % instance in owed.detail
    assert event["detail"]["eventID"] in owed.detail
    assert "broom replay --execute" in owed.detail

    publish_fails["on"] = False
    push(event)  # the retry (or a replay) settles it
    assert doctor.check_obligations(session, "broom-state", now=since + 2 * HOUR) == []
    assert len(inbox.emails()) == 1


def test_doctor_lists_them_after_the_table_check(inbox, state_table, publish_fails,
                                                monkeypatch):
    boto3.client("dynamodb", region_name=REGION).update_time_to_live(
        TableName="broom-state",
        TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires"})
    [instance] = launch()
    with pytest.raises(ReportDeliveryError):
        push(run_instances_event([instance]))
    later = created() + 2 * HOUR

    class Later:
        @staticmethod
        def time():
            return later
    monkeypatch.setattr(doctor, "time", Later)
    [data] = policy_file("ec2-tags.yml")["policies"]
    lines = [c.line() for c in doctor.run(boto3.Session(region_name=REGION),
                                          "123456789012", [load_policy(data)])]
    table = lines.index("ok   table broom-state: exists, TTL on 'expires', only Broom's "
                        "roles write items")
    assert lines[table + 1].startswith("FAIL table broom-state: policy ")
    assert "the report of %s" % instance in lines[table + 1]


def test_a_missing_table_is_said_once(aws):
    """The table's own line says it is missing; listing what it owes adds nothing."""
    session = boto3.Session(region_name=REGION)
    assert doctor.check_obligations(session, "broom-state") == []
    assert doctor.check_table(session, "broom-state").detail.startswith("missing")
