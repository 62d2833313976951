"""Drive `python -m pytest -p ciq --ciq-persistent` as ciq does: JSON lines over a pipe.

The suites are ciq's fixture suites (tests/fixtures/pytest_suite, whose expected.json lists
every test's outcome, and tests/fixtures/pytest_collect_error), plus small suites written to
tmp_path for the cases they do not cover (output written around pytest's capture, stdin,
session fixtures, crashes).
"""

from __future__ import annotations

import json
import os
import queue
import re
import subprocess
import sys
import tempfile
import textwrap
import threading
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
SUITE = REPO / "tests" / "fixtures" / "pytest_suite"
COLLECT_ERROR = REPO / "tests" / "fixtures" / "pytest_collect_error"
EXPECTED = json.loads((SUITE / "expected.json").read_text(encoding="utf-8"))

# No answer within this long means the plugin hangs: fail instead of blocking the run.
TIMEOUT = 60


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    # The outer pytest's settings must not leak into the inner one.
    for name in ("PYTEST_ADDOPTS", "PYTEST_CURRENT_TEST", "PYTEST_DISABLE_PLUGIN_AUTOLOAD"):
        env.pop(name, None)
    env["CIQ_PROTOCOL"] = "1"
    env.update(extra)
    return env


def run_pytest(*args: str) -> subprocess.CompletedProcess[str]:
    """A plain (batch) pytest run on the fixture suite."""
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=SUITE,
        check=False,
        capture_output=True,
        text=True,
        env=_env(),
        timeout=TIMEOUT,
    )


def summary_counts(line: str) -> dict[str, int]:
    """pytest's final summary line ("3 failed, 15 passed, ... in 0.1s") as counts."""
    words = {"errors": "error"}
    return {words.get(word, word): int(n) for n, word in re.findall(r"(\d+) (\w+)", line.split(" in ")[0])}


#: EXPECTED's pytest summary without its zero counts, which pytest does not print.
PYTEST_SUMMARY = {k: v for k, v in EXPECTED["pytest_summary"].items() if v}


