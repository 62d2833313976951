#!/usr/bin/env python3
"""Benchmark: the HTML report's page at 100k and 1M tests, its size and how long headless
Chromium takes to load and draw it.

For each size it writes a sample build's page with scripts/report_sample.py (at 100,000 tests
on 16 workers every attempt is drawn; at 1,000,000 on 64 workers, batch size 8, the producer's
rule aggregates), then loads it in headless Chromium a few times (the flags of testkit's
browser harness) and prints: the file's size, whether it is full or aggregated, the page's own
figures from `--dump-dom` runs (navigation start to drawn, `data-ready-at-ms`; its script from
start to drawn, `data-render-ms`, JSON parsing included; one redraw of the timeline,
`data-draw-ms`), and Chromium's whole run from start to exit when it loads, draws and takes a
screenshot of the page, against the same run on an empty page (the browser's own start-up).
Serialising a 10 MB DOM for `--dump-dom` alone takes seconds, which no reader waits for, so the
wall time comes from the screenshot runs. The targets: under 20 MB, drawn within a few seconds.
The figures are medians of `--runs` runs; on a loaded machine they vary by a factor of two.

The Rust producer's row (`--rust`, default 100,000 tests on 16 local workers, batch size 50):
a real local build, `ciq run -j 16 --html` of that many tests of `true`, its page loaded the
same way; the producer's time is what `ciq run` says it took to compose and write the page
(from the recorded timeline and the findings), its "in ..." figure, median of `--runs` builds.

    python3 scripts/bench_html.py [--sizes 100000:16:1,1000000:64:8] [--rust 100000:16:50]
        [--runs 3] [--keep DIR] [--ciq BINARY]
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--virtual-time-budget=1000",
         "--window-size=1400,1000"]


def chromium():
    for name in (os.environ.get("CIQ_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"):
        if name and shutil.which(name):
            return shutil.which(name)
    sys.exit("bench_html: headless Chromium is not installed: run scripts/test (it installs it)")


def chromium_run(browser, page, mode):
    """One run, `--dump-dom` or a screenshot: (wall seconds, what it printed)."""
    profile = tempfile.mkdtemp(prefix="ciq-bench-html-")
    shot = os.path.join(profile, "shot.png")
    flag = "--dump-dom" if mode == "dom" else f"--screenshot={shot}"
    try:
        started = time.perf_counter()
        run = subprocess.run([browser, *FLAGS, flag, f"--user-data-dir={profile}",
                              "file://" + page], capture_output=True, text=True, timeout=300)
        wall = time.perf_counter() - started
        if run.returncode != 0 or (mode == "shot" and not os.path.exists(shot)):
            sys.exit(f"bench_html: chromium failed on {page}: {run.stderr[-2000:]}")
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    return wall, run.stdout


def figures(browser, page):
    """The body's data attributes after one `--dump-dom` run."""
    _, dom = chromium_run(browser, page, "dom")
    body = re.search(r"<body([^>]*)>", dom)
    return dict(re.findall(r'(data-[a-z-]+)="([^"]*)"', body.group(1))) if body else {}


def seconds(text):
    """A duration as ciq prints it (`412ms`, `1.2s`, `1m 3s`) in seconds."""
    total = 0.0
    for number, unit in re.findall(r"([0-9.]+)(ms|s|m|h)", text):
        total += float(number) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    return total


