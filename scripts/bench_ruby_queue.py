#!/usr/bin/env python3
"""Benchmark: ciq against Shopify's ci-queue (`minitest-queue`) on one real minitest suite.

Runs the same suite with the same number of workers (default 4) against one redis-server of
its own on a free loopback port, with minitest-queue and with ciq, and prints one table per
scenario and tool: the build's wall time (workers and report step started together, until the
last of them exits), the Redis server's CPU per test (INFO cpu before and after: user + system),
the commands Redis executed per test (INFO commandstats calls before and after, the commands
run inside scripts included; the benchmark's own polling is subtracted), the CPU time of the
build's processes (workers, their Ruby, the report: on a machine with fewer cores than workers
this is what the wall time follows), the exit codes, the report step's own counts, the tests
taken over from a silent worker, and every test's final outcome compared with the suite's own
plain run (one `ruby` process, test by test; the differences are named). ciq's outcomes come
from `ciq report --json`; minitest-queue's from its Redis keys (`processed`, `error-reports`),
its skips from each worker's JUnit file (a SIGKILLed worker writes none, so a skip it ran
shows as passed here, while its report, which sums the workers' counters, still counts it).
Scenarios:

- `normal`: the whole build;
- `worker-killed`: one worker (not the first) SIGKILLed mid-build, once a third of the tests
  are done, while it holds tests (the held tests are counted);
- `leader-killed`: the leader stopped where it is elected but has not made the queue ready
  (ciq: `CIQ_PAUSE_AT=before-commit`, every id staged; minitest-queue: a preloaded hook stops
  it after its `SET NX` election, before the `MULTI` that pushes the queue), then the other
  workers and the report start and the leader is SIGKILLed; the wall time runs from there.

Runs are interleaved (each round runs every scenario with both tools, the tools' order
alternating) and each cell is the median of `--repeat` runs, with the range. One extra run per
tool, watched with MONITOR and not timed, splits the commands into those the clients sent and
those run inside scripts.

Both tools get the same settings: take-over of a silent worker's tests and the wait for a dead
leader after `--takeover` seconds (ciq: `--heartbeat-timeout` and `--lock-ttl`;
minitest-queue: `--timeout`, which is also its queue-init timeout), one retry of a failing test
on another worker (`--max-requeues 1`, tolerance 0.1: ciq's defaults). ciq runs `ciq run
minitest -- ARGS`, whose leader lists the suite through its own worker's Ruby; the ids are also
listed once beforehand by one process of the gem, only to check them against the plain run
(timed and printed, outside ciq's wall time).

It sets nothing up (see README.md, "Performance", for the steps used). It needs:

- `--suite DIR` (or CIQ_BENCH_SUITE): a minitest suite's root, run with the arguments after
  `--` (default `-I test test/spec_*.rb`, rack's; globs are expanded here, relative to DIR,
  and given to both tools alike). minitest-queue writes `log/` there (created if missing).
- `--ci-queue GEM_HOME` (or CIQ_BENCH_CI_QUEUE): a GEM_HOME where the `ci-queue` gem (its
  `bin/minitest-queue`) and the `redis` 5.x gem it needs are installed; minitest-reporters,
  concurrent-ruby and minitest may come from the system's gems.
- `--ciq-gems GEM_HOME` (or CIQ_BENCH_CIQ_GEMS, default target/ruby-gems, which
  `scripts/test --no-run` fills): where ciq's Ruby gem is installed.
- ruby, redis-server and redis-cli on PATH; it builds this checkout in release mode unless
  `--ciq` names a binary.

    python3 scripts/bench_ruby_queue.py --suite DIR --ci-queue GEM_HOME [--repeat 3]
        [--workers 4] [--takeover 10] [--scenarios normal,worker-killed,leader-killed] [-- ARGS]
"""
import argparse
import glob
import json
import os
import re
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from xml.etree import ElementTree

from benchkit import ROOT, Redis, ciq_binary

SCENARIOS = ("normal", "worker-killed", "leader-killed")
TOOLS = ("minitest-queue", "ciq")
DEFAULT_ARGS = ["-I", "test", "test/spec_*.rb"]

