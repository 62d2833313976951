#!/usr/bin/env python3
"""Benchmark: are all workers busy? Issue 23's targets, on real suites, side by side in one run.

  pytest:  a 2-worker Redis build with defaults (no history, then a second build with the first
           one's history) against `ciq run -j 2 pytest` (local mode), and plain pytest, on attrs,
           boltons and more-itertools from their PyPI sdists (targets: Redis <= 1.1x local mode;
           the build with history never slower than the first);
  nextest: `ciq run -j 2 nextest` and a 2-worker Redis build against `cargo nextest run`, on
           indexmap, itertools and semver from crates.io, built once before timing (targets:
           local <= 1.0x, Redis <= 1.1x);
  trivial: 1,000 trivial pytest tests on 4 Redis workers: how many tests each worker ran
           (target: every worker runs some).

Modes run interleaved (one rep of every mode, then the next rep), medians are printed, and every
ciq run's outcomes are checked equal to the plain runner's, test by test (from `-v` / nextest's
per-test lines against ciq's JUnit). The machine's load (uptime) is printed before and after.

    python3 scripts/bench_busy.py [--repeat 3] [--only pytest nextest trivial] [--cache DIR]

Needs network access to PyPI and crates.io (downloads cached in --cache), cargo-nextest and
redis-server; makes a venv with pytest, the suites' test dependencies and the ciq plugin.
"""
import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET

from bench_pytest import write_suite
from benchkit import ROOT, Redis, ciq_binary, fetch_crate, fetch_sdist, venv

PACKAGES = {
    # package==version: (what its tests import besides pytest, pytest arguments)
    "attrs==26.1.0": (["attrs==26.1.0", "hypothesis", "pympler", "cloudpickle"], ["--hypothesis-seed=0"]),
    "boltons==26.2.0": (["boltons==26.2.0"], []),
    "more-itertools==10.5.0": (["more-itertools==10.5.0"], []),
}
CRATES = ["indexmap@2.7.0", "itertools@0.14.0", "semver@1.0.23"]
NEXTEST = re.compile(r"^\s*(PASS|FAIL|SKIP|SIGSEGV|SIGABRT|TIMEOUT|LEAK)\b.*\] (?:\(\s*\d+/\d+\) )?(\S+) (\S+)$")


# A pytest plugin for the plain runs: each test's phases and their outcomes, by node id.
OUTCOME_PLUGIN = """import os


def pytest_runtest_logreport(report):
    with open(os.environ["BENCH_OUTCOMES"], "a") as log:
        log.write(f"{report.nodeid}\\t{report.outcome}\\n")
"""


def pytest_outcomes(path):
    """Each test's outcome from the plugin's log, as ciq names outcomes (an xfail is a skip; a
    failure outside the test's call is compared as a failure, see `same`)."""
    outcomes = {}
    with open(path) as log:
        for line in log:
            test, outcome = line.rstrip("\n").rsplit("\t", 1)
            rank = {"passed": 0, "skipped": 1, "failed": 2}
            if rank[outcome] >= rank.get(outcomes.get(test), 0):
                outcomes[test] = outcome
    return outcomes


def nextest_outcomes(text):
    outcomes = {}
    for line in text.splitlines():
        match = NEXTEST.match(line)
        if match:
            word, binary, test = match[1], match[2], match[3]
            outcomes[f"{binary} {test}"] = {"PASS": "passed", "SKIP": "skipped"}.get(word, "failed")
    return outcomes


def junit_outcomes(path):
    """Each test's outcome from ciq's JUnit (name = the test id)."""
    outcomes = {}
    for case in ET.parse(path).getroot().iter("testcase"):
        kinds = {child.tag for child in case}
        outcome = ("failed" if "failure" in kinds else "errored" if "error" in kinds
                   else "skipped" if "skipped" in kinds else "passed")
        outcomes[case.get("name")] = outcome
    return outcomes


def differences(plain, ciq):
    """How `ciq`'s outcomes differ from `plain`'s (an error in ciq is an error in pytest too:
    compared as failed-or-errored): None when they are the same, test by test."""
    norm = lambda o: "failed" if o == "errored" else o  # noqa: E731
    if {t: norm(o) for t, o in plain.items()} == {t: norm(o) for t, o in ciq.items()}:
        return None
    only_plain = sorted(set(plain) - set(ciq))[:3]
    only_ciq = sorted(set(ciq) - set(plain))[:3]
    differ = [f"{t} {plain[t]} / {ciq[t]}" for t in sorted(set(plain) & set(ciq)) if norm(plain[t]) != norm(ciq[t])][:3]
    return f"{len(plain)} vs {len(ciq)} tests; only plain {only_plain}, only ciq {only_ciq}, differ {differ}"


class Runs:
    """Wall times per mode, with each ciq run's per-worker test counts."""

    def __init__(self):
        self.times = {}
        self.split = {}
        self.differ = []

    def check(self, plain, outcomes, what):
        """Notes `what` (a run) when its outcomes differ from the first plain run's."""
        differ = differences(plain, outcomes)
        if differ:
            self.differ.append(f"{what}: {differ}")
            print(f"  outcomes differ, {what}: {differ}", flush=True)

    def add(self, mode, seconds, split=None):
        self.times.setdefault(mode, []).append(seconds)
        if split is not None:
            self.split.setdefault(mode, []).append(split)

    def median(self, mode):
        return statistics.median(self.times[mode])


