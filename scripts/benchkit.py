"""What the benchmarks share: a redis-server of their own on a free port, and the ciq binary."""
import os
import socket
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ciq_binary(given):
    """`given`, or this checkout built in release mode."""
    if given:
        return given
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "ciq")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Redis:
    """A redis-server of the benchmark's own, without persistence, stopped with `stop`."""

    def __init__(self, scratch):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", scratch],
            stdout=subprocess.DEVNULL,
        )
        for _ in range(100):
            if self.cli("ping").strip() == "PONG":
                return
            time.sleep(0.1)
        sys.exit("redis-server did not start")

    def cli(self, *args):
        return subprocess.run(["redis-cli", "-p", str(self.port), *args], capture_output=True,
                              text=True).stdout

    def info(self, section):
        fields = {}
        for line in self.cli("info", section).splitlines():
            if ":" in line and not line.startswith("#"):
                key, value = line.split(":", 1)
                fields[key] = value.strip()
        return fields

    def cpu_seconds(self):
        """The server's CPU time so far, (user, system) in seconds: system time is the kernel's
        work for the server (sockets, wake-ups), which no script change can lower."""
        cpu = self.info("cpu")
        return float(cpu["used_cpu_user"]), float(cpu["used_cpu_sys"])

    def script_usec(self):
        """Time inside scripts (EVALSHA's usec, which includes the commands the scripts run:
        those are also listed on their own, so they are not added again)."""
        total = 0
        for key, value in self.info("commandstats").items():
            if key in ("cmdstat_evalsha", "cmdstat_eval"):
                parts = dict(p.split("=") for p in value.split(","))
                total += int(parts["usec"])
        return total

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def stop(self):
        self.proc.terminate()
        self.proc.wait()