# The suite's own run: the files loaded as the gem loads them, then minitest/autorun; a hook
# records each test's id (the gem's id rule, which is ci-queue's `Class#test`) and outcome.
PLAIN = r"""
require "json"
require "ciq/minitest"
dirs, requires, paths, options = Ciq::Minitest::Arguments.parse(ARGV)
load_path = dirs + %w[test lib].select { |dir| File.directory?(dir) }
$LOAD_PATH.unshift(*load_path.map { |dir| File.expand_path(dir) }.uniq)
requires.each { |lib| require lib }
out = File.open(ENV.fetch("BENCH_PLAIN_OUT"), "a")
out.sync = true
Minitest.singleton_class.prepend(Module.new do
  define_method(:run_one_method) do |klass, name|
    result = super(klass, name)
    outcome = result.skipped? ? "skipped" : result.passed? ? "passed" : "failed"
    out.puts(JSON.generate("id" => Ciq::Minitest.id(klass, name), "outcome" => outcome))
    result
  end
end)
require "minitest/autorun"
ARGV.replace(options)
Ciq::Minitest.test_files(paths.empty? ? ["test"] : paths).each { |file| require file }
"""

# Preloaded (RUBYOPT) into the minitest-queue worker meant to lead: once it has won the
# election (`@master`), it stops itself before pushing the queue, as CIQ_PAUSE_AT does for ciq.
# `measure` is the first thing ci-queue's `push` calls after the election.
MQ_PAUSE = r"""
require "ci/queue"
require "ci/queue/redis"
CI::Queue::Redis::Worker.prepend(Module.new do
  private def measure(*)
    if @master && !$bench_paused
      $bench_paused = true
      $stderr.puts "bench: paused at elected"
      $stderr.flush
      Process.kill("STOP", Process.pid)
    end
    super
  end
end)
"""


class Conn:
    """One RESP connection to the benchmark's own server, for its polling (redis-cli per poll
    would cost a process each time)."""

    def __init__(self, port):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.buf = b""
        self.sent = {}

    def _line(self):
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def _exact(self, n):
        while len(self.buf) < n + 2:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n + 2:]
        return data

    def _reply(self):
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            return None if n < 0 else self._exact(n).decode("utf-8", "replace")
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._reply() for _ in range(n)]
        raise RuntimeError(f"unexpected reply {line!r}")

    def call(self, *args, counted=True):
        """Sends one command; `counted` ones are subtracted from the build's command counts."""
        parts = [f"*{len(args)}\r\n".encode()]
        for arg in args:
            data = str(arg).encode()
            parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
        self.sock.sendall(b"".join(parts))
        if counted:
            name = str(args[0]).lower()
            self.sent[name] = self.sent.get(name, 0) + 1
        return self._reply()


def stats(conn):
    """(CPU seconds, {command: calls}) of the server now. This call's own INFO is not in its
    own figures; the next snapshot counts it, and it is subtracted as the benchmark's."""
    info = conn.call("info", "all")
    cpu = 0.0
    calls = {}
    for line in info.splitlines():
        if line.startswith(("used_cpu_user:", "used_cpu_sys:")):
            cpu += float(line.split(":", 1)[1])
        elif line.startswith("cmdstat_"):
            name, fields = line[len("cmdstat_"):].split(":", 1)
            calls[name] = int(dict(f.split("=") for f in fields.split(","))["calls"])
    return cpu, calls


