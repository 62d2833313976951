#!/usr/bin/env python3
"""Benchmark: `ciq run minitest|rspec` with 2 local workers against the issue's targets.

Prints one table, each row's figures side by side, runs interleaved (the suite's own run, then
ciq's, each round), medians of `--repeat` (with the range):

- `boot 2 s + 400 x 10 ms`: a minitest suite written here whose test_helper sleeps 2 s (a Rails
  boot) and whose 400 tests (20 classes of 20) sleep 10 ms each, through `ciq run -j 2
  minitest`, against the ideal: the boot plus the tests' time shared by two workers. Target: at
  most 1.15x. The nominal ideal is 2 + 400 x 0.01 / 2 = 4 s; on a busy machine a 10 ms sleep
  takes longer, so the row also gives the ideal from the suite's own single-process run in the
  same round (its wall time W: 2 + (W - 2) / 2), and the ratio to each.
- each real suite given (`--rack DIR`: rack's minitest suite, `-I test test/spec_*.rb`;
  `--addressable DIR`: addressable's specs, run with a no-op `bundler/setup` on RUBYLIB, as its
  Gemfile's development gems are not packaged), through `ciq run -j 2 minitest|rspec` against
  the framework's own single-process run (`ruby -Itest` requiring the files with
  minitest/autorun; `rspec`). Target: at most 0.8x.

The CPU time of each run (its processes': Ruby's, ciq's) is printed too: on a machine busier
than its cores, the wall time of two workers follows it rather than the number of workers.
Every run's exit code is printed: a suite whose own run fails (a test that needs the network)
fails under ciq alike; wall times compare whole runs either way.

It needs ruby with minitest and RSpec, ciq's Ruby gem (`--ciq-gems GEM_HOME`, default
target/ruby-gems, which `scripts/test` fills), and builds this checkout in release mode unless
`--ciq` names a binary. The machine's load changes every figure: quote the ratios, with it.

    python3 scripts/bench_ruby.py [--repeat 3] [--rack DIR] [--addressable DIR] [--ciq PATH]
"""
import argparse
import glob
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from benchkit import ROOT, ciq_binary

BOOT_SECONDS = 2.0
TESTS = 400
TEST_SECONDS = 0.01
CLASSES = 20


def synthetic_suite(root):
    """The suite of the first row, written into `root`."""
    os.makedirs(os.path.join(root, "test"))
    with open(os.path.join(root, "test", "test_helper.rb"), "w") as f:
        f.write(f'require "minitest/autorun"\nsleep {BOOT_SECONDS}\n')
    per_class = TESTS // CLASSES
    for c in range(CLASSES):
        with open(os.path.join(root, "test", f"c{c:02}_test.rb"), "w") as f:
            f.write(f'require "test_helper"\nclass C{c:02}Test < Minitest::Test\n')
            for t in range(per_class):
                f.write(f"  def test_{t:03}\n    sleep {TEST_SECONDS}\n    assert true\n  end\n")
            f.write("end\n")


def children_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def timed(argv, cwd, env):
    """(wall seconds, CPU seconds of it and its children, exit code) of `argv` in `cwd`, its
    output thrown away."""
    started, cpu = time.monotonic(), children_cpu()
    done = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    return time.monotonic() - started, children_cpu() - cpu, done.returncode


def ciq_run(ciq, framework, args):
    return [ciq, "run", "-j", "2", "--max-requeues", "0", framework, "--", *args]


PLAIN_MINITEST = ("ARGV.each { |file| require File.expand_path(file) }; ARGV.clear; "
                  'require "minitest/autorun"')


