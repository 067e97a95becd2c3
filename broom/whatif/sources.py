"""Where ``broom whatif`` reads CloudTrail records from, one file at a time.

A SOURCE is a CloudTrail log file as delivered to S3 (``.json.gz`` or ``.json``,
``{"Records": [...]}``), a folder of them (walked in name order, which is time order
for CloudTrail's key layout), an ``s3://bucket/prefix`` of them (listed page by page,
each object read when its turn comes), or the output of ``aws cloudtrail
lookup-events`` (``{"Events": [{"CloudTrailEvent": "<record as JSON>"}, ...]}``).
A file that cannot be read or holds no CloudTrail record becomes a :class:`Skipped`
naming it and why: the caller reports it and goes on.
"""
import gc
import gzip
import zlib
from dataclasses import dataclass
from pathlib import Path

import orjson

#: orjson makes broom whatif about a quarter faster than json (benchmarks/whatif.py).
loads = orjson.loads
JSONError = (ValueError,)  # orjson.JSONDecodeError and json's are ValueErrors

SUFFIXES = (".json.gz", ".json")
#: CloudTrail writes digest and Insights files beside the logs: no API call records.
NOT_LOGS = ("CloudTrail-Digest", "CloudTrail-Insight")


@dataclass
class File:
    """The records of one file (a list, in the file's order)."""

    label: str
    records: list


@dataclass
class Skipped:
    """A source, or one file of it, that could not be read: ``why`` says what to fix."""

    label: str
    why: str


def is_s3(source):
    return source.startswith("s3://")


def is_log_name(name):
    return name.endswith(SUFFIXES) and not any(part in name for part in NOT_LOGS)


def decode(raw, label):
    """The CloudTrail records in a file's bytes (gzipped or not): a :class:`File`, or
    a :class:`Skipped` saying why there are none."""
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        data = parse(raw)
    except (OSError, EOFError, zlib.error) as e:
        return Skipped(label, "not a readable gzip file (%s)" % e)
    except JSONError as e:
        return Skipped(label, "not a JSON file (%s)" % e)
    records = records_in(data)
    if records is None:
        return Skipped(label, "holds no CloudTrail records (expected a log file with "
                              "\"Records\" or aws cloudtrail lookup-events output with "
                              "\"Events\")")
    return File(label, records)


def parse(raw):
    """``loads`` with the cyclic garbage collector paused: a log file is a tree of tens
    of thousands of dicts and lists without cycles, and collections triggered while
    it is built would walk all of it for nothing."""
    if not gc.isenabled():
        return loads(raw)
    gc.disable()
    try:
        return loads(raw)
    finally:
        gc.enable()


def records_in(data):
    """The records of a decoded file, or None when it is not CloudTrail's."""
    if isinstance(data, dict):
        if isinstance(data.get("Records"), list):
            return [r for r in data["Records"] if isinstance(r, dict)]
        if isinstance(data.get("Events"), list):
            return lookup_events(data["Events"])
        if isinstance(data.get("eventName"), str):  # one bare record
            return [data]
    if isinstance(data, list) and data and all(
            isinstance(r, dict) and isinstance(r.get("eventName"), str) for r in data):
        return data
    return None


def lookup_events(items):
    """Records from LookupEvents' ``Events[]``: each carries its record as a JSON string
    in ``CloudTrailEvent``; an item without a parsable one is left out."""
    found = []
    for item in items:
        text = item.get("CloudTrailEvent") if isinstance(item, dict) else None
        if not isinstance(text, str):
            continue
        try:
            record = loads(text)
        except JSONError:
            continue
        if isinstance(record, dict):
            found.append(record)
    return found


def read_path(path):
    """One local file as a File or Skipped."""
    try:
        raw = Path(path).read_bytes()
    except OSError as e:
        return Skipped(str(path), "cannot be read (%s)" % (e.strerror or e))
    return decode(raw, str(path))


def local_files(source):
    """The log files of a local SOURCE in name order; a file named on the command line
    is read whatever its name."""
    path = Path(source)
    if path.is_dir():
        return sorted(str(p) for p in path.rglob("*") if p.is_file() and is_log_name(p.name))
    return [source]


def split_s3(url):
    bucket, _, prefix = url[len("s3://"):].partition("/")
    return bucket, prefix


def s3_files(client, url):
    """Each log object under an ``s3://bucket/prefix``, read when its turn comes, as a
    File or Skipped; listed page by page. A listing refused is one Skipped."""
    from botocore.exceptions import ClientError

    bucket, prefix = split_s3(url)
    paginator = client.get_paginator("list_objects_v2")
    try:
        for page in paginator.paginate(Bucket=bucket, Prefix=prefix):
            for item in page.get("Contents", ()):
                key = item["Key"]
                if not is_log_name(key):
                    continue
                label = "s3://%s/%s" % (bucket, key)
                try:
                    raw = client.get_object(Bucket=bucket, Key=key)["Body"].read()
                except ClientError as e:
                    yield Skipped(label, "cannot be read (%s)" % e.response["Error"]["Code"])
                    continue
                yield decode(raw, label)
    except ClientError as e:
        yield Skipped(url, "cannot be listed (%s: %s)" % (
            e.response["Error"]["Code"], e.response["Error"].get("Message", "")))


def read_sources(sources, s3_client=None):
    """Every File or Skipped of the sources, in order, one file in memory at a time.
    ``s3_client()`` makes the S3 client, only if an ``s3://`` source comes."""
    client = None
    for source in sources:
        if is_s3(source):
            client = client or s3_client()
            yield from s3_files(client, source)
            continue
        files = local_files(source)
        if not files:
            yield Skipped(source, "holds no CloudTrail log file (*.json.gz, *.json)")
        for path in files:
            yield read_path(path)
