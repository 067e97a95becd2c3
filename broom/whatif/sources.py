"""Where ``broom whatif`` reads CloudTrail records from, one file at a time.

A SOURCE is a CloudTrail log file as delivered to S3 (``.json.gz`` or ``.json``,
``{"Records": [...]}``), a folder of them (walked in name order, which is time order
for CloudTrail's key layout), an ``s3://bucket/prefix`` of them (listed page by page,
each object read when its turn comes), or the output of ``aws cloudtrail
lookup-events`` (``{"Events": [{"CloudTrailEvent": "<record as JSON>"}, ...]}``, or
the record as an object after a ``jq`` step).
A file that cannot be read or holds no CloudTrail record becomes a :class:`Skipped`
naming it and why: the caller reports it and goes on.

Reading a file (:func:`scan`) never holds more than ``limit`` bytes of it, however
much it claims to expand to: a gzip is inflated block by block and a file that
would expand past the limit is skipped. A file laid out as CloudTrail writes it (an
array of records under ``Records``, or of ``lookup-events`` items under ``Events``,
each starting with the same key) is read as a stream of blocks, and within a block
only the records that name one of ``NAMES`` are decoded: the others are counted, never
parsed. The block's layout is checked first, at the speed of bytes operations
(:func:`_layout`): every record boundary found must be a record of the array, so a
record cannot be hidden inside another, nor one forged from a value nested in another.
A file in any other layout, or that fails the check, is decoded whole, which only
files up to ``limit // WHOLE_SHARE`` bytes may be (the Python objects of a decoded
JSON document take several times its size).
"""
import gc
import os
import re
import zlib
from bisect import bisect_right
from dataclasses import dataclass, field
from pathlib import Path

import orjson

#: orjson: the records whatif needs are decoded with it (benchmarks/whatif.py).
loads = orjson.loads
JSONError = (ValueError,)  # orjson.JSONDecodeError and json's are ValueErrors

SUFFIXES = (".json.gz", ".json")
#: CloudTrail writes digest and Insights files beside the logs: no API call records.
NOT_LOGS = ("CloudTrail-Digest", "CloudTrail-Insight")

MB = 1_000_000
#: Bytes a file may expand to (``--max-file-size``, in MB): CloudTrail's own files
#: are a few MB; a file that would expand past it is skipped, named.
DEFAULT_LIMIT = 256 * MB
#: A file not laid out as CloudTrail writes it is decoded whole: only up to
#: limit // WHOLE_SHARE bytes.
WHOLE_SHARE = 16
BLOCK = 4 * MB

#: The event source and names whatif reads (stream.EC2, stream.NAMES): a record that
#: does not contain the source and one of the names, quoted, is not decoded.
SOURCE = b"ec2.amazonaws.com"
NAMES = (b"RunInstances", b"CreateFleet", b"CreateTags", b"DeleteTags")
WHITESPACE = b" \t\r\n"
_HEAD = re.compile(rb'[ \t\r\n]*\{[ \t\r\n]*"(Records|Events)"[ \t\r\n]*:[ \t\r\n]*\['
                   rb'[ \t\r\n]*(?:\{[ \t\r\n]*"([A-Za-z0-9_]{1,64})"|\])')
#: What is left of a file's text for the layout check: quotes and brackets.
_KEEP = frozenset(b'"{}[]\x00')
_DROP = bytes(i for i in range(256) if i not in _KEEP)
_STRING = re.compile(rb'"[^"]*"')
#: An escape within a string: a backslash and the byte after it (``\\``, ``\"``,
#: the start of ``\u00e9``...).
_ESCAPE = re.compile(rb"\\.", re.DOTALL)


class TooLarge(Exception):
    """A file would expand past the limit."""


@dataclass
class File:
    """The records of one file (a list, in the file's order): the Athena route's
    result pages."""

    label: str
    records: list


@dataclass
class Read:
    """What :func:`scan` kept of one file: ``count`` records read, ``kept`` the
    ``keep(record)`` values that were not None, in the file's order."""

    label: str
    count: int
    kept: list = field(default_factory=list)


@dataclass
class Skipped:
    """A source, or one file of it, that could not be read: ``why`` says what to fix."""

    label: str
    why: str


@dataclass(frozen=True)
class Local:
    """A local file to read."""

    path: str

    @property
    def label(self):
        return self.path


@dataclass(frozen=True)
class Fetched:
    """The bytes of a file read elsewhere (an S3 object)."""

    label: str
    raw: bytes