def clean_env(**extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CIQ_", "CI_QUEUE_", "GEM_", "BUNDLE", "RUBY"))}
    env.update(extra)
    return env


def expand(suite, args):
    out = []
    for arg in args:
        if any(c in arg for c in "*?[") and not arg.startswith("-"):
            matches = sorted(glob.glob(arg, root_dir=suite))
            if not matches:
                sys.exit(f"{arg}: no file matches it under {suite}")
            out.extend(matches)
        else:
            out.append(arg)
    return out


def plain_run(suite, args, ciq_gems, scratch):
    out_path = os.path.join(scratch, "plain.jsonl")
    log = os.path.join(scratch, "plain.log")
    started = time.perf_counter()
    with open(log, "w") as f:
        code = subprocess.run(["ruby", "-e", PLAIN, "--", *args], cwd=suite, stdout=f,
                              stderr=subprocess.STDOUT,
                              env=clean_env(GEM_HOME=ciq_gems, BENCH_PLAIN_OUT=out_path)).returncode
    elapsed = time.perf_counter() - started
    outcomes = {}
    with open(out_path) as f:
        for line in f:
            record = json.loads(line)
            outcomes[record["id"]] = record["outcome"]
    if not outcomes:
        sys.exit(f"the suite's own run recorded no test (exit {code}); its output: {log}")
    return outcomes, elapsed, code


def list_ids(suite, args, ciq_gems, scratch):
    """The ids, listed by one process of ciq's gem (what `ciq run minitest`'s leader will do)."""
    started = time.perf_counter()
    with open(os.path.join(scratch, "list.log"), "w") as log:
        proc = subprocess.Popen(["ruby", "-rciq/minitest", "-e", "Ciq::Minitest.serve", "--", *args],
                                cwd=suite, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                text=True, env=clean_env(GEM_HOME=ciq_gems, CIQ_PROTOCOL="1"))
        ready = json.loads(proc.stdout.readline() or "{}")
        if ready.get("type") != "ready" or not ready.get("lists"):
            proc.kill()
            sys.exit(f"ciq's gem did not list the suite: {ready} (its stderr: {log.name}; is the gem"
                     f" installed in {ciq_gems}? run scripts/test --no-run)")
        proc.stdin.write('{"type":"list"}\n')
        proc.stdin.flush()
        ids = json.loads(proc.stdout.readline())["ids"]
        proc.stdin.write('{"type":"shutdown"}\n')
        proc.stdin.close()
        proc.wait()
    return ids, time.perf_counter() - started


class Build:
    """One build of one tool: its processes, their logs, and what they left in Redis."""

    def __init__(self, tool, build_id, opts, redis, scratch):
        self.tool, self.id, self.opts, self.redis = tool, build_id, opts, redis
        self.dir = os.path.join(scratch, build_id)
        os.makedirs(self.dir)
        self.procs = {}

    def worker_command(self, worker):
        o = self.opts
        if self.tool == "ciq":
            return [o.ciq, "run", "--queue", self.redis.url, "--build", self.id, "--worker", worker,
                    "--heartbeat-timeout", f"{o.takeover}s", "--lock-ttl", f"{o.takeover}s",
                    "--max-requeues", "1", "--requeue-tolerance", "0.1", "minitest", "--",
                    *o.args]
        return ["ruby", o.minitest_queue, "--queue", self.redis.url, "--build", self.id, "--worker",
                worker, "--timeout", str(o.takeover), "--max-requeues", "1",
                "--requeue-tolerance", "0.1", "run", *o.args]

    def report_command(self):
        o = self.opts
        if self.tool == "ciq":
            return [o.ciq, "report", "--queue", self.redis.url, "--build", self.id,
                    "--json", os.path.join(self.dir, "report.json")]
        # The report gives up after --report-timeout (default: --timeout); the build may last
        # longer than the take-over time.
        return ["ruby", o.minitest_queue, "--queue", self.redis.url, "--build", self.id, "--timeout",
                str(o.takeover), "--report-timeout", "3600", "report"]

    def env(self, worker, pause=False):
        o = self.opts
        if self.tool == "ciq":
            extra = {"GEM_HOME": o.ciq_gems}
            if pause:
                extra["CIQ_PAUSE_AT"] = "before-commit"
            return clean_env(**extra)
        # ci-queue 0.97 calls Pathname without requiring it (Bundler loads it in its own
        # setups); -rpathname lets its reporters run under plain Ruby.
        rubyopt = "-rpathname" + (f" -r{o.mq_pause}" if pause else "")
        return clean_env(GEM_HOME=o.ci_queue, RUBYOPT=rubyopt,
                         CI_QUEUE_MINITEST_JUNITXML=os.path.join(self.dir, f"junit-{worker}.xml"))

    def spawn(self, name, command, env):
        out = open(os.path.join(self.dir, f"{name}.out"), "w")
        err = open(os.path.join(self.dir, f"{name}.err"), "w")
        self.procs[name] = subprocess.Popen(command, cwd=self.opts.suite, env=env, stdout=out,
                                            stderr=err, start_new_session=True)

    def stderr(self, name):
        with open(os.path.join(self.dir, f"{name}.err"), errors="replace") as f:
            return f.read()

    def wait_all(self, started, limit=900):
        ends = {}
        while len(ends) < len(self.procs):
            for name, proc in self.procs.items():
                if name not in ends and proc.poll() is not None:
                    ends[name] = time.perf_counter() - started
            if time.perf_counter() - started > limit:
                for name, proc in self.procs.items():
                    if proc.poll() is None:
                        os.killpg(proc.pid, signal.SIGKILL)
                sys.exit(f"build {self.id} still running after {limit}s: see {self.dir}")
            time.sleep(0.01)
        return ends

    # What the queue holds, by tool.
    def processed_key(self, conn):
        if self.tool == "minitest-queue":
            return f"build:{self.id}:processed"
        keys = conn.call("keys", f"ciq:*{self.id}}}:g:*:processed")
        return keys[0] if keys else None


def held_by(build, conn, worker):
    """Tests `worker` holds now (reserved, no outcome yet), where the queue tells: ciq's
    running entries name a session's lease, not the worker, so for ciq it is None."""
    if build.tool != "minitest-queue":
        return None
    owners = conn.call("hgetall", f"build:{build.id}:owners") or []
    running = set(conn.call("zrange", f"build:{build.id}:running", 0, -1) or [])
    mine = f"build:{build.id}:worker:{worker}:queue"
    return sum(1 for k, v in zip(owners[::2], owners[1::2]) if v == mine and k in running)


def taken_over(build, conn):
    """Reservations the build took over from a silent worker, as the tool counts them."""
    if build.tool == "minitest-queue":
        return conn.call("llen", f"build:{build.id}:warnings")  # RESERVED_LOST_TEST warnings
    path = os.path.join(build.dir, "report.json")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)["counts"]["taken_over"]


