"""Only AWS's own record of a subscribed call reaches c7n, and a RunInstances record is
only about the instances it launched (the handler, without c7n running)."""
import copy

import pytest

from c7n_broom import events, handler

from support import ACCOUNT, REGION, launch, load_policy, policy_file, run_instances_event, states

GOOD_ID = "i-0123456789abcdef0"


def main_policy():
    [data] = policy_file("ec2-tags.yml")["policies"]
    return data


FORGERIES = {
    "custom source": ({"source": "custom.ec2"}, {}),
    "source of another service": ({"source": "aws.s3"}, {}),
    "other detail-type": ({"detail-type": "EC2 Instance State-change Notification"}, {}),
    "envelope of another account": ({"account": "999999999999"}, {}),
    "envelope of another region": ({"region": "eu-west-1"}, {}),
    "call not subscribed": ({}, {"eventName": "TerminateInstances"}),
}


@pytest.mark.parametrize("envelope, record", FORGERIES.values(), ids=list(FORGERIES))
def test_events_aws_did_not_emit_are_refused_with_a_warning(deployed, handed_over, caplog,
                                                           envelope, record):
    deployed(main_policy())
    event = run_instances_event([GOOD_ID])
    event.update(envelope)
    event["detail"].update(record)
    with caplog.at_level("WARNING", logger="custodian.broom.handler"):
        assert handler.run(event, None) is None
    assert handed_over == []
    assert "not AWS's record of a subscribed call" in caplog.text


def test_aws_own_event_is_handed_over(deployed, handed_over):
    deployed(main_policy())
    event = run_instances_event([GOOD_ID])
    handler.run(copy.deepcopy(event), None)
    assert [e["detail"]["eventID"] for e in handed_over] == [event["detail"]["eventID"]]


@pytest.mark.parametrize("launched, recorded, mismatch", [
    ("2026-01-05T10:00:30+00:00", "2026-01-05T10:00:00Z", False),
    ("2026-01-05T10:05:00+00:00", "2026-01-05T10:00:00Z", True),
    ("2026-01-05T09:00:00+00:00", "2026-01-05T10:00:00Z", True),
    ("2026-01-05T10:00:00+00:00", "not a time", True),
    (None, "2026-01-05T10:00:00Z", True),
])
def test_a_run_instances_record_matches_only_instances_launched_at_its_time(
        launched, recorded, mismatch):
    record = dict(run_instances_event([GOOD_ID])["detail"], eventTime=recorded)
    assert bool(events.launch_mismatch(record, launched)) is mismatch


def test_a_stale_record_naming_a_running_instance_terminates_nothing(inbox):
    [victim] = launch(tags={"Code": "NOPE"})
    event = run_instances_event([victim], event_time="2026-01-05T10:00:00Z")

    load_policy(main_policy()).push(event)

    assert states([victim]) == {victim: "running"}
    [report] = inbox.emails()
    assert report["MessageAttributes"]["broom.outcome"]["Value"] == "anomaly"


def test_replay_refuses_records_of_another_account(aws):
    from broom.replay import foreign

    class Policy:
        class options:
            account_id = ACCOUNT
    record = run_instances_event([GOOD_ID], account="999999999999", region=REGION)["detail"]
    assert "from account 999999999999" in foreign(Policy, record)
    assert foreign(Policy, run_instances_event([GOOD_ID])["detail"]) is None
