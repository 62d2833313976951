#!/usr/bin/env python3
"""Benchmark: what a build costs its Redis, per test.

Runs 2,000 no-op tests on 4 workers and a report against a redis-server of its own, at batch
sizes 1 and 8, and prints per test: client round trips, commands run inside scripts,
Redis CPU in microseconds (from INFO cpu: the server's whole user+system time over the build,
network included; and from INFO commandstats: time inside scripts), and the wall time. The
round trips and script commands come from a second run watched with MONITOR (which costs CPU
itself, so the CPU figures come from the first run, unwatched).

    python3 scripts/bench_redis.py [--ciq PATH] [--tests 2000] [--workers 4] [--batch-sizes 1,8]

The no-op tests run in one persistent process per worker (`--persistent`, a few lines of Python
that pass every test): a process started per test would load the 2-core machines these figures
come from so much that Redis's own CPU per command grows several times over, and the figures
would measure the machine, not the protocol. `--runner command` starts `true` per batch instead.

Without --ciq it builds this checkout in release mode. Pass another build's binary to compare
(e.g. a worktree of an older commit): the figures are measured in one run, on one machine.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

from benchkit import Redis, ciq_binary


NOOP_FRAMEWORK = """#!/usr/bin/env python3
import json, sys
print(json.dumps({"type": "ready", "protocol": 1}), flush=True)
for line in sys.stdin:
    message = json.loads(line)
    if message.get("type") != "run":
        break
    print(json.dumps({"type": "result", "id": message["id"], "outcome": "passed"}), flush=True)
"""


def build(ciq, redis, tests_file, workers, batch, build_id, runner):
    url = f"redis://127.0.0.1:{redis.port}/0"
    common = ["--queue", url, "--build", build_id]
    started = time.perf_counter()
    report = subprocess.Popen([ciq, "report", *common], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    procs = [
        subprocess.Popen([ciq, "run", *common, "--worker", f"w{n}", "--tests", tests_file,
                          "--batch-size", str(batch), *runner],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for n in range(workers)
    ]
    codes = [p.wait() for p in procs] + [report.wait()]
    if any(codes):
        sys.exit(f"a process of build {build_id} failed: exit codes {codes}")
    return time.perf_counter() - started


def measure(ciq, tests, workers, batch, runner_kind):
    scratch = tempfile.mkdtemp(prefix="ciq-bench-redis-")
    if runner_kind == "persistent":
        framework = os.path.join(scratch, "noop-framework")
        with open(framework, "w") as f:
            f.write(NOOP_FRAMEWORK)
        os.chmod(framework, 0o755)
        runner = ["--persistent", "--", framework]
    else:
        runner = ["--", "true"]
    tests_file = os.path.join(scratch, "tests.txt")
    with open(tests_file, "w") as f:
        for i in range(tests):
            f.write(f"noop/{i:05}\n")
    redis = Redis(scratch)
    try:
        redis.cli("config", "resetstat")
        cpu = redis.cpu_seconds()
        wall = build(ciq, redis, tests_file, workers, batch, "cpu", runner)
        cpu = redis.cpu_seconds() - cpu
        usec = redis.script_usec()
        monitor_log = os.path.join(scratch, "monitor.log")
        with open(monitor_log, "w") as log:
            monitor = subprocess.Popen(["redis-cli", "-p", str(redis.port), "monitor"], stdout=log,
                                       stderr=subprocess.DEVNULL)
            time.sleep(0.5)
            build(ciq, redis, tests_file, workers, batch, "counted", runner)
            redis.cli("ping")
            time.sleep(0.5)
            monitor.terminate()
            monitor.wait()
        client = script = 0
        with open(monitor_log) as log:
            for line in log:
                if "] \"" not in line:
                    continue
                source = line.split("[", 1)[1].split("]", 1)[0]
                if "lua" in source:
                    script += 1
                elif "\"monitor\"" not in line.lower():
                    client += 1
        return {
            "round trips": client / tests,
            "script commands": script / tests,
            "cpu us": cpu * 1e6 / tests,
            "script us": usec / tests,
            "wall s": wall,
        }
    finally:
        redis.stop()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ciq", help="a ciq binary (default: build this checkout)")
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--runner", choices=["persistent", "command"], default="persistent")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per batch size; the lowest CPU figure is printed")
    args = parser.parse_args()
    ciq = ciq_binary(args.ciq)
    print(f"{args.tests} no-op tests, {args.workers} workers, {args.runner} runner, {ciq}")
    print("batch | round trips/test | script commands/test | Redis CPU us/test (INFO cpu) | in scripts us/test | wall s")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        m = min((measure(ciq, args.tests, args.workers, batch, args.runner)
                 for _ in range(args.repeat)), key=lambda m: m["cpu us"])
        print(f"{batch:5} | {m['round trips']:16.2f} | {m['script commands']:20.1f} | "
              f"{m['cpu us']:28.1f} | {m['script us']:18.1f} | {m['wall s']:6.1f}")


if __name__ == "__main__":
    main()