class Worker:
    """One persistent pytest process, spoken to as ciq does."""

    def __init__(self, cwd: Path, *args: str, env: dict[str, str] | None = None) -> None:
        # stderr goes to a file: a pipe nobody reads could fill up and block the process.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the worker)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "ciq", "--ciq-persistent", *args],
            cwd=cwd,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=_env(**(env or {})),
        )
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self._lines.put(line)
        self._lines.put(None)

    def send(self, message: dict[str, Any]) -> None:
        self.send_raw(json.dumps(message).encode("utf-8") + b"\n")

    def send_raw(self, data: bytes) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def recv(self) -> dict[str, Any] | None:
        """The next protocol message, None at EOF. Every stdout line must be one."""
        try:
            line = self._lines.get(timeout=TIMEOUT)
        except queue.Empty:
            raise AssertionError(f"no message within {TIMEOUT}s; stderr:\n{self.stderr()}") from None
        if line is None:
            return None
        assert line.endswith(b"\n"), f"unterminated line on stdout: {line!r}"
        try:
            message = json.loads(line.decode("utf-8"))
        except ValueError:
            raise AssertionError(f"stdout carries a non-protocol line: {line!r}") from None
        assert isinstance(message, dict), line
        return message

    def ready(self) -> dict[str, Any]:
        message = self.recv()
        assert message is not None and message["type"] == "ready", (message, self.stderr())
        return message

    def fatal(self) -> str:
        """The message of the fatal the worker must send instead of ready."""
        message = self.recv()
        assert message is not None and message["type"] == "fatal", (message, self.stderr())
        assert set(message) == {"type", "message"}, message
        return message["message"]

    def run(self, test_id: str, next_id: str | None = None, keep: bool = False) -> dict[str, Any]:
        message: dict[str, Any] = {"type": "run", "id": test_id}
        if next_id is not None:
            message["next"] = next_id
        if keep:
            message["keep"] = True
        self.send(message)
        result = self.recv()
        assert result is not None, f"EOF instead of a result; stderr:\n{self.stderr()}"
        assert result["type"] == "result" and result["id"] == test_id, result
        assert set(result) >= {"outcome", "duration", "output"}, result
        assert isinstance(result["duration"], float) and result["duration"] >= 0, result
        assert isinstance(result["output"], str), result
        return result

    def shutdown(self) -> int:
        self.send({"type": "shutdown"})
        return self.wait()

    def close_stdin(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()

    def wait(self) -> int:
        """Exit status, once stdout has nothing more than protocol messages."""
        rest = []
        while True:
            message = self.recv()
            if message is None:
                break
            rest.append(message)
        assert not rest, f"unexpected messages: {rest}"
        return self.proc.wait(timeout=TIMEOUT)

    def stderr(self) -> str:
        self._stderr.seek(0)
        return self._stderr.read().decode("utf-8", "replace")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
        self._stderr.close()


@pytest.fixture
def start():
    workers: list[Worker] = []

    def start(cwd: Path, *args: str, env: dict[str, str] | None = None) -> Worker:
        worker = Worker(cwd, *args, env=env)
        workers.append(worker)
        return worker

    yield start
    for worker in workers:
        worker.kill()


def write_suite(root: Path, files: dict[str, str]) -> Path:
    """A suite of its own in root: its pytest.ini keeps the outer settings out."""
    (root / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    for name, text in files.items():
        (root / name).write_text(textwrap.dedent(text), encoding="utf-8")
    return root


# --- The fixture suite, every test once ----------------------------------------------------


@pytest.fixture(scope="module")
def suite_results():
    """Runs every test of the fixture suite in one persistent process."""
    worker = Worker(SUITE)
    try:
        ready = worker.ready()
        results = {test_id: worker.run(test_id) for test_id in EXPECTED["by_test"]}
        status = worker.shutdown()
        yield {"ready": ready, "results": results, "status": status, "stderr": worker.stderr()}
    finally:
        worker.kill()


def test_ready_message(suite_results):
    ready = suite_results["ready"]
    assert ready == {
        "type": "ready",
        "protocol": 1,
        "framework": "pytest",
        "framework_version": pytest.__version__,
        "tests": EXPECTED["tests"],
        "lists": True,
    }


@pytest.mark.parametrize("test_id", list(EXPECTED["by_test"]))
def test_outcome(suite_results, test_id):
    result = suite_results["results"][test_id]
    assert result["outcome"] == EXPECTED["by_test"][test_id]["ciq"], result


def test_shutdown_exits_zero_although_tests_failed(suite_results):
    assert suite_results["status"] == 0, suite_results["stderr"]


def test_terminal_output_goes_to_stderr(suite_results):
    # pytest's own reporting still happens, on stderr, summary included.
    stderr = suite_results["stderr"]
    assert "test session starts" in stderr
    summary = stderr.strip().splitlines()[-1]
    assert summary_counts(summary) == PYTEST_SUMMARY, stderr


def output_of(suite_results, test_id: str) -> str:
    return suite_results["results"][test_id]["output"]


def test_failure_output_has_traceback_and_captured_stdout(suite_results):
    output = output_of(suite_results, "test_basic.py::test_failure_with_output")
    assert "AssertionError: expected the answer to be 42, got 41" in output
    assert "test_basic.py:21: AssertionError" in output
    assert "Captured stdout call" in output
    assert "about to compare 41 with 42" in output


def test_pass_output_is_empty_even_when_it_printed(suite_results):
    assert output_of(suite_results, "test_basic.py::test_prints_and_passes") == ""


def test_skip_and_xfail_output_give_the_reason(suite_results):
    assert (
        output_of(suite_results, "test_outcomes.py::test_skipped_by_marker")
        == "skipped: not supported on this platform"
    )
    assert output_of(suite_results, "test_outcomes.py::test_skipped_at_runtime") == "skipped: feature flag is off"
    assert (
        output_of(suite_results, "test_outcomes.py::test_xfail_fails_as_expected") == "xfail: known bug #12: rounding"
    )


def test_xpass_output(suite_results):
    assert output_of(suite_results, "test_outcomes.py::test_xpass_not_strict") == "xpass: was flaky once"
    assert "[XPASS(strict)] should fail until #34 is fixed" in output_of(
        suite_results, "test_outcomes.py::test_xpass_strict"
    )


def test_fixture_errors_say_which_phase(suite_results):
    setup = output_of(suite_results, "test_outcomes.py::test_error_in_fixture_setup")
    assert setup.startswith("ERROR at setup of test_error_in_fixture_setup\n")
    assert "RuntimeError: broken_resource: could not connect" in setup
    teardown = output_of(suite_results, "test_outcomes.py::test_passes_then_teardown_errors")
    assert teardown.startswith("ERROR at teardown of test_passes_then_teardown_errors\n")
    # A failed call then a teardown error: failed, with both tracebacks.
    both = output_of(suite_results, "test_outcomes.py::test_fails_then_teardown_errors")
    assert "the test's own failure" in both and "ERROR at teardown of" in both


# --- Protocol details ----------------------------------------------------------------------


def test_unknown_id_is_errored_and_the_worker_goes_on(start):
    worker = start(SUITE)
    worker.ready()
    result = worker.run("test_basic.py::test_does_not_exist")
    assert result["outcome"] == "errored"
    assert "unknown test id" in result["output"]
    assert worker.run("test_basic.py::test_addition")["outcome"] == "passed"
    assert worker.shutdown() == 0


def test_unknown_message_types_and_fields_are_ignored(start):
    worker = start(SUITE)
    worker.ready()
    worker.send({"type": "hello-from-the-future", "payload": [1, 2]})
    worker.send_raw(b"\n")  # blank lines too
    worker.send({"type": "run", "id": "test_basic.py::test_addition", "priority": 7})
    result = worker.recv()
    assert result is not None and result["type"] == "result" and result["outcome"] == "passed"
    assert worker.shutdown() == 0


@pytest.mark.parametrize("args", [(), ("-k", "test_params")])
def test_list_gives_what_collect_only_prints(start, args):
    # ciq queues these ids and sends them back in `run`: byte for byte the batch listing's.
    listing = run_pytest("--collect-only", "-p", "no:cacheprovider", *args, "--verbosity=-1")
    expected = listing.stdout.split("\n\n")[0].splitlines()
    worker = start(SUITE, *args)
    assert worker.ready()["tests"] == len(expected)
    worker.send({"type": "list"})
    assert worker.recv() == {"type": "list", "ids": expected}
    assert worker.run(expected[-1])["outcome"] in ("passed", "failed", "skipped", "errored")
    assert worker.shutdown() == 0


def test_eof_on_stdin_exits_zero(start):
    worker = start(SUITE)
    worker.ready()
    assert worker.run("test_basic.py::test_failure_with_output")["outcome"] == "failed"
    worker.close_stdin()
    assert worker.wait() == 0


def test_same_test_twice(start):
    # ciq may hand a worker a test again (a requeue); class fixtures are set up again.
    worker = start(SUITE)
    worker.ready()
    test_id = "test_class_fixture.py::TestWithClassFixture::test_resource_set_up_once"
    assert worker.run(test_id)["outcome"] == "passed"
    assert worker.run(test_id)["outcome"] == "passed"
    assert worker.run("test_unittest_style.py::CalculatorTest::test_add")["outcome"] == "passed"
    assert worker.run("test_unittest_style.py::CalculatorTest::test_add")["outcome"] == "passed"
    assert worker.shutdown() == 0


def test_user_args_apply(start):
    # -k deselects: the ready count says so, and a deselected id is unknown.
    worker = start(SUITE, "-k", "test_params")
    assert worker.ready()["tests"] == 6
    assert worker.run("test_params.py::test_double[list[2]]")["outcome"] == "passed"
    assert worker.run("test_basic.py::test_addition")["outcome"] == "errored"
    assert worker.shutdown() == 0


def test_invalid_json_from_ciq_is_a_protocol_error(start):
    worker = start(SUITE)
    worker.ready()
    worker.send_raw(b"this is not json\n")
    assert worker.wait() == 3
    assert "ciq protocol error" in worker.stderr()


# --- Failing before ready ------------------------------------------------------------------


# -x: pytest would stop collecting at the first error; the worker still reports it as such.
@pytest.mark.parametrize("args", [[], ["--continue-on-collection-errors"], ["-x"]], ids=["plain", "continue", "x"])
def test_collection_error_is_fatal(start, args):
    worker = start(COLLECT_ERROR, *args)
    fatal = worker.fatal()
    assert fatal.startswith("pytest could not collect the tests (1 error):"), fatal
    assert "test_broken_import.py" in fatal
    assert "ModuleNotFoundError: No module named 'ciq_module_that_does_not_exist'" in fatal
    assert worker.wait() == 2


def test_collect_only_is_refused(start):
    worker = start(SUITE, "--collect-only")
    assert worker.fatal() == "pytest usage error: --ciq-persistent cannot be combined with --collect-only"
    assert worker.wait() == 4


@pytest.mark.parametrize("option", ["--stepwise", "--sw", "--sw-skip"])
def test_stepwise_is_refused(start, option):
    worker = start(SUITE, option)
    assert worker.fatal() == (
        "pytest usage error: --ciq-persistent cannot be combined with --stepwise/--sw: stepwise drops "
        "the tests that passed last time from the collection and stops at the first failure, while "
        "ciq decides which tests run"
    )
    assert worker.wait() == 4


def test_xdist_is_refused(start):
    pytest.importorskip("xdist")
    worker = start(SUITE, "-n", "2")
    assert worker.fatal() == (
        "pytest usage error: --ciq-persistent runs tests in this process: drop pytest-xdist's -n/--dist "
        "(ciq distributes the tests), or add -p no:xdist"
    )
    assert worker.wait() == 4


def test_missing_path_is_fatal(start):
    worker = start(SUITE, "no_such_file.py")
    assert "its stderr says why" in worker.fatal()
    assert worker.wait() != 0
    assert "no_such_file.py" in worker.stderr()


def test_plugin_loads_with_autoload_disabled(start):
    # -p ciq (which Worker passes, as ciq does) loads the plugin by its entry point name.
    worker = start(SUITE, env={"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1"})
    assert worker.ready()["tests"] == EXPECTED["tests"]
    assert worker.run("test_basic.py::test_addition")["outcome"] == "passed"
    assert worker.shutdown() == 0


# --- Output around pytest's capture, stdin ----------------------------------------------------

NOISY = {
    "test_noisy.py": """
        import os, subprocess, sys

        def test_print():
            print("print-marker")

        def test_fd_write():
            os.write(1, b"fd1-marker\\n")

        def test_subprocess():
            subprocess.run([sys.executable, "-c", "print('child-marker')"], check=True)

        def test_real_stdout():
            sys.__stdout__.write("dunder-marker\\n")
            sys.__stdout__.flush()

        def test_stdin_is_empty():
            # fd 0 is /dev/null, not the protocol pipe (under capture, pytest also makes
            # sys.stdin raise on read).
            assert os.read(0, 100) == b""

        def test_unicode_failure():
            print("caf\\u00e9 \\u2713 \\udcff")
            assert False, "\\u00fcml\\u00e4ut"
    """,
    "conftest.py": """
        print("conftest-import-marker")
    """,
}
MARKERS = ["print-marker", "fd1-marker", "child-marker", "dunder-marker"]


@pytest.mark.parametrize("capture", ["fd", "sys", "no"])
def test_output_never_reaches_the_protocol_channel(start, tmp_path, capture):
    # Worker.recv fails on any stdout line that is not a protocol message.
    suite = write_suite(tmp_path, NOISY)
    worker = start(suite, f"--capture={capture}")
    ready = worker.ready()
    results = {}
    # Twice over, so a message eaten by the stdin test would show as a missing answer.
    for name in ["test_print", "test_fd_write", "test_subprocess", "test_real_stdout", "test_stdin_is_empty"] * 2:
        results[name] = worker.run(f"test_noisy.py::{name}")
    assert all(r["outcome"] == "passed" for r in results.values()), results
    assert worker.shutdown() == 0
    assert ready["tests"] == 6
    if capture == "no":
        # Nothing captured them: they went to stderr, not stdout.
        for marker in MARKERS + ["conftest-import-marker"]:
            assert marker in worker.stderr()


def test_unicode_and_undecodable_output(start, tmp_path):
    worker = start(write_suite(tmp_path, NOISY))
    worker.ready()
    result = worker.run("test_noisy.py::test_unicode_failure")
    assert result["outcome"] == "failed"
    assert "caf\u00e9 \u2713" in result["output"]
    assert "\u00fcml\u00e4ut" in result["output"]
    assert "\\udcff" in result["output"]  # a lone surrogate, escaped visibly
    assert worker.shutdown() == 0


# --- Scopes, durations, crashes --------------------------------------------------------------

SCOPES = {
    "conftest.py": """
        import os
        import pytest

        def log(event):
            with open(os.environ["SCOPE_LOG"], "a") as f:
                f.write(event + "\\n")

        @pytest.fixture(scope="session")
        def session_resource():
            log("session-setup")
            yield
            log("session-teardown")
            if os.environ.get("FAIL_SESSION_TEARDOWN"):
                raise RuntimeError("session teardown went wrong")

        @pytest.fixture(scope="module")
        def module_resource():
            log("module-setup")
            yield
            log("module-teardown")
    """,
    "test_scopes.py": """
        import os, time

        def test_one(session_resource, module_resource):
            pass

        def test_two(session_resource, module_resource):
            pass

        def test_slow():
            time.sleep(0.3)

        def test_crash():
            os._exit(7)

        def test_fails(session_resource):
            assert False, "failing on purpose"

        def test_asks_to_stop(session_resource, request):
            # What a plugin may do, as -x and --stepwise do inside pytest.
            request.session.shouldstop = "a plugin wants to stop"
    """,
}


def scope_log(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def test_session_fixtures_live_until_shutdown_narrower_scopes_per_test(start, tmp_path, monkeypatch):
    log = tmp_path / "scopes.log"
    monkeypatch.setenv("SCOPE_LOG", str(log))
    worker = start(write_suite(tmp_path, SCOPES))
    worker.ready()
    assert worker.run("test_scopes.py::test_one")["outcome"] == "passed"
    assert worker.run("test_scopes.py::test_two")["outcome"] == "passed"
    assert worker.run("test_scopes.py::test_one")["outcome"] == "passed"
    assert scope_log(log) == ["session-setup"] + ["module-setup", "module-teardown"] * 3
    assert worker.shutdown() == 0
    assert scope_log(log)[-1] == "session-teardown"


KEPT = {
    "conftest.py": """
        import os
        import pytest

        @pytest.fixture(scope="module")
        def module_resource(request):
            with open(os.environ["SCOPE_LOG"], "a") as f:
                f.write(f"setup-{request.module.__name__}\\n")
            yield
            with open(os.environ["SCOPE_LOG"], "a") as f:
                f.write(f"teardown-{request.module.__name__}\\n")
            if os.environ.get("FAIL_MODULE_TEARDOWN") == request.module.__name__:
                raise RuntimeError("module teardown went wrong")
    """,
    "test_a.py": """
        def test_one(module_resource):
            pass

        def test_two(module_resource):
            pass
    """,
    "test_b.py": """
        def test_three(module_resource):
            pass
    """,
}


def kept_worker(start, tmp_path, monkeypatch, fail_teardown=False):
    monkeypatch.setenv("SCOPE_LOG", str(tmp_path / "scopes.log"))
    if fail_teardown:
        monkeypatch.setenv("FAIL_MODULE_TEARDOWN", "test_a")
    worker = start(write_suite(tmp_path, KEPT))
    worker.ready()
    return worker


def test_keep_leaves_a_module_up_for_the_next_test_in_it(start, tmp_path, monkeypatch):
    """ciq does not know the next test yet (the end of a batch) and lets the plugin keep."""
    worker = kept_worker(start, tmp_path, monkeypatch)
    first = worker.run("test_a.py::test_one", keep=True)
    assert first["outcome"] == "passed" and first["kept"] is True, first
    assert scope_log(tmp_path / "scopes.log") == ["setup-test_a"]
    second = worker.run("test_a.py::test_two")
    assert second["outcome"] == "passed" and "previous" not in second, second
    assert scope_log(tmp_path / "scopes.log") == ["setup-test_a", "teardown-test_a"]
    assert worker.shutdown() == 0


def test_settle_tears_down_what_was_kept(start, tmp_path, monkeypatch):
    worker = kept_worker(start, tmp_path, monkeypatch)
    assert worker.run("test_a.py::test_one", keep=True)["kept"] is True
    worker.send({"type": "settle"})
    assert worker.recv() == {"type": "settled"}
    assert scope_log(tmp_path / "scopes.log") == ["setup-test_a", "teardown-test_a"]
    # Nothing kept: settle answers all the same.
    worker.send({"type": "settle"})
    assert worker.recv() == {"type": "settled"}
    assert worker.shutdown() == 0


def test_without_keep_nothing_is_kept(start, tmp_path, monkeypatch):
    """An older ciq never sends keep, and could not hear about a failed teardown later."""
    worker = kept_worker(start, tmp_path, monkeypatch)
    result = worker.run("test_a.py::test_one")
    assert "kept" not in result, result
    assert scope_log(tmp_path / "scopes.log") == ["setup-test_a", "teardown-test_a"]
    assert worker.shutdown() == 0


@pytest.mark.parametrize("then", ["run", "settle"])
def test_a_kept_teardown_that_fails_errors_the_kept_test(start, tmp_path, monkeypatch, then):
    worker = kept_worker(start, tmp_path, monkeypatch, fail_teardown=True)
    assert worker.run("test_a.py::test_one", keep=True)["outcome"] == "passed"
    if then == "run":
        answer = worker.run("test_b.py::test_three")
        assert answer["outcome"] == "passed", answer  # its own run went well
    else:
        worker.send({"type": "settle"})
        answer = worker.recv()
        assert answer is not None and answer["type"] == "settled", answer
    previous = answer["previous"]
    assert previous["id"] == "test_a.py::test_one" and previous["outcome"] == "errored", previous
    assert "module teardown went wrong" in previous["output"], previous
    assert worker.shutdown() == 0


def test_a_module_stays_set_up_while_the_next_test_is_in_it(start, tmp_path, monkeypatch):
    """ciq names the next test of a batch: what both share stays up, as in plain pytest."""
    log = tmp_path / "scopes.log"
    monkeypatch.setenv("SCOPE_LOG", str(log))
    worker = start(write_suite(tmp_path, SCOPES))
    worker.ready()
    assert worker.run("test_scopes.py::test_one", "test_scopes.py::test_two")["outcome"] == "passed"
    assert worker.run("test_scopes.py::test_two", "test_scopes.py::test_one")["outcome"] == "passed"
    # The last of the batch: nothing named next, so its module is torn down.
    assert worker.run("test_scopes.py::test_one")["outcome"] == "passed"
    assert scope_log(log) == ["session-setup", "module-setup", "module-teardown"]
    # A next id the framework does not know tears down as if none was named.
    assert worker.run("test_scopes.py::test_two", "test_scopes.py::gone")["outcome"] == "passed"
    assert scope_log(log)[-2:] == ["module-setup", "module-teardown"]
    assert worker.shutdown() == 0


@pytest.mark.parametrize(
    "args, first, outcome",
    [(["-x"], "test_fails", "failed"), (["--maxfail=1"], "test_fails", "failed"), ([], "test_asks_to_stop", "passed")],
    ids=["x", "maxfail", "plugin"],
)
def test_requests_to_stop_keep_the_session_alive(start, tmp_path, monkeypatch, args, first, outcome):
    # pytest >= 8 tears the whole session down after each test once the session was asked to
    # stop (-x, --maxfail, a plugin): session fixtures would be rebuilt for every later test,
    # and a failing session teardown charged to a test.
    log = tmp_path / "scopes.log"
    monkeypatch.setenv("SCOPE_LOG", str(log))
    monkeypatch.setenv("FAIL_SESSION_TEARDOWN", "1")
    worker = start(write_suite(tmp_path, SCOPES), *args)
    worker.ready()
    assert worker.run(f"test_scopes.py::{first}")["outcome"] == outcome
    assert worker.run("test_scopes.py::test_one")["outcome"] == "passed"
    assert worker.run("test_scopes.py::test_two")["outcome"] == "passed"
    assert worker.run(f"test_scopes.py::{first}")["outcome"] == outcome
    assert scope_log(log).count("session-setup") == 1, scope_log(log)
    assert "session-teardown" not in scope_log(log)
    assert worker.shutdown() == 1  # the session teardown fails, at shutdown only
    assert scope_log(log).count("session-teardown") == 1
    stderr = worker.stderr()
    assert "stopping after" not in stderr
    if first == "test_asks_to_stop":
        assert (
            "ciq: ignoring session.shouldstop set during test_scopes.py::test_asks_to_stop: a plugin wants to stop"
            in stderr
        )


def test_failed_session_teardown_exits_non_zero(start, tmp_path, monkeypatch):
    monkeypatch.setenv("SCOPE_LOG", str(tmp_path / "scopes.log"))
    monkeypatch.setenv("FAIL_SESSION_TEARDOWN", "1")
    worker = start(write_suite(tmp_path, SCOPES))
    worker.ready()
    assert worker.run("test_scopes.py::test_one")["outcome"] == "passed"
    assert worker.shutdown() == 1
    assert "session teardown went wrong" in worker.stderr()


def test_a_failed_session_teardown_at_settle_errors_the_kept_test(start, tmp_path, monkeypatch):
    """Regression (a hostile probe): the session was torn down only at shutdown, after every
    result had been sent, so its failure could not turn the build red. Under keep the last test
    is always kept (every test shares the session), and settle tears everything down."""
    log = tmp_path / "scopes.log"
    monkeypatch.setenv("SCOPE_LOG", str(log))
    monkeypatch.setenv("FAIL_SESSION_TEARDOWN", "1")
    worker = start(write_suite(tmp_path, SCOPES))
    worker.ready()
    # test_asks_to_stop is the last collected test: no next test shares anything with it.
    kept = worker.run("test_scopes.py::test_asks_to_stop", keep=True)
    assert kept["outcome"] == "passed" and kept["kept"] is True, kept
    worker.send({"type": "settle"})
    answer = worker.recv()
    assert answer is not None and answer["type"] == "settled", answer
    previous = answer["previous"]
    assert previous["id"] == "test_scopes.py::test_asks_to_stop", previous
    assert previous["outcome"] == "errored", previous
    assert "session teardown went wrong" in previous["output"], previous
    assert scope_log(log) == ["session-setup", "session-teardown"]
    # A test after settle sets the session up again; shutdown tears it down once more.
    assert worker.run("test_scopes.py::test_one")["outcome"] == "passed"
    assert scope_log(log)[-2:] == ["module-setup", "module-teardown"]
    assert scope_log(log).count("session-setup") == 2
    worker.shutdown()


def test_duration_is_in_seconds(start, tmp_path):
    worker = start(write_suite(tmp_path, SCOPES))
    worker.ready()
    duration = worker.run("test_scopes.py::test_slow")["duration"]
    assert 0.3 <= duration < 10
    assert worker.shutdown() == 0


def test_crash_closes_the_channel_without_a_result(start, tmp_path):
    # ciq's side of a crash: EOF where the result should be, then the exit status.
    worker = start(write_suite(tmp_path, SCOPES))
    worker.ready()
    worker.send({"type": "run", "id": "test_scopes.py::test_crash"})
    assert worker.recv() is None
    assert worker.proc.wait(timeout=TIMEOUT) == 7


# --- Without --ciq-persistent: plain pytest, and what its JUnit XML says ----------------------


@pytest.mark.parametrize("family", ["xunit2", "xunit1"])
def test_plugin_is_inert_without_the_option_and_expected_json_matches_junit(tmp_path, family):
    """Batch mode as ciq runs it: the summary and the JUnit XML match expected.json."""
    junit = tmp_path / "junit.xml"
    proc = run_pytest("-p", "ciq", "-o", f"junit_family={family}", f"--junitxml={junit}", "-rA")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary_counts(summary) == PYTEST_SUMMARY, summary

    root = ET.parse(junit).getroot()
    suite = root if root.tag == "testsuite" else root.find("testsuite")
    assert suite is not None
    assert {k: int(suite.get(k, "-1")) for k in EXPECTED["junit_testsuite"]} == EXPECTED["junit_testsuite"]

    cases: dict[tuple, list[str]] = {}
    for case in suite.iter("testcase"):
        kinds = [c for c in case if c.tag in ("failure", "error", "skipped")]
        kind = (
            "passed" if not kinds else kinds[0].tag + (f":{kinds[0].get('type')}" if kinds[0].tag == "skipped" else "")
        )
        cases.setdefault((case.get("classname"), case.get("name")), []).append(kind)
    expected = {(t["junit_classname"], t["junit_name"]): t["junit"] for t in EXPECTED["by_test"].values()}
    assert cases == expected


def test_collect_only_ids_are_the_expected_ids():
    proc = run_pytest("--collect-only", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert ids == list(EXPECTED["by_test"])