def is_s3(source):
    return source.startswith("s3://")


def is_log_name(name):
    return name.endswith(SUFFIXES) and not any(part in name for part in NOT_LOGS)


# --- bytes ----------------------------------------------------------------------------

def blocks(chunks, limit):
    """The text of a file from its raw ``chunks`` (gzipped or not), in blocks of up to
    BLOCK bytes; TooLarge once it passes ``limit`` bytes, zlib.error or EOFError when
    the gzip is corrupt or cut short. A gzip of several members is read whole."""
    chunks = iter(chunks)
    first = next(chunks, b"")
    total = 0
    if first[:2] != b"\x1f\x8b":
        for chunk in _chain(first, chunks):
            total += len(chunk)
            if total > limit:
                raise TooLarge()
            if chunk:
                yield chunk
        return
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    for chunk in _chain(first, chunks):
        while chunk:
            out = inflate.decompress(chunk, BLOCK)
            total += len(out)
            if total > limit:
                raise TooLarge()
            if out:
                yield out
            chunk = inflate.unconsumed_tail
            if inflate.eof:
                chunk = inflate.unused_data + chunk
                if not chunk.strip(b"\x00"):
                    break
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the next member
    if not inflate.eof:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")


def _chain(first, rest):
    yield first
    yield from rest


def file_chunks(path):
    with open(path, "rb") as f:
        while chunk := f.read(BLOCK):
            yield chunk


# --- records --------------------------------------------------------------------------

class _Unusual(Exception):
    """The file is not laid out as CloudTrail writes it: decode it whole."""


def scan(label, open_chunks, keep, limit=DEFAULT_LIMIT):
    """Read one file: ``open_chunks()`` gives its raw bytes in chunks (called again
    when the file has to be read whole); ``keep(record)`` says what to keep of a
    record that names one of NAMES (None: nothing). Returns a Read or a Skipped."""
    try:
        whole_limit = limit // WHOLE_SHARE
        try:
            return _stream(label, blocks(open_chunks(), limit), keep, whole_limit)
        except _Unusual:
            pass
        try:
            raw = b"".join(blocks(open_chunks(), whole_limit))
        except TooLarge:
            return Skipped(label, "is not laid out as CloudTrail writes its log files (or "
                                  "holds a record larger than %s), and is larger than that, "
                                  "the most such a file is read whole (--max-file-size / %d)"
                           % (_size(whole_limit), WHOLE_SHARE))
        return _whole(label, raw, keep)
    except TooLarge:
        return Skipped(label, "expands to more than %s (--max-file-size)" % _size(limit))
    except (zlib.error, EOFError) as e:
        return Skipped(label, "not a readable gzip file (%s)" % e)
    except OSError as e:
        return Skipped(label, "cannot be read (%s)" % (e.strerror or e))