def run_build(tool, scenario, opts, redis, conn, scratch, number):
    build = Build(tool, f"{tool}-{scenario}-{number}", opts, redis, scratch)
    workers = [f"w{i + 1}" for i in range(opts.workers)]
    conn.call("flushall", counted=False)
    notes = []
    leader = None
    if scenario == "leader-killed":
        leader = workers[0]
        build.spawn(leader, build.worker_command(leader), build.env(leader, pause=True))
        mark = "ciq: paused at before-commit" if tool == "ciq" else "bench: paused at elected"
        deadline = time.time() + 300
        while mark not in build.stderr(leader):
            if build.procs[leader].poll() is not None or time.time() > deadline:
                sys.exit(f"{tool}'s leader never paused: see {build.dir}")
            time.sleep(0.02)
        workers = workers[1:]
    conn.sent.clear()
    cpu_before, calls_before = stats(conn)
    own_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    build.spawn("report", build.report_command(), build.env("report"))
    for worker in workers:
        build.spawn(worker, build.worker_command(worker), build.env(worker))
    if leader:
        os.killpg(build.procs[leader].pid, signal.SIGKILL)
        notes.append("leader SIGKILLed before its queue was ready")
    if scenario == "worker-killed":
        victim = workers[1]
        target = len(opts.ids) // 3
        while True:
            key = build.processed_key(conn)
            done = conn.call("scard", key) if key else 0
            if done >= target:
                held = held_by(build, conn, victim)
                if held != 0:
                    break
            if build.procs[victim].poll() is not None:
                sys.exit(f"{tool}: {victim} ended before it could be killed: see {build.dir}")
            time.sleep(0.02)
        os.killpg(build.procs[victim].pid, signal.SIGKILL)
        holding = "" if held is None else f", holding {held}"
        notes.append(f"{victim} SIGKILLed at {done} tests done{holding}")
    ends = build.wait_all(started)
    wall = max(ends.values())
    own_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    own_cpu = (own_after.ru_utime + own_after.ru_stime) - (own_before.ru_utime
                                                            + own_before.ru_stime)
    cpu_after, calls_after = stats(conn)
    ours = dict(conn.sent)
    ours["info"] = ours.get("info", 0) - 1  # the closing snapshot: not in its own figures
    commands = sum(calls_after.values()) - sum(calls_before.values()) - sum(ours.values())
    by_name = {k: v - calls_before.get(k, 0) - ours.get(k, 0) for k, v in calls_after.items()}
    outcomes = outcomes_of(build, conn)
    codes = {name: proc.returncode for name, proc in build.procs.items()}
    took_over = taken_over(build, conn)
    return {
        "wall": wall, "cpu": cpu_after - cpu_before, "own_cpu": own_cpu, "commands": commands,
        "by_name": by_name, "outcomes": outcomes, "codes": codes, "notes": notes, "dir": build.dir,
        "ours": sum(conn.sent.values()) + 1,  # and the FLUSHALL before the build
        "taken_over": took_over, "says": report_says(build),
    }


