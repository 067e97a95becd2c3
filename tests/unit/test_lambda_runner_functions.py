"""broom.local.lambda_runner's plain functions: eventbridge_envelope and
archive_packages (running archives is in tests/e2e/test_lambda_runner.py)."""
import copy

import pytest

from broom.local.lambda_runner import archive_packages, eventbridge_envelope

from support import load_record, make_zip


def run_instances_record(instance_id):
    record = load_record("event-cloud-trail-run-instance-creator.json")
    record["responseElements"]["instancesSet"]["items"][0]["instanceId"] = instance_id
    return record


def test_envelope_wraps_a_cloudtrail_record_as_eventbridge_delivers_it():
    record = run_instances_record("i-0123456789abcdef0")

    event = eventbridge_envelope(record)

    assert event["detail-type"] == "AWS API Call via CloudTrail"
    assert event["source"] == "aws.ec2"
    assert event["account"] == "644160558196"
    assert event["region"] == "us-east-1"
    assert event["time"] == "2016-07-24T10:57:13Z"
    assert event["detail"] == record
    assert (event["version"], event["resources"]) == ("0", [])


def test_envelope_account_and_region_override_the_record():
    record = run_instances_record("i-0123456789abcdef0")

    event = eventbridge_envelope(record, account="111111111111", region="eu-west-1")

    assert (event["account"], event["region"]) == ("111111111111", "eu-west-1")
    assert event["detail"]["awsRegion"] == "us-east-1"


def test_envelopes_get_unique_ids():
    record = run_instances_record("i-0123456789abcdef0")
    assert eventbridge_envelope(record)["id"] != eventbridge_envelope(record)["id"]


def test_envelope_rejects_a_record_that_is_not_an_api_call():
    record = copy.deepcopy(run_instances_record("i-0123456789abcdef0"))
    del record["eventSource"]
    with pytest.raises(ValueError, match="eventSource"):
        eventbridge_envelope(record)


def test_archive_packages_lists_top_level_packages():
    archive = make_zip({
        "pkg/__init__.py": "", "pkg/sub/mod.py": "", "nspkg/mod.py": "",
        "top.py": "", "data/readme.txt": "", "config.json": "{}"})

    assert archive_packages(archive) == ["nspkg", "pkg"]
