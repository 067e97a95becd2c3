"""The termination cap is a brake, not a loophole (mock_aws).

It holds launches whose Code is set but not allowed (what a bad code list looks like),
never launches without a Code; what it holds is checked again later through a one-time
EventBridge Scheduler schedule; and it counts per principal over a period.
"""
import json
import time
from datetime import datetime, timedelta, timezone

import boto3
import pytest

from c7n_broom import events, recheck

from support import (
    ACCOUNT,
    REGION,
    create_state_table,
    delete_tags,
    launch,
    load_policy,
    policy_file,
    run_instances_event,
    states,
)

FUNCTION_ARN = "arn:aws:lambda:%s:%s:function:custodian-broom-ec2-require-code-tag" % (
    REGION, ACCOUNT)


def main_policy(variables=None, name="ec2-tags.yml", **terminate_options):
    [data] = policy_file(name)["policies"]
    for action in data["actions"]:
        if action["type"] == "safe-terminate":
            action.update(terminate_options)
    return load_policy(data, variables=variables)


def outcomes(inbox):
    return {m["MessageAttributes"]["broom.instance_id"]["Value"]:
            m["MessageAttributes"]["broom.outcome"]["Value"] for m in inbox.emails()}


@pytest.fixture
def in_lambda(monkeypatch, state_table):
    """The function's ARN, as Broom's handler takes it from the Lambda context, and
    what templates/account.yml creates for re-checks: the state table that records
    holds and Broom's schedule group."""
    monkeypatch.setattr(recheck.Target, "function_arn", FUNCTION_ARN)
    boto3.client("scheduler", region_name=REGION).create_schedule_group(
        Name=recheck.SCHEDULE_GROUP)
    return FUNCTION_ARN


def schedules():
    client = boto3.client("scheduler", region_name=REGION)
    return [client.get_schedule(Name=s["Name"], GroupName=s["GroupName"])
            for s in client.list_schedules()["Schedules"]]


def later(monkeypatch, seconds=3600):
    """Move Broom's clock ``seconds`` ahead (when the schedule fires)."""
    start = time.time()
    monkeypatch.setattr(recheck, "now", lambda: start + seconds)


def test_a_launch_of_21_instances_without_a_code_is_terminated_not_held(inbox):
    """Before: the cap of 20 held all 21 for good, and nothing followed up."""
    ids = launch(count=21)

    main_policy().push(run_instances_event(ids))

    assert set(states(ids).values()) == {"terminated"}


def test_an_empty_code_is_not_held_by_the_cap_either(inbox):
    ids = launch(count=4, tags={"Code": " "})

    main_policy(**{"max-terminations": 3}).push(run_instances_event(ids))

    assert set(states(ids).values()) == {"terminated"}


def test_held_instances_get_a_recheck_and_the_report_says_when_and_how_to_stop_it(
        inbox, in_lambda):
    ids = launch(count=21, tags={"Code": "NOPE"})
    before = datetime.now(timezone.utc)

    main_policy().push(run_instances_event(ids))

    assert set(states(ids).values()) == {"running"}
    [schedule] = schedules()
    due = datetime.strptime(schedule["ScheduleExpression"], "at(%Y-%m-%dT%H:%M:%S)").replace(
        tzinfo=timezone.utc)
    assert timedelta(seconds=3599) <= due - before.replace(microsecond=0) <= timedelta(
        seconds=3660)
    assert schedule["ActionAfterCompletion"] == "DELETE"
    assert schedule["Target"]["Arn"] == FUNCTION_ARN
    assert schedule["Target"]["RoleArn"] == "arn:aws:iam::%s:role/broom-scheduler" % ACCOUNT
    assert schedule["GroupName"] == recheck.SCHEDULE_GROUP
    payload = json.loads(schedule["Target"]["Input"])
    assert events.launched_instances(payload["detail"]) == ids
    assert recheck.hold_key(payload).startswith("hold#")
    [digest] = inbox.emails()  # 21 > max-messages: one digest
    assert "held back" in digest["Message"]
    assert "Broom checks them again at %s" % due.strftime("%Y-%m-%dT%H:%M:%SZ") in digest[
        "Message"]
    assert "broom_enforcement: report-only" in digest["Message"]


def recheck_event():
    [schedule] = schedules()
    return json.loads(schedule["Target"]["Input"])


def test_the_recheck_terminates_what_still_breaks_the_rule(inbox, in_lambda, monkeypatch):
    ids = launch(count=21, tags={"Code": "NOPE"})
    main_policy().push(run_instances_event(ids))
    inbox.emails()
    fixed = ids[0]
    boto3.client("ec2", region_name=REGION).create_tags(
        Resources=[fixed], Tags=[{"Key": "Code", "Value": "LOL"}])
    later(monkeypatch)

    main_policy().push(recheck_event())

    assert states(ids) == dict({i: "terminated" for i in ids[1:]}, **{fixed: "running"})


def test_the_recheck_reports_what_it_terminated_although_the_event_was_reported(
        inbox, in_lambda, monkeypatch):
    """The re-check carries the held event's id: repeat suppression must not swallow
    the reports of its terminations."""
    ids = launch(count=21, tags={"Code": "NOPE"})
    main_policy().push(run_instances_event(ids))
    inbox.emails()
    later(monkeypatch)

    main_policy().push(recheck_event())

    [digest] = inbox.emails()  # 21 instances > max-messages: one digest
    assert digest["MessageAttributes"]["broom.outcome"]["Value"] == "terminated"
    assert digest["MessageAttributes"]["broom.count"]["Value"] == "21"


