#!/usr/bin/env python3
"""Benchmark: a build-wide resource group against running the group's tests apart.

Against a redis-server of its own, WORKERS `ciq run` workers on a synthetic suite of TESTS
tests of MS milliseconds each (sleeps: the machine's cores are not the bound), one in ten in
group `db`, which may run one test at a time across the build (every tenth test of the list):

1. groups: one build of every test with `--group db=1 --group-map FILE`;
2. apart: what a build without groups has to do to keep the group's tests from overlapping:
   the other tests on every worker, then the group's tests on one worker.

Prints both wall times (workers' start to the last worker's exit, reports included), their
ratio, the lower bound of each (max(the group's tests one after the other, every test's time
/ workers), and for apart the two parts' bounds added), and the most group tests that ran at
once in the groups build, from the tests' own log (it must be 1).

    python3 scripts/bench_groups.py [--ciq PATH] [--workers 8] [--tests 160] [--ms 200]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from benchkit import Redis, ciq_binary

# Logs `<id> <start ns> <end ns>` of each test, which sleeps $BENCH_SLEEP seconds.
TEST_COMMAND = """#!/bin/sh
for t in "$@"; do
  start=$(date +%s%N)
  sleep "$BENCH_SLEEP"
  end=$(date +%s%N)
  echo "$t $start $end" >> "$BENCH_LOG"
done
"""


def build(ciq, redis, name, tests, workers, command, scratch, sleep, extra=()):
    """Runs build `name` of `tests` on `workers` workers to its end; returns its wall time."""
    url = f"redis://127.0.0.1:{redis.port}/0"
    common = ["--queue", url, "--build", name]
    tests_file = os.path.join(scratch, f"{name}.txt")
    with open(tests_file, "w") as f:
        f.write("\n".join(tests) + "\n")
    env = {**os.environ, "BENCH_LOG": os.path.join(scratch, f"{name}.log"),
           "BENCH_SLEEP": sleep}
    launched = time.time()
    report = subprocess.Popen([ciq, "report", *common], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([ciq, "run", *common, "--worker", f"w{n}", "--tests", tests_file,
                               *extra, "--", command],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
             for n in range(workers)]
    codes = [p.wait() for p in procs] + [report.wait()]
    if any(codes):
        sys.exit(f"build {name}: exit codes {codes}")
    return time.time() - launched


def most_at_once(log, group):
    events = []
    with open(log) as f:
        for line in f:
            test, start, end = line.split()
            if test in group:
                events += [(int(start), 1), (int(end), -1)]
    running = most = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        most = max(most, running)
    return most


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ciq", help="a ciq binary (default: build this checkout)")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--tests", type=int, default=160)
    parser.add_argument("--ms", type=int, default=200)
    args = parser.parse_args()
    ciq = ciq_binary(args.ciq)
    scratch = tempfile.mkdtemp(prefix="ciq-bench-groups-")
    command = os.path.join(scratch, "sleep-test")
    with open(command, "w") as f:
        f.write(TEST_COMMAND)
    os.chmod(command, 0o755)
    tests = [f"t{i:04}" for i in range(args.tests)]
    group = {t for i, t in enumerate(tests) if i % 10 == 0}
    others = [t for t in tests if t not in group]
    group_map = os.path.join(scratch, "groups.tsv")
    with open(group_map, "w") as f:
        f.write("".join(f"{t}\tdb\n" for t in sorted(group)))
    sleep = f"{args.ms / 1000:.3f}"
    d = args.ms / 1000
    redis = Redis(scratch)
    try:
        grouped = build(ciq, redis, "groups", tests, args.workers, command, scratch, sleep,
                        ["--group", "db=1", "--group-map", group_map])
        first = build(ciq, redis, "others", others, args.workers, command, scratch, sleep)
        second = build(ciq, redis, "group-alone", sorted(group), 1, command, scratch, sleep)
    finally:
        redis.stop()
    apart = first + second
    bound_grouped = max(len(group) * d, len(tests) * d / args.workers)
    bound_apart = len(others) * d / args.workers + len(group) * d
    overlap = most_at_once(os.path.join(scratch, "groups.log"), group)
    print(f"{len(tests)} tests of {args.ms} ms, {len(group)} in group db=1, "
          f"{args.workers} workers, {ciq}")
    print("            | wall s | lower bound s")
    print(f"groups      | {grouped:6.2f} | {bound_grouped:6.2f}")
    print(f"apart       | {apart:6.2f} | {bound_apart:6.2f}  ({first:.2f} + {second:.2f})")
    print(f"apart / groups: {apart / grouped:.2f}x (bounds: {bound_apart / bound_grouped:.2f}x)")
    print(f"most group tests at once with groups: {overlap}")
    if overlap != 1:
        sys.exit("the group ran more than one test at once")


if __name__ == "__main__":
    main()
