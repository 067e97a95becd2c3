"""An item in Broom's state table that Broom did not write is ignored, with one
warning: never a crash, never a silenced report, never an exemption (mock_aws)."""
import json
import logging

import boto3
import pytest
from c7n.credentials import SessionFactory

from c7n_broom import items, owed, quarantine, state, sweep

from support import (
    ACCOUNT,
    REGION,
    launch,
    load_policy,
    policy_file,
    run_instances_event,
    states,
)

POLICY = "ec2-require-code-tag"
INSTANCE = "i-0123456789abcdef0"
NOW = 1_800_000_000


def table(now=NOW):
    return state.StateTable(SessionFactory(REGION), REGION, "broom-state", ACCOUNT,
                            clock=lambda: now)


def dynamodb():
    return boto3.client("dynamodb", region_name=REGION)


def put(**item):
    dynamodb().put_item(TableName="broom-state", Item=item)


def S(value):
    return {"S": value}


def N(value):
    return {"N": str(value)}


def warnings(caplog):
    return [r.getMessage() for r in caplog.records
            if r.levelno == logging.WARNING and "ignored" in r.getMessage()]


# -- the shapes, as plain data -------------------------------------------------------

def counter(count, window=3600, index=NOW // 3600):
    return {"pk": S("count#p#arn:aws:iam::1:role/a#%d#%d" % (window, index)),
            "count": count, "expires": N((index + 2) * window)}


@pytest.mark.parametrize("item", [
    counter(N(3)),
    {"pk": S("owe#p#e"), "lease": N(NOW + 60), "created": N(NOW), "attempts": N(2),
     "reports": {"SS": ["i-0123456789abcdef0"]}, "findings": S("{}"), "counted": S("{}"),
     "summary": S("RunInstances"), "expires": N(NOW + items.OBLIGATION_TTL)},
    {"pk": S("quarantine-index#a#r"), "ids": {"SS": ["i-0123456789abcdef0"]},
     "expires": N(NOW + items.QUARANTINE_INDEX_TTL)},
    {"pk": S("fleet#p#a#r#asg#web"), "reported": N(NOW), "expires": N(NOW + 3600)},
    {"pk": S("sweep#p#a#r#i-1"), "expires": N(NOW + sweep.CACHE_TTL), "reported": N(NOW),
     "attribution": S(json.dumps({"status": "found", "creator": {"name": "alice"}}))},
    {"pk": S("sweep-fleet#p#a#r#asg#web"), "expires": N(NOW + sweep.FLEET_TTL),
     "owner": S(json.dumps({"status": "found", "creator": {"name": "bob"}}))},
])
def test_items_broom_writes_fit(item):
    assert items.problem(item, NOW) is None


def test_a_quarantine_record_as_broom_writes_it_fits():
    record = quarantine.Record(INSTANCE, NOW, NOW + 86400, NOW + 7 * 86400, quarantine.NOTICE,
                               NOW, POLICY, "RunInstances", allowed=("LOL",))
    key = quarantine.record_key("111111111111", "us-east-1", INSTANCE)

    assert items.problem(record.as_item(key, NOW + 37 * 86400), NOW) is None


@pytest.mark.parametrize("item, why", [
    (counter(S("3")), "count is not a whole number"),
    (counter(N(-50)), "count is not a whole number"),
    (counter(N("2.5")), "count is not a whole number"),
    (dict(counter(N(1)), expires=N(NOW + 10 ** 8)), "not the end of the window"),
    ({"pk": S("owe#p#e"), "lease": N(1), "reports": S("i-1"), "expires": N(NOW + 9)},
     "reports is not a string set"),
    ({"pk": S("owe#p#e"), "lease": S("0"), "expires": N(NOW + 9)}, "lease is not a time"),
    ({"pk": S("owe#p#e"), "lease": N(1), "findings": S("[]"), "expires": N(NOW + 9)},
     "findings is not a JSON object"),
    ({"pk": S("owe#p#e"), "lease": N(1), "expires": N(NOW + 10 * 365 * 86400)}, "more than"),
    ({"pk": S("quarantine#a#r#i-0123456789abcdef0"), "expires": N(NOW + 9),
      "record": S(json.dumps({"instance_id": "i-0123456789abcdef1", "step": "notice"}))},
     "not its key's"),
    ({"pk": S("quarantine#a#r#i-0123456789abcdef0"), "expires": N(NOW + 9),
      "record": S(json.dumps({"instance_id": "i-0123456789abcdef0", "step": "gone"}))},
     "step is not one of"),
    ({"pk": S("fleet#p#a#r#asg#web"), "reported": N(NOW + 86400), "expires": N(NOW + 90000)},
     "in the future"),
    ({"pk": S("sweep#p#a#r#i-1"), "expires": N(NOW + 10),
      "attribution": S(json.dumps({"status": "found", "creator": {"name": 7}}))},
     "creator is not a set of strings"),
    ({"pk": S("sweep#p#a#r#i-1"), "expires": N(NOW + 10), "attribution": S("[1]")},
     "not a JSON object"),
    ({"pk": S("other#x"), "expires": N(NOW + 10)}, "no item of kind"),
    ({"pk": N(1)}, "no string key"),
])
def test_items_broom_did_not_write_do_not_fit(item, why):
    assert why in items.problem(item, NOW)


# -- each reader ----------------------------------------------------------------------

def test_a_counter_of_the_wrong_type_counts_as_absent_and_is_replaced(state_table, caplog):
    """Before: the previous window's string counter crashed the count (KeyError), and
    the current window's made UpdateItem fail, so the count was unknown."""
    broom = table()
    current, previous = broom._windows(POLICY, "alice", 3600, NOW)
    put(pk=S(previous[0]), count=S("lots"), expires=N(previous[1]))
    put(pk=S(current[0]), count=S("lots"), expires=N(current[1]))

    assert broom.add_terminations(POLICY, "alice", 3600, 2) == 2
    assert broom.add_terminations(POLICY, "alice", 3600, 1) == 3
    assert len(warnings(caplog)) == 3  # the current one replaced once, the previous read twice


def test_a_negative_counter_does_not_lift_the_cap(state_table, caplog):
    broom = table()
    current, _ = broom._windows(POLICY, "alice", 3600, NOW)
    put(pk=S(current[0]), count=N(-1000), expires=N(current[1]))

    assert broom.add_terminations(POLICY, "alice", 3600, 5) == 5
    assert len(warnings(caplog)) == 1


def test_a_forged_obligation_does_not_silence_the_report(state_table, caplog):
    """Written as if the event's report had been sent (the instance recorded, no
    report owed), but kept ten years: not Broom's, so the event starts afresh."""
    key = "owe#%s#event-1" % POLICY
    put(pk=S(key), lease=N(0), findings=S(json.dumps({INSTANCE: {"decision": "terminate"}})),
        expires=N(NOW + 10 * 365 * 86400))

    obligation = owed.begin(table(), POLICY, "event-1")

    assert not obligation.busy and not obligation.recorded(INSTANCE)
    [warning] = warnings(caplog)
    assert key in warning and "more than" in warning


def test_a_forged_lease_does_not_keep_the_event_busy(state_table, caplog):
    """A lease no invocation takes (a year away) would leave every delivery of the
    event to a run that never comes."""
    put(pk=S("owe#%s#event-1" % POLICY), lease=N(NOW + 365 * 86400), expires=N(NOW + 3600),
        reports={"SS": [INSTANCE]})

    obligation = owed.begin(table(), POLICY, "event-1")

    assert not obligation.busy
    assert obligation.owe({INSTANCE: {"decision": "terminate"}})  # it holds the lease now


def test_an_obligation_broom_wrote_still_suppresses_the_repeat(state_table):
    broom = table()
    first = owed.begin(broom, POLICY, "event-1")
    assert first.owe({INSTANCE: {"decision": "terminate"}})
    assert first.settle(reports=[INSTANCE], release=True)

    again = owed.begin(broom, POLICY, "event-1")

    assert again.recorded(INSTANCE) and not again.owes_report(INSTANCE)


def test_a_fleet_reported_in_the_future_is_not_throttled(state_table, caplog):
    broom = table()
    put(pk=S(broom.fleet_key(POLICY, ("asg", "web"))), reported=N(NOW + 10 ** 6),
        expires=N(NOW + 10 ** 6 + 3600))

    fresh, when = broom.claim_fleet(POLICY, ("asg", "web"), 3600)

    assert (fresh, when) == (True, NOW)
    assert len(warnings(caplog)) == 1
    assert broom.claim_fleet(POLICY, ("asg", "web"), 3600) == (False, None)


def test_a_forged_sweep_entry_is_looked_up_again(state_table, caplog):
    broom = table()
    key = sweep.item_key(broom, POLICY, "i-0123456789abcdef0")
    glass = {"name": "broom-break-glass", "principal_arn": "arn:aws:iam::1:role/broom-break-glass"}
    put(pk=S(key), expires=N(NOW + 100 * 365 * 86400), attribution=S(json.dumps(
        {"status": "found", "creator": glass})))
    put(pk=S(key + "x"), expires=N(NOW + 10), attribution=S("not json"))

    assert broom.get_items([key, key + "x"]) == {}
    assert len(warnings(caplog)) == 2


def test_safe_terminate_terminates_and_reports_despite_a_corrupt_counter(state_table, inbox,
                                                                         caplog):
    """Before: a string counter crashed safe-terminate: the instance was neither
    terminated nor reported, and every retry crashed again."""
    [data] = policy_file()["policies"]
    first = launch(tags={"Code": "NOPE"})
    load_policy(data).push(run_instances_event(first))
    inbox.emails()
    for item in dynamodb().scan(TableName="broom-state")["Items"]:
        if item["pk"]["S"].startswith("count#"):
            put(**dict(item, count=S("many")))
    ids = launch(count=2, tags={"Code": "NOPE"})

    load_policy(data).push(run_instances_event(ids))

    assert set(states(ids).values()) == {"terminated"}
    assert inbox.emails()
    assert warnings(caplog)