def report_says(build):
    """The report step's own counts: (tests it counts as run, failed, skipped), or None."""
    if build.tool == "ciq":
        path = os.path.join(build.dir, "report.json")
        if not os.path.exists(path):
            return None
        with open(path) as f:
            c = json.load(f)["counts"]
        ran = c["passed"] + c["flaky"] + c["skipped"] + c["failed"] + c["errored"]
        return ran, c["failed"] + c["errored"], c["skipped"]
    with open(os.path.join(build.dir, "report.out"), errors="replace") as f:
        text = re.sub(r"\x1b\[[0-9;]*m", "", f.read())
    m = re.search(r"Ran (\d+) tests, \d+ assertions, (\d+) failures, (\d+) errors, (\d+) skips", text)
    if not m:
        return None
    return int(m[1]), int(m[2]) + int(m[3]), int(m[4])


def outcomes_of(build, conn):
    """{id: outcome} as the tool recorded it in Redis (minitest-queue) or its report (ciq)."""
    if build.tool == "ciq":
        path = os.path.join(build.dir, "report.json")
        if not os.path.exists(path):
            return {}
        with open(path) as f:
            return {t["id"]: t["outcome"] for t in json.load(f)["tests"]}
    b = f"build:{build.id}"
    processed = conn.call("smembers", f"{b}:processed") or []
    failed = set(conn.call("hkeys", f"{b}:error-reports") or [])
    outcomes = {}
    for entry in processed:
        outcomes[json.loads(entry)["test_id"]] = "failed" if entry in failed else "passed"
    for entry in failed:
        outcomes[json.loads(entry)["test_id"]] = "failed"
    # Skips are only in the workers' JUnit files (a killed worker writes none).
    for path in glob.glob(os.path.join(build.dir, "junit-*.xml")):
        for case in ElementTree.parse(path).iter("testcase"):
            if case.find("skipped") is not None:
                test = f"{case.get('classname')}#{case.get('name')}"
                if outcomes.get(test) == "passed":
                    outcomes[test] = "skipped"
    return outcomes


BUCKET = {"passed": "passed", "flaky": "passed", "skipped": "skipped", "failed": "failed",
          "errored": "failed"}


def compare(plain, outcomes):
    """Differences from the plain run, one line each."""
    out = []
    for test in sorted(set(plain) | set(outcomes)):
        if test not in outcomes:
            out.append(f"no outcome (plain: {plain[test]}): {test}")
        elif test not in plain:
            out.append(f"not in the plain run ({outcomes[test]}): {test}")
        elif BUCKET[plain[test]] != BUCKET[outcomes[test]]:
            out.append(f"plain {plain[test]}, here {outcomes[test]}: {test}")
    return out


def monitored(tool, opts, redis, conn, scratch):
    """One normal build watched with MONITOR: (client requests, commands inside scripts)."""
    log_path = os.path.join(scratch, f"monitor-{tool}.log")
    with open(log_path, "w") as log:
        monitor = subprocess.Popen(["redis-cli", "-p", str(redis.port), "monitor"], stdout=log,
                                   stderr=subprocess.DEVNULL)
        time.sleep(0.5)
        ours = run_build(tool, "normal", opts, redis, conn, scratch, "monitored")["ours"]
        time.sleep(0.5)
        monitor.terminate()
        monitor.wait()
    client = script = 0
    with open(log_path, errors="replace") as log:
        for line in log:
            if '] "' not in line:
                continue
            source = line.split("[", 1)[1].split("]", 1)[0]
            if "lua" in source:
                script += 1
            else:
                client += 1
    return client - ours, script


