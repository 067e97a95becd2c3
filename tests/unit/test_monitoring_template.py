"""templates/account.yml watches Broom itself: a dashboard and alarms on the metrics
Broom's functions emit (c7n_broom/metrics.py) and on the functions Lambda runs for the
shipped policies."""
import json
import re

import yaml

from c7n_broom import metrics

from cfn_templates import load, resources
from support import POLICIES

ACCOUNT_POLICIES = ("ec2-tags.yml", "ec2-tags-changed.yml", "ec2-tags-fixed.yml",
                    "ec2-tags-sweep.yml")  # ec2-tags-hub.yml runs in the hub (hub.yml)


def alarms():
    return {a["Properties"]["AlarmName"]["Fn::Sub"].replace("-${AWS::Region}", ""):
            a["Properties"] for a in resources(load("account.yml"),
                                               "AWS::CloudWatch::Alarm").values()}


def notifies_alarm_topic_or_report_topic(alarm):
    return alarm["AlarmActions"] == [{"Fn::If": [
        "HasAlarmTopic", {"Ref": "AlarmTopicArn"}, {"Ref": "ReportTopic"}]}]


def test_function_errors_alarm_sums_the_errors_of_every_account_function():
    alarm = alarms()["broom-function-errors"]
    functions = {"custodian-" + yaml.safe_load((POLICIES / name).read_text())[
        "policies"][0]["name"] for name in ACCOUNT_POLICIES}
    stats = [m for m in alarm["Metrics"] if "MetricStat" in m]
    assert {m["MetricStat"]["Metric"]["Dimensions"][0]["Value"] for m in stats} == functions
    assert {(m["MetricStat"]["Metric"]["Namespace"], m["MetricStat"]["Metric"]["MetricName"])
            for m in stats} == {("AWS/Lambda", "Errors")}
    [expression] = [m for m in alarm["Metrics"] if "Expression" in m]
    assert set(re.findall(r"FILL\((\w+), 0\)", expression["Expression"])) == {
        m["Id"] for m in stats}
    assert not any(m.get("ReturnData", True) for m in stats)
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)
    assert notifies_alarm_topic_or_report_topic(alarm)


def test_report_failures_and_unusual_terminations_alarm_on_broom_metrics():
    failures = alarms()["broom-report-failures"]
    assert (failures["Namespace"], failures["MetricName"]) == (
        metrics.NAMESPACE, metrics.REPORT_FAILURES)
    assert "Dimensions" not in failures  # the total: metrics.count's [] dimension set
    assert (failures["Statistic"], failures["Threshold"]) == ("Sum", 0)

    terminations = alarms()["broom-unusual-terminations"]
    assert (terminations["Namespace"], terminations["MetricName"]) == (
        metrics.NAMESPACE, metrics.VIOLATIONS)
    assert terminations["Dimensions"] == [{"Name": "Outcome", "Value": "terminated"}]
    assert (terminations["Statistic"], terminations["Period"]) == ("Sum", 3600)
    assert terminations["Threshold"] == {"Ref": "TerminationAlarmThreshold"}
    for alarm in (failures, terminations, alarms()["broom-dead-letters"]):
        assert notifies_alarm_topic_or_report_topic(alarm)
        assert alarm["TreatMissingData"] == "notBreaching"


def test_every_metric_emitted_on_a_dimension_set_the_alarms_read():
    """The alarms read Violations by Outcome alone and ReportFailures without any
    dimension: metrics.py must emit those sets."""
    violations = metrics.line(metrics.VIOLATIONS, 1, {"Policy": "p", "Outcome": "t"},
                              (["Policy", "Outcome"], ["Policy"], ["Outcome"]), 0)
    assert ["Outcome"] in violations["_aws"]["CloudWatchMetrics"][0]["Dimensions"]


def test_the_dashboard_is_valid_json_showing_broom_metrics_and_its_functions():
    [dashboard] = resources(load("account.yml"), "AWS::CloudWatch::Dashboard").values()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    substituted = re.sub(r"\$\{([^}]+)\}", lambda m: "X" + m.group(1).replace(":", ""), body)
    widgets = json.loads(substituted)["widgets"]

    text = json.dumps(widgets)
    for metric in (metrics.JUDGED, metrics.VIOLATIONS, metrics.REFUSED,
                   metrics.REPORT_FAILURES, "Errors", "Throttles", "Duration",
                   "ApproximateNumberOfMessagesVisible"):
        assert metric in text, metric
    [alarm_widget] = [w for w in widgets if w["type"] == "alarm"]
    assert len(alarm_widget["properties"]["alarms"]) == len(alarms())
    for widget in widgets:  # CloudWatch's grid is 24 wide
        assert widget["x"] + widget["width"] <= 24


def test_the_dashboard_lists_each_alarm_by_the_arn_its_name_gives():
    template = load("account.yml")
    [(name, dashboard)] = resources(template, "AWS::CloudWatch::Dashboard").items()
    body = dashboard["Properties"]["DashboardBody"]["Fn::Sub"]
    listed = re.search(r'"alarms": (\[[^]]*\])', body).group(1)
    alarm_resources = resources(template, "AWS::CloudWatch::Alarm")
    expected = ["arn:${AWS::Partition}:cloudwatch:${AWS::Region}:${AWS::AccountId}:alarm:"
                + alarm["Properties"]["AlarmName"]["Fn::Sub"]
                for alarm in alarm_resources.values()]
    assert sorted(json.loads(listed)) == sorted(expected)
    assert sorted(dashboard["DependsOn"]) == sorted(alarm_resources)