def rows(opts, scratch):
    """(name, target, cwd, env, the suite's own run, ciq's run), both as argv."""
    env = dict(os.environ, GEM_HOME=opts.ciq_gems)
    synthetic = os.path.join(scratch, "synthetic")
    synthetic_suite(synthetic)
    files = sorted(os.path.relpath(p, synthetic)
                   for p in glob.glob(os.path.join(synthetic, "test", "*_test.rb")))
    yield ("boot 2 s + 400 x 10 ms", 1.15, synthetic, env,
           ["ruby", "-Itest", "-e", PLAIN_MINITEST, *files], ciq_run(opts.ciq, "minitest", []))
    if opts.rack:
        files = sorted(os.path.relpath(p, opts.rack)
                       for p in glob.glob(os.path.join(opts.rack, "test", "spec_*.rb")))
        yield ("rack (minitest)", 0.8, opts.rack, env,
               ["ruby", "-Itest", "-e", PLAIN_MINITEST, *files],
               ciq_run(opts.ciq, "minitest", ["-I", "test", *files]))
    if opts.addressable:
        shim = os.path.join(scratch, "shim")
        os.makedirs(os.path.join(shim, "bundler"))
        open(os.path.join(shim, "bundler", "setup.rb"), "w").close()
        shimmed = dict(env, RUBYLIB=shim)
        yield ("addressable (rspec)", 0.8, opts.addressable, shimmed, ["rspec"],
               ciq_run(opts.ciq, "rspec", []))


def cell(xs, f=".2f"):
    return f"{statistics.median(xs):{f}} ({min(xs):{f}}-{max(xs):{f}})"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rack", help="rack's source tree (its test/ directory)")
    parser.add_argument("--addressable", help="addressable's source tree (its spec/ directory)")
    parser.add_argument("--ciq", help="the ciq binary (default: this checkout, release build)")
    parser.add_argument("--ciq-gems", default=os.path.join(ROOT, "target", "ruby-gems"),
                        help="GEM_HOME holding ciq's Ruby gem")
    opts = parser.parse_args()
    opts.ciq = os.path.abspath(ciq_binary(opts.ciq))
    for name in ("rack", "addressable"):
        if getattr(opts, name):
            setattr(opts, name, os.path.abspath(getattr(opts, name)))
    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    print(f"load average before: {' '.join(load)}; {os.cpu_count()} CPUs; medians of "
          f"{opts.repeat} (range)", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        table = list(rows(opts, scratch))
        own = {row[0]: [] for row in table}
        ours = {row[0]: [] for row in table}
        cpu = {(row[0], label): [] for row in table for label in ("own", "ciq")}
        codes = {row[0]: set() for row in table}
        for _ in range(opts.repeat):
            for name, _, cwd, env, plain, argv in table:
                for times, label, command in ((own, "own", plain), (ours, "ciq", argv)):
                    wall, cpu_s, code = timed(command, cwd, env)
                    times[name].append(wall)
                    cpu[(name, label)].append(cpu_s)
                    codes[name].add(f"{label} {code}")
    print("\n| suite | own run, one process s | ciq run -j 2 s | ciq / own | ideal s | ciq / ideal"
          " | target | CPU s own / ciq | exits |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, target, *_ in table:
        to_own = [o / b for o, b in zip(ours[name], own[name])]
        if name.startswith("boot"):
            nominal = BOOT_SECONDS + TESTS * TEST_SECONDS / 2
            measured = [BOOT_SECONDS + (b - BOOT_SECONDS) / 2 for b in own[name]]
            ideal = f"{nominal:.2f} nominal; {cell(measured)} from the own run"
            to_ideal = (f"{cell([o / nominal for o in ours[name]])}x nominal; "
                        f"{cell([o / m for o, m in zip(ours[name], measured)])}x from the own run")
        else:
            ideal, to_ideal = "", ""
        print(f"| {name} | {cell(own[name])} | {cell(ours[name])} | {cell(to_own)}x | {ideal} | "
              f"{to_ideal} | {target}x {'ideal' if ideal else 'own'} | "
              f"{statistics.median(cpu[(name, 'own')]):.2f} / "
              f"{statistics.median(cpu[(name, 'ciq')]):.2f} | {', '.join(sorted(codes[name]))} |")
    with open("/proc/loadavg") as f:
        print(f"\nload average after: {' '.join(f.read().split()[:3])}")


if __name__ == "__main__":
    sys.exit(main())
