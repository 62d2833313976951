#!/usr/bin/env python3
"""Benchmark: how close a build ends to the best any scheduler could do.

Runs two suite shapes on 4 workers, locally (`-j 4`) and through Redis (4 `ciq run` processes
and a report against a redis-server of its own), each twice: without history, and with the
durations of the first run (`--timings` from the local run's `--timings-out`; the namespace's
store in Redis). Prints the makespan (from the first test's start to the last test's end, from
the tests' own log; the wall time of the whole build is printed beside it) over the lower bound
max(longest test, sum of test durations / workers), from the durations the tests measured.

    python3 scripts/bench_schedule.py [--ciq PATH] [--workers 4] [--seed 1] [--batch-size 1|auto]

The test command takes any number of ids and reports each test's time in JUnit XML, as a test
framework does, so `--batch-size auto` applies: a batch starts one process for several short
tests, and history holds each test's own time.

Shapes (long tests listed last, the order that hurts a scheduler that does not know them):
  skewed: 60 tests of 0.05-0.4 s, then 3 of 2-4 s (the issue's example);
  short:  200 tests of 10-30 ms, then 4 of 1.5 s.
"""
import argparse
import os
import random
import subprocess
import sys
import tempfile
import time

from benchkit import Redis, ciq_binary

# Sleeps the milliseconds after the id's `@`, logs `<id> <start ns> <end ns>`, and reports each
# test's time in JUnit XML, as a test framework would. A test's time runs from the end of the
# one before it in the batch: the shell's own bookkeeping between tests (a few forks, some
# milliseconds, far more than a test framework's) counts as test time, not as a gap the bound
# leaves out; what is left between the bound and the makespan is ciq's (a batch's process
# start, acknowledgements, reservations, the end of the build).
TEST_COMMAND = """#!/bin/sh
cases=""
prev=""
for t in "$@"; do
  start=${prev:-$(date +%s%N)}
  ms=${t##*@}
  sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
  end=$(date +%s%N)
  echo "$t $start $end" >> "$BENCH_LOG"
  took=$(( (end - start) / 1000000 ))
  cases="$cases<testcase name='$t' time='$((took / 1000)).$(printf %03d $((took % 1000)))'/>"
  prev=$end
done
echo "<testsuite>$cases</testsuite>" > "$CIQ_JUNIT_PATH"
"""


def shapes(seed):
    rng = random.Random(seed)
    skewed = [f"s{i:02}@{rng.randint(50, 400)}" for i in range(60)]
    skewed += [f"long{i}@{ms}" for i, ms in enumerate([2000, 3000, 4000])]
    short = [f"t{i:03}@{rng.randint(10, 30)}" for i in range(200)]
    short += [f"long{i}@1500" for i in range(4)]
    return {"skewed": skewed, "short": short}


def read_log(path):
    runs = []
    with open(path) as log:
        for line in log:
            test, start, end = line.split()
            runs.append((test, int(start) / 1e9, int(end) / 1e9))
    return runs


def figures(log, workers):
    runs = read_log(log)
    durations = [end - start for _, start, end in runs]
    bound = max(max(durations), sum(durations) / workers)
    makespan = max(end for _, _, end in runs) - min(start for _, start, _ in runs)
    return makespan, bound, len(runs)


def run_local(ciq, tests_file, command, workers, log, extra):
    started = time.perf_counter()
    subprocess.run([ciq, "run", "-j", str(workers), "--tests", tests_file, *extra, "--", command],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   env={**os.environ, "BENCH_LOG": log})
    return time.perf_counter() - started


def run_redis(ciq, redis, tests_file, command, workers, log, build, namespace, extra):
    url = f"redis://127.0.0.1:{redis.port}/0"
    common = ["--queue", url, "--build", build, "--namespace", namespace]
    env = {**os.environ, "BENCH_LOG": log}
    started = time.perf_counter()
    report = subprocess.Popen([ciq, "report", *common], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    procs = [subprocess.Popen([ciq, "run", *common, "--worker", f"w{n}", "--tests", tests_file,
                               *extra, "--", command],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
             for n in range(workers)]
    codes = [p.wait() for p in procs] + [report.wait()]
    if any(codes):
        sys.exit(f"build {build} failed: exit codes {codes}")
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ciq", help="a ciq binary (default: build this checkout)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--batch-size", default="1")
    args = parser.parse_args()
    ciq = ciq_binary(args.ciq)
    scratch = tempfile.mkdtemp(prefix="ciq-bench-schedule-")
    command = os.path.join(scratch, "sleep-test")
    with open(command, "w") as f:
        f.write(TEST_COMMAND)
    os.chmod(command, 0o755)
    redis = Redis(scratch)
    print(f"{args.workers} workers, batch size {args.batch_size}, {ciq}")
    batch = ["--batch-size", args.batch_size]
    print("shape  | mode  | history | tests | makespan s | bound s | makespan/bound | wall s")
    try:
        for name, tests in shapes(args.seed).items():
            tests_file = os.path.join(scratch, f"{name}.txt")
            with open(tests_file, "w") as f:
                f.write("\n".join(tests) + "\n")
            timings = os.path.join(scratch, f"{name}.timings")
            for mode in ["local", "redis"]:
                for history in ["none", "1 run"]:
                    log = os.path.join(scratch, f"{name}-{mode}-{history[0]}.log")
                    if mode == "local":
                        extra = (["--timings-out", timings] if history == "none"
                                 else ["--timings", timings])
                        wall = run_local(ciq, tests_file, command, args.workers, log,
                                         batch + extra)
                    else:
                        wall = run_redis(ciq, redis, tests_file, command, args.workers, log,
                                         f"{name}-{history[0]}", name, batch)
                    makespan, bound, ran = figures(log, args.workers)
                    print(f"{name:6} | {mode:5} | {history:7} | {ran:5} | {makespan:10.2f} | "
                          f"{bound:7.2f} | {makespan / bound:14.3f} | {wall:6.2f}")
    finally:
        redis.stop()


if __name__ == "__main__":
    main()