def timed(argv, cwd, env, out_path):
    started = time.perf_counter()
    with open(out_path, "w") as out:
        code = subprocess.run(argv, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    elapsed = time.perf_counter() - started
    with open(out_path) as out:
        return elapsed, code, out.read()


def redis_build(ciq, redis, cwd, env, scratch, build, namespace, workers, framework):
    """`workers` workers and a report, started together; returns the wall time, the build's
    outcomes (the report's JUnit) and how many tests each worker decided (its own JUnit)."""
    common = ["--queue", redis.url, "--build", build, "--namespace", namespace]
    started = time.perf_counter()
    logs = []

    def spawn(name, argv):
        log = open(os.path.join(scratch, f"{build}-{name}.log"), "w+")
        logs.append((name, log))
        return subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)

    report_junit = os.path.join(scratch, f"{build}-report.xml")
    report = spawn("report", [ciq, "report", *common, "--junit", report_junit])
    procs = [spawn(f"w{n}", [ciq, "run", *common, "--worker", f"w{n}", "--max-requeues", "0",
                             "--junit", os.path.join(scratch, f"{build}-w{n}.xml"), *framework])
             for n in range(1, workers + 1)]
    codes = [p.wait() for p in procs] + [report.wait()]
    elapsed = time.perf_counter() - started
    if any(code not in (0, 1) for code in codes):
        for name, log in logs:
            log.seek(0)
            print(f"--- {name}\n{log.read()[-3000:]}", file=sys.stderr)
        sys.exit(f"build {build}: exit codes {codes}")
    split = []
    for n in range(1, workers + 1):
        path = os.path.join(scratch, f"{build}-w{n}.xml")
        split.append(len(junit_outcomes(path)) if os.path.exists(path) else 0)
    for _, log in logs:
        log.close()
    return elapsed, junit_outcomes(report_junit), split


def load():
    return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()


def python_env(cache):
    """The venv's python (pytest, the suites' test dependencies, the ciq plugin) and an
    environment where ciq runs it."""
    python = venv(cache, sorted({req for reqs, _ in PACKAGES.values() for req in reqs} | {"pytest"}),
                  [os.path.join(ROOT, "integrations", "pytest")])
    return python, {**os.environ, "CIQ_PYTHON": python,
                    "PATH": os.path.dirname(python) + os.pathsep + os.environ["PATH"]}


def bench_pytest(ciq, redis, cache, scratch, repeat, table, suites):
    python, env = python_env(cache)
    with open(os.path.join(scratch, "bench_outcomes.py"), "w") as plugin:
        plugin.write(OUTCOME_PLUGIN)
    for spec, (_, pytest_args) in PACKAGES.items():
        name = spec.split("==")[0]
        if suites and name not in suites:
            continue
        pytest_args = ["-p", "no:cacheprovider", *pytest_args]
        suite = fetch_sdist(spec, cache)
        runs = Runs()
        plain = None
        for rep in range(repeat):
            tag = f"{name}-{rep}-{os.getpid()}"
            log = os.path.join(scratch, f"{tag}-outcomes.log")
            seconds, _, _ = timed([python, "-m", "pytest", "-q", "-p", "bench_outcomes", *pytest_args], suite,
                                  {**env, "BENCH_OUTCOMES": log, "PYTHONPATH": scratch},
                                  os.path.join(scratch, f"{tag}-plain.log"))
            outcomes = pytest_outcomes(log)
            if plain is None:
                plain = outcomes
            runs.check(plain, outcomes, f"{name}: plain pytest, rep {rep}")
            runs.add("plain", seconds)
            junit = os.path.join(scratch, f"{tag}-local.xml")
            seconds, code, out = timed([ciq, "run", "-j", "2", "--max-requeues", "0", "--junit", junit, "pytest", "--", *pytest_args],
                                       suite, env, os.path.join(scratch, f"{tag}-local.log"))
            if code not in (0, 1):
                sys.exit(f"{name}: ciq run -j 2 pytest exited {code}\n{out[-3000:]}")
            runs.check(plain, junit_outcomes(junit), f"{name}: ciq -j 2, rep {rep}")
            runs.add("local", seconds)
            for build in ("first", "history"):
                seconds, outcomes, split = redis_build(ciq, redis, suite, env, scratch, f"{tag}-{build}",
                                                       tag, 2, ["pytest", "--", *pytest_args])
                runs.check(plain, outcomes, f"{name}: Redis build ({build}), rep {rep}")
                runs.add(build, seconds, split)
        table.append(pytest_row(spec, len(plain), runs))
        print(table[-1], flush=True)


def differed(runs):
    return "".join(f"\n    outcomes differ, {what}" for what in runs.differ)


