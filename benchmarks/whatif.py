"""``broom whatif`` speed and memory, against a plain ``json.load`` of the same files.

Generates a month-like trail: RECORDS records (200,000 by default) in FILES gzip log
files (100), mostly other calls as in a real trail (2% RunInstances, 1% CreateTags),
records shuffled within each file, launches spread over a month. Then, each in its
own process so that peak memory (ru_maxrss) is its own, measured in this one run:

- floor: gzip + ``json.load`` of every file, one at a time, nothing kept;
- whatif (json): the whole simulation of the shipped policy (sources, stream,
  verdicts, SCP, JSON output to nowhere) with the standard library parser;
- whatif (orjson): the same with orjson, as ``broom whatif`` runs (``sources.loads``).

Prints records per CPU second (one core: the simulation is single-threaded; wall
time is shown too, and suffers when the machine is shared), the ratio to the floor's
CPU time and peak RSS; exits 1 when the simulation reads fewer than TARGET records
per CPU second or peaks above LIMIT MB.

    python benchmarks/whatif.py [--records 200000] [--files 100]
"""
import argparse
import gzip
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO), str(REPO / "tests")]  # the working tree and its generator

TARGET = 50_000  # records per second
LIMIT = 300  # MB


def generate(folder, records, files):
    import trail

    rng = random.Random(12)
    per_file = records // files
    month = 30 * 86400
    count = 0
    for number in range(files):
        base = number * month // files
        batch = []
        for n in range(per_file):
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
                batch.append(trail.other_event(seconds, count + n))
        rng.shuffle(batch)
        batch = batch[:per_file]
        count += len(batch)
        name = "%03d_CloudTrail_us-east-1.json.gz" % number
        (Path(folder) / name).write_bytes(gzip.compress(json.dumps({"Records": batch}).encode(),
                                                        compresslevel=6))
    return count


def floor(folder):
    count = 0
    for path in sorted(Path(folder).glob("*.json.gz")):
        with gzip.open(path) as f:
            count += len(json.load(f)["Records"])
    return count


def simulate(folder, parser):
    from broom.whatif import evaluate, output, sources, stream

    if parser == "json":
        sources.loads = json.loads
    rule = evaluate.load_rule(REPO / "policies" / "ec2-tags.yml")
    judge = evaluate.Judge(rule)
    out = output.JsonOutput(lambda text: None)
    files = sources.read_sources([str(folder)])
    skipped, stats = stream.simulate(files, stream.Selection(), rule.grace,
                                     lambda launch: out.launch(judge(launch)))
    out.finish(stats, skipped)
    assert not skipped
    return stats["records"], out.tally.launches


def child(mode, folder):
    """Run one measurement in this process; print JSON: records, seconds, peak MB."""
    if mode != "floor":
        from broom.whatif import evaluate

        evaluate.load_rule(REPO / "policies" / "ec2-tags.yml")  # c7n's import, not timed
    start, cpu = time.perf_counter(), time.process_time()
    if mode == "floor":
        records, launches = floor(folder), None
    else:
        records, launches = simulate(folder, mode.split(":")[1])
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    print(json.dumps({"records": records, "seconds": seconds, "cpu": cpu, "peak_mb": peak,
                      "launches": launches}))


def measure(mode, folder):
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(folder)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--child", nargs=2, metavar=("MODE", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(*args.child)
    modes = ["floor", "whatif:json", "whatif:orjson"]
    with tempfile.TemporaryDirectory() as folder:
        count = generate(folder, args.records, args.files)
        size = sum(p.stat().st_size for p in Path(folder).iterdir()) / 1e6
        print("%d records in %d gzip files (%.1f MB)" % (count, args.files, size))
        results = {mode: measure(mode, folder) for mode in modes}
    base = results["floor"]
    failed = False
    for mode, r in results.items():
        rate = r["records"] / r["cpu"]
        print("%-14s %8.0f records/s of CPU (%6.0f wall)  %5.2fx the floor's CPU time  "
              "peak %4.0f MB%s" % (
                  mode, rate, r["records"] / r["seconds"], r["cpu"] / base["cpu"],
                  r["peak_mb"], "" if r["launches"] is None else
                  "  (%d launches)" % r["launches"]))
        if mode == "whatif:orjson":  # what broom whatif runs
            failed = rate < TARGET or r["peak_mb"] > LIMIT
    print("target for whatif: >= %d records per CPU second (one core), < %d MB peak" % (
        TARGET, LIMIT))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
