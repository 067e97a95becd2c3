"""``broom whatif`` speed on one and on every core against the orjson floor, and its
peak memory on hostile and unusual input.

Speed: generates a month-like trail of RECORDS records (200,000 by default) in FILES
gzip log files (100) as CloudTrail writes them, mostly other calls (2% RunInstances,
1% CreateTags; 2% carry a policy document as a string, so escaped quotes, as real
trails do), records shuffled within each file. Then, each in its own process
(so that CPU time and peak memory are its own), measured in this one run:

- floor: gzip + ``orjson.loads`` of every file, one at a time, nothing kept: the
  least a reader that decodes every record can do, on one core;
- whatif --jobs 1: the whole simulation of the shipped policy (sources, stream,
  verdicts, SCP, JSON output to nowhere), one process;
- whatif --jobs N: the same on N processes (N: the cores this process may use).

Records per second by wall clock, and by CPU time: the machine may be shared, which
slows wall clock but hardly CPU time. For N processes, "CPU-bound" is the wall time
N idle cores would need for the CPU time measured: the larger of the main process's
CPU time (it merges and judges, in turn) and all processes' CPU time / N.
Targets: one core >= 0.9 x the floor; N cores >= 0.75 x N x the floor.

Memory (--memory; peak RSS of the main process and of the largest worker, default
limits, every core): a gzip of GZIP_MB (4) expanding to GBs, one ordinary log file
of BIG_MB (200) MB, and SMALL (100,000) small files (and 100 of them: memory must
not grow with their number); target < 300 MB each.

    python benchmarks/whatif.py [--records 200000] [--files 100] [--jobs N]
    python benchmarks/whatif.py --memory [--small 100000]

Exits 1 when a target is missed.
"""
import argparse
import gzip
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the working tree and its generator

ONE_CORE = 0.9  # x the floor's rate
PER_CORE = 0.75  # x N x the floor's rate
LIMIT = 300  # MB


