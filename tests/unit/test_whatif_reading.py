"""How ``broom whatif`` reads its files: on several cores with the same output as
one, block by block within a size limit, only the records it needs decoded (and none
hidden inside or forged from another), lookup-events output in its usual shapes, and
eventIDs that disagree reported."""
import copy
import gc
import gzip
import json
import os
import random

import pytest
from click.testing import CliRunner

from broom.cli import cli
from broom.whatif import sources

import trail
from trail import create_tags, delete_tags, instance_id, log_file, other_event, run_instances


def whatif(*args):
    """(exit status, stdout, stderr) of the command."""
    result = CliRunner().invoke(cli, ["whatif", "--no-progress", *map(str, args)],
                                catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def launches_in(stdout):
    document = json.loads(stdout)
    return {i["instance_id"]: (i["verdict"], i["action"])
            for launch in document["launches"] for i in launch["instances"]}


def compact(records):
    """A log file's text as CloudTrail writes it: no whitespace."""
    return json.dumps({"Records": records}, separators=(",", ":")).encode()


@pytest.fixture
def trail_folder(tmp_path):
    """Twelve files of a shuffled trail: launches in one file and their tag calls in
    another, out of time order, a corrupt file among them."""
    rng = random.Random(7)
    records = []
    for n in range(60):
        ids = [instance_id() for _ in range(rng.randrange(1, 3))]
        who = rng.choice([trail.user("ann"), trail.user("bob"), trail.role("ci", "job")])
        records.append(run_instances(ids, n * 20, who=who,
                                     tags=rng.choice([None, {"Code": "LOL"}, {"Code": "NO"}])))
        if rng.random() < 0.5:
            records.append(create_tags(ids[:1], {"Code": rng.choice(["GGG", "X"])},
                                       n * 20 + rng.randrange(15)))
        if rng.random() < 0.2:
            records.append(delete_tags(ids[:1], ["Code"], n * 20 + rng.randrange(15)))
        records += [other_event(n * 20 + k, n * 10 + k) for k in range(5)]
    rng.shuffle(records)
    folder = tmp_path / "trail"
    for number in range(12):
        log_file(folder, records[number::12], name="%02d.json.gz" % number)
    (folder / "05b.json.gz").write_bytes(b"\x1f\x8b\x08 truncated")
    return folder


@pytest.mark.parametrize("output", [[], ["--json"]])
def test_several_processes_print_exactly_what_one_prints(trail_folder, output):
    one = whatif("--jobs", "1", *output, trail_folder)
    several = whatif("--jobs", "3", *output, trail_folder)
    assert one[0] == 2 and "05b.json.gz: not a readable gzip file" in one[2]
    assert several == one
    if output:
        assert len(launches_in(one[1])) > 60


def test_records_are_decoded_only_when_they_name_a_launch_or_tag_call():
    """The other records of a file in CloudTrail's layout are counted, not parsed."""
    iid = instance_id()
    records = [other_event(n, n) for n in range(50)] + [run_instances([iid], 3)]
    decoded = []

    def keep(record):
        decoded.append(record["eventName"])
        return record

    read = sources.decode(gzip.compress(compact(records)), "f", keep)
    assert read.count == 51 and decoded == ["RunInstances"]
    assert read.kept[0]["responseElements"]["instancesSet"]["items"][0]["instanceId"] == iid


def test_any_layout_gives_the_same_records(tmp_path):
    """CloudTrail's own layout (read block by block, few records decoded), indented
    JSON, and layouts read whole (a bare list, records starting with other keys)."""
    records = [run_instances([instance_id()], 0), other_event(1),
               create_tags([instance_id()], {"Code": "LOL"}, 2), other_event(3)]
    shuffled = [dict(reversed(list(r.items()))) for r in records]
    layouts = [compact(records), json.dumps({"Records": records}, indent=4).encode(),
               json.dumps(records).encode(), compact(shuffled[:1] + records[1:]),
               gzip.compress(compact(records))]
    got = [sources.decode(raw, "f", ec2_ids) for raw in layouts]
    assert [(g.count, g.kept) for g in got] == [(4, [records[0]["eventID"],
                                                     records[2]["eventID"]])] * 5


def ec2_ids(record):
    return record["eventID"] if record.get("eventSource") == "ec2.amazonaws.com" else None


def test_a_record_cannot_be_forged_from_values_nested_in_another(tmp_path):
    """A caller controls some request values: an array of objects that each start
    like a record, one a whole RunInstances, nested in an ordinary record. It is
    read as the value it is, not as a launch; the real launch after it is judged."""
    real, forged = instance_id(), instance_id()
    fake = run_instances([forged], 1)
    carrier = other_event(0)
    carrier["requestParameters"] = {"items": [dict(other_event(0)), fake]}
    raw = compact([carrier, run_instances([real], 2)])
    assert raw.count(b'{"eventVersion"') == 4
    (tmp_path / "t.json").write_bytes(raw)
    status, stdout, _ = whatif("--json", tmp_path / "t.json")
    assert status == 0 and list(launches_in(stdout)) == [real]
    assert json.loads(stdout)["stats"]["records"] == 2


def test_a_launch_cannot_be_hidden_inside_another_record(tmp_path):
    """Cut at a nested record start, the launch's own text no longer parses: the
    file is read whole, and the launch judged."""
    iid = instance_id()
    launch = run_instances([iid], 0)
    launch["requestParameters"]["clientToken"] = None
    launch["additionalEventData"] = [{"eventVersion": "x"}, {"eventVersion": "y"}]
    (tmp_path / "t.json").write_bytes(compact([other_event(1), launch]))
    status, stdout, _ = whatif("--json", tmp_path / "t.json")
    assert status == 0 and list(launches_in(stdout)) == [iid]


def test_a_gzip_bomb_is_skipped_named_and_the_other_files_judged(tmp_path):
    iid = instance_id()
    log_file(tmp_path, [run_instances([iid], 0)], name="a.json.gz")
    bomb = gzip.compress(b'{"Records":[' + b" " * 3_000_000 + b"]}", compresslevel=9)
    (tmp_path / "b.json.gz").write_bytes(bomb)
    assert len(bomb) < 10_000
    status, stdout, stderr = whatif("--json", "--max-file-size", "1", tmp_path)
    assert status == 2 and list(launches_in(stdout)) == [iid]
    assert "b.json.gz: expands to more than 1 MB (--max-file-size)" in stderr
    assert "Traceback" not in stderr
    # the default limit reads it: it is only whitespace
    assert whatif("--json", tmp_path)[0] == 0


def test_strings_with_escapes_are_read_block_by_block(tmp_path):
    """Escaped quotes and backslashes (a policy document as a string, a value ending
    in a backslash, a record's start quoted in a value) keep a file in CloudTrail's
    layout: it is still read block by block (it is larger than what may be read
    whole), its launches found, nothing forged."""
    iid = instance_id()
    records = [run_instances([iid], 0)]
    for n in range(60):
        record = other_event(n, n)
        record["requestParameters"]["policyDocument"] = json.dumps(
            {"Statement": [{"Effect": "Allow", "Resource": "arn:aws:s3:::b\\%d/*" % n}],
             "quoted": '{"eventVersion":"1.09","eventSource":"ec2.amazonaws.com",'
                       '"eventName":"RunInstances"}'})
        record["requestParameters"]["key"] = "folder\\" if n % 2 else "tab\there\u00e9"
        records.append(record)
    raw = compact(records)
    assert b'\\\\"' in raw and b'\\"' in raw and 62_500 < len(raw) < 1_000_000
    (tmp_path / "t.json").write_bytes(raw)
    status, stdout, stderr = whatif("--json", "--max-file-size", "1", tmp_path)
    assert (status, stderr) == (0, "") and list(launches_in(stdout)) == [iid]
    assert json.loads(stdout)["stats"]["records"] == 61


def test_a_file_in_another_layout_is_read_whole_only_up_to_a_share_of_the_limit(tmp_path):
    iid = instance_id()
    padded = [run_instances([iid], 0)] + [other_event(n, n) for n in range(60)]
    (tmp_path / "list.json").write_text(json.dumps(padded))  # a bare list: read whole
    assert 62_500 < (tmp_path / "list.json").stat().st_size < 1_000_000
    status, stdout, stderr = whatif("--json", "--max-file-size", "1", tmp_path)
    assert status == 2 and launches_in(stdout) == {}
    assert ("list.json: is not laid out as CloudTrail writes its log files (or holds a "
            "record larger than 62500 bytes), and is larger than that, the most such a "
            "file is read whole (--max-file-size / 16)") in stderr
    status, stdout, _ = whatif("--json", tmp_path)
    assert status == 0 and list(launches_in(stdout)) == [iid]


def test_a_record_larger_than_a_share_of_the_limit_is_not_held(tmp_path):
    """A file in CloudTrail's layout whose record never ends (a gzip bomb shaped
    like a log file): block by block, it is given up once the record passes
    --max-file-size / 16, not held up to the whole limit."""
    iid = instance_id()
    raw = compact([run_instances([iid], 0), other_event(1)])
    head = raw[:raw.rindex(b'{"eventVersion"')] + b'{"eventVersion":"1.08","x":"'
    (tmp_path / "bomb.json.gz").write_bytes(gzip.compress(head + b"a" * 20_000_000 + b'"}]}'))
    held = []
    original = sources._stream

    def stream(label, text, keep, longest):
        def counted():
            for block in text:
                held.append(len(block))
                yield block
        return original(label, counted(), keep, longest)

    monkey = pytest.MonkeyPatch()
    monkey.setattr(sources, "_stream", stream)
    try:
        got = sources.decode((tmp_path / "bomb.json.gz").read_bytes(), "bomb", ec2_ids,
                             limit=16_000_000)
    finally:
        monkey.undo()
    assert isinstance(got, sources.Skipped) and "larger than 1 MB" in got.why
    assert sum(held) <= 1_000_000 + 2 * sources.BLOCK  # of 20 MB
    # under a larger limit it is read, and the launch before it found
    got = sources.decode((tmp_path / "bomb.json.gz").read_bytes(), "bomb", ec2_ids,
                         limit=400_000_000)
    assert got.count == 2 and len(got.kept) == 1


def test_lookup_events_with_cloudtrail_event_objects_are_read(tmp_path):
    """After ``jq '.Events[].CloudTrailEvent |= fromjson'`` (indented, as jq writes)."""
    iid = instance_id()
    records = [run_instances([iid], 0), create_tags([iid], {"Code": "LOL"}, 3)]
    page = {"Events": [{"EventId": r["eventID"], "EventName": r["eventName"],
                        "CloudTrailEvent": r} for r in records]}
    (tmp_path / "lookup.json").write_text(json.dumps(page, indent=2))
    status, stdout, stderr = whatif("--json", tmp_path / "lookup.json")
    assert status == 0, stderr
    assert launches_in(stdout) == {iid: ("compliant", "none")}
    assert json.loads(stdout)["stats"]["records"] == 2


def test_records_with_one_event_id_and_different_content_are_an_anomaly(tmp_path):
    iid, other = instance_id(), instance_id()
    launch = run_instances([iid], 0, tags={"Code": "LOL"})
    altered = copy.deepcopy(launch)
    altered["requestParameters"]["tagSpecificationSet"]["items"][0]["tags"][0]["value"] = "X"
    same = copy.deepcopy(launch)  # overlapping sources: not an anomaly
    log_file(tmp_path / "a", [launch, run_instances([other], 5)])
    log_file(tmp_path / "b", [same])
    status, stdout, _ = whatif("--json", tmp_path)
    assert status == 0 and json.loads(stdout)["summary"]["anomalies"] == {}
    log_file(tmp_path / "c", [altered])
    status, stdout, _ = whatif("--json", tmp_path)
    assert json.loads(stdout)["summary"]["anomalies"] == {
        "conflicting_records": 1, "conflicting_event_ids": [launch["eventID"]]}
    status, stdout, _ = whatif(tmp_path)
    assert ("Anomaly: 1 record(s) have the eventID of another record but not its content"
            in stdout and launch["eventID"] in stdout)


def test_a_record_conflicting_with_one_read_before_is_not_judged(tmp_path):
    """The first record read with an eventID is the one used: an altered copy (a
    later time, another Code, another tag call) neither adds a launch nor changes
    its tags."""
    iid = instance_id()
    launch = run_instances([iid], 0, tags={"Code": "LOL"})
    tag = create_tags([iid], {"Name": "web"}, 3)
    later = copy.deepcopy(launch)
    later["eventTime"] = trail.at(40)
    later["requestParameters"]["tagSpecificationSet"]["items"][0]["tags"][0]["value"] = "X"
    blanked = copy.deepcopy(tag)
    blanked["requestParameters"]["tagSet"]["items"] = [{"key": "Code", "value": ""}]
    log_file(tmp_path / "a", [launch, tag])
    log_file(tmp_path / "b", [later, blanked])
    status, stdout, _ = whatif("--json", tmp_path)
    document = json.loads(stdout)
    assert status == 0 and len(document["launches"]) == 1
    assert launches_in(stdout) == {iid: ("compliant", "none")}
    assert document["summary"]["anomalies"]["conflicting_records"] == 2


def test_the_garbage_collector_is_left_as_it_was(trail_folder):
    """whatif quiets Python's garbage collector while it reads (the benchmark's
    figures depend on it) and gives it back as it was, frozen objects included."""
    before = gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()
    assert whatif("--jobs", "2", trail_folder)[0] == 2
    assert (gc.get_threshold(), gc.get_freeze_count(), gc.isenabled()) == before


def test_a_folder_is_walked_in_name_order_one_folder_listing_at_a_time(tmp_path):
    """Memory does not grow with the number of files: a folder's files are not all
    listed before the first is read (a file added to a later folder meanwhile is
    seen), and they come in name order (time order in CloudTrail's key layout)."""
    for day in ("02", "01", "10"):
        (tmp_path / "2026" / day).mkdir(parents=True)
        for name in ("b_CloudTrail.json.gz", "a_CloudTrail.json.gz", "digest.txt"):
            (tmp_path / "2026" / day / name).write_bytes(b"")
    (tmp_path / "2026" / "01" / "x_CloudTrail-Digest.json.gz").write_bytes(b"")
    files = sources.local_files(str(tmp_path))
    first = next(files)
    (tmp_path / "2026" / "10" / "c_CloudTrail.json").write_bytes(b"")
    assert [first, *files] == [str(tmp_path / "2026" / day / name) for day in ("01", "02", "10")
                               for name in ("a_CloudTrail.json.gz", "b_CloudTrail.json.gz")
                               ] + [str(tmp_path / "2026" / "10" / "c_CloudTrail.json")]


def test_a_folder_that_cannot_be_listed_is_skipped_named(trail_folder, monkeypatch):
    locked = trail_folder / "locked"
    locked.mkdir()
    scandir = os.scandir

    def refusing(path):  # as for a folder without read permission (tests may run as root)
        if str(path) == str(locked):
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)

    monkeypatch.setattr(sources.os, "scandir", refusing)
    status, stdout, stderr = whatif(trail_folder)
    assert status == 2 and "skipped %s: cannot be listed (Permission denied)" % locked in stderr
    assert "Read 12 file(s)" in stdout
