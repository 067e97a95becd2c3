"""End to end: fan policies/ec2-tags.yml out over three accounts with the stock
`c7n-org` command against moto's server (assume_role into another account id acts
in that account, with its own resources).
"""
import copy

import pytest
import yaml

from broom.local.aws import create_lambda_role, create_state_table
from broom.local.deploy import published

from e2e_support import (
    OTHER_REGION,
    TOPIC,
    archive_config,
    by_instance,
    function_name,
    policy_data,
    problems,
    report_summary,
    server_inbox,
    stock,
    write_policy,
)
from support import POLICIES, REGION, launch, states

POLICY_FILE = POLICIES / "ec2-tags.yml"
POLICY = policy_data(POLICY_FILE.name)
FUNCTION = function_name(POLICY)
[ALLOWED_CODES] = [f for f in POLICY["filters"] if f["type"] == "allowed-codes"]
DEFAULT_CODES = ALLOWED_CODES["codes"]

SANDBOX, DATA_TEAM, TRAINING = "111111111111", "222222222222", "333333333333"
NO_ROLE = "555555555555"
ACCOUNTS = [
    # No vars: the policy's default codes and topic.
    {"account_id": SANDBOX, "name": "sandbox", "regions": [REGION, OTHER_REGION]},
    {"account_id": DATA_TEAM, "name": "data-team", "regions": [OTHER_REGION],
     "vars": {"broom_codes": ["LOL", "DATA"],
              "broom_topic": "arn:aws:sns:%s:%s:data-team-broom" % (OTHER_REGION, DATA_TEAM)}},
    {"account_id": TRAINING, "name": "training", "regions": [REGION],
     "vars": {"broom_codes": "LOL,TRN",
              "broom_topic": "arn:aws:sns:%s:%s:training-broom" % (REGION, TRAINING)}},
]
# The topic each (account, region) reports to: broom_topic, else the policy's default.
TOPICS = {
    (SANDBOX, REGION): TOPIC,
    (SANDBOX, OTHER_REGION): TOPIC,
    (DATA_TEAM, OTHER_REGION): "data-team-broom",
    (TRAINING, REGION): "training-broom",
}
# Launched in every (account, region); which of them break each account's codes.
LAUNCHES = {"LOL": {"Code": "LOL"}, "DATA": {"Code": "DATA"}, "TRN": {"Code": "TRN"},
            "none": None}
VIOLATORS = {SANDBOX: {"DATA", "TRN", "none"}, DATA_TEAM: {"TRN", "none"},
             TRAINING: {"DATA", "none"}}


def accounts_file(path, accounts):
    """A c7n-org accounts file; each account deploys as its broom-deployer role."""
    path.write_text(yaml.safe_dump({"accounts": [
        dict(account, role="arn:aws:iam::%s:role/broom-deployer" % account["account_id"])
        for account in accounts]}))
    return path


def c7n_org_run(aws, accounts, policy_file, workdir, *extra):
    """The stock `c7n-org run` (uncached, at most two worker processes)."""
    cache = workdir / "cache"
    cache.mkdir(exist_ok=True)
    env = dict(aws.env(), C7N_ORG_PARALLEL="2")
    return stock("c7n-org", [
        "run", "-c", accounts, "-s", workdir / "out", "-u", policy_file,
        "--cache-period", "0", "--cache-path", cache, *extra], env)


@pytest.fixture(scope="module")
def org(local_aws, tmp_path_factory):
    """Three accounts, each with Broom's execution role (broom-lambda) and its state
    table in each of its regions."""
    local_aws.reset()
    for account in ACCOUNTS:
        create_lambda_role(local_aws, account=account["account_id"])
        for region in account["regions"]:
            create_state_table(local_aws.client(
                "dynamodb", region=region, account=account["account_id"]))
    workdir = tmp_path_factory.mktemp("org")
    return {"aws": local_aws, "workdir": workdir,
            "accounts": accounts_file(workdir / "accounts.yml", ACCOUNTS)}


def test_c7n_org_deploys_into_every_account_and_region_with_its_vars(org):
    aws = org["aws"]

    completed = c7n_org_run(aws, org["accounts"], POLICY_FILE, org["workdir"])

    assert completed.returncode == 0, completed.output
    assert problems(completed.output) == []
    deployed = {}
    for account in ACCOUNTS:
        for region in (REGION, OTHER_REGION):
            names = [f["FunctionName"] for f in aws.client(
                "lambda", region=region, account=account["account_id"]).list_functions()[
                    "Functions"]]
            deployed[account["account_id"], region] = FUNCTION in names
    assert deployed == {
        (SANDBOX, REGION): True, (SANDBOX, OTHER_REGION): True,
        (DATA_TEAM, REGION): False, (DATA_TEAM, OTHER_REGION): True,
        (TRAINING, REGION): True, (TRAINING, OTHER_REGION): False}
    settings = {}
    for (account_id, region), is_deployed in sorted(deployed.items()):
        if not is_deployed:
            continue
        function, archive = published(aws, FUNCTION, region, account_id)
        policy = archive_config(archive)["policies"][0]
        [codes] = [f for f in policy["filters"] if f["type"] == "allowed-codes"]
        [report] = [a for a in policy["actions"] if a["type"] == "creator-report"]
        settings[account_id, region] = {
            "role": function["Role"], "codes": codes["codes"],
            "codes-override": codes["codes-override"],
            "topic": report["topic"], "topic-override": report["topic-override"]}

    def expected(account_id, region, codes_override, topic_override):
        return {"role": "arn:aws:iam::%s:role/broom-lambda" % account_id,
                "codes": DEFAULT_CODES, "codes-override": codes_override,
                "topic": "arn:aws:sns:%s:%s:broom-reports" % (region, account_id),
                "topic-override": topic_override}

    assert settings == {
        # Unset vars stay placeholders, which the policy reads as "keep the default".
        (SANDBOX, REGION): expected(SANDBOX, REGION, "{broom_codes}", "{broom_topic}"),
        (SANDBOX, OTHER_REGION): expected(
            SANDBOX, OTHER_REGION, "{broom_codes}", "{broom_topic}"),
        (DATA_TEAM, OTHER_REGION): expected(
            DATA_TEAM, OTHER_REGION, ["LOL", "DATA"],
            "arn:aws:sns:eu-west-1:222222222222:data-team-broom"),
        (TRAINING, REGION): expected(
            TRAINING, REGION, "LOL,TRN", "arn:aws:sns:us-east-1:333333333333:training-broom"),
    }


