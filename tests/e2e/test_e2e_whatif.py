"""``broom whatif`` as users run it: the installed console script against moto's
server, reading a trail bucket (s3://) and querying Athena (results registered through
moto's POST /moto-api/static/athena/query-results)."""
import gzip
import json
import subprocess
import sys
import urllib.request
from pathlib import Path

from trail import create_tags, instance_id, role, root, run_instances

BROOM = Path(sys.executable).parent / "broom"
PREFIX = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/10/01/"


def broom(env, *args):
    return subprocess.run([str(BROOM), *args], capture_output=True, text=True, env=env,
                          timeout=120)


def test_whatif_reads_a_trail_bucket_and_names_what_it_skips(fresh_aws):
    s3 = fresh_aws.client("s3")
    s3.create_bucket(Bucket="org-trail")
    tagged, untagged, late = instance_id(), instance_id(), instance_id()
    files = {
        "1.json.gz": [run_instances([tagged], 0, tags={"Code": "LOL"}),
                      run_instances([untagged], 5, who=root())],
        # the tag call of a launch that is in the next file: out of order
        "2.json.gz": [create_tags([late], {"Code": "GGG"}, 64)],
        "3.json.gz": [run_instances([late], 60, who=role("karpenter", "node"))],
    }
    for name, records in files.items():
        s3.put_object(Bucket="org-trail", Key=PREFIX + name,
                      Body=gzip.compress(json.dumps({"Records": records}).encode()))
    s3.put_object(Bucket="org-trail", Key=PREFIX + "4.json.gz", Body=b"\x1f\x8bbroken")

    result = broom(fresh_aws.env(), "whatif", "--json", "s3://org-trail/AWSLogs/")

    assert result.returncode == 2, result.stderr
    assert "skipped s3://org-trail/%s4.json.gz: not a readable gzip file" % PREFIX in (
        result.stderr)
    document = json.loads(result.stdout)
    got = {i["instance_id"]: (i["verdict"], i["action"], launch["scp"])
           for launch in document["launches"] for i in launch["instances"]}
    assert got == {tagged: ("compliant", "none", "allow"),
                   untagged: ("violation", "terminate", "deny"),
                   late: ("compliant", "none", "deny")}


def test_whatif_on_athena(fresh_aws, tmp_path):
    from broom.whatif import athena

    launch = run_instances([instance_id()], 0)
    row = {c: launch.get(athena.FIELDS[c]) for c in athena.COLUMNS}
    row["useridentity"] = json.dumps({k.lower(): v for k, v in launch["userIdentity"].items()})
    row["requestparameters"] = json.dumps(launch["requestParameters"])
    row["responseelements"] = json.dumps(launch["responseElements"])
    results = {"region": "us-east-1", "results": [{
        "rows": [{"Data": [{"VarCharValue": c} for c in athena.COLUMNS]},
                 {"Data": [{"VarCharValue": row[c]} if row[c] is not None else {}
                           for c in athena.COLUMNS]}],
        "column_info": [{"Name": c, "Type": "varchar"} for c in athena.COLUMNS]}]}
    request = urllib.request.Request(
        fresh_aws.endpoint_url + "/moto-api/static/athena/query-results",
        data=json.dumps(results).encode(), method="POST",
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201

    result = broom(fresh_aws.env(), "whatif", "--athena", "trails.cloudtrail_logs",
                   "--since", "2026-10-01", "--until", "2026-10-02", "--athena-output",
                   "s3://athena-results/", "--athena-workgroup", "primary",
                   "--region", "us-east-1")

    assert result.returncode == 0, result.stderr
    assert "violation  terminate (no Code tag)" in result.stdout
    assert "The SCP would have refused 1 launch(es) and allowed 0." in result.stdout
