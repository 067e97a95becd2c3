"""The stream under ``broom whatif``: records out of order within and across files,
bounded state, and S3 sources (mock_aws)."""
import gzip
import json
import random

import boto3
import pytest
from botocore.exceptions import ClientError

from broom.whatif import sources, stream
from broom.whatif.stream import Pending, Reorder, Selection

from trail import create_tags, instance_id, log_file, other_event, run_instances


def launches(files, grace=10, lateness=stream.DEFAULT_LATENESS):
    """[(launch time, {instance id: tag calls})] as judged, in order; and the stats."""
    judged = []
    _, stats = stream.simulate(files, Selection(), grace,
                               lambda launch: judged.append(launch), lateness)
    return judged, stats


def as_file(records):
    return sources.File("test", records)


def test_records_leave_the_reorder_window_in_time_order():
    reorder = Reorder(lateness=100)
    out = []
    for when in (50, 10, 30, 200, 120, 400):
        out += [w for w, _ in reorder.push(when, {})]
    out += [w for w, _ in reorder.flush()]
    assert out == [10, 30, 50, 120, 200, 400]
    assert reorder.late == 0


def test_a_record_later_than_the_window_is_still_used_and_counted():
    reorder = Reorder(lateness=10)
    assert [w for w, _ in reorder.push(100, {})] == []
    assert [w for w, _ in reorder.push(200, {})] == [100]
    assert [w for w, _ in reorder.push(50, {})] == [50]
    assert reorder.late == 1


def test_create_tags_in_an_earlier_file_than_its_launch_counts():
    """Each region and account delivers its own files: a CreateTags can be read
    before the RunInstances it follows."""
    iid = instance_id()
    judged, _ = launches([as_file([create_tags([iid], {"Code": "LOL"}, 4)]),
                          as_file([other_event(30)]),
                          as_file([run_instances([iid], 0)])])
    [launch] = judged
    assert launch.tag_calls[iid] == [(4.0, "CreateTags", {"Code": "LOL"})]


def test_create_tags_in_a_later_file_within_the_grace_period_counts():
    iid = instance_id()
    judged, _ = launches([as_file([run_instances([iid], 0)] + [
        other_event(n) for n in range(1, 200)]), as_file([create_tags([iid], {"Code": "X"}, 9)])])
    assert judged[0].tag_calls[iid] == [(9.0, "CreateTags", {"Code": "X"})]


def test_tag_calls_on_other_instances_or_before_the_launch_are_ignored():
    iid, other = instance_id(), instance_id()
    judged, _ = launches([as_file([create_tags([iid], {"Code": "A"}, -5),
                                   run_instances([iid], 0),
                                   create_tags([other], {"Code": "B"}, 3)])])
    assert judged[0].tag_calls == {iid: []}


def test_pending_state_stays_bounded_over_a_long_history():
    """A month of launches, one a minute: only those within grace + watch wait."""
    records = [run_instances([instance_id()], n * 60) for n in range(2000)]
    random.Random(7).shuffle(records[:50])  # a little disorder, as in real files
    judged, stats = launches([as_file(records[i:i + 100]) for i in range(0, 2000, 100)])
    assert len(judged) == 2000
    assert stats["peak_pending"] <= (10 + stream.WATCH_AFTER_GRACE) // 60 + 2
    assert [launch.when for launch in judged] == sorted(launch.when for launch in judged)


def test_pending_forgets_launches_once_judged():
    pending = Pending(grace=10, watch=0)
    iid = instance_id()
    pending.add(0, run_instances([iid], 0))
    assert list(pending.due(5)) == []
    assert len(list(pending.due(11))) == 1
    assert pending.by_instance == {} and len(pending) == 0


def test_selection_drops_what_broom_does_not_need_before_parsing_time():
    pick = Selection().pick
    assert pick(other_event(0)) is None
    assert pick(dict(run_instances([], 0), eventTime="not a time")) is None
    assert pick(dict(run_instances([], 0), eventSource="ec2.evil.example")) is None
    assert pick(run_instances([], 0))[0] > 0


# --- sources -----------------------------------------------------------------------

def test_a_folder_is_read_in_name_order_without_digests(tmp_path):
    log_file(tmp_path / "b", [other_event(1)], name="2.json.gz")
    log_file(tmp_path / "a", [other_event(2)], name="1.json.gz")
    log_file(tmp_path / "CloudTrail-Digest", [], name="x_CloudTrail-Digest_y.json.gz")
    (tmp_path / "notes.txt").write_text("not a log")
    files = list(sources.read_sources([str(tmp_path)]))
    assert [f.label.split(str(tmp_path))[1] for f in files] == ["/a/1.json.gz", "/b/2.json.gz"]


def test_an_empty_folder_is_skipped(tmp_path):
    [skipped] = list(sources.read_sources([str(tmp_path)]))
    assert isinstance(skipped, sources.Skipped) and "no CloudTrail log file" in skipped.why


@pytest.mark.parametrize("raw, why", [
    (b"\x1f\x8b\x08\x00garbage", "not a readable gzip file"),
    (gzip.compress(b"{not json", mtime=0), "not a JSON file"),
    (b'{"Records": "nope"}', "holds no CloudTrail records"),
    (b"[1, 2]", "holds no CloudTrail records"),
])
def test_unreadable_files_say_why(raw, why):
    assert why in sources.decode(raw, "f").why


def test_s3_prefix_is_listed_page_by_page_and_an_unreadable_object_skipped(aws, monkeypatch):
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="trail")
    iid = instance_id()
    prefix = "AWSLogs/111122223333/CloudTrail/us-east-1/2026/10/01/"
    for n in range(3):
        s3.put_object(Bucket="trail", Key=prefix + "%d.json.gz" % n, Body=gzip.compress(
            json.dumps({"Records": [run_instances([iid], 0)] if n == 0 else [
                other_event(n)]}).encode()))
    s3.put_object(Bucket="trail", Key="AWSLogs/elsewhere.json.gz", Body=b"")
    original = s3.get_object

    def get_object(**params):
        if params["Key"].endswith("2.json.gz"):
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}},
                              "GetObject")
        return original(**params)

    monkeypatch.setattr(s3, "get_object", get_object)
    got = list(sources.s3_files(s3, "s3://trail/" + prefix))
    assert [type(g).__name__ for g in got] == ["Fetched", "Fetched", "Skipped"]
    assert got[2].label == "s3://trail/%s2.json.gz" % prefix and "AccessDenied" in got[2].why
    assert sources.read(got[0]).kept[0]["responseElements"]["instancesSet"]["items"][0][
        "instanceId"] == iid


def test_a_missing_bucket_is_one_skipped_source(aws):
    s3 = boto3.client("s3", region_name="us-east-1")
    [got] = list(sources.s3_files(s3, "s3://no-such-bucket/x"))
    assert isinstance(got, sources.Skipped) and "NoSuchBucket" in got.why


def test_a_launch_read_twice_counts_once():
    """Overlapping sources (a folder and lookup-events output of the same days)."""
    record = run_instances([instance_id()], 0)
    judged, stats = launches([as_file([record]), as_file([dict(record)])])
    assert len(judged) == 1 and stats["repeats"] == 1
