#!/usr/bin/env python3
"""Benchmark: CPU instructions Redis spends per ACK call, counted by valgrind (deterministic).

The Redis CPU figures of bench_redis.py move by a third from one run to the next on shared
machines, which hides a change of a few percent in a script. This one counts instructions
instead: a redis-server of its own runs under `valgrind --tool=callgrind`, 4 clients drive
ciq's ACK script alone (acknowledge the last test as passed, reserve the next: the steady state
of a batch-1 build) over 2,000 queued tests, and it prints the server's instructions per call,
the part inside Lua, and the same for a hand-written script that runs only the commands such a
call needs (the floor). Repeated runs agree within 0.1%.

    python3 scripts/bench_script_instructions.py [--calls 2000] [--lua-dir DIR]

`--lua-dir` measures another checkout's scripts (e.g. a worktree of an older commit). Needs
valgrind and redis-server on PATH.
"""
import argparse
import glob
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from benchkit import ROOT, free_port

# The per-test scripts' KEYS, in per_test.lua's order.
NAMES = ["state", "workers", "results", "failures", "stats", "mismatched", "queue", "running",
         "processed", "requeues", "requeued-by", "meta", "failed", "flaky", "estimates",
         "timeline", "groups"]

# The commands a batch-1 acknowledge-and-reserve call cannot do without, and nothing else.
FLOOR = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
if redis.call('GET', KEYS[1]) ~= 'ready:' .. ARGV[1] then return 'stale' end
redis.call('HMGET', KEYS[12], 'total', 'heartbeat-timeout-ms', 'seq:' .. ARGV[3])
local recorded = {}
for i = 8, #ARGV, 5 do
  redis.call('ZREM', KEYS[8], ARGV[i + 1] .. ':' .. ARGV[i])
  redis.call('SADD', KEYS[9], ARGV[i])
  redis.call('HSETNX', KEYS[3], ARGV[i], ARGV[i + 2])
  recorded[#recorded + 1] = {ARGV[i], ARGV[i + 2]}
end
local popped = redis.call('LPOP', KEYS[7], 1)
local reply
if popped then
  local lease = ARGV[3] .. '.' .. ARGV[4] .. '.1'
  redis.call('ZADD', KEYS[8], now, lease .. ':' .. popped[1])
  reply = cjson.encode({status = 'tests', tests = {{popped[1], lease}}, recorded = recorded})
else
  reply = cjson.encode({status = 'done'})
end
redis.call('HSET', KEYS[12], 'seq:' .. ARGV[3], ARGV[4], 'reply:' .. ARGV[3], reply)
return reply
"""


def resp(*args):
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = str(arg).encode()
        parts.append(f"${len(data)}\r\n".encode() + data + b"\r\n")
    return b"".join(parts)


def call(sock, *args):
    """Sends a command and returns its reply (a bulk string, a status, or '' once closed)."""
    sock.sendall(resp(*args))
    buf = b""
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            return ""
        buf += chunk
    line, rest = buf.split(b"\r\n", 1)
    if line.startswith(b"-"):
        sys.exit(f"redis-server refused a call: {line.decode()}")
    if line.startswith(b"$"):
        size = int(line[1:])
        while len(rest) < size + 2:
            rest += sock.recv(65536)
        return rest[:size].decode()
    return line.decode()


def ack_source(lua_dir):
    """ciq's ACK script as the server runs it: the shared helpers, then the script."""
    parts = ["lib.lua", "per_test.lua", "handout.lua", "ack.lua"]
    return "".join(open(os.path.join(lua_dir, name)).read() for name in parts)


def drive(port, source, calls, measured, workers=4):
    """Runs `source` as the ACK script over `calls` tests queued on the redis-server at `port`:
    `workers` clients each acknowledge the test they hold as passed and reserve the next, one
    call at a time, until the queue is empty (the steady state of a batch-1 build). The calls,
    and not the set-up, run inside the context manager `measured`. Returns a connection."""
    admin = socket.create_connection(("127.0.0.1", port))
    keys = [f"ciq:{{bench}}:{name}" for name in NAMES]
    # Scripts before the timeline take four arguments per result, without the duration.
    group = re.search(r"for i = 8, #ARGV, (\d)", source)
    with_duration = group is None or group.group(1) == "5"
    call(admin, "SET", keys[0], "ready:g1")
    call(admin, "HSET", keys[11], "total", calls, "heartbeat-timeout-ms", 30000, "fresh", 1)
    call(admin, "ZADD", keys[7], "+inf", "")
    for start in range(0, calls, 500):
        call(admin, "RPUSH", keys[6], *[f"noop/{n:05}" for n in range(start, min(calls, start + 500))])
    sha = call(admin, "SCRIPT", "LOAD", source)

    def worker(n):
        with socket.create_connection(("127.0.0.1", port)) as sock:
            held, seq = [], 0
            while True:
                seq += 1
                args = ["g1", f"w{n}", f"session-{n:02}-bench", seq, 600000, "0", "1"]
                for test, lease in held:
                    args += [test, lease, "passed", ""] + (["1"] if with_duration else [])
                reply = json.loads(call(sock, "EVALSHA", sha, len(keys), *keys, *args))
                if reply["status"] != "tests":
                    return
                held = reply["tests"]

    with measured:
        threads = [threading.Thread(target=worker, args=(n,)) for n in range(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if int(call(admin, "SCARD", keys[8]).lstrip(":")) != calls:
        sys.exit("not every test was acknowledged: the script under test is broken")
    return admin


class Counting:
    """Callgrind counts instructions only inside this context."""

    def __init__(self, pid):
        self.pid = str(pid)

    def switch(self, state):
        subprocess.run(["callgrind_control", "-i", state, self.pid], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def __enter__(self):
        self.switch("on")

    def __exit__(self, *_):
        self.switch("off")


def measure(source, calls, workers=4):
    """(instructions per call, of which inside Lua) for `source` as the ACK script."""
    scratch = tempfile.mkdtemp(prefix="ciq-bench-instructions-")
    port = free_port()
    server = subprocess.Popen(
        ["valgrind", "--tool=callgrind", "--instr-atstart=no",
         f"--callgrind-out-file={scratch}/callgrind.out", "redis-server", "--port", str(port),
         "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", scratch],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit("redis-server under valgrind did not start")
        admin = drive(port, source, calls, Counting(server.pid), workers)
        call(admin, "SHUTDOWN", "NOSAVE")
        server.wait(timeout=60)
        out = glob.glob(f"{scratch}/callgrind.out*")[0]
        total = 0
        with open(out) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    total = int(line.split()[1])
        annotated = subprocess.run(["callgrind_annotate", "--inclusive=yes", out],
                                   capture_output=True, text=True).stdout
        inclusive = {}
        for line in annotated.splitlines():
            match = re.match(r"\s*([\d,]+) \(.*\)\s+\S*:(\w+) ", line)
            if match:
                inclusive.setdefault(match.group(2), int(match.group(1).replace(",", "")))
        return total / calls, inclusive.get("lua_pcall", 0) / calls
    finally:
        if server.poll() is None:
            server.kill()
        shutil.rmtree(scratch, ignore_errors=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--lua-dir", default=os.path.join(ROOT, "src/queue/redis/lua"))
    args = parser.parse_args()
    if not shutil.which("valgrind"):
        sys.exit("this benchmark needs valgrind (apt-get install valgrind)")
    ack = ack_source(args.lua_dir)
    print(f"{args.calls} ACK calls (one passed test acknowledged, one reserved) from 4 clients")
    print("script | instructions / call | of which in Lua")
    for name, source in [("ciq's ACK (" + args.lua_dir + ")", ack), ("floor: the commands alone", FLOOR)]:
        total, in_lua = measure(source, args.calls)
        print(f"{name} | {total / 1000:.1f}k | {in_lua / 1000:.1f}k")


if __name__ == "__main__":
    main()
