#!/usr/bin/env python3
"""Benchmark: wall time of 1,000 trivial pytest tests on 4 local ciq workers, persistent mode
(the default with the plugin installed) against batch mode (auto batches, and batch sizes 1 and 20), against one plain
pytest process; then 20 tests sharing a slow module-scoped fixture on one worker.

Prints one line per mode and the ratios to plain pytest, all measured in this one run (the
machines are shared and noisy: compare ratios, not seconds across runs). Needs pytest and the
ciq pytest plugin (pip install pytest ./integrations/pytest) and builds ciq in release mode.

    python3 scripts/bench_pytest.py [--tests 1000] [--workers 4] [--repeat 3]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from benchkit import ciq_binary


def write_suite(directory, tests):
    per_file = 50
    for start in range(0, tests, per_file):
        with open(os.path.join(directory, f"test_bench_{start // per_file:03}.py"), "w") as f:
            for i in range(start, min(start + per_file, tests)):
                f.write(f"def test_trivial_{i}():\n    assert {i} + 1 == {i + 1}\n\n")
    with open(os.path.join(directory, "pytest.ini"), "w") as f:
        f.write("[pytest]\n")


def write_fixture_suite(directory, tests=20, setup_seconds=0.2):
    """`tests` tests sharing one module-scoped fixture that takes `setup_seconds` to set up."""
    with open(os.path.join(directory, "test_fixture.py"), "w") as f:
        f.write("import time\nimport pytest\n\n\n@pytest.fixture(scope='module')\n")
        f.write(f"def shared():\n    time.sleep({setup_seconds})\n    return 1\n\n")
        for i in range(tests):
            f.write(f"\ndef test_uses_fixture_{i}(shared):\n    assert shared == 1\n")
    with open(os.path.join(directory, "pytest.ini"), "w") as f:
        f.write("[pytest]\n")


def timed(command, cwd):
    started = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        sys.exit(f"benchmark command failed ({done.returncode}): {' '.join(command)}\n{done.stdout[-3000:]}")
    return elapsed, done.stdout


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tests", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="runs per mode; the best is kept")
    args = parser.parse_args()

    ciq = ciq_binary(None)
    with tempfile.TemporaryDirectory() as suite:
        write_suite(suite, args.tests)
        jobs = ["-j", str(args.workers), "--max-requeues", "0"]
        modes = [
            ("plain pytest (1 process)", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]),
            ("ciq persistent (default)", [ciq, "run", *jobs, "pytest"]),
            ("ciq persistent size 1", [ciq, "run", *jobs, "--batch-size", "1", "pytest", "--persistent"]),
            ("ciq batch auto", [ciq, "run", *jobs, "pytest", "--batch"]),
            ("ciq batch size 20", [ciq, "run", *jobs, "--batch-size", "20", "pytest", "--batch"]),
            ("ciq batch size 1", [ciq, "run", *jobs, "--batch-size", "1", "pytest", "--batch"]),
        ]
        best = {}
        for name, command in modes:
            runs = [timed(command, suite) for _ in range(args.repeat)]
            best[name] = min(elapsed for elapsed, _ in runs)
            out = runs[0][1]
            if name.startswith("ciq") and f"{args.tests} tests: {args.tests} passed" not in out:
                sys.exit(f"{name}: unexpected summary\n{out[-2000:]}")
        plain = best[modes[0][0]]
        print(f"pytest benchmark: {args.tests} trivial tests, {args.workers} ciq workers, best of {args.repeat}")
        for name, _ in modes:
            print(f"  {name:<26} {best[name]:7.2f} s   {best[name] / plain:6.2f} x plain pytest")
        persistent = best["ciq persistent (default)"]
        print_fixture_suite(ciq, args.repeat)
        print(
            f"  batch mode with auto batches takes {best['ciq batch auto'] / persistent:.2f}x"
            f" persistent mode's time (batch size 1: {best['ciq batch size 1'] / persistent:.1f}x,"
            f" batch size 20: {best['ciq batch size 20'] / persistent:.1f}x)"
        )


def print_fixture_suite(ciq, repeat):
    with tempfile.TemporaryDirectory() as suite:
        write_fixture_suite(suite)
        modes = [
            ("plain pytest", [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]),
            ("ciq persistent -j 1", [ciq, "run", "-j", "1", "pytest", "--persistent"]),
            ("ciq batch -j 1", [ciq, "run", "-j", "1", "pytest", "--batch"]),
            ("ciq persistent -j 1, size 1", [ciq, "run", "-j", "1", "--batch-size", "1", "pytest", "--persistent"]),
        ]
        best = {name: min(timed(command, suite)[0] for _ in range(repeat)) for name, command in modes}
        plain = best["plain pytest"]
        print("20 tests sharing a 0.2 s module-scoped fixture:")
        for name, _ in modes:
            print(f"  {name:<30} {best[name]:7.2f} s   {best[name] / plain:6.2f} x plain pytest")


if __name__ == "__main__":
    main()
