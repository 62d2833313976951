#!/usr/bin/env python3
"""Runs test suites nobody here wrote through ciq and checks ciq counts what their framework
counts: a Python package's suite from its sdist (pytest, batch and persistent mode) and a Rust
crate's from crates.io (nextest), each on 2 distributed workers and a report, against a
redis-server this script starts on a free port.

    python3 scripts/third_party.py [--package more-itertools==10.5.0] [--crate semver@1.0.23]

Needs network access to PyPI and crates.io, pytest, the ciq pytest plugin
(pip install pytest ./integrations/pytest), cargo-nextest and redis-server. Slow (builds and
downloads), so it is not part of CI. Exits 1 if any count differs.
"""
import argparse
import os
import re
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CIQ = os.path.join(ROOT, "target", "release", "ciq")
OUTCOMES = ("passed", "failed", "skipped", "errored")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_redis(directory):
    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory],
        stdout=subprocess.DEVNULL,
    )
    for _ in range(200):
        if subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).stdout.strip() == b"PONG":
            return server, f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    sys.exit("redis-server did not start")


def ciq_counts(text):
    """Counts from ciq's summary line, e.g. `20 tests: 18 passed, 1 flaky, 1 failed`."""
    line = next((l for l in text.splitlines() if re.match(r"^\d+ tests:", l)), None)
    if line is None:
        sys.exit(f"no ciq summary in:\n{text[-3000:]}")
    counts = dict.fromkeys(OUTCOMES, 0)
    for n, outcome in re.findall(r"(\d+) (passed|failed|skipped|errored|flaky|not run)", line):
        key = {"flaky": "passed", "not run": "errored"}.get(outcome, outcome)
        counts[key] += int(n)
    return counts


def pytest_counts(text):
    """ciq's outcomes from pytest's summary line (xfail counts as skipped, xpass as passed)."""
    lines = [l for l in text.splitlines() if re.search(r"\d+ (passed|failed|skipped|error)", l)]
    if not lines:
        sys.exit(f"no pytest summary in:\n{text[-3000:]}")
    line = lines[-1]
    counts = dict.fromkeys(OUTCOMES, 0)
    for n, word in re.findall(r"(\d+) (passed|failed|skipped|xfailed|xpassed|errors?)\b", line):
        key = {"xfailed": "skipped", "xpassed": "passed", "error": "errored", "errors": "errored"}.get(word, word)
        counts[key] += int(n)
    return counts


def nextest_counts(text):
    match = re.search(r"(\d+) tests? run: (\d+) passed(?:.*?(\d+) failed)?(?:.*?(\d+) skipped)?", text)
    if not match:
        sys.exit(f"no nextest summary in:\n{text[-3000:]}")
    return {"passed": int(match[2]), "failed": int(match[3] or 0), "skipped": int(match[4] or 0), "errored": 0}


def through_ciq(url, build, cwd, framework, env=None):
    """Two workers and a report; returns the report's counts. Their output goes to files: a
    process blocked on a full pipe that nobody reads could hold the whole build."""
    env = {**os.environ, **(env or {})}
    with tempfile.TemporaryDirectory() as logs:

        def start(name, argv):
            out = open(os.path.join(logs, f"{name}.out"), "w+")
            err = open(os.path.join(logs, f"{name}.err"), "w+")
            return subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err), out, err

        def finish(started):
            process, out, err = started
            process.wait()
            with out, err:
                out.seek(0)
                err.seek(0)
                return process.returncode, out.read(), err.read()

        report = start("report", [CIQ, "report", "--queue", url, "--build", build])
        workers = [
            start(f"w{n}", [CIQ, "run", "--queue", url, "--build", build, "--worker", f"w{n}", "--max-requeues", "0", *framework])
            for n in (1, 2)
        ]
        for worker in workers:
            code, _, err = finish(worker)
            if code not in (0, 1):
                sys.exit(f"worker failed ({code}):\n{err[-3000:]}")
        code, out, err = finish(report)
        if code not in (0, 1):
            sys.exit(f"report failed ({code}):\n{out[-2000:]}\n{err[-2000:]}")
        return ciq_counts(out)


def compare(name, own, via_ciq):
    same = own == via_ciq
    print(f"{name}:\n  framework: {own}\n  ciq:       {via_ciq}\n  {'equal' if same else 'DIFFERENT'}")
    return same


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="more-itertools==10.5.0")
    parser.add_argument("--crate", default="semver@1.0.23")
    args = parser.parse_args()
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    ok = True
    with tempfile.TemporaryDirectory() as work:
        server, url = start_redis(work)
        try:
            subprocess.run(
                [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary", ":all:", args.package, "-d", work],
                check=True,
            )
            sdist = next(f for f in os.listdir(work) if f.endswith(".tar.gz"))
            with tarfile.open(os.path.join(work, sdist)) as tar:
                tar.extractall(work, filter="data")
            package_dir = os.path.join(work, sdist[: -len(".tar.gz")])
            plain = subprocess.run(
                [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"], cwd=package_dir, capture_output=True, text=True
            )
            own = pytest_counts(plain.stdout)
            ok &= compare(f"{args.package} (pytest, batch mode)", own, through_ciq(url, "py-batch", package_dir, ["--batch-size", "20", "pytest", "--batch"]))
            ok &= compare(f"{args.package} (pytest, persistent mode)", own, through_ciq(url, "py-persistent", package_dir, ["pytest", "--persistent"]))

            name, version = args.crate.split("@")
            crate_file = os.path.join(work, f"{name}-{version}.crate")
            urllib.request.urlretrieve(f"https://static.crates.io/crates/{name}/{name}-{version}.crate", crate_file)
            with tarfile.open(crate_file) as tar:
                tar.extractall(work, filter="data")
            crate_dir = os.path.join(work, f"{name}-{version}")
            target = {"CARGO_TARGET_DIR": os.path.join(work, "target")}
            plain = subprocess.run(
                ["cargo", "nextest", "run", "--no-fail-fast"], cwd=crate_dir, env={**os.environ, **target}, capture_output=True, text=True
            )
            ok &= compare(f"{args.crate} (nextest)", nextest_counts(plain.stderr), through_ciq(url, "rust", crate_dir, ["nextest"], target))
        finally:
            server.kill()
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
