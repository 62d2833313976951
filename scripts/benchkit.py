"""What the benchmarks share: a redis-server of their own on a free port, and the ciq binary."""
import json
import os
import socket
import subprocess
import sys
import tarfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def ciq_binary(given):
    """`given` (as an absolute path: benchmarks run it from scratch directories), or this checkout
    built in release mode."""
    if given:
        return os.path.abspath(given)
    subprocess.run(["cargo", "build", "--release", "--quiet"], cwd=ROOT, check=True)
    return os.path.join(ROOT, "target", "release", "ciq")


def fetch_sdist(spec, cache):
    """The unpacked sdist of `spec` (`name==version`) from PyPI, kept in `cache`: its directory."""
    name, version = spec.split("==")
    request = urllib.request.Request(f"https://pypi.org/simple/{name}/",
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
    with urllib.request.urlopen(request) as answer:
        files = json.load(answer)["files"]
    stem = f"{name.replace('-', '_')}-{version}.tar.gz".lower()
    sdist = next(f for f in files if f["filename"].lower().replace("-", "_", f["filename"].count("-") - 1) == stem)
    return _unpacked(sdist["url"], os.path.join(cache, sdist["filename"]), cache, ".tar.gz")


def fetch_crate(name, version, cache):
    """The unpacked source of crate `name` `version` from crates.io, kept in `cache`."""
    return _unpacked(f"https://static.crates.io/crates/{name}/{name}-{version}.crate",
                     os.path.join(cache, f"{name}-{version}.crate"), cache, ".crate")


def _unpacked(url, archive, cache, suffix):
    if not os.path.exists(archive):
        urllib.request.urlretrieve(url, archive + ".part")
        os.replace(archive + ".part", archive)
    directory = archive[: -len(suffix)]
    if not os.path.isdir(directory):
        with tarfile.open(archive) as tar:
            tar.extractall(cache, filter="data")
    return directory


def venv(cache, requirements, local=()):
    """A venv in `cache` with `requirements` from PyPI and the `local` project directories
    installed: its python. Made again when the list changes."""
    wanted = "\n".join(sorted(requirements) + [os.path.abspath(p) for p in local])
    home = os.path.join(cache, "venv")
    stamp = os.path.join(home, "ciq-bench-requirements")
    python = os.path.join(home, "bin", "python")
    if os.path.exists(stamp) and open(stamp).read() == wanted:
        return python
    subprocess.run([sys.executable, "-m", "venv", "--clear", home], check=True)
    subprocess.run([python, "-m", "pip", "install", "-q", *requirements, *local], check=True)
    with open(stamp, "w") as f:
        f.write(wanted)
    return python


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