def rust_page(ciq, scratch, tests, workers, batch):
    """A local build of `tests` tests of `true` with `--html`: (page, producer seconds)."""
    listing = os.path.join(scratch, f"tests-{tests}.txt")
    modules = ["api", "billing", "auth", "db", "search", "ui", "jobs", "mail"]
    with open(listing, "w") as f:
        for k in range(tests):
            module = modules[k % len(modules)]
            f.write(f"tests/{module}/test_{module}_{k // len(modules):06d}.py::test_case_{k % 97}\n")
    page = os.path.join(scratch, f"rust-{tests}.html")
    run = subprocess.run([ciq, "run", "-j", str(workers), "--batch-size", str(batch), "--tests",
                          listing, "--html", page, "--order-log", os.devnull, "--", "true"],
                         capture_output=True, text=True, timeout=1800)
    said = re.search(r"wrote the HTML report \(.*, in ([^)]+)\)", run.stderr)
    if run.returncode != 0 or not said:
        sys.exit(f"bench_html: ciq run --html failed ({run.returncode}): {run.stderr[-2000:]}")
    return page, seconds(said.group(1))


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100000:16:1,1000000:64:8",
                        help="tests:workers:batch-size, comma-separated")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rust", default="100000:16:50",
                        help="tests:workers:batch-size of the Rust producer's local build "
                             "(empty: none)")
    parser.add_argument("--ciq", help="the ciq binary (default: this checkout, release build)")
    parser.add_argument("--keep", help="write the pages into this directory and keep them")
    args = parser.parse_args()
    browser = chromium()
    scratch = args.keep or tempfile.mkdtemp(prefix="ciq-bench-html-")
    os.makedirs(scratch, exist_ok=True)
    empty = os.path.join(scratch, "empty.html")
    with open(empty, "w") as f:
        f.write("<!DOCTYPE html><title>empty</title><body data-ready=1></body>")
    baseline = median([chromium_run(browser, empty, "shot")[0] for _ in range(args.runs)])
    print(f"chromium on an empty page: {baseline:.2f} s (median of {args.runs})")
    print(f"{'producer':>9} {'tests':>9} {'workers':>7} {'detail':>10} {'size MB':>8} "
          f"{'made s':>7} {'ready ms':>9} {'script ms':>9} {'redraw ms':>9} {'chromium s':>10} "
          f"{'- empty s':>9}")
    pages = []
    for spec in filter(None, args.sizes.split(",")):
        tests, workers, batch = (int(x) for x in spec.split(":"))
        page = os.path.join(scratch, f"report-{tests}.html")
        started = time.perf_counter()
        subprocess.run([sys.executable, os.path.join(ROOT, "scripts", "report_sample.py"),
                        "--tests", str(tests), "--workers", str(workers), "--batch-size",
                        str(batch), "--scale-ms", "60", "--html", page], check=True)
        # The sample's time includes simulating the build.
        pages.append(("python", tests, workers, page, time.perf_counter() - started))
    if args.rust:
        sys.path.insert(0, os.path.join(ROOT, "scripts"))
        import benchkit
        ciq = benchkit.ciq_binary(args.ciq)
        tests, workers, batch = (int(x) for x in args.rust.split(":"))
        made = []
        for _ in range(args.runs):
            page, took = rust_page(ciq, scratch, tests, workers, batch)
            made.append(took)
        pages.append(("rust", tests, workers, page, median(made)))
    for producer, tests, workers, page, made in pages:
        runs = [figures(browser, page) for _ in range(args.runs)]
        if any(attrs.get("data-ready") != "1" for attrs in runs):
            sys.exit(f"bench_html: the page of {tests} tests did not draw: {runs[0]}")
        wall = median([chromium_run(browser, page, "shot")[0] for _ in range(args.runs)])
        with open(page, encoding="utf-8") as f:
            detail = "aggregated" if '"detail":"aggregated"' in f.read() else "full"
        figure = lambda key: median([int(attrs.get(key, 0)) for attrs in runs])
        print(f"{producer:>9} {tests:>9} {workers:>7} {detail:>10} "
              f"{os.path.getsize(page) / 1e6:>8.1f} {made:>7.2f} "
              f"{figure('data-ready-at-ms'):>9} {figure('data-render-ms'):>9} "
              f"{figure('data-draw-ms'):>9} {wall:>10.2f} {wall - baseline:>9.2f}")
    if not args.keep:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