def test_pull_mode_run_terminates_only_each_accounts_violators(org, tmp_path):
    aws = org["aws"]
    # The shipped rule, run on demand: the same filter and actions, no Lambda.
    pull = copy.deepcopy(POLICY)
    del pull["mode"]
    pull["name"] = POLICY["name"] + "-pull"
    policy_file = write_policy(tmp_path / "pull.yml", pull)
    launched, inboxes = {}, {}
    for (account_id, region), topic in TOPICS.items():
        inboxes[account_id, region] = server_inbox(aws, topic, region, account_id)
        ec2 = aws.client("ec2", region=region, account=account_id)
        launched[account_id, region] = (ec2, {
            launch(ec2=ec2, tags=tags)[0]: label for label, tags in LAUNCHES.items()})
    # Overridden default topic: must receive nothing.
    unused = server_inbox(aws, TOPIC, REGION, TRAINING)

    completed = c7n_org_run(aws, org["accounts"], policy_file, tmp_path)

    assert completed.returncode == 0, completed.output
    assert problems(completed.output) == []
    for (account_id, region), (ec2, labels) in launched.items():
        terminated = {labels[i] for i, state in states(labels, ec2).items()
                      if state == "terminated"}
        assert (account_id, region, terminated) == (
            account_id, region, VIOLATORS[account_id])
        reports = by_instance(inboxes[account_id, region].emails())
        assert sorted(labels[i] for i in reports) == sorted(VIOLATORS[account_id])
        for message in reports.values():
            summary = report_summary(message)
            assert (summary["account"], summary["region"], summary["action taken"]) == (
                account_id, region, "terminated")
    assert unused.emails() == []


def test_c7n_org_exits_0_when_a_policy_fails_to_load_but_prints_the_error(org, tmp_path):
    broken = copy.deepcopy(POLICY)
    broken["name"] = "broom-broken"
    broken["filters"][0]["type"] = "allowed-codez"
    policy_file = write_policy(tmp_path / "broken.yml", broken)

    completed = c7n_org_run(org["aws"], org["accounts"], policy_file, tmp_path,
                            "-a", "training")

    assert completed.returncode == 0
    # Logged at WARNING, not ERROR: grep the output for "Error running policy in".
    [problem] = problems(completed.output)
    assert "WARNING Error running policy in training @ us-east-1 exception:" in problem
    assert "Invalid filter type" in problem
    assert "'type': 'allowed-codez'" in problem
    assert "custodian-broom-broken" not in [f["FunctionName"] for f in org["aws"].client(
        "lambda", account=TRAINING).list_functions()["Functions"]]


def test_c7n_org_run_refuses_a_misspelt_broom_option_it_checks_no_schema_for(
        org, tmp_path):
    """c7n-org run validates no schema; Broom's elements check their own options."""
    typo = copy.deepcopy(POLICY)
    typo["name"] = "broom-typo"
    typo["filters"][0]["code"] = ["LOL"]  # meant "codes"
    policy_file = write_policy(tmp_path / "typo.yml", typo)

    ran = c7n_org_run(org["aws"], org["accounts"], policy_file, tmp_path, "-a", "training")
    validated = stock("c7n-org", ["validate", "-c", org["accounts"], "-u", policy_file],
                      org["aws"].env())

    assert ran.returncode == 0  # c7n-org's own exit code says nothing
    [problem] = problems(ran.output)
    assert "Error running policy in training @ us-east-1" in problem
    assert "policy:broom-typo filter:allowed-codes: 'code': unknown option 'code'" in problem
    assert "custodian-broom-typo" not in [f["FunctionName"] for f in org["aws"].client(
        "lambda", account=TRAINING).list_functions()["Functions"]]
    assert validated.returncode == 1
    assert "Configuration invalid: %s" % policy_file in validated.output
    assert "('code' was unexpected)" in validated.output


def test_c7n_org_into_an_account_without_the_execution_role_exits_1_naming_it(
        org, tmp_path):
    accounts = accounts_file(tmp_path / "accounts.yml", [
        {"account_id": NO_ROLE, "name": "no-role", "regions": [REGION]}])

    completed = c7n_org_run(org["aws"], accounts, POLICY_FILE, tmp_path)

    assert completed.returncode == 1
    assert ("Exception running policy:%s account:no-role region:%s" % (POLICY["name"], REGION)
            in completed.output)
    assert "The role defined for the function cannot be assumed by Lambda" in completed.output
    assert org["aws"].client("lambda", account=NO_ROLE).list_functions()["Functions"] == []
