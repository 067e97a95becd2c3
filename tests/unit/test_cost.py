"""What a launch cost: pure arithmetic, and the Price List API through botocore's Stubber
(moto does not serve ``pricing``) on responses in GetProducts' documented shape."""
import json
from datetime import datetime, timedelta, timezone

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from c7n_broom import cost, report
from c7n_broom.identity import UNKNOWN

from support import launch, load_policy, policy_file, policy_with, run_instances_event

LAUNCHED = datetime(2026, 1, 1, 9, 0, tzinfo=timezone.utc)
T3_MICRO = 0.0104


def price_item(instance_type="t3.micro", usd="0.0104000000", system="Linux",
               unit="Hrs", region="us-east-1"):
    """One PriceList entry as GetProducts returns it: a JSON string (abridged product
    attributes, the OnDemand term with its price dimension)."""
    sku = "SKU%s%s" % (instance_type.replace(".", ""), system)
    return json.dumps({
        "product": {"productFamily": "Compute Instance", "sku": sku, "attributes": {
            "instanceType": instance_type, "regionCode": region, "operatingSystem": system,
            "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
            "licenseModel": "No License required", "marketoption": "OnDemand"}},
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": {sku + ".JRTCKXETXF": {
            "priceDimensions": {sku + ".JRTCKXETXF.6YS6EN2CT7": {
                "unit": unit, "endRange": "Inf", "beginRange": "0",
                "description": "$%s per On Demand %s %s Instance Hour" % (
                    usd, system, instance_type),
                "appliesTo": [], "rateCode": sku + ".JRTCKXETXF.6YS6EN2CT7",
                "pricePerUnit": {"USD": usd}}},
            "sku": sku, "effectiveDate": "2026-01-01T00:00:00Z",
            "offerTermCode": "JRTCKXETXF", "termAttributes": {}}}},
        "version": "20260101000000", "publicationDate": "2026-01-01T00:00:00Z"})


def products(*items):
    return {"FormatVersion": "aws_v1", "PriceList": list(items)}


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self):
        return self.now


@pytest.fixture
def pricing(monkeypatch):
    """A stubbed Price List client behind every PriceBook, and an empty cache."""
    client = boto3.client("pricing", region_name="us-east-1")
    stubber = Stubber(client)
    monkeypatch.setattr(cost.PriceBook, "client", lambda self: client)
    cost.PriceBook.forget()
    with stubber:
        yield stubber
    cost.PriceBook.forget()


def expect(stubber, response, instance_type="t3.micro", platform="Linux/UNIX"):
    stubber.add_response("get_products", response, {
        "ServiceCode": "AmazonEC2", "MaxResults": 10,
        "Filters": cost.filters(instance_type, "us-east-1", platform)})


def instance(**fields):
    return dict({"InstanceId": "i-1", "InstanceType": "t3.micro", "LaunchTime": LAUNCHED,
                 "PlatformDetails": "Linux/UNIX", "State": {"Name": "running"},
                 "Placement": {"AvailabilityZone": "us-east-1a", "Tenancy": "default"}},
                **fields)


# --- pure arithmetic ----------------------------------------------------------------

def test_cost_so_far_is_per_second_and_per_month_is_730_hours():
    price = cost.estimate(T3_MICRO, LAUNCHED, LAUNCHED + timedelta(minutes=90))
    assert price.known and price.hours == 1.5
    assert price.so_far == pytest.approx(0.0156)
    assert price.per_month == pytest.approx(7.592)


def test_a_minute_is_the_least_a_launch_costs_even_with_clock_skew():
    for end in (LAUNCHED + timedelta(seconds=5), LAUNCHED - timedelta(seconds=30)):
        assert cost.estimate(3.6, LAUNCHED, end).so_far == pytest.approx(0.06)


def test_a_terminated_instance_is_costed_up_to_its_termination():
    gone = instance(State={"Name": "terminated"},
                    StateTransitionReason="User initiated (2026-01-01 10:00:00 GMT)")
    now = LAUNCHED + timedelta(days=2)
    assert cost.ended(gone, now) == LAUNCHED + timedelta(hours=1)
    assert cost.ended(instance(), now) == now


def test_a_stopped_instance_is_costed_up_to_its_stop():
    """The sweep reports stopped instances: they cost nothing while stopped."""
    stopped = instance(State={"Name": "stopped"},
                       StateTransitionReason="User initiated (2026-01-01 11:30:00 GMT)")
    now = LAUNCHED + timedelta(days=20)
    assert cost.ended(stopped, now) == LAUNCHED + timedelta(hours=2, minutes=30)


def test_the_platform_picks_the_price_list_product():
    windows = {f["Field"]: f["Value"] for f in cost.filters("m5.large", "eu-west-1",
                                                            "Windows with SQL Server Web")}
    assert windows["operatingSystem"] == "Windows" and windows["preInstalledSw"] == "SQL Web"
    rhel = {f["Field"]: f["Value"] for f in cost.filters("m5.large", "eu-west-1",
                                                         "Red Hat Enterprise Linux")}
    assert rhel["operatingSystem"] == "RHEL" and rhel["regionCode"] == "eu-west-1"
    assert cost.filters("m5.large", "eu-west-1", "Some Future OS") is None