def fmt_range(values, digits=1):
    med = statistics.median(values)
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({min(values):.{digits}f}-{max(values):.{digits}f})"


def tally(outcomes, total):
    counts = {}
    for outcome in outcomes.values():
        counts[BUCKET[outcome]] = counts.get(BUCKET[outcome], 0) + 1
    not_run = total - sum(1 for t in outcomes)
    return (f"{counts.get('passed', 0)}/{counts.get('failed', 0)}/{counts.get('skipped', 0)}"
            f"/{max(not_run, 0)}")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default=os.environ.get("CIQ_BENCH_SUITE"))
    parser.add_argument("--ci-queue", default=os.environ.get("CIQ_BENCH_CI_QUEUE"),
                        help="GEM_HOME holding ci-queue (bin/minitest-queue) and redis 5.x")
    parser.add_argument("--ciq-gems", default=os.environ.get(
        "CIQ_BENCH_CIQ_GEMS", os.path.join(ROOT, "target", "ruby-gems")))
    parser.add_argument("--ciq", help="ciq binary (default: this checkout, release build)")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario and tool")
    parser.add_argument("--takeover", type=int, default=10,
                        help="seconds before a silent worker's tests or a dead leader's lock are "
                             "taken over (ciq --heartbeat-timeout/--lock-ttl, minitest-queue "
                             "--timeout); at least 10, ciq's heartbeat interval being 5 s")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--no-monitor", action="store_true",
                        help="skip the MONITOR runs (client requests vs commands in scripts)")
    parser.add_argument("args", nargs="*", help="the suite's arguments, after --")
    opts = parser.parse_args()
    if not opts.suite or not os.path.isdir(opts.suite):
        sys.exit("--suite DIR (or CIQ_BENCH_SUITE): the minitest suite's root directory is needed")
    if not opts.ci_queue:
        sys.exit("--ci-queue GEM_HOME (or CIQ_BENCH_CI_QUEUE): where ci-queue is installed is needed")
    opts.minitest_queue = os.path.join(opts.ci_queue, "bin", "minitest-queue")
    if not os.path.exists(opts.minitest_queue):
        sys.exit(f"{opts.minitest_queue} does not exist: install ci-queue into {opts.ci_queue}")
    if opts.takeover < 10:
        sys.exit("--takeover: at least 10 (ciq's heartbeat interval is 5 s, at most half of it)")
    scenarios = opts.scenarios.split(",")
    for s in scenarios:
        if s not in SCENARIOS:
            sys.exit(f"--scenarios: unknown {s!r} (known: {', '.join(SCENARIOS)})")
    opts.suite = os.path.abspath(opts.suite)
    opts.args = expand(opts.suite, opts.args or DEFAULT_ARGS)
    opts.ciq = os.path.abspath(ciq_binary(opts.ciq))
    os.makedirs(os.path.join(opts.suite, "log"), exist_ok=True)  # minitest-queue's order log

    scratch = tempfile.mkdtemp(prefix="ciq-bench-ruby-queue-")
    opts.mq_pause = os.path.join(scratch, "mq_pause.rb")
    with open(opts.mq_pause, "w") as f:
        f.write(MQ_PAUSE)
    plain, plain_wall, plain_code = plain_run(opts.suite, opts.args, opts.ciq_gems, scratch)
    opts.ids, list_wall = list_ids(opts.suite, opts.args, opts.ciq_gems, scratch)
    if set(opts.ids) != set(plain):
        sys.exit(f"the gem lists {len(opts.ids)} ids, the plain run ran {len(plain)}: "
                 f"{sorted(set(opts.ids) ^ set(plain))[:5]}")
    total = len(opts.ids)

    redis = Redis(scratch)
    conn = Conn(redis.port)
    results = {(s, t): [] for s in scenarios for t in TOOLS}
    try:
        for round_ in range(opts.repeat):
            for scenario in scenarios:
                order = TOOLS if round_ % 2 == 0 else TOOLS[::-1]
                for tool in order:
                    r = run_build(tool, scenario, opts, redis, conn, scratch, round_)
                    results[(scenario, tool)].append(r)
                    print(f"  round {round_ + 1} {scenario:<13} {tool:<14} {r['wall']:6.1f} s"
                          f"  {tally(r['outcomes'], total)}  exit {r['codes']}"
                          f"  {'; '.join(r['notes'])}", file=sys.stderr, flush=True)
        split = {}
        if not opts.no_monitor and "normal" in scenarios:
            for tool in TOOLS:
                split[tool] = monitored(tool, opts, redis, conn, scratch)
    finally:
        conn.sock.close()
        redis.stop()

    print(f"\n{total} tests ({os.path.basename(opts.suite)}), {opts.workers} workers, one Redis;"
          f" median of {opts.repeat} (range); take-over after {opts.takeover} s")
    print(f"plain minitest, one process: {plain_wall:.1f} s, exit {plain_code}, "
          f"{tally(plain, total)} passed/failed/skipped/not run")
    print(f"ids listed beforehand by one process of the gem, to check them: {list_wall:.1f} s"
          f" (not in ciq's wall time)\n")
    print("| scenario | tool | wall s | Redis CPU µs/test | commands/test | CPU s of the build's processes"
          " | passed/failed/skipped/not run"
          " | report says ran/failed/skipped | taken over | report's exit | tests unlike the plain run |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    ratios = {}
    for scenario in scenarios:
        for tool in TOOLS:
            rs = results[(scenario, tool)]
            walls = [r["wall"] for r in rs]
            cpus = [r["cpu"] * 1e6 / total for r in rs]
            cmds = [r["commands"] / total for r in rs]
            ratios[(scenario, tool)] = (statistics.median(walls), statistics.median(cpus))
            last = rs[-1]
            says = sorted({"/".join(map(str, r["says"])) if r["says"] else "-" for r in rs})
            over = sorted({r["taken_over"] for r in rs}, key=str)
            diffs = [compare(plain, r["outcomes"]) for r in rs]
            differ = sorted({len(d) for d in diffs})
            reports = sorted({r["codes"].get("report") for r in rs}, key=str)
            print(f"| {scenario} | {tool} | {fmt_range(walls)} | {fmt_range(cpus)} |"
                  f" {fmt_range(cmds, 2)} | {fmt_range([r['own_cpu'] for r in rs])} |"
                  f" {tally(last['outcomes'], total)} |"
                  f" {', '.join(says)} | {', '.join(map(str, over))} | {'/'.join(map(str, reports))} |"
                  f" {'/'.join(map(str, differ))} differ |")
    print()
    for scenario in scenarios:
        (mq_wall, mq_cpu), (ciq_wall, ciq_cpu) = ratios[(scenario, TOOLS[0])], ratios[(scenario, TOOLS[1])]
        pairs = [c["wall"] / m["wall"] for m, c in zip(results[(scenario, TOOLS[0])],
                                                       results[(scenario, TOOLS[1])])]
        print(f"{scenario}: ciq's wall time {ciq_wall / mq_wall:.2f}x minitest-queue's (round by"
              f" round: {', '.join(f'{p:.2f}' for p in pairs)}), Redis CPU per test {ciq_cpu / mq_cpu:.2f}x")
    for tool, (client, script) in split.items():
        print(f"{tool}, one normal build under MONITOR: {client / total:.2f} client requests/test,"
              f" {script / total:.2f} commands inside scripts/test")
    print("\nCommands by name, per test (last normal build):")
    for tool in TOOLS:
        if ("normal", tool) in results and results[("normal", tool)]:
            by = results[("normal", tool)][-1]["by_name"]
            top = sorted(((v, k) for k, v in by.items() if v > 0), reverse=True)[:12]
            print(f"  {tool}: " + ", ".join(f"{k} {v / total:.2f}" for v, k in top))
    print("\nDifferences from the plain run (last run of each):")
    for scenario in scenarios:
        for tool in TOOLS:
            r = results[(scenario, tool)][-1]
            for line in compare(plain, r["outcomes"])[:10]:
                print(f"  {scenario} {tool}: {line}")
            for note in r["notes"]:
                print(f"  {scenario} {tool}: {note}")
    print(f"\nlogs: {scratch}")


if __name__ == "__main__":
    main()
