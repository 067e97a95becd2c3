"""safe-terminate: per-instance outcomes and the safety cloudtrail mode lacks (mock_aws)."""
import boto3
import pytest
from c7n.exceptions import PolicyValidationError

from support import ACCOUNT, launch, load_policy, policy_file, run_instances_event, states


def main_policy(variables=None, **terminate_options):
    [data] = policy_file("ec2-tags.yml")["policies"]
    for action in data["actions"]:
        if action["type"] == "safe-terminate":
            action.update(terminate_options)
    return load_policy(data, variables=variables)


def reports(inbox):
    return {m["MessageAttributes"]["broom.instance_id"]["Value"]: m
            for m in inbox.emails()}


def test_protected_instance_is_terminated_with_force_and_others_too(inbox, protection):
    [protected] = launch(DisableApiTermination=True)
    [plain] = launch()
    protection.protected.add(protected)
    main_policy().push(run_instances_event([protected, plain]))
    assert states([protected, plain]) == {protected: "terminated", plain: "terminated"}
    assert all("Action taken:   terminated" in m["Message"] for m in reports(inbox).values())


def test_one_refusal_does_not_stop_the_rest_of_the_batch(inbox, protection):
    """Upstream c7n #7555: one protected instance aborted the whole batch."""
    [protected] = launch()
    others = launch(count=3)
    protection.protected.add(protected)
    main_policy(force=False).push(run_instances_event([protected] + others))
    assert states([protected] + others) == dict(
        [(protected, "running")] + [(i, "terminated") for i in others])
    found = reports(inbox)
    assert "OperationNotPermitted" in found[protected]["Message"]
    assert "termination FAILED" in found[protected]["Message"]
    assert all("Action taken:   terminated" in found[i]["Message"] for i in others)


def test_protected_spot_instance_is_reported_as_not_terminated(inbox, protection):
    [spot] = launch(InstanceMarketOptions={"MarketType": "spot"})
    [plain] = launch()
    protection.protected.add(spot)
    main_policy().push(run_instances_event([spot, plain]))
    assert states([spot, plain]) == {spot: "running", plain: "terminated"}
    found = reports(inbox)
    assert "force cannot clear termination protection on spot" in found[spot]["Message"]


def test_more_violators_than_the_cap_terminates_none_and_says_why(inbox):
    ids = launch(count=4, tags={"Code": "NOPE"})
    main_policy(**{"max-terminations": 3}).push(run_instances_event(ids))
    assert set(states(ids).values()) == {"running"}
    found = reports(inbox)
    assert set(found) == set(ids)
    message = found[ids[0]]["Message"]
    assert "held back" in message
    assert "4 instances to terminate in one event exceed the cap of 3" in message
    assert "not re-checked automatically (not running in Lambda)" in message
    assert found[ids[0]]["MessageAttributes"]["broom.outcome"]["Value"] == "held-by-cap"


def test_the_cap_is_not_reached_by_a_normal_launch(inbox):
    ids = launch(count=3)
    main_policy().push(run_instances_event(ids))
    assert set(states(ids).values()) == {"terminated"}


def test_report_only_mode_from_vars_terminates_nothing_and_says_would_terminate(inbox):
    [untagged] = launch()
    main_policy(variables={"broom_enforcement": "report-only"}).push(
        run_instances_event([untagged]))
    assert states([untagged]) == {untagged: "running"}
    [message] = inbox.emails()
    assert message["Subject"].startswith("Broom would terminate %s" % untagged)
    assert "Broom would terminate it, but only reports (report-only mode)" in message[
        "Message"]


def test_unset_enforcement_var_means_enforce(inbox):
    [untagged] = launch()
    policy = main_policy()
    assert [a.data["enforcement"] for a in policy.resource_manager.actions
            if a.type == "safe-terminate"] == ["{broom_enforcement}"]
    policy.push(run_instances_event([untagged]))
    assert states([untagged]) == {untagged: "terminated"}


def break_glass_event(instance_ids):
    event = run_instances_event(
        instance_ids, record="event-cloud-trail-run-instance-creator-assumed.json")
    identity = event["detail"]["userIdentity"]
    identity["arn"] = "arn:aws:sts::%s:assumed-role/broom-break-glass/oncall" % ACCOUNT
    identity["sessionContext"]["sessionIssuer"]["userName"] = "broom-break-glass"
    identity["sessionContext"]["sessionIssuer"]["arn"] = (
        "arn:aws:iam::%s:role/broom-break-glass" % ACCOUNT)
    return event


