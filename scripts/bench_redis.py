#!/usr/bin/env python3
"""Benchmark: what a build costs its Redis, per test.

Runs 2,000 no-op tests on 4 workers and a report against a redis-server of its own, at batch
sizes 1 and 8, and prints per test: client round trips, commands run inside scripts,
Redis CPU in microseconds (from INFO cpu: the server's whole user+system time over the build,
network included, and each part, system time being the kernel's, which no script change
lowers; and from INFO commandstats: time inside scripts), the wall time, and the bytes of the
build's timeline key (`ciq:{<build>}:timeline`, 0 for a build before it; ids are 10 bytes). The
round trips and script commands come from a second run watched with MONITOR (which costs CPU
itself, so the CPU figures come from the first run, unwatched).

    python3 scripts/bench_redis.py [--ciq PATH] [--tests 2000] [--workers 4] [--batch-sizes 1,8]

The no-op tests run in one persistent process per worker (`--persistent`, a few lines of Python
that pass every test): a process started per test would load the 2-core machines these figures
come from so much that Redis's own CPU per command grows several times over, and the figures
would measure the machine, not the protocol. `--runner command` starts `true` per batch instead.

Then the floor under those figures on this machine: the Redis CPU of one request per test from
as many connections as workers, each waiting for its reply: a PING, then a script call shaped
like ciq's (14 KEYS, 8 ARGV) that does nothing, and one that runs only the commands a per-test
call cannot do without (TIME, GET, HMGET, ZREM, SADD, HSETNX, ZADD, HSET). Sent back to back,
those show the machine's cost of a request; so the last figures drive that floor script and
ciq's ACK script the way a batch-1 build drives its ACK (bench_script_instructions.py's driver:
queued tests, each client acknowledging the test it holds and reserving the next), which is
where the floor meets a build's keys and pace.

Without --ciq it builds this checkout in release mode. Pass another build's binary to compare
(e.g. a worktree of an older commit): the figures are measured in one run, on one machine.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

from benchkit import ROOT, Redis, ciq_binary
from bench_script_instructions import FLOOR, ack_source, drive


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
        user, system = redis.cpu_seconds()
        wall = build(ciq, redis, tests_file, workers, batch, "cpu", runner)
        user_after, system_after = redis.cpu_seconds()
        user, system = user_after - user, system_after - system
        usec = redis.script_usec()
        timeline = int(redis.cli("strlen", "ciq:{cpu}:timeline").strip() or 0)
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
            "cpu us": (user + system) * 1e6 / tests,
            "user us": user * 1e6 / tests,
            "system us": system * 1e6 / tests,
            "script us": usec / tests,
            "wall s": wall,
            "timeline bytes": timeline / tests,
        }
    finally:
        redis.stop()


FLOOR_SCRIPTS = [
    ("PING, no script at all", None),
    ("a script that does nothing", "return 1"),
    ("only the unavoidable commands",
     "redis.call('TIME') redis.call('GET', KEYS[1]) redis.call('HMGET', KEYS[12], 'a', 'b', 'c') "
     "redis.call('ZREM', KEYS[8], 'x') redis.call('SADD', KEYS[9], 't') "
     "redis.call('HSETNX', KEYS[3], 't', 'passed') redis.call('ZADD', KEYS[8], 1, 'y') "
     "redis.call('HSET', KEYS[12], 'reply', 'r') return 1"),
]


def resp(*args):
    """A command in the Redis protocol."""
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
    return b"".join(parts)


def floor(calls, connections):
    """Redis CPU µs per call of each FLOOR_SCRIPTS entry, (total, user, system): the run of
    three with the lowest total."""
    scratch = tempfile.mkdtemp(prefix="ciq-bench-floor-")
    redis = Redis(scratch)
    keys = [f"ciq:{{b}}:k{i}" for i in range(14)]
    try:
        figures = []
        for name, source in FLOOR_SCRIPTS:
            if source is None:
                call = resp("PING")
            else:
                sha = redis.cli("script", "load", source).strip()
                call = resp("EVALSHA", sha, "14", *keys, "gen", "w1", "session", "7", "600000",
                            "0", "1", "noop/1")

            def connection():
                with socket.create_connection(("127.0.0.1", redis.port)) as sock:
                    for _ in range(calls // connections):
                        sock.sendall(call)
                        if not sock.recv(4096):
                            sys.exit("redis-server closed the connection")

            best = None
            for _ in range(3):
                user, system = redis.cpu_seconds()
                threads = [threading.Thread(target=connection) for _ in range(connections)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                user_after, system_after = redis.cpu_seconds()
                usec = [(user_after - user) * 1e6 / calls, (system_after - system) * 1e6 / calls]
                usec = (sum(usec), *usec)
                best = usec if best is None else min(best, usec)
            figures.append((name, best))
        return figures
    finally:
        redis.stop()


class Cpu:
    """The Redis CPU (user, system) seconds spent inside this context."""

    def __init__(self, redis):
        self.redis = redis
        self.spent = (0.0, 0.0)

    def __enter__(self):
        self.start = self.redis.cpu_seconds()

    def __exit__(self, *_):
        end = self.redis.cpu_seconds()
        self.spent = (end[0] - self.start[0], end[1] - self.start[1])


# Less than any queue can do: mark the test held done and pop the next, with no time, lease,
# staleness check or remembered reply. What this costs, no protocol of one request per test
# can go below.
BARE = """
if ARGV[8] then redis.call('SADD', KEYS[9], ARGV[8]) end
local popped = redis.call('LPOP', KEYS[7], 1)
if not popped then return '{"status":"done"}' end
return cjson.encode({status = 'tests', tests = {{popped[1], 'lease'}}})
"""


def driven(calls, workers):
    """Redis CPU µs per call, (total, user, system), of ciq's ACK script, of the floor script
    (only the commands such a call needs) and of BARE, each driven alone as a batch-1 build
    drives the ACK: queued tests, every client acknowledging one and reserving the next, the
    keys growing as in a build. The run of three with the lowest total."""
    ack = ack_source(os.path.join(ROOT, "src/queue/redis/lua"))
    figures = []
    for name, source in [("ciq's ACK", ack), ("floor: the commands alone", FLOOR),
                         ("bare: SADD and LPOP only", BARE)]:
        best = None
        for _ in range(3):
            scratch = tempfile.mkdtemp(prefix="ciq-bench-driven-")
            redis = Redis(scratch)
            try:
                cpu = Cpu(redis)
                drive(redis.port, source, calls, cpu, workers).close()
            finally:
                redis.stop()
            user, system = (spent * 1e6 / calls for spent in cpu.spent)
            usec = (user + system, user, system)
            best = usec if best is None else min(best, usec)
        figures.append((name, best))
    return figures


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ciq", help="a ciq binary (default: build this checkout)")
    parser.add_argument("--tests", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--runner", choices=["persistent", "command"], default="persistent")
    parser.add_argument("--floor-calls", type=int, default=8000,
                        help="requests per run of the floor figures, and tests queued for the driven ones")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per batch size; the lowest CPU figure is printed")
    args = parser.parse_args()
    ciq = ciq_binary(args.ciq)
    print(f"{args.tests} no-op tests, {args.workers} workers, {args.runner} runner, {ciq}")
    print("batch | round trips/test | script commands/test | Redis CPU us/test (INFO cpu) "
          "| of which user | of which system | in scripts us/test | wall s "
          "| timeline bytes/test")
    for batch in [int(b) for b in args.batch_sizes.split(",")]:
        m = min((measure(ciq, args.tests, args.workers, batch, args.runner)
                 for _ in range(args.repeat)), key=lambda m: m["cpu us"])
        print(f"{batch:5} | {m['round trips']:16.2f} | {m['script commands']:20.1f} | "
              f"{m['cpu us']:28.1f} | {m['user us']:14.1f} | {m['system us']:16.1f} | "
              f"{m['script us']:18.1f} | {m['wall s']:6.1f} | {m['timeline bytes']:19.1f}")
    print(f"floor: one request per test, {args.floor_calls} requests from {args.workers} connections")
    for name, (total, user, system) in floor(args.floor_calls, args.workers):
        print(f"  {name:<32} {total:6.1f} us Redis CPU per call "
              f"({user:.1f} user, {system:.1f} system)")
    print(f"driven like a batch-1 build's ACK: {args.floor_calls} queued tests, "
          f"{args.workers} connections")
    for name, (total, user, system) in driven(args.floor_calls, args.workers):
        print(f"  {name:<32} {total:6.1f} us Redis CPU per call "
              f"({user:.1f} user, {system:.1f} system)")


if __name__ == "__main__":
    main()
