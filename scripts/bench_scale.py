#!/usr/bin/env python3
"""Benchmark: memory and time of ciq at a million tests.

Starts its own redis-server on a free port, writes a list of N no-op test ids (1,000,000 by
default), and runs W workers (4) with batch size B (100) on it, each running `true` per batch,
then a second `ciq report` on the finished build. Prints each process's peak RSS (from wait4)
and wall time. The target: at most 150 MB for a worker or the report at 1M tests, whatever the
suite's size, because summaries hold counts and at most a few hundred names, never every result.

    python3 scripts/bench_scale.py [--ciq PATH] [--tests 1000000] [--workers 4] [--batch-size 100]
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_rss(proc):
    """Waits for `proc`; returns (exit code, peak RSS in MB)."""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, usage.ru_maxrss / 1024


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ciq", help="a ciq binary (default: build this checkout)")
    parser.add_argument("--tests", type=int, default=1_000_000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-size", type=int, default=100)
    args = parser.parse_args()

    ciq = args.ciq
    if not ciq:
        subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
        ciq = os.path.join(ROOT, "target", "release", "ciq")
    scratch = tempfile.mkdtemp(prefix="ciq-bench-scale-")
    port = free_port()
    redis = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", scratch],
        stdout=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode == 0:
                break
            time.sleep(0.1)
        url = f"redis://127.0.0.1:{port}/0"
        tests = os.path.join(scratch, "tests.txt")
        with open(tests, "w") as f:
            for i in range(args.tests):
                f.write(f"suite/test_{i:07}\n")
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
    finally:
        redis.terminate()
        redis.wait()


if __name__ == "__main__":
    main()
