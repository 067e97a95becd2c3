"""The periodic sweep at scale, in process against moto (mock_aws).

10,000 instances in one region (``--instances``), launched three days "ago"; 5% of
them (``--violators``) without a Code tag. policies/ec2-tags-sweep.yml runs in pull
mode, report-only, with the shipped ``max-lookups`` (200) and the state table, until a
sweep makes no LookupEvents call: each sweep prints its API calls (EC2 describe pages,
LookupEvents calls, DynamoDB batches, publishes), its wall time and the part of it
spent inside the API calls (moto), the process's peak resident memory so far, how many
LookupEvents calls asked again about an instance already attributed (target: none)
and the most LookupEvents calls in any one second (target: at most 2, CloudTrail's
limit per account and region).

moto has no LookupEvents: a stand-in answers each call with the instance's
RunInstances record, in LookupEvents' documented shape, and the lookups' waits pass on
a simulated clock (their total is printed: the time a Lambda would spend waiting).

It also measures, in the same run, what ``allowed-codes`` costs against Custodian's
built-in ``value`` filter over the same described instances without an event, as a
ratio: with instances older than a few minutes (judged on DescribeInstances alone) and
with just-launched ones (their tags re-read with DescribeTags, through moto).

    python benchmarks/sweep.py [--instances 10000] [--violators 500]

Exits 1 when an outcome is wrong (a repeated lookup, more than 2 lookups in a second,
an instance terminated, a violator missing from the digests), not on time.
"""
import argparse
import collections
import json
import logging
import resource
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # measure the working tree
sys.path.insert(0, str(REPO / "tests"))  # support: moto stand-ins shared with the tests

from scale import REGION, fake_aws_environment, load_policy  # noqa: E402

IMAGE = "ami-12345678"
AGE = timedelta(days=3)
BATCH = 500


class Recorder:
    """Counts API calls by operation; plays CloudTrail's LookupEvents (not in moto)
    and shows the instances ``aged`` launched ``AGE`` ago."""

    def __init__(self, clock):
        self.clock = clock
        self.counts = collections.Counter()
        self.lookups = []  # (simulated time, instance id)
        self.aged = set()
        self.fresh = False  # show every instance as launched just now
        self.seconds = 0.0  # spent inside the calls

    def __call__(self, original):
        from support import lookup_page

        def make_api_call(client, operation, params):
            self.counts[operation] += 1
            if operation == "DescribeTags" and any(
                    f.get("Name") == "key" for f in params.get("Filters", ())):
                self.counts["re-read"] += 1  # Broom's re-read of the Code tag
            if operation == "LookupEvents":
                instance_id = params["LookupAttributes"][0]["AttributeValue"]
                self.lookups.append((self.clock.now, instance_id))
                return lookup_page(instance_id)
            start = time.perf_counter()
            response = original(client, operation, params)
            self.seconds += time.perf_counter() - start
            if operation == "DescribeInstances":
                for reservation in response.get("Reservations", []):
                    for instance in reservation["Instances"]:
                        if self.fresh:
                            instance["LaunchTime"] = datetime.now(timezone.utc)
                        elif instance["InstanceId"] in self.aged:
                            shift(instance)
            return response
        return make_api_call


def shift(instance):
    instance["LaunchTime"] -= AGE
    for eni in instance.get("NetworkInterfaces", []):
        if "AttachTime" in eni.get("Attachment", {}):
            eni["Attachment"]["AttachTime"] -= AGE
    for device in instance.get("BlockDeviceMappings", []):
        if "AttachTime" in device.get("Ebs", {}):
            device["Ebs"]["AttachTime"] -= AGE


def launch(total, violators):
    import boto3
    ec2 = boto3.client("ec2", region_name=REGION)
    ids, bad = [], []
    for start in range(0, total, BATCH):
        count = min(BATCH, total - start)
        untagged = max(0, min(count, violators - len(bad)))
        for n, tags in ((untagged, None), (count - untagged, {"Code": "LOL"})):
            if not n:
                continue
            params = dict(ImageId=IMAGE, MinCount=n, MaxCount=n, InstanceType="t3.micro")
            if tags:
                params["TagSpecifications"] = [{"ResourceType": "instance", "Tags": [
                    {"Key": k, "Value": v} for k, v in tags.items()]}]
            made = [i["InstanceId"] for i in ec2.run_instances(**params)["Instances"]]
            ids += made
            if not tags:
                bad += made
    return ids, bad


def sweep_policy(workdir):
    import yaml
    [data] = yaml.safe_load((REPO / "policies" / "ec2-tags-sweep.yml").read_text())[
        "policies"]
    del data["mode"]  # pull mode: the same run the periodic Lambda makes
    return load_policy(data, workdir)


def most_in_one_second(times):
    return max((sum(1 for t in times if start <= t < start + 1) for start in times),
               default=0)


