"""The allowed-codes filter against moto's EC2 (mock_aws)."""
import json

import pytest
from c7n.exceptions import PolicyValidationError

from support import launch, load_policy, run_instances_event

FILTER = {"type": "allowed-codes", "codes": ["LOL", "GGG", "BRB", "YLO"]}


def pull_policy(**filter_options):
    return {"name": "broom-test", "resource": "aws.ec2",
            "filters": [dict(FILTER, **filter_options)]}


def matched(policy):
    return {r["InstanceId"]: r["c7n:broom-violation"] for r in policy.run()}


@pytest.mark.parametrize("tags, ignore_case, reason", [
    (None, False, "missing"),
    ({"Other": "x"}, False, "missing"),
    ({"Code": ""}, False, "empty"),
    ({"Code": "   "}, False, "empty"),
    ({"Code": "LOL"}, False, None),
    ({"Code": "XYZ"}, False, "invalid"),
    ({"Code": "lol"}, False, "invalid"),
    ({"Code": "lol"}, True, None),
])
def test_filter_matches_only_violators(aws, tags, ignore_case, reason):
    [instance] = launch(tags=tags)
    found = matched(load_policy(pull_policy(**{"ignore-case": ignore_case})))
    if reason is None:
        assert found == {}
    else:
        assert found[instance]["reason"] == reason
        assert found[instance]["allowed"] == ["LOL", "GGG", "BRB", "YLO"]


def test_ignore_case_does_not_let_lookalike_letters_through(aws):
    """casefold() would match the Kelvin sign to K, "ß" to "SS" and "ﬀ" to "FF"."""
    [plain] = launch(tags={"Code": "key"})
    [kelvin] = launch(tags={"Code": "\u212aEY"})
    [sharp] = launch(tags={"Code": "PAß"})
    [ligature] = launch(tags={"Code": "ﬀ"})
    found = matched(load_policy(pull_policy(codes=["KEY", "PASS", "FF"],
                                            **{"ignore-case": True})))
    assert {i: v["reason"] for i, v in found.items()} == {
        kelvin: "invalid", sharp: "invalid", ligature: "invalid"}
    assert plain not in found


def test_filter_annotates_the_invalid_value_seen(aws):
    [instance] = launch(tags={"Code": "NOPE"})
    found = matched(load_policy(pull_policy()))
    assert found[instance] == {"reason": "invalid", "value": "NOPE", "key": "tag:Code",
                               "allowed": ["LOL", "GGG", "BRB", "YLO"]}


def test_filter_checks_another_key_when_asked(aws):
    [ok] = launch(tags={"Team": "LOL"})
    [bad] = launch(tags={"Code": "LOL"})
    found = matched(load_policy(pull_policy(key="tag:Team")))
    assert set(found) == {bad}
    assert ok not in found


def test_filter_reads_codes_from_a_file_with_value_from(aws, tmp_path):
    codes_file = tmp_path / "codes.json"
    codes_file.write_text(json.dumps(["ABC", "DEF"]))
    [ok] = launch(tags={"Code": "DEF"})
    [bad] = launch(tags={"Code": "LOL"})
    data = pull_policy()
    del data["filters"][0]["codes"]
    data["filters"][0]["value_from"] = {"url": "file://%s" % codes_file, "format": "json"}
    assert set(matched(load_policy(data))) == {bad}


def test_filter_reads_codes_from_a_txt_file_named_by_account(aws, tmp_path):
    (tmp_path / "123456789012.txt").write_text("ABC\nDEF\n")
    [ok] = launch(tags={"Code": "ABC"})
    [bad] = launch(tags={"Code": "LOL"})
    data = pull_policy()
    del data["filters"][0]["codes"]
    data["filters"][0]["value_from"] = {
        "url": "file://%s/{account_id}.txt" % tmp_path, "format": "txt"}
    assert set(matched(load_policy(data))) == {bad}


@pytest.mark.parametrize("override", [["ABC", "DEF"], "ABC,DEF", "ABC, DEF"])
def test_codes_override_from_vars_replaces_the_default_codes(aws, override):
    [ok] = launch(tags={"Code": "DEF"})
    [bad] = launch(tags={"Code": "LOL"})
    data = pull_policy(**{"codes-override": "{broom_codes}"})
    policy = load_policy(data, variables={"broom_codes": override})
    assert set(matched(policy)) == {bad}


def test_unset_codes_override_keeps_the_default_codes(aws):
    [ok] = launch(tags={"Code": "LOL"})
    [bad] = launch(tags={"Code": "DEF"})
    policy = load_policy(pull_policy(**{"codes-override": "{broom_codes}"}))
    assert policy.data["filters"][0]["codes-override"] == "{broom_codes}"
    assert set(matched(policy)) == {bad}


def test_tag_named_in_the_launch_request_counts_when_describe_omits_it(aws):
    """DescribeInstances can omit tags just after launch: the event's own
    tagSpecificationSet is trusted before calling an instance non-compliant."""
    [instance] = launch()
    policy = load_policy(pull_policy())
    [f] = policy.resource_manager.filters
    resource = {"InstanceId": instance, "Tags": []}
    event = run_instances_event([instance], tags={"Code": "LOL"})
    assert f.process([resource], event) == []
    event = run_instances_event([instance], tags={"Code": "XYZ"})
    assert [r["c7n:broom-violation"]["reason"] for r in f.process([resource], event)] == [
        "invalid"]


def test_tag_added_after_launch_is_found_by_describe_tags(aws):
    """A tool that tags in a separate CreateTags call: DescribeTags by id sees it."""
    import boto3
    [instance] = launch()
    boto3.client("ec2", region_name="us-east-1").create_tags(
        Resources=[instance], Tags=[{"Key": "Code", "Value": "GGG"}])
    policy = load_policy(pull_policy())
    [f] = policy.resource_manager.filters
    stale = {"InstanceId": instance, "Tags": []}  # what describe showed a moment earlier
    assert f.process([stale], run_instances_event([instance])) == []


def validation_error(**options):
    data = pull_policy()
    data["filters"][0] = dict({"type": "allowed-codes"}, **options)
    with pytest.raises(PolicyValidationError) as e:
        load_policy(data)
    return str(e.value)


def test_validation_requires_codes_or_value_from():
    message = validation_error()
    assert "broom-test" in message and "codes" in message and "value_from" in message


def test_validation_rejects_an_empty_code_list():
    message = validation_error(codes=[])
    assert "broom-test" in message and "'codes'" in message and "empty" in message


def test_validation_rejects_codes_and_value_from_together():
    message = validation_error(codes=["LOL"], value_from={"url": "file:///x.json"})
    assert "either 'codes' or 'value_from'" in message


def test_validation_rejects_non_string_codes():
    message = validation_error(codes=["LOL", 7])
    assert "'codes'" in message and "7" in message and "quote" in message


def test_validation_rejects_codes_given_as_a_string():
    assert "must be a YAML list" in validation_error(codes="LOL,GGG")


def test_validation_rejects_an_override_that_expands_to_nothing():
    data = pull_policy(**{"codes-override": "{broom_codes}"})
    with pytest.raises(PolicyValidationError, match="'codes-override'.*empty"):
        load_policy(data, variables={"broom_codes": ""})


def test_validation_rejects_an_empty_key():
    assert "'key'" in validation_error(codes=["LOL"], key=" ")