def pytest_row(spec, tests, runs):
    plain, local, first, history = (runs.median(m) for m in ("plain", "local", "first", "history"))
    splits = lambda mode: " ".join("/".join(map(str, s)) for s in runs.split[mode])  # noqa: E731
    return (f"{spec} ({tests} tests): plain {plain:.1f} s, ciq -j 2 {local:.1f} s ({local / plain:.2f}x plain), "
            f"Redis 2 workers {first:.1f} s ({first / local:.2f}x local), with history {history:.1f} s "
            f"({history / first:.2f}x the first build; {history / local:.2f}x local)\n"
            f"    tests per worker, first builds: {splits('first')}; with history: {splits('history')}"
            + differed(runs))


def bench_nextest(ciq, redis, cache, scratch, repeat, table, suites):
    for spec in CRATES:
        name, version = spec.split("@")
        if suites and name not in suites:
            continue
        crate = fetch_crate(name, version, cache)
        env = {**os.environ, "CARGO_TARGET_DIR": os.path.join(cache, "target", spec)}
        subprocess.run(["cargo", "nextest", "run", "--no-run"], cwd=crate, env=env, check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        runs = Runs()
        plain = None
        for rep in range(repeat):
            tag = f"{name}-{rep}-{os.getpid()}"
            seconds, _, out = timed(["cargo", "nextest", "run", "--no-fail-fast"], crate, env,
                                    os.path.join(scratch, f"{tag}-plain.log"))
            outcomes = nextest_outcomes(out)
            if plain is None:
                plain = outcomes
            runs.check(plain, outcomes, f"{spec}: cargo nextest run, rep {rep}")
            runs.add("plain", seconds)
            junit = os.path.join(scratch, f"{tag}-local.xml")
            seconds, code, out = timed([ciq, "run", "-j", "2", "--max-requeues", "0", "--junit", junit, "nextest"],
                                       crate, env, os.path.join(scratch, f"{tag}-local.log"))
            if code not in (0, 1):
                sys.exit(f"{spec}: ciq run -j 2 nextest exited {code}\n{out[-3000:]}")
            runs.check(plain, junit_outcomes(junit), f"{spec}: ciq -j 2, rep {rep}")
            runs.add("local", seconds)
            seconds, outcomes, split = redis_build(ciq, redis, crate, env, scratch, f"{tag}-redis", tag, 2, ["nextest"])
            runs.check(plain, outcomes, f"{spec}: Redis build, rep {rep}")
            runs.add("redis", seconds, split)
        plain_s, local, through = (runs.median(m) for m in ("plain", "local", "redis"))
        splits = " ".join("/".join(map(str, s)) for s in runs.split["redis"])
        table.append(f"{spec} ({len(plain)} tests): cargo nextest run {plain_s:.2f} s, ciq -j 2 {local:.2f} s "
                     f"({local / plain_s:.2f}x), Redis 2 workers {through:.2f} s ({through / plain_s:.2f}x)\n"
                     f"    tests per worker, Redis builds: {splits}" + differed(runs))
        print(table[-1], flush=True)


def bench_trivial(ciq, redis, cache, scratch, repeat, table, _suites):
    _, env = python_env(cache)
    suite = os.path.join(scratch, "trivial")
    os.makedirs(suite)
    write_suite(suite, 1000)
    splits = []
    for rep in range(repeat):
        tag = f"trivial-{rep}-{os.getpid()}"
        _, outcomes, split = redis_build(ciq, redis, suite, env, scratch, tag, tag, 4, ["pytest"])
        if len(outcomes) != 1000 or set(outcomes.values()) != {"passed"}:
            sys.exit(f"{tag}: {len(outcomes)} outcomes, {set(outcomes.values())}")
        splits.append(split)
    idle = sum(1 for split in splits if 0 in split)
    table.append(f"1,000 trivial tests, 4 Redis workers: tests per worker {' '.join('/'.join(map(str, s)) for s in splits)}"
                 f" ({idle} of {len(splits)} builds left a worker without a test)")
    print(table[-1], flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ciq", help="the ciq binary (default: this checkout, built in release mode)")
    parser.add_argument("--repeat", type=int, default=3, help="interleaved reps per suite; medians are printed")
    parser.add_argument("--only", nargs="+", choices=["pytest", "nextest", "trivial"],
                        default=["pytest", "nextest", "trivial"])
    parser.add_argument("--suites", nargs="+", help="only these of the suites (attrs, indexmap...)")
    parser.add_argument("--cache", default=os.path.join(os.path.expanduser("~"), ".cache", "ciq-bench"),
                        help="where downloads, the venv and crate builds are kept between runs")
    args = parser.parse_args()
    ciq = ciq_binary(args.ciq)
    os.makedirs(args.cache, exist_ok=True)
    table = []
    print(f"load before: {load()}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        redis = Redis(scratch)
        try:
            for part in args.only:
                {"pytest": bench_pytest, "nextest": bench_nextest, "trivial": bench_trivial}[part](
                    ciq, redis, args.cache, scratch, args.repeat, table, args.suites)
        finally:
            redis.stop()
    print(f"load after: {load()}")
    print(f"\nmedians of {args.repeat} interleaved reps; outcomes equal to the plain runs, test by test,"
          " in every run unless said")
    print("\n".join(table))


if __name__ == "__main__":
    main()