def sweeps(total, violators, workdir):
    import boto3
    from botocore.client import BaseClient
    from support import FakeClock

    import c7n_broom  # noqa: F401
    from broom.local.aws import TopicInbox, create_state_table
    from c7n_broom.sweep import LookupCreators

    clock = FakeClock()
    LookupCreators.monotonic = staticmethod(clock.monotonic)
    LookupCreators.sleep = staticmethod(clock.sleep)
    create_state_table(boto3.client("dynamodb", region_name=REGION))
    inbox = TopicInbox(boto3.client("sns", region_name=REGION),
                       boto3.client("sqs", region_name=REGION), "broom-reports")
    recorder = Recorder(clock)
    original = BaseClient._make_api_call
    BaseClient._make_api_call = recorder(original)
    ok = True
    try:
        started = time.perf_counter()
        ids, bad = launch(total, violators)
        recorder.aged.update(ids)
        print("sweep: %d instances, %d violators, launched in moto in %.0f s; RSS %.0f "
              "MiB before the first sweep" % (
                  len(ids), len(bad), time.perf_counter() - started,
                  resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024))
        attributed = set()
        run = 0
        while True:
            run += 1
            recorder.counts.clear()
            recorder.lookups.clear()
            recorder.seconds = 0.0
            waited = clock.now
            policy = sweep_policy(workdir)
            start = time.perf_counter()
            found = policy.run()
            elapsed = time.perf_counter() - start
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
            asked = [i for _, i in recorder.lookups]
            repeated = len(set(asked) & attributed)
            busiest = most_in_one_second([t for t, _ in recorder.lookups])
            messages = inbox.messages()
            listed = sum(i in m["Message"] for m in messages for i in bad)
            print("  sweep %d: %d violators found in %.1f s (%.1f s of it in moto's API "
                  "calls), peak RSS so far %.0f MiB; %d DescribeInstances pages, %d "
                  "LookupEvents calls (%d about instances already attributed, at most %d "
                  "in one second, %.0f s of waits simulated), %d BatchGetItem, %d "
                  "BatchWriteItem, %d Publish" % (
                      run, len(found), elapsed, recorder.seconds, peak / 2**20,
                      recorder.counts["DescribeInstances"], len(asked), repeated, busiest,
                      clock.now - waited, recorder.counts["BatchGetItem"],
                      recorder.counts["BatchWriteItem"], recorder.counts["Publish"]))
            ok &= repeated == 0 and busiest <= 2 and len(messages) == 1 and (
                listed >= min(len(bad), 1))
            attributed |= set(asked)
            if not asked or run >= 6:
                break
        running = sum(1 for r in boto3.client("ec2", region_name=REGION).describe_instances(
            InstanceIds=bad[:1000])["Reservations"] for i in r["Instances"]
            if i["State"]["Name"] == "running")
        ok &= running == min(len(bad), 1000) and attributed >= set(bad)
        return ok, ids
    finally:
        BaseClient._make_api_call = original


def filter_cost(workdir, ids, aged):
    """(seconds, matches, re-reads) of allowed-codes and of the built-in value filter
    over the same described instances (best of 3 each: moto's describe is left out)."""
    from botocore.client import BaseClient
    from support import FakeClock

    recorder = Recorder(FakeClock())
    if aged:
        recorder.aged.update(ids)
    else:  # the benchmark ran long enough for moto's launch times to be old
        recorder.fresh = True
    original = BaseClient._make_api_call
    BaseClient._make_api_call = recorder(original)
    try:
        described = load_policy({"name": "bench-describe", "resource": "aws.ec2"},
                                workdir).resource_manager.resources()
        timings = {}
        for name, rule in (
                ("allowed-codes", {"type": "allowed-codes", "codes": ["LOL"]}),
                ("value", {"or": [{"tag:Code": "absent"}, {
                    "type": "value", "key": "tag:Code", "op": "not-in",
                    "value": ["LOL"]}]})):
            [element] = load_policy({"name": "bench-%s" % name, "resource": "aws.ec2",
                                     "filters": [rule]}, workdir).resource_manager.filters
            best = None
            for _ in range(3):
                recorder.counts.clear()
                start = time.perf_counter()
                found = element.process(list(described))
                elapsed = time.perf_counter() - start
                best = elapsed if best is None else min(best, elapsed)
            timings[name] = (best, len(found), recorder.counts["re-read"])
    finally:
        BaseClient._make_api_call = original
    return timings


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=10000)
    parser.add_argument("--violators", type=int, default=500)
    args = parser.parse_args()
    logging.getLogger("custodian").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as workdir:
        fake_aws_environment(workdir)
        from moto import mock_aws
        with mock_aws():
            ok, ids = sweeps(args.instances, args.violators, workdir)
            for aged in (True, False):
                timings = filter_cost(workdir, ids, aged)
                ours, theirs = timings["allowed-codes"], timings["value"]
                print("filter cost, %s instances: allowed-codes %.1f ms (%d DescribeTags "
                      "re-reads), value %.1f ms: ratio %.2fx" % (
                          "old" if aged else "just-launched", 1000 * ours[0], ours[2],
                          1000 * theirs[0], ours[0] / theirs[0]))
                ok &= ours[1] == theirs[1]
    print(json.dumps({"ok": bool(ok)}))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
