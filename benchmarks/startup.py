"""Start-up cost of Broom's autoloader for every Python process of an environment.

Builds two bare virtualenvs from this interpreter, one plain and one holding exactly
what ``pip install`` puts at the root of site-packages for Broom (``c7n_broom.pth`` and
``_c7n_broom_autoload.py``), then times ``python -c pass`` in both, interleaved, and
compares medians. Exits 1 when the installed one is more than LIMIT slower.

    python benchmarks/startup.py [--runs 100] [--limit 1.10]
"""
import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
FILES = ("c7n_broom.pth", "_c7n_broom_autoload.py")


def make_venv(path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    python = path / "bin" / "python"
    site = subprocess.run([str(python), "-c", "import sysconfig; "
                           "print(sysconfig.get_paths()['purelib'])"],
                          check=True, capture_output=True, text=True).stdout.strip()
    return python, Path(site)


def timed(python):
    start = time.perf_counter()
    subprocess.run([str(python), "-c", "pass"], check=True)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--limit", type=float, default=1.10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        plain, _ = make_venv(Path(tmp) / "plain")
        broom, site = make_venv(Path(tmp) / "broom")
        for name in FILES:
            shutil.copy(REPO / name, site / name)
        # pip writes .pyc files at install time; do the same.
        subprocess.run([str(broom), "-m", "compileall", "-q", str(site)], check=True)
        check = subprocess.run([str(broom), "-c", "import sys; print('_c7n_broom_autoload' "
                                "in sys.modules)"], capture_output=True, text=True)
        assert check.stdout.strip() == "True", "the .pth file was not processed"
        for python in (plain, broom):  # warm the file cache and write .pyc files
            for _ in range(5):
                timed(python)
        samples = {plain: [], broom: []}
        for _ in range(args.runs):
            for python in (plain, broom):
                samples[python].append(timed(python))
    base, with_broom = (statistics.median(samples[p]) for p in (plain, broom))
    ratio = with_broom / base
    print("python -c pass, median of %d: plain %.2f ms, with Broom %.2f ms, ratio %.3f "
          "(limit %.2f)" % (args.runs, base * 1000, with_broom * 1000, ratio, args.limit))
    return 0 if ratio <= args.limit else 1


if __name__ == "__main__":
    sys.exit(main())