POLICY = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Allow", "Action": ["s3:GetObject"], "Resource": "arn:aws:s3:::data/*",
    "Condition": {"StringEquals": {"aws:PrincipalTag/team": "data\\lake"}}}]}


def records_of(rng, count, month, base, files):
    import trail

    batch = []
    for n in range(count):
        seconds = base + rng.randrange(month // files)
        roll = rng.random()
        if roll < 0.02:
            who = trail.role("karpenter", "node") if rng.random() < 0.3 else trail.user(
                "user%d" % rng.randrange(40))
            tags = rng.choice([None, {"Code": "LOL"}, {"Code": "NOPE"}, {"Name": "x"}])
            iid = trail.instance_id()
            batch.append(trail.run_instances([iid], seconds, who=who, tags=tags))
            if tags is None and rng.random() < 0.5:
                batch.append(trail.create_tags([iid], {"Code": "GGG"}, seconds + 3))
        else:
            record = trail.other_event(seconds, n)
            if roll > 0.98:  # a policy document as a string: escaped quotes, as in IAM's
                record["requestParameters"]["policy"] = json.dumps(POLICY)
            batch.append(record)
    rng.shuffle(batch)
    return batch[:count]


def compact(records):
    return json.dumps({"Records": records}, separators=(",", ":")).encode()


def generate(folder, records, files):
    rng = random.Random(12)
    per_file = records // files
    month = 30 * 86400
    for number in range(files):
        batch = records_of(rng, per_file, month, number * month // files, files)
        name = "%03d_CloudTrail_us-east-1.json.gz" % number
        (Path(folder) / name).write_bytes(gzip.compress(compact(batch), compresslevel=6))
    return per_file * files


def floor(folder):
    import orjson

    count = 0
    for path in sorted(Path(folder).glob("*.json.gz")):
        count += len(orjson.loads(gzip.decompress(path.read_bytes()))["Records"])
    return count, None, 0


def simulate(folder, jobs):
    from broom.whatif import cli

    options = cli.WhatifOptions((str(folder),), None, {}, None, None, (), (), True, False,
                                None, None, None, False, jobs=jobs)
    skipped, stats = [], {}

    def echo(text="", err=False, nl=True):
        if err:
            skipped.append(text)
        elif text.lstrip().startswith('"summary"'):  # the end of the JSON document
            stats.update(json.loads("{" + text)["stats"])

    status = cli.run_whatif(options, echo)
    return stats.get("records"), status, len(skipped)


def child(mode, folder):
    """One measurement in this process; prints JSON."""
    if mode != "floor":
        from broom.whatif import evaluate

        evaluate.load_rule(REPO / "policies" / "ec2-tags.yml")  # c7n's import, not timed
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "floor":
        records, status, skipped = floor(folder)
    else:
        records, status, skipped = simulate(folder, int(mode.split("=")[1]))
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps({
        "records": records, "seconds": seconds, "cpu": cpu,
        "workers_cpu": workers.ru_utime + workers.ru_stime, "status": status,
        "skipped": skipped,
        "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KB
        "worker_peak_mb": workers.ru_maxrss / 1024}))


def measure(mode, folder):
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(folder)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cores():
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def speed(args):
    jobs = args.jobs or cores()
    with tempfile.TemporaryDirectory() as folder:
        count = generate(folder, args.records, args.files)
        size = sum(p.stat().st_size for p in Path(folder).iterdir()) / 1e6
        print("%d records in %d gzip files (%.1f MB), %d core(s)" % (
            count, args.files, size, jobs))
        base = measure("floor", folder)
        one = measure("jobs=1", folder)
        many = measure("jobs=%d" % jobs, folder)
    floor_cpu, floor_wall = count / base["cpu"], count / base["seconds"]
    rows = [("floor (orjson)", base, base["cpu"]), ("whatif --jobs 1", one, one["cpu"]),
            ("whatif --jobs %d" % jobs, many,
             max(many["cpu"], (many["cpu"] + many["workers_cpu"]) / jobs))]
    for name, r, bound in rows:
        assert r["records"] == count, (name, r)
        print("%-18s %8.0f records/s wall  %8.0f records/s CPU-bound  (CPU %.2fs main + "
              "%.2fs workers, wall %.2fs)  peak %3.0f MB" % (
                  name, count / r["seconds"], count / bound, r["cpu"], r["workers_cpu"],
                  r["seconds"], max(r["peak_mb"], r["worker_peak_mb"])))
    single_cpu = (count / one["cpu"]) / floor_cpu
    single_wall = (count / one["seconds"]) / floor_wall
    many_bound = (count / rows[2][2]) / (PER_CORE * jobs * floor_cpu)
    many_wall = (count / many["seconds"]) / (PER_CORE * jobs * floor_wall)
    print("one core: %.2fx the floor by CPU time, %.2fx by wall clock (target >= %.2fx)" % (
        single_cpu, single_wall, ONE_CORE))
    print("%d cores: %.2fx of %.2f x %d x the floor CPU-bound, %.2fx by wall clock "
          "(target >= 1.00x)" % (jobs, many_bound, PER_CORE, jobs, many_wall))
    return 0 if single_cpu >= ONE_CORE and many_bound >= 1 else 1


def bomb(folder, megabytes):
    """A gzip of about ``megabytes`` MB that expands a thousandfold: a log file's
    start and first record, then members of nothing but spaces (gzip inflates
    members one after another; JSON allows any whitespace between records), then its
    end: a valid log file of GBs."""
    member = gzip.compress(b" " * 64_000_000, compresslevel=9)
    count = max(1, megabytes * 1_000_000 // len(member))
    first = compact(records_of(random.Random(1), 1, 60, 0, 1))[:-2]
    head = gzip.compress(first + b",")
    tail = gzip.compress(compact(records_of(random.Random(2), 1, 60, 0, 1))[12:])
    with open(Path(folder) / "bomb.json.gz", "wb") as f:
        f.write(head)
        for _ in range(count):
            f.write(member)
        f.write(tail)
    return count * 64_000_000


def big_file(folder, megabytes):
    """One ordinary log file of about ``megabytes`` MB (uncompressed .json)."""
    rng = random.Random(3)
    chunk = compact(records_of(rng, 2000, 86400, 0, 1))[len(b'{"Records":['):-2]
    repeats = max(1, megabytes * 1_000_000 // len(chunk))
    with open(Path(folder) / "big.json", "wb") as f:
        f.write(b'{"Records":[')
        for number in range(repeats):
            f.write((b"," if number else b"") + chunk)
        f.write(b"]}")
    return repeats * 2000


def small_files(folder, count):
    rng = random.Random(5)
    per_folder = 1000
    for number in range(count):
        sub = Path(folder) / ("%03d" % (number // per_folder))
        if number % per_folder == 0:
            sub.mkdir()
        records = records_of(rng, 3, 30, number * 25, 1)
        (sub / ("%06d_CloudTrail.json.gz" % number)).write_bytes(
            zlib.compress(compact(records), 1, 31))
    return count * 3


def memory(args):
    failed = False
    cases = [("gzip bomb", bomb, args.gzip_mb), ("one big file", big_file, args.big_mb),
             ("100 small files", small_files, 100),
             ("small files", small_files, args.small)]
    for name, make, size in cases:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            expected = make(folder, size)
            on_disk = sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())
            made = time.perf_counter() - started
            r = measure("jobs=%d" % (args.jobs or cores()), folder)
        peak = max(r["peak_mb"], r["worker_peak_mb"])
        failed = failed or peak >= LIMIT
        print("%-15s %7.1f MB on disk (%s, made in %.0fs): exit %d, %s record(s) read, "
              "%d skipped, %.1fs; peak RSS %3.0f MB main, %3.0f MB largest worker" % (
                  name, on_disk / 1e6, ("expands to %.1f GB" % (expected / 1e9)) if (
                      make is bomb) else "%d records" % expected, made, r["status"],
                  r["records"], r["skipped"], r["seconds"], r["peak_mb"],
                  r["worker_peak_mb"]))
    print("target: peak RSS < %d MB in every process" % LIMIT)
    return 1 if failed else 0


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--jobs", type=int, default=None, help="default: every core")
    parser.add_argument("--memory", action="store_true", help="the memory cases instead")
    parser.add_argument("--gzip-mb", type=int, default=4)
    parser.add_argument("--big-mb", type=int, default=200)
    parser.add_argument("--small", type=int, default=100_000)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    return memory(args) if args.memory else speed(args)


if __name__ == "__main__":
    sys.exit(main())
