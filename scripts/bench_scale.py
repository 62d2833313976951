#!/usr/bin/env python3
"""Benchmark: memory and time of ciq at a million tests.

Starts its own redis-server on a free port, writes a list of N no-op test ids (1,000,000 by
default), and runs W workers (4) with batch size B (100) on it, each running `true` per batch,
then a second `ciq report` on the finished build. Prints each process's peak RSS (from wait4)
and wall time. The target: at most 150 MB for a worker or the report at 1M tests, whatever the
suite's size, because summaries hold counts and at most a few hundred names, never every result.

Then the population of the queue, for 100,000 and 1,000,000 ids: a leader and a follower
(auto batches, a command that reports each test's time in JUnit) on a fresh namespace, then again with the first build's
durations in the namespace's store; prints how long the leader took from its
election to the committed queue (its own `queued N tests in X s` line), how long from the
commit until the first test ran (the test command stamps its first run), and both processes'
peak RSS.

    python3 scripts/bench_scale.py [--ciq PATH] [--tests 1000000] [--workers 4] [--batch-size 100]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from benchkit import Redis, ciq_binary


def wait_rss(proc):
    """Waits for `proc`; returns (exit code, peak RSS in MB)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


# Stamps its first run, and reports each test's time (1 ms) in JUnit XML, so the first build
# leaves every test's own time in the store for the second.
FIRST_RUN = """#!/bin/sh
[ -e "$FIRST_RUN" ] || date +%s%N > "$FIRST_RUN"
{ printf '<testsuite>'; for t in "$@"; do printf '<testcase name="%s" time="0.001"/>' "$t"; done
  printf '</testsuite>'; } > "$CIQ_JUNIT_PATH"
"""


def population(ciq, url, scratch, size, round_):
    """A leader and a follower over `size` ids: (staging s, commit to first test s, RSS MB)."""
    tests = os.path.join(scratch, f"population-{size}.txt")
    with open(tests, "w") as f:
        for i in range(size):
            f.write(f"suite/test_{i:07}\n")
    command = os.path.join(scratch, "first-run")
    with open(command, "w") as f:
        f.write(FIRST_RUN)
    os.chmod(command, 0o755)
    marker = os.path.join(scratch, f"first-{size}-{round_}")
    env = {**os.environ, "FIRST_RUN": marker}
    common = ["--queue", url, "--build", f"population-{size}-{round_}", "--namespace", f"n{size}",
              "--heartbeat-timeout", "120s"]
    logs = [os.path.join(scratch, f"population-{size}-{round_}-{role}.log") for role in ("leader", "follower")]
    procs = []
    for role, log in zip(("leader", "follower"), logs):
        procs.append(subprocess.Popen(
            [ciq, "run", *common, "--worker", role, "--tests", tests, "--batch-size", "auto", "--", command],
            stdout=subprocess.DEVNULL, stderr=open(log, "w"), env=env))
        time.sleep(0.2)
    committed = None
    staging = None
    while committed is None:
        with open(logs[0]) as log:
            for line in log:
                if " queued " in line and " tests in " in line:
                    committed = time.time_ns()
                    staging = float(line.rsplit(" in ", 1)[1].rstrip("s\n"))
        if procs[0].poll() is not None and committed is None:
            sys.exit(f"the leader ended before committing: see {logs[0]}")
        time.sleep(0.005)
    while not os.path.exists(marker):
        time.sleep(0.005)
    time.sleep(0.05)
    with open(marker) as f:
        first = int(f.read().strip())
    rss = []
    for proc, log in zip(procs, logs):
        code, peak = wait_rss(proc)
        if code != 0:
            sys.exit(f"a population worker failed: see {log}")
        rss.append(peak)
    return staging, max(0, first - committed) / 1e9, rss


def print_population(ciq, url, scratch):
    print("population | history | leader: election to committed queue s | commit to first test s | leader RSS MB | follower RSS MB")
    for size in (100_000, 1_000_000):
        for round_, history in enumerate(["none", "1 build"]):
            staging, first, (leader, follower) = population(ciq, url, scratch, size, round_)
            print(f"{size:10} | {history:7} | {staging:38.2f} | {first:22.2f} | {leader:13.0f} | {follower:15.0f}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ciq", help="a ciq binary (default: build this checkout)")
    parser.add_argument("--tests", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--population-only", action="store_true",
                        help="skip the million-test build; measure only the population")
    args = parser.parse_args()

    ciq = ciq_binary(args.ciq)
    scratch = tempfile.mkdtemp(prefix="ciq-bench-scale-")
    redis = Redis(scratch)
    try:
        url = redis.url
        tests = os.path.join(scratch, "tests.txt")
        with open(tests, "w") as f:
            for i in range(args.tests):
                f.write(f"suite/test_{i:07}\n")
        if args.population_only:
            print_population(ciq, url, scratch)
            return
        common = ["--queue", url, "--build", "scale"]
        started = time.perf_counter()
        workers = []
        for n in range(args.workers):
            log = open(os.path.join(scratch, f"w{n}.log"), "w")
            workers.append(subprocess.Popen(
                [ciq, "run", *common, "--worker", f"w{n}", "--tests", tests, "--heartbeat-timeout", "120s",
                 "--batch-size", str(args.batch_size), "--", "true"],
                stdout=log, stderr=log,
            ))
        for n, worker in enumerate(workers):
            code, rss = wait_rss(worker)
            print(f"worker w{n}: exit {code}, peak RSS {rss:.0f} MB")
            if code != 0:
                sys.exit(f"worker w{n} failed: see {scratch}/w{n}.log")
        build_time = time.perf_counter() - started
        started = time.perf_counter()
        report = subprocess.Popen([ciq, "report", *common], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        summary = report.stdout.read().decode()
        code, rss = wait_rss(report)
        report_time = time.perf_counter() - started
        print(f"report: exit {code}, peak RSS {rss:.0f} MB, {report_time:.2f} s")
        print(f"build: {args.tests} tests on {args.workers} workers at batch size {args.batch_size} in {build_time:.1f} s")
        print(summary.strip().splitlines()[-2])
        print_population(ciq, url, scratch)
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
