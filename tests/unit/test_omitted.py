"""RunInstances records whose instances CloudTrail left out ({"omitted": true})."""

import boto3
import pytest
from botocore.stub import Stubber

from c7n_broom import handler, omitted

from support import REGION, launch, policy_file, run_instances_event

TOKEN = "c0ffee00-1111-2222-3333-444455556666"


def omitted_event(instance_ids=(), token=TOKEN, where="responseElements"):
    event = run_instances_event(list(instance_ids) or ["i-0123456789abcdef0"])
    record = event["detail"]
    if where == "responseElements":
        record["responseElements"] = {"omitted": True}
    else:
        record["responseElements"]["instancesSet"] = {"omitted": True}
    record["requestParameters"]["clientToken"] = token
    return event


def main_policy():
    [data] = policy_file("ec2-tags.yml")["policies"]
    return data


@pytest.mark.parametrize("where", ["responseElements", "instancesSet"])
def test_a_record_with_omitted_instances_is_recognised(where):
    assert omitted.is_omitted(omitted_event(where=where)["detail"])
    assert not omitted.is_omitted(run_instances_event(["i-0123456789abcdef0"])["detail"])


def test_omitted_launch_is_found_by_client_token_handed_over_and_alerted(
        inbox, deployed, handed_over, monkeypatch):
    deployed(main_policy())
    """Before: skipped with an INFO line; the whole launch went unseen."""
    ids = launch(count=2)
    looked_up = []
    monkeypatch.setattr(omitted, "find", lambda client, by, retry: looked_up.append(
        by) or ids)
    event = omitted_event(ids)

    handler.run(event, None)

    assert looked_up == [{"Name": "client-token", "Values": [TOKEN]}]
    [forwarded] = handed_over
    assert [i["instanceId"] for i in forwarded["detail"]["responseElements"][
        "instancesSet"]["items"]] == ids
    [alert] = inbox.emails()
    assert alert["MessageAttributes"]["broom.outcome"]["Value"] == "omitted-record"
    assert event["detail"]["eventID"] in alert["Message"]
    assert "Launched by:    c7nbot" in alert["Message"]
    assert "2 instance(s) by the request's client token" in alert["Message"]


def test_omitted_launch_without_client_token_is_alerted_and_nothing_acted_on(
        inbox, deployed, handed_over):
    deployed(main_policy())
    handler.run(omitted_event(token=None), None)

    assert handed_over == []
    [alert] = inbox.emails()
    assert "the record has no client token" in alert["Message"]
    assert "check their Code tags by hand" in alert["Message"]


def test_find_pages_through_instances_with_the_client_token_filter(aws):
    client = boto3.client("ec2", region_name=REGION)
    filters = {"Filters": [{"Name": "client-token", "Values": [TOKEN]}]}
    with Stubber(client) as stub:
        stub.add_response("describe_instances", {
            "Reservations": [{"Instances": [{"InstanceId": "i-0000000000000000a"}]}],
            "NextToken": "page-2"}, filters)
        stub.add_response("describe_instances", {
            "Reservations": [{"Instances": [{"InstanceId": "i-0000000000000000b"}]}]},
            dict(filters, NextToken="page-2"))
        found = omitted.find(client, filters["Filters"][0], lambda f, *a, **kw: f(*a, **kw))
    assert found == ["i-0000000000000000a", "i-0000000000000000b"]