def test_an_answer_with_no_single_price_is_refused():
    with pytest.raises(ValueError):
        cost.hourly_price([])
    with pytest.raises(ValueError):
        cost.hourly_price([price_item(usd="0.0104"), price_item(usd="0.0208")])
    with pytest.raises(KeyError):
        cost.hourly_price([json.dumps({"product": {}})])
    assert cost.hourly_price([price_item(), price_item(unit="Quantity", usd="5")]) == T3_MICRO


# --- the Price List API --------------------------------------------------------------

def test_price_comes_from_get_products_once_per_container(pricing):
    expect(pricing, products(price_item()))
    book = cost.PriceBook(None)
    now = LAUNCHED + timedelta(hours=2)
    first = book.cost_of(instance(), now)
    again = cost.PriceBook(None).cost_of(instance(InstanceId="i-2"), now)  # no 2nd call
    pricing.assert_no_pending_responses()
    assert first == again and first.known and first.hourly == T3_MICRO
    assert first.so_far == pytest.approx(0.0208)


def test_windows_is_priced_as_windows(pricing):
    expect(pricing, products(price_item("m5.large", "0.1880000000", "Windows")),
           "m5.large", "Windows")
    book = cost.PriceBook(None)
    price = book.cost_of(instance(InstanceType="m5.large", PlatformDetails="Windows"),
                         LAUNCHED + timedelta(hours=1))
    assert price.hourly == 0.188


@pytest.mark.parametrize("code, says", [
    ("AccessDeniedException", "no permission for pricing:GetProducts"),
    ("ThrottlingException", "Price List API error ThrottlingException")])
def test_an_error_means_cost_unknown(pricing, code, says):
    pricing.add_client_error("get_products", service_error_code=code)
    price = cost.PriceBook(None).cost_of(instance(), LAUNCHED)
    assert not price.known and price.reason == says


def test_a_malformed_answer_means_cost_unknown(pricing):
    expect(pricing, products(json.dumps({"product": {"sku": "x"}})))
    price = cost.PriceBook(None).cost_of(instance(), LAUNCHED)
    assert (price.known, price.reason) == (False, "unreadable Price List answer")


def test_a_timeout_costs_one_wait_then_is_retried_later(pricing, monkeypatch):
    client = cost.PriceBook(None).client()
    calls = []

    def slow(**params):
        calls.append(params)
        raise ReadTimeoutError(endpoint_url="https://api.pricing.us-east-1.amazonaws.com/")

    monkeypatch.setattr(client, "get_products", slow)
    clock = Clock()
    book = cost.PriceBook(None, clock=clock)
    price = book.cost_of(instance(), LAUNCHED)
    assert not price.known and "unreachable" in price.reason
    assert not book.cost_of(instance(InstanceType="m5.large"), LAUNCHED).known
    assert len(calls) == 1  # the second type was not tried: the API is down
    clock.now += cost.RETRY_AFTER + 1
    book.cost_of(instance(), LAUNCHED)
    assert len(calls) == 2


def test_the_client_has_a_short_timeout_and_a_single_attempt():
    client = boto3.client("pricing", region_name=cost.PRICING_REGION,
                          config=cost.PRICING_CONFIG)
    config = client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2, 3)
    assert config.retries["total_max_attempts"] == 1


# --- in the report -------------------------------------------------------------------

def test_report_states_the_cost_and_the_digest_sums_it():
    priced = report.Finding(instance_id="i-1", region="us-east-1", account_id="1",
                            instance_type="t3.micro", platform="Linux/UNIX",
                            cost=cost.estimate(T3_MICRO, LAUNCHED, LAUNCHED + timedelta(
                                minutes=30)))
    unpriced = report.Finding(instance_id="i-2", region="us-east-1", account_id="1",
                              cost=cost.unknown("no permission for pricing:GetProducts"))
    outcome = report.Outcome(report.TERMINATED)
    assert ("Cost:           $0.0104 an hour on demand (t3.micro, Linux/UNIX, us-east-1); "
            "ran 30 min: $0.0052 so far; $7.59 a month had it kept running"
            ) in report.body(priced, outcome, UNKNOWN)
    assert ("Cost:           cost unknown (no permission for pricing:GetProducts)"
            in report.body(unpriced, outcome, UNKNOWN))
    _, body, _ = report.digest([(priced, outcome)] * 3 + [(unpriced, outcome)], UNKNOWN)
    assert ("Cost:           $0.0156 so far, $22.78 a month had they kept running "
            "(on-demand prices); cost unknown for 1 of 4") in body


def test_cost_off_leaves_no_cost_line():
    finding = report.Finding(instance_id="i-1", region="us-east-1", account_id="1")
    assert "Cost:" not in report.body(finding, report.Outcome(report.TERMINATED), UNKNOWN)


def main_policy(**options):
    return load_policy(policy_with("action:creator-report", **options))