def test_break_glass_principal_is_reported_not_terminated(inbox):
    [untagged] = launch()
    main_policy().push(break_glass_event([untagged]))
    assert states([untagged]) == {untagged: "running"}
    [message] = inbox.emails()
    assert "exempt principal (broom-break-glass)" in message["Message"]
    assert message["MessageAttributes"]["broom.outcome"]["Value"] == "exempt"


def test_other_roles_are_not_exempt(inbox):
    [untagged] = launch()
    event = run_instances_event(
        [untagged], record="event-cloud-trail-run-instance-creator-assumed.json")
    main_policy().push(event)
    assert states([untagged]) == {untagged: "terminated"}


def test_exempt_account_is_reported_not_terminated(inbox):
    [untagged] = launch()
    main_policy(**{"exempt-accounts": [ACCOUNT]}).push(run_instances_event([untagged]))
    assert states([untagged]) == {untagged: "running"}
    [message] = inbox.emails()
    assert "account %s is exempt" % ACCOUNT in message["Message"]


def test_instance_already_gone_is_not_terminated_again_nor_reported(inbox):
    [gone] = launch()
    [fresh] = launch()
    boto3.client("ec2", region_name="us-east-1").terminate_instances(InstanceIds=[gone])
    main_policy().push(run_instances_event([gone, fresh]))
    assert set(reports(inbox)) == {fresh}


@pytest.mark.parametrize("options, message", [
    ({"enforcement": "dry-run"}, "'enforcement' must be one of enforce, report-only"),
    ({"exempt-accounts": ["12345"]}, "'exempt-accounts' takes 12-digit account ids"),
    ({"exempt-principals": ["*"]}, "would exempt everyone"),
    ({"exempt-principals": [" "]}, "would exempt everyone"),
])
def test_validation_names_the_bad_option(options, message):
    with pytest.raises(PolicyValidationError, match=message):
        main_policy(**options)


@pytest.mark.parametrize("variables, message", [
    ({"broom_enforcement": "off"}, "'enforcement' must be one of"),
])
def test_validation_checks_values_that_come_from_vars(variables, message):
    with pytest.raises(PolicyValidationError, match=message):
        main_policy(variables=variables)


@pytest.mark.parametrize("options", [
    {"max-terminations": 0}, {"fleet-instances": "sometimes"}, {"force": "yes"},
])
def test_schema_rejects_bad_values(options):
    from c7n.schema import generate, validate
    [data] = policy_file("ec2-tags.yml")["policies"]
    data["actions"][0].update(options)
    errors = validate({"policies": [data]}, generate(("aws.ec2",)))  # as custodian validate
    assert errors


def test_repeated_delivery_in_report_only_mode_sends_no_second_report(inbox, state_table):
    """Broom's state table records the event instances left running were reported for."""
    [untagged] = launch()
    event = run_instances_event([untagged])
    policy = main_policy(variables={"broom_enforcement": "report-only"})
    policy.push(event)
    assert len(inbox.emails()) == 1
    main_policy(variables={"broom_enforcement": "report-only"}).push(event)
    assert inbox.emails() == []
    event["detail"]["eventID"] = "another-event"
    main_policy(variables={"broom_enforcement": "report-only"}).push(event)
    assert len(inbox.emails()) == 1


def test_repeated_delivery_after_a_failed_termination_sends_no_second_report(
        inbox, protection, state_table):
    [spot] = launch(InstanceMarketOptions={"MarketType": "spot"})
    protection.protected.add(spot)
    event = run_instances_event([spot])
    main_policy().push(event)
    main_policy().push(event)
    assert len(inbox.emails()) == 1


def test_an_unknown_enforcement_value_never_terminates():
    """Validation refuses it; should one get past, decide() fails safe."""
    from c7n_broom import decisions
    from c7n_broom.identity import UNKNOWN
    resource = {"InstanceId": "i-1", "State": {"Name": "running"}}
    plan = decisions.decide([resource], UNKNOWN, ACCOUNT,
                            decisions.Settings(enforcement="Report-Only"))
    assert plan["i-1"].terminate is False
