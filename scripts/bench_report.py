#!/usr/bin/env python3
"""Benchmark: how long `ciq report` takes to give its verdict once the build is over.

Runs two builds against a redis-server of its own, with a heartbeat timeout of 60 s (the report
started before the workers, as in CI), and prints how long the report ran past the moment it
could know its verdict:

  dead worker: `w1` leads and holds a test gated on a file while `w2` runs the other tests, then
    `w2` is SIGKILLed while it holds nothing (its heartbeat still fresh) and the gate opens. The
    figure is from the last outcome (the results hash complete) to the report's exit; no
    output needs the dead worker's data, so it should be well under 2 s. Before, the report
    waited for the dead worker's heartbeat to lapse: up to the 60 s timeout.
  workers left: the only worker is stopped by `--max-duration` with tests still queued, and says
    it left. The figure is from the worker's exit to the report's (exit 3, tests not run).
    Before, the report waited a whole heartbeat timeout.

    python3 scripts/bench_report.py [--ciq PATH] [--timeout 60s]

Without --ciq it builds this checkout in release mode. Each figure is measured once.
"""
import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time

from benchkit import Redis, ciq_binary

# A test command: `gated` waits for the file `open` in its directory, `slow` sleeps 0.4 s, any
# other id passes at once.
TEST = """#!/bin/sh
for test in "$@"; do
  case "$test" in
    gated) while [ ! -e "$(dirname "$0")/open" ]; do sleep 0.05; done ;;
    slow*) sleep 0.4 ;;
  esac
done
"""


def results(redis, build):
    return int(redis.cli("hlen", f"ciq:{{{build}}}:results").strip() or 0)


def wait_for(what, condition, within=120):
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            sys.exit(f"timed out waiting for {what}")
        time.sleep(0.02)


def run_args(ciq, redis, build, worker, tests, command, timeout):
    return [ciq, "run", "--queue", redis.url, "--build", build, "--worker", worker, "--tests",
            tests, "--heartbeat-timeout", timeout, "--batch-size", "1", "--", command]


def report(ciq, redis, build):
    return subprocess.Popen([ciq, "report", "--queue", redis.url, "--build", build],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def dead_worker(ciq, redis, scratch, command, timeout):
    build = "dead-worker"
    tests = os.path.join(scratch, "dead.txt")
    ids = ["gated"] + [f"t{n}" for n in range(5)]
    with open(tests, "w") as f:
        f.write("\n".join(ids) + "\n")
    rep = report(ciq, redis, build)
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    w1 = subprocess.Popen(run_args(ciq, redis, build, "w1", tests, command, timeout), **quiet)
    wait_for("w1 to lead", lambda: redis.cli("get", f"ciq:{{{build}}}:state").startswith("ready:"))
    time.sleep(0.5)
    w2 = subprocess.Popen(run_args(ciq, redis, build, "w2", tests, command, timeout), **quiet)
    wait_for("w2 to run the other tests", lambda: results(redis, build) == len(ids) - 1)
    w2.send_signal(signal.SIGKILL)
    w2.wait()
    open(os.path.join(scratch, "open"), "w").close()
    wait_for("the last outcome", lambda: results(redis, build) == len(ids))
    last = time.monotonic()
    code = rep.wait()
    took = time.monotonic() - last
    w1.wait()
    if code != 0:
        sys.exit(f"the report of `{build}` exited {code}")
    return took


def workers_left(ciq, redis, scratch, command, timeout):
    build = "workers-left"
    tests = os.path.join(scratch, "left.txt")
    with open(tests, "w") as f:
        f.write("\n".join(f"slow{n}" for n in range(10)) + "\n")
    rep = report(ciq, redis, build)
    args = run_args(ciq, redis, build, "w", tests, command, timeout)
    args[-2:-2] = ["--max-duration", "1s"]
    subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    left = time.monotonic()
    code = rep.wait()
    took = time.monotonic() - left
    if code != 3:
        sys.exit(f"the report of `{build}` exited {code}, not 3")
    return took


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ciq", help="the ciq binary (default: build this checkout)")
    parser.add_argument("--timeout", default="60s", help="the builds' heartbeat timeout")
    args = parser.parse_args()
    ciq = ciq_binary(args.ciq)
    scratch = tempfile.mkdtemp(prefix="ciq-bench-report-")
    command = os.path.join(scratch, "test")
    with open(command, "w") as f:
        f.write(TEST)
    os.chmod(command, 0o755)
    redis = Redis(scratch)
    try:
        dead = dead_worker(ciq, redis, scratch, command, args.timeout)
        left = workers_left(ciq, redis, scratch, command, args.timeout)
    finally:
        redis.stop()
    print(f"heartbeat timeout {args.timeout}; the report's exit after it could know its verdict:")
    print(f"  dead worker, from the last outcome:      {dead:6.2f} s (target: under 2 s)")
    print(f"  every worker left, from the last's exit: {left:6.2f} s")


if __name__ == "__main__":
    main()
