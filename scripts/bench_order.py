#!/usr/bin/env python3
"""Benchmark: how soon a red build goes red, and what a green one pays, failed-first against
longest-first.

Against a redis-server of its own, 4 `ciq run` workers and a report per build, on a synthetic
suite (200 tests of 20-200 ms and 4 of 1.5 s, listed long ones last, as in bench_schedule.py):

1. History: two green builds (their durations reach the namespace's store), then a build in
   which one short test breaks (the report records it in the namespace's history).
2. Red: the same test broken again, `--max-failures 1`, once ordered longest first and once
   failed first: the time from the workers' start to the end of the broken test's first run
   (to the first failure), and to the last worker's exit (the red verdict).
3. Green: nothing broken, longest first and failed first in turn, ROUNDS times each: the
   makespan (first test's start to last test's end, from the tests' own log) over the lower
   bound max(longest test, sum of durations / workers); the medians side by side.

    python3 scripts/bench_order.py [--ciq PATH] [--workers 4] [--rounds 3] [--seed 1]
"""
import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time

from benchkit import Redis, ciq_binary

# Sleeps the milliseconds after the id's `@`, logs `<id> <start ns> <end ns>`, and fails when
# the id is in $BENCH_BROKEN.
TEST_COMMAND = """#!/bin/sh
start=$(date +%s%N)
ms=${1##*@}
sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
end=$(date +%s%N)
echo "$1 $start $end" >> "$BENCH_LOG"
case " $BENCH_BROKEN " in *" $1 "*) exit 1 ;; esac
"""


def suite(seed):
    rng = random.Random(seed)
    tests = [f"t{i:03}@{rng.randint(20, 200)}" for i in range(200)]
    tests += [f"long{i}@1500" for i in range(4)]
    return tests


def read_log(path):
    runs = []
    with open(path) as log:
        for line in log:
            test, start, end = line.split()
            runs.append((test, int(start) / 1e9, int(end) / 1e9))
    return runs


def build(ciq, redis, tests_file, command, workers, scratch, name, order, broken="", extra=()):
    """Runs build `name` to its end with its report; returns (launch time, wall s, log path)."""
    url = f"redis://127.0.0.1:{redis.port}/0"
    common = ["--queue", url, "--build", name, "--namespace", "bench"]
    log = os.path.join(scratch, f"{name}.log")
    env = {**os.environ, "BENCH_LOG": log, "BENCH_BROKEN": broken}
    report = subprocess.Popen([ciq, "report", *common], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    launched = time.time()
    procs = [subprocess.Popen([ciq, "run", *common, "--worker", f"w{n}", "--tests", tests_file,
                               "--order", order, *extra, "--", command],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
             for n in range(workers)]
    codes = [p.wait() for p in procs]
    wall = time.time() - launched
    report.wait()
    want = 1 if broken else 0
    if any(code != want for code in codes):
        sys.exit(f"build {name}: exit codes {codes}, expected {want}")
    return launched, wall, log


def makespan_over_bound(log, workers):
    runs = read_log(log)
    durations = [end - start for _, start, end in runs]
    bound = max(max(durations), sum(durations) / workers)
    makespan = max(end for _, _, end in runs) - min(start for _, start, _ in runs)
    return makespan, makespan / bound


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ciq", help="a ciq binary (default: build this checkout)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    ciq = ciq_binary(args.ciq)
    scratch = tempfile.mkdtemp(prefix="ciq-bench-order-")
    command = os.path.join(scratch, "sleep-test")
    with open(command, "w") as f:
        f.write(TEST_COMMAND)
    os.chmod(command, 0o755)
    tests = suite(args.seed)
    tests_file = os.path.join(scratch, "tests.txt")
    with open(tests_file, "w") as f:
        f.write("\n".join(tests) + "\n")
    # A short test: longest first runs it near the end.
    broken = min(tests[:200], key=lambda t: int(t.split("@")[1]))
    redis = Redis(scratch)
    print(f"{len(tests)} tests, {args.workers} workers, batch size 1, {args.rounds} green "
          f"rounds per order, broken test {broken}, {ciq}")
    try:
        for n in range(2):
            build(ciq, redis, tests_file, command, args.workers, scratch, f"history-{n}",
                  "longest-first")
        build(ciq, redis, tests_file, command, args.workers, scratch, "history-red",
              "longest-first", broken=broken)

        red = {}
        for order in ["longest-first", "failed-first"]:
            launched, wall, log = build(ciq, redis, tests_file, command, args.workers, scratch,
                                        f"red-{order}", order, broken=broken,
                                        extra=["--max-failures", "1"])
            first = min(end for test, _, end in read_log(log) if test == broken)
            red[order] = (first - launched, wall, len(read_log(log)))

        green = {"longest-first": [], "failed-first": []}
        for n in range(args.rounds):
            for order in green:
                _, wall, log = build(ciq, redis, tests_file, command, args.workers, scratch,
                                     f"green-{order}-{n}", order)
                green[order].append((*makespan_over_bound(log, args.workers), wall))
    finally:
        redis.stop()

    print()
    print("red build (--max-failures 1) | first failure s | red verdict s | tests run")
    for order, (first, wall, ran) in red.items():
        print(f"{order:28} | {first:15.2f} | {wall:13.2f} | {ran:9}")
    longest, failed = red["longest-first"], red["failed-first"]
    print(f"longest-first / failed-first | {longest[0] / failed[0]:14.1f}x"
          f" | {longest[1] / failed[1]:12.1f}x |")
    print()
    print("green build (median of rounds) | makespan s | makespan/bound | wall s")
    medians = {}
    for order, rounds in green.items():
        medians[order] = [statistics.median(r[i] for r in rounds) for i in range(3)]
        makespan, ratio, wall = medians[order]
        print(f"{order:30} | {makespan:10.2f} | {ratio:14.3f} | {wall:6.2f}")
    slower = medians["failed-first"][0] / medians["longest-first"][0] - 1
    bound = medians["failed-first"][1] / medians["longest-first"][1] - 1
    print(f"failed-first vs longest-first  | {slower * 100:+9.1f}% | {bound * 100:+13.1f}% |")


if __name__ == "__main__":
    main()