def test_a_published_report_carries_the_cost(inbox, pricing):
    expect(pricing, products(price_item()))
    [untagged] = launch()
    main_policy().push(run_instances_event([untagged]))
    [received] = inbox.emails()
    assert "Cost:           $0.0104 an hour on demand (t3.micro" in received["Message"]
    entry = received["Document"]["instances"][0]["cost"]
    assert entry["known"] is True and entry["hourly"] == T3_MICRO
    assert entry["per_month"] == pytest.approx(7.592)
    assert received["Document"]["cost"]["known"] == 1


def test_without_the_permission_only_the_cost_line_changes(inbox, pricing):
    pricing.add_client_error("get_products", service_error_code="AccessDeniedException")
    [denied] = launch()
    main_policy().push(run_instances_event([denied]))
    [unknown] = inbox.emails()
    cost.PriceBook.forget()
    [off] = launch()
    main_policy(cost=False).push(run_instances_event([off]))
    [without] = inbox.emails()
    lines = unknown["Message"].replace(denied, off).splitlines()
    assert "Cost:           cost unknown (no permission for pricing:GetProducts)" in lines
    lines.remove("Cost:           cost unknown (no permission for pricing:GetProducts)")
    expected = without["Message"].splitlines()
    # Only the cost line and the times of two separate launches differ.
    assert [line for line in lines if not line.startswith(("Launch time", "Event"))] == [
        line for line in expected if not line.startswith(("Launch time", "Event"))]
    assert unknown["Document"]["instances"][0]["outcome"]["status"] == "terminated"


def test_the_policy_option_turns_cost_off_and_drops_the_permission():
    on = main_policy()
    off = main_policy(cost=False)
    assert "pricing:GetProducts" in on.get_permissions()
    assert "pricing:GetProducts" not in off.get_permissions()


def test_a_failure_logs_one_short_line_not_the_answer(pricing, caplog):
    pricing.add_client_error("get_products", service_error_code="500",
                             service_message="<!doctype html>" + "x" * 5000,
                             http_status_code=500)
    cost.PriceBook(None).cost_of(instance(), LAUNCHED)
    [record] = [r for r in caplog.records if r.name == "custodian.broom.cost"]
    assert record.getMessage() == "cost unknown: pricing:GetProducts failed with 500 (HTTP 500)"


# --- in the sweep's digest (policies/ec2-tags-sweep.yml, pull mode) ---------------------

def sweep_policy(**options):
    """The shipped sweep in pull mode, its creator-report given ``options``."""
    [data] = policy_file("ec2-tags-sweep.yml")["policies"]
    del data["mode"]
    for action in data["actions"]:
        if action["type"] == "creator-report":
            action.update(options)
    return load_policy(data)


def three_days_old(aged, count):
    ids = launch(count=count)
    for instance_id in ids:
        aged.ages[instance_id] = timedelta(days=3)
    return ids


def test_the_sweep_prices_each_violator_and_sums_them(aged, trail, inbox, state_table,
                                                      pricing):
    expect(pricing, products(price_item()))  # once: the price is cached for the run
    ids = three_days_old(aged, 2)
    trail.launched(ids)

    sweep_policy().run()

    [received] = inbox.emails()
    body = received["Message"]
    assert body.count("      Cost:         $0.0104 an hour on demand (t3.micro, "
                      "Linux/UNIX, us-east-1); ran 3.0 days: $0.7488 so far; $7.59 a month "
                      "had it kept running") == 2
    assert ("Cost:           $1.50 so far, $15.18 a month had they kept running "
            "(on-demand prices)") in body
    document = received["Document"]
    assert document["kind"] == "sweep"
    assert document["cost"]["known"] == 2 and document["cost"]["unknown"] == 0
    assert document["cost"]["so_far"] == pytest.approx(2 * 72 * T3_MICRO, rel=1e-3)
    assert all(i["cost"]["hourly"] == T3_MICRO for i in document["instances"])


def test_without_the_permission_the_sweep_says_cost_unknown(aged, trail, inbox, state_table,
                                                            pricing):
    pricing.add_client_error("get_products", service_error_code="AccessDeniedException")
    ids = three_days_old(aged, 2)
    trail.launched(ids)

    sweep_policy().run()

    [received] = inbox.emails()
    body = received["Message"]
    assert body.count("Cost:         cost unknown (no permission for "
                      "pricing:GetProducts)") == 2
    assert "Cost:           cost unknown\n" in body
    assert "Outcome:        would terminate: 2" in body  # nothing else changes
    assert received["Document"]["cost"] == {"currency": "USD", "so_far": 0, "per_month": 0,
                                            "known": 0, "unknown": 2}


def test_cost_off_leaves_the_sweep_without_cost_or_its_permission(aged, trail, inbox,
                                                                   state_table, pricing):
    policy = sweep_policy(cost=False)
    assert "pricing:GetProducts" not in policy.get_permissions()
    assert "pricing:GetProducts" in sweep_policy().get_permissions()
    ids = three_days_old(aged, 1)
    trail.launched(ids)

    policy.run()  # the Stubber refuses any GetProducts call

    [received] = inbox.emails()
    assert "Cost:" not in received["Message"] and received["Document"]["cost"] is None
