"""Tags changed within the grace period: ``broom whatif`` judges the tags EC2 shows
once the calls are applied, as the Lambda reads them from EC2; the request's tags
stand in only while EC2 shows no tag at all (EC2's current tags win).

The last test is a differential run: random launches and tag calls, the shipped policy
on moto (the Lambda's code, reading EC2) and whatif on the CloudTrail records of the
same calls, outcome compared instance by instance."""
import copy
import json
import random
import uuid
from datetime import timedelta

import pytest
from click.testing import CliRunner

from broom.cli import cli
from c7n_broom import events

import support
import trail
from support import create_state_table, launch, load_policy, policy_file, run_instances_event
from trail import create_tags, delete_tags, instance_id, log_file, run_instances

OUTCOME = {"terminate": "terminated", "exempt": "exempt", "none": None,
           "held-by-cap": "held-by-cap", "report-only": "would-terminate"}


def whatif(folder):
    result = CliRunner().invoke(cli, ["whatif", "--json", "--no-progress", str(folder)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.stderr
    document = json.loads(result.stdout)
    return {i["instance_id"]: i for launch_ in document["launches"]
            for i in launch_["instances"]}


@pytest.mark.parametrize("request_tags, calls, verdict, reason", [
    ({"Code": "LOL"}, [("create", {"Code": ""})], "violation",
     "Code tag is empty (set by CreateTags 3s after launch)"),
    ({"Code": "LOL"}, [("create", {"Code": "NOPE"})], "violation",
     "Code 'NOPE' is not an allowed code (set by CreateTags 3s after launch)"),
    ({"Code": "NOPE"}, [("create", {"Code": "GGG"})], "compliant",
     "Code GGG set by CreateTags 3s after launch"),
    ({"Code": "LOL", "Name": "web"}, [("delete", {"Code": None})], "violation",
     "no Code tag (DeleteTags removed it 3s after launch)"),
    ({"Code": "LOL"}, [("delete", {"Code": "NOPE"})], "compliant",  # another value: kept
     "Code LOL at launch"),
    # every tag deleted: EC2 shows none, as before tags arrive, and the Lambda lets
    # the request's stand in (the tag-change policy and the SCP cover this case)
    ({"Code": "LOL", "Name": "web"}, [("delete", None)], "compliant",
     "Code LOL at launch"),
    ({"Code": "NOPE", "Name": "web"}, [("create", {"Code": "GGG"}), ("delete", {"Code": "GGG"})],
     "violation", "no Code tag (DeleteTags removed it 3s after launch)"),
    ({"Code": "NOPE"}, [("create", {"Name": "web"})], "violation",
     "Code 'NOPE' is not an allowed code"),
])
def test_tag_calls_within_the_grace_period_change_the_tags_judged(
        tmp_path, request_tags, calls, verdict, reason):
    iid = instance_id()
    records = [run_instances([iid], 0, tags=request_tags)]
    for call, tags in calls:
        if call == "create":
            records.append(create_tags([iid], tags, 3))
        else:
            records.append(delete_tags([iid], None if tags is None else list(tags), 3))
            items = records[-1]["requestParameters"].get("tagSet", {}).get("items", [])
            for item in items:  # a value given: only a tag with that value goes
                if tags[item["key"]] is not None:
                    item["value"] = tags[item["key"]]
    log_file(tmp_path, records)
    judged = whatif(tmp_path)[iid]
    assert (judged["verdict"], judged["reason"]) == (verdict, reason)


def test_a_code_changed_after_the_grace_period_is_not_the_launch_verdict(tmp_path):
    iid = instance_id()
    log_file(tmp_path, [run_instances([iid], 0, tags={"Code": "LOL"}),
                        create_tags([iid], {"Code": "NOPE"}, 11)])
    assert whatif(tmp_path)[iid]["verdict"] == "compliant"


# --- the differential run ---------------------------------------------------------------

REQUESTS = [None, {"Code": "LOL"}, {"Code": "NOPE"}, {"Code": ""}, {"Name": "web"},
            {"Code": "LOL", "Name": "web"}, {"Code": "NOPE", "Name": "web"}]
CALLS = [("create", {"Code": "GGG"}), ("create", {"Code": "NOPE"}), ("create", {"Code": ""}),
         ("create", {"Name": "db"}), ("delete", {"Code": None}), ("delete", {"Code": "LOL"}),
         ("delete", {"Code": "NOPE"})]
SEED, LAUNCHES = 22, 40


def stamp(record, base, seconds):
    """The record made ``seconds`` after ``base`` (a RunInstances record's eventTime),
    with an eventID of its own, as CloudTrail writes every call."""
    when = events.parse_time(base) + timedelta(seconds=seconds)
    record["eventTime"] = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    record["eventID"] = str(uuid.uuid4())
    return record


def deletes_a_code_the_request_set(request_tags, calls):
    """A Code from the request deleted after launch: the Lambda trusts the request's
    Code over EC2 until the tag-trust rule lands on its side (c7n_broom's
    allowed-codes), whatif already follows the rule."""
    return bool(request_tags and "Code" in request_tags) and any(
        call == "delete" for call, _ in calls)


def test_whatif_and_the_lambda_agree_on_random_launches_and_tag_changes(inbox, tmp_path):
    """Seeded: each launch gets random request tags, up to two tag calls within the
    grace period (set, blank or wrong Code, unrelated tag, delete with or without a
    value) and sometimes the exempt break-glass role; moto applies the calls before
    the policy reads EC2, as they come within grace-seconds."""
    rng = random.Random(SEED)
    create_state_table()
    [data] = policy_file()["policies"]
    break_glass = copy.deepcopy(support.load_record(
        "event-cloud-trail-run-instance-creator.json"))
    break_glass["userIdentity"] = trail.role("broom-break-glass", "bob",
                                             account=support.ACCOUNT)
    records, cases = [], {}
    for _ in range(LAUNCHES):
        request_tags = rng.choice(REQUESTS)
        calls = rng.sample(CALLS, rng.randrange(3))
        iid, = launch(tags=request_tags)
        event = run_instances_event([iid], tags=request_tags, record=(
            break_glass if rng.random() < 0.15 else
            "event-cloud-trail-run-instance-creator.json"))
        event["detail"]["eventID"] = str(uuid.uuid4())
        records.append(event["detail"])
        for after, (call, tags) in enumerate(calls, start=2):
            apply = support.create_tags if call == "create" else support.delete_tags
            records.append(stamp(apply([iid], tags)["detail"], event["detail"]["eventTime"],
                                 after))
        load_policy(copy.deepcopy(data)).push(event)
        cases[iid] = (request_tags, calls)
    log_file(tmp_path, records)

    reported = support_outcomes(inbox)
    simulated = {i: OUTCOME[judged["action"]] for i, judged in whatif(tmp_path).items()}
    assert set(simulated) == set(cases)
    differ = {i: (cases[i], reported.get(i), simulated[i]) for i in cases
              if reported.get(i) != simulated[i]}
    trusting_the_request = {i for i in differ if deletes_a_code_the_request_set(*cases[i])}
    assert {i: differ[i] for i in differ if i not in trusting_the_request} == {}
    for i in trusting_the_request:  # whatif applies EC2's tags: the Code is gone
        assert reported.get(i) is None and simulated[i] in ("terminated", "exempt",
                                                            "held-by-cap")
    # the run covers what it is for: changed Codes judged both ways
    assert sum(1 for i in cases if reported.get(i) is None) >= 5
    assert sum(1 for i in cases if reported.get(i) == "terminated") >= 5
    assert sum(1 for i in cases if any(c == "create" and "Code" in t
                                       for c, t in cases[i][1])) >= 5


def support_outcomes(inbox):
    return {m["MessageAttributes"]["broom.instance_id"]["Value"]:
            m["MessageAttributes"]["broom.outcome"]["Value"] for m in inbox.messages()}