def test_the_recheck_in_an_account_switched_to_report_only_terminates_nothing(
        inbox, in_lambda, monkeypatch):
    ids = launch(count=21, tags={"Code": "NOPE"})
    main_policy().push(run_instances_event(ids))
    later(monkeypatch)

    main_policy(variables={"broom_enforcement": "report-only"}).push(recheck_event())

    assert set(states(ids).values()) == {"running"}


def test_a_repeated_event_schedules_one_recheck(inbox, in_lambda):
    ids = launch(count=21, tags={"Code": "NOPE"})
    event = run_instances_event(ids)

    main_policy().push(event)
    main_policy().push(event)

    assert len(schedules()) == 1


def test_a_recheck_event_passes_the_handlers_trust_checks_and_fits_the_scheduler():
    ids = ["i-%017x" % n for n in range(300)]
    event = run_instances_event(ids)

    batches = recheck.batches(event, ids)
    slims = [recheck.slim_event(event, batch, "hold#" + "x" * recheck.KEY_ROOM)
             for batch in batches]

    assert [i for batch in batches for i in batch] == ids
    for batch, slim in zip(batches, slims, strict=True):
        assert len(json.dumps(slim)) <= recheck.INPUT_LIMIT
        assert events.untrusted(slim, {("ec2.amazonaws.com", "RunInstances")}) is None
        assert events.launched_instances(slim["detail"]) == batch
        # nothing Broom trusts: no identity, no time, no network details
        assert set(slim["detail"]) == {"eventName", "eventSource", "awsRegion",
                                       "recipientAccountId", "responseElements"}


def test_scheduling_refused_says_so_in_the_report(inbox, in_lambda, monkeypatch):
    from botocore.exceptions import ClientError

    def refuse(*args, **kw):
        raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "no"}},
                          "CreateSchedule")
    monkeypatch.setattr(recheck, "schedule", refuse)
    ids = launch(count=4, tags={"Code": "NOPE"})

    main_policy(**{"max-terminations": 3}).push(run_instances_event(ids))

    assert set(states(ids).values()) == {"running"}
    message = inbox.emails()[0]["Message"]
    assert "Broom could NOT schedule a re-check (AccessDeniedException)" in message


def test_two_launches_by_one_principal_count_together_against_the_cap(inbox):
    """Before: two calls of 20 added up to 40 terminations unnoticed."""
    create_state_table()
    first = launch(count=3, tags={"Code": "NOPE"})
    second = launch(count=3, tags={"Code": "NOPE"})

    main_policy(**{"max-terminations": 5}).push(run_instances_event(first))
    main_policy(**{"max-terminations": 5}).push(run_instances_event(second))

    assert set(states(first).values()) == {"terminated"}
    assert set(states(second).values()) == {"running"}
    held = [m["Message"] for m in inbox.emails() if m["MessageAttributes"][
        "broom.outcome"]["Value"] == "held-by-cap"]
    assert len(held) == 3
    assert "with 3 already terminated for the same principal in this period, 3 more " \
           "would exceed the cap of 5" in held[0]


def test_launches_of_other_principals_do_not_count_together(inbox):
    create_state_table()
    first = launch(count=3, tags={"Code": "NOPE"})
    second = launch(count=3, tags={"Code": "NOPE"})
    other = run_instances_event(
        second, record="event-cloud-trail-run-instance-creator-assumed.json")

    main_policy(**{"max-terminations": 5}).push(run_instances_event(first))
    main_policy(**{"max-terminations": 5}).push(other)

    assert set(states(first + second).values()) == {"terminated"}


def test_without_the_state_table_the_per_event_cap_still_holds(inbox, caplog):
    first = launch(count=3, tags={"Code": "NOPE"})
    too_many = launch(count=6, tags={"Code": "NOPE"})

    main_policy(**{"max-terminations": 5}).push(run_instances_event(first))
    main_policy(**{"max-terminations": 5}).push(run_instances_event(too_many))

    assert set(states(first).values()) == {"terminated"}
    assert set(states(too_many).values()) == {"running"}
    assert "broom-state" in caplog.text


def test_tag_removals_by_one_principal_count_together_against_the_cap(inbox):
    """Tag-change enforcement: deleting Code on 3 + 3 instances with a cap of 5 does not
    get 6 terminated; the second batch is held (a missing Code after a tag change is
    capped: tag rights must not become terminate rights)."""
    create_state_table()
    first, second = launch(count=3, tags={"Code": "LOL"}), launch(count=3, tags={"Code": "LOL"})
    policy = main_policy(name="ec2-tags-changed.yml",
                         variables={"broom_tag_change_enforcement": "enforce"},
                         **{"max-terminations": 5})
    # without its quarantine (tests/unit/test_quarantine.py): terminating at once
    [action] = [a for a in policy.resource_manager.actions if a.type == "safe-terminate"]
    del action.data["quarantine"]

    policy.push(delete_tags(first, {"Code": None}))
    policy.push(delete_tags(second, {"Code": None}))

    assert set(states(first).values()) == {"terminated"}
    assert set(states(second).values()) == {"running"}