def _size(n):
    return "%d MB" % (n // MB) if n >= MB else "%d bytes" % n


def _stream(label, text, keep, longest):
    """A file in CloudTrail's layout, block by block (raises _Unusual otherwise, and
    for a record longer than ``longest`` bytes)."""
    buffer = b""
    for block in text:
        buffer += block
        if len(buffer) >= 4096:
            break
    match = _HEAD.match(buffer)
    if match is None:
        raise _Unusual()
    events = match.group(1) == b"Events"
    if match.group(2) is None:  # an empty array
        buffer += b"".join(text)
        if buffer[match.end():].strip(WHITESPACE) != b"}":
            raise _Unusual()
        return Read(label, 0)
    starts = _Starts(match.group(2))
    names = (SOURCE,) + NAMES if events else tuple(b'"%s"' % n for n in (SOURCE,) + NAMES)
    read = Read(label, 0)
    first = True
    pending = [buffer]  # the text not judged yet, in pieces
    size = len(buffer)
    for block in text:
        size += len(block)
        if not starts.pattern.search(pending[-1][-starts.overlap:] + block):
            pending.append(block)  # still inside one record
            if size > longest:
                raise _Unusual()
            continue
        buffer = b"".join(pending) + block
        # cut before the last record that starts in the buffer: all before it is whole
        cut = starts.last(buffer)
        if cut > 0:
            _block(buffer[:cut], first, False, starts, names, events, keep, read)
            buffer, first = buffer[cut:], False
        pending, size = [buffer], len(buffer)
    buffer = b"".join(pending)
    del pending
    _block(buffer, first, True, starts, names, events, keep, read)
    return read


class _Starts:
    """Where the records of a file start: ``{"KEY"``, KEY the first key of its
    first record (with whitespace in an indented file)."""

    def __init__(self, key):
        self.compact = b'{"%s"' % key
        self.pattern = re.compile(rb'\{[ \t\r\n]{0,256}"%s"' % re.escape(key))
        self.overlap = 300 + len(key)

    def last(self, text):
        """Where the last record starting in ``text`` starts (-1: none)."""
        at = text.rfind(self.compact)
        if at != -1 and self.pattern.search(text, at + 1) is None:
            return at
        found = [m.start() for m in self.pattern.finditer(text)]
        return found[-1] if found else -1

    def spans(self, text, compact, names):
        """(start, end) of each record of ``text`` that contains one of ``names``, in
        order; ``compact``: every record of ``text`` starts as CloudTrail writes it.
        As CloudTrail writes them, the records naming one of the names (a few in a
        hundred) are found first, then the source is looked for in each of them;
        otherwise one pass finds the records from EC2 (``SOURCE``), whose names are
        then looked for in each of them."""
        source = names[0]
        if compact:  # bytes searches only
            ends = {}  # start -> end of each record naming one of the names
            for name in names[1:]:
                at = text.find(name)
                while at != -1:
                    start = text.rfind(self.compact, 0, at)
                    if start == -1:
                        raise _Unusual()  # before the first record
                    end = text.find(self.compact, at)
                    end = len(text) if end == -1 else end
                    ends[start] = end
                    at = text.find(name, end)
            return [(start, end) for start, end in sorted(ends.items())
                    if text.find(source, start, end) != -1]
        found = []
        at = text.find(source)
        starts = [m.start() for m in self.pattern.finditer(text)]
        while at != -1:
            index = bisect_right(starts, at) - 1
            if index < 0:
                raise _Unusual()
            end = starts[index + 1] if index + 1 < len(starts) else len(text)
            found.append((starts[index], end))
            at = text.find(source, end) if end < len(text) else -1
        return [(start, end) for start, end in found
                if any(text.find(name, start, end) != -1 for name in names[1:])]


def _block(text, first, last, starts, names, events, keep, read):
    """The whole records of ``text``: counted, and those naming one of ``names``
    decoded and kept."""
    compact = True
    records = _layout(text, starts.compact, None, first, last)  # as CloudTrail writes
    if records is None:
        compact = False
        records = _layout(text, None, starts.pattern, first, last)
        if records is None:
            raise _Unusual()
    read.count += records
    if not records:
        return
    for start, end in starts.spans(text, compact, names):
        piece = text[start:end].rstrip(WHITESPACE + b",")
        if last and end == len(text):  # the array's and the document's end
            piece = piece[:-1].rstrip(WHITESPACE)
            if piece[-1:] != b"]":
                raise _Unusual()
            piece = piece[:-1].rstrip(WHITESPACE)
        try:
            record = loads(piece)
        except JSONError:
            raise _Unusual()
        if not isinstance(record, dict):
            raise _Unusual()
        for found in (lookup_events([record]) if events else [record]):
            value = keep(found)
            if value is not None:
                read.kept.append(value)


def _layout(text, start, pattern, first, last):
    """How many records ``text`` holds when it is whole JSON objects, each starting
    with the bytes ``start`` (or a match of ``pattern``) and none inside another
    (with the array's start and end when ``first`` and ``last``); None when it is
    not. Checked without decoding: record starts become a mark; escapes, then
    everything but quotes and brackets, then strings go; what is left must reduce to
    one ``mark}`` per record, pairs of brackets removed from the inside out. (A
    record start written otherwise than ``start`` is left as a nested object, so
    the check fails: the caller then tries ``pattern``.)"""
    if b"\x00" in text:
        return None  # not in valid JSON text: it is the mark
    shape = text.replace(start, b"\x00") if start else pattern.sub(b"\x00", text)
    if b"\\" in shape:  # (a one-byte search is much faster than a two-byte one)
        shape = _ESCAPE.sub(b"", shape)  # one pass, left to right, as JSON reads them
    shape = shape.translate(None, _DROP).replace(b'""', b"")
    if b'"' in shape:
        shape = _STRING.sub(b"", shape)
    while True:
        smaller = shape.replace(b"{}", b"").replace(b"[]", b"")
        if smaller == shape:
            break
        shape = smaller
    records = shape.count(b"\x00")
    expected = (b"{[" if first else b"") + b"\x00}" * records + (b"]}" if last else b"")
    return records if shape == expected else None


def _whole(label, raw, keep):
    try:
        data = parse(raw)
    except JSONError as e:
        return Skipped(label, "not a JSON file (%s)" % e)
    del raw
    records = records_in(data)
    if records is None:
        return Skipped(label, "holds no CloudTrail records (expected a log file with "
                              "\"Records\" or aws cloudtrail lookup-events output with "
                              "\"Events\")")
    read = Read(label, len(records))
    for record in records:
        value = keep(record)
        if value is not None:
            read.kept.append(value)
    return read


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
    """Records from LookupEvents' ``Events[]``: each carries its record in
    ``CloudTrailEvent``, as a JSON string (the API's answer) or as an object (after
    a ``jq`` step such as ``.CloudTrailEvent |= fromjson``); an item without a
    readable one is left out."""
    found = []
    for item in items:
        value = item.get("CloudTrailEvent") if isinstance(item, dict) else None
        if isinstance(value, str):
            try:
                value = loads(value)
            except JSONError:
                continue
        if isinstance(value, dict):
            found.append(value)
    return found


def _everything(record):
    return record


def decode(raw, label, keep=_everything, limit=DEFAULT_LIMIT):
    """The records of a file's bytes (gzipped or not) that name one of NAMES, as
    :func:`scan` reads them."""
    return scan(label, lambda: iter((raw,)), keep, limit)


def read(task, keep=_everything, limit=DEFAULT_LIMIT):
    """A Local or Fetched task (see :func:`read_sources`) as a Read or Skipped."""
    if isinstance(task, Fetched):
        return decode(task.raw, task.label, keep, limit)
    return scan(task.path, lambda: file_chunks(task.path), keep, limit)


def local_files(source):
    """The log files of a local SOURCE in name order, folder by folder (one folder's
    listing in memory at a time, however many files there are); a file named on the
    command line is read whatever its name. A folder that cannot be listed is a
    Skipped; links to folders are not followed."""
    if not Path(source).is_dir():
        yield source
        return
    try:
        with os.scandir(source) as listing:
            entries = sorted((entry.name, entry.path, entry.is_dir(follow_symlinks=False))
                             for entry in listing)
    except OSError as e:
        yield Skipped(source, "cannot be listed (%s)" % (e.strerror or e))
        return
    for name, path, is_dir in entries:
        if is_dir:
            yield from local_files(path)
        elif is_log_name(name) and os.path.isfile(path):
            yield path


def split_s3(url):
    bucket, _, prefix = url[len("s3://"):].partition("/")
    return bucket, prefix


def s3_files(client, url, limit=DEFAULT_LIMIT):
    """Each log object under an ``s3://bucket/prefix`` as a Fetched (its bytes, read
    when its turn comes) or a Skipped; listed page by page. An object larger than
    ``limit`` is skipped unread; a listing refused is one Skipped."""
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
                if item.get("Size", 0) > limit:
                    yield Skipped(label, "is larger than %s (--max-file-size)" % _size(limit))
                    continue
                try:
                    body = client.get_object(Bucket=bucket, Key=key)["Body"]
                    raw = body.read(limit + 1)
                except ClientError as e:
                    yield Skipped(label, "cannot be read (%s)" % e.response["Error"]["Code"])
                    continue
                if len(raw) > limit:
                    yield Skipped(label, "is larger than %s (--max-file-size)" % _size(limit))
                    continue
                yield Fetched(label, raw)
    except ClientError as e:
        yield Skipped(url, "cannot be listed (%s: %s)" % (
            e.response["Error"]["Code"], e.response["Error"].get("Message", "")))


def read_sources(sources, s3_client=None, limit=DEFAULT_LIMIT):
    """Every file of the sources, in order, as a task for :func:`read` (Local,
    Fetched) or a Skipped. ``s3_client()`` makes the S3 client, only if an ``s3://``
    source comes."""
    client = None
    for source in sources:
        if is_s3(source):
            client = client or s3_client()
            yield from s3_files(client, source, limit)
            continue
        found = False
        for path in local_files(source):
            found = True
            yield path if isinstance(path, Skipped) else Local(path)
        if not found:
            yield Skipped(source, "holds no CloudTrail log file (*.json.gz, *.json)")
