#!/usr/bin/env python3
"""Benchmark: ciq's own cost per test, against a bare spawn loop in the same run.

Runs N tests of `true` at batch size 1 on 4 local workers (`ciq run -j 4 --batch-size 1
--tests IDS -- true`), and the same N starts of `true` by `xargs -P 4 -n 1 true` (a bare spawn
loop, four at a time), in turn, `--repeat` times. Prints for each: wall time, tests per second,
and CPU per test (user + system of the whole process tree: the command's children are
included, so a test's own start counts in both); ciq's own CPU per test is the difference. With
`--baseline PATH` it also runs another ciq binary the same way (an earlier build), for a
before/after pair measured in the same run.

    python3 scripts/bench_overhead.py [--ciq PATH] [--baseline PATH] [--tests 5000] [--repeat 3]
"""
import argparse
import os
import resource
import statistics
import subprocess
import tempfile
import time

from benchkit import ciq_binary


def measured(argv, cwd):
    """Runs `argv`, returning (wall seconds, CPU seconds of it and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{argv[0]} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ciq")
    parser.add_argument("--baseline", help="another ciq binary, measured the same way")
    parser.add_argument("--tests", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    ciq = ciq_binary(args.ciq)
    with tempfile.TemporaryDirectory() as work:
        ids = os.path.join(work, "ids.txt")
        with open(ids, "w") as f:
            f.writelines(f"t{n}\n" for n in range(args.tests))
        runs = {"bare spawn loop": ["xargs", "-P", "4", "-n", "1", "-a", ids, "true"]}
        ciq_args = ["run", "-j", "4", "--batch-size", "1", "--tests", ids, "--", "true"]
        runs["ciq"] = [ciq, *ciq_args]
        if args.baseline:
            runs["baseline ciq"] = [args.baseline, *ciq_args]
        figures = {name: [] for name in runs}
        for _ in range(args.repeat):
            for name, argv in runs.items():
                figures[name].append(measured(argv, work))
    n = args.tests
    bare_cpu = statistics.median(cpu for _, cpu in figures["bare spawn loop"])
    print(f"{n} tests of `true`, 4 at a time, batch size 1, medians of {args.repeat} runs "
          f"(load average {os.getloadavg()[0]:.1f} at the end)")
    print(f"| run | wall s | tests/s | CPU ms/test | own CPU ms/test (over the bare loop) |")
    print(f"|---|---|---|---|---|")
    for name, runs_of in figures.items():
        wall = statistics.median(w for w, _ in runs_of)
        cpu = statistics.median(c for _, c in runs_of)
        own = (cpu - bare_cpu) / n * 1000
        print(f"| {name} | {wall:.2f} | {n / wall:.0f} | {cpu / n * 1000:.3f} | "
              f"{'' if name == 'bare spawn loop' else f'{own:.3f}'} |")


if __name__ == "__main__":
    main()
