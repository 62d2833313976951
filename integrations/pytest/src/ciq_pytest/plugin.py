"""pytest plugin: serve ciq's persistent worker protocol, version 1 (ciq's docs/persistent-protocol.md).

With ``--ciq-persistent``, pytest starts and collects as usual (every argument and option of
the user applies), then, instead of running the session, tells ciq it is ready and runs the
tests ciq asks for, one at a time, in this process, until ciq says shutdown or closes stdin.
Without the option the plugin does nothing.
"""

from __future__ import annotations

import sys
import traceback
from typing import Any

import pytest
from _pytest.main import Session
from _pytest.reports import CollectReport, TestReport

from . import PROTOCOL_VERSION
from .channel import Channel, ChannelClosed, ProtocolError
from .results import result_message, unknown_test


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("ciq")
    group.addoption(
        "--ciq-persistent",
        action="store_true",
        default=False,
        help="collect, then run the tests ciq asks for over stdin/stdout (ciq's persistent "
        f"worker protocol, version {PROTOCOL_VERSION}) instead of running the session.",
    )


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config):
    # The earliest hook an installed plugin gets with the command line parsed, and, as a
    # tryfirst wrapper, it runs before pytest's capture plugin starts capturing fds: see
    # Channel.take_over_stdio for why that matters.
    if getattr(early_config.known_args_namespace, "ciq_persistent", False):
        early_config.pluginmanager.register(PersistentWorker(Channel.take_over_stdio()), "ciq-persistent-worker")
    yield


class PersistentWorker:
    """Registered only with --ciq-persistent."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.collection_errors: list[CollectReport] = []
        # Reports of the test being run, gathered from pytest_runtest_logreport.
        self.reports: list[TestReport] | None = None
        self.started = False  # a ready or fatal message was sent
        self.served_cleanly = False  # the loop ended on shutdown or EOF
        self.session_teardown_failed = False
        self.exitstatus: int | None = None
        self.session: Session | None = None  # while serving
        # The test whose narrower scopes stay up for a test that may follow it (ciq holds its
        # result until the next run or settle says whether tearing them down went well).
        self.kept: pytest.Item | None = None
        self.usage_error: str | None = None

    def pytest_configure(self, config: pytest.Config) -> None:
        if config.option.collectonly:
            self._refuse("--ciq-persistent cannot be combined with --collect-only")
        # --sw-skip and --sw-reset imply --stepwise (set by the stepwise plugin's own configure,
        # which runs after this one); the options are missing with -p no:stepwise.
        if any(getattr(config.option, name, False) for name in ("stepwise", "stepwise_skip", "stepwise_reset")):
            self._refuse(
                "--ciq-persistent cannot be combined with --stepwise/--sw: stepwise drops the tests "
                "that passed last time from the collection and stops at the first failure, while "
                "ciq decides which tests run"
            )
        # -x/--maxfail: ciq decides what runs, so a failure must not stop anything. Left set,
        # maxfail would cut collection short at the first collection error, and (pytest >= 8)
        # make every test after the first failure tear the whole session down, session-scoped
        # fixtures included. 0 is pytest's "no limit".
        config.option.maxfail = 0
        # pytest-xdist's controller collects nothing itself, so it would announce a ready
        # worker with no tests. ciq does the distributing; xdist has set dist by now.
        if getattr(config.option, "dist", "no") != "no":
            self._refuse(
                "--ciq-persistent runs tests in this process: drop pytest-xdist's -n/--dist "
                "(ciq distributes the tests), or add -p no:xdist"
            )

    def _refuse(self, message: str) -> None:
        self.usage_error = message  # for the fatal message sent at unconfigure
        raise pytest.UsageError(message)

    def pytest_collectreport(self, report: CollectReport) -> None:
        if report.failed:
            self.collection_errors.append(report)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: Session) -> bool:
        # Replaces pytest's own loop (the hook stops at the first implementation that
        # returns a value). Collection errors are always fatal here, even with
        # --continue-on-collection-errors: a worker must never serve a partial suite.
        errors = len(self.collection_errors) or session.testsfailed
        if errors:
            self.started = True
            self.channel.send({"type": "fatal", "message": self._collection_error_message(errors)})
            # As pytest's own loop does: exit status 2, and the errors printed on stderr.
            raise session.Interrupted(f"{_errors(errors)} during collection")

        self.session = session
        try:
            self._serve(session)
        except ProtocolError as e:
            pytest.exit(f"ciq protocol error: {e}", returncode=pytest.ExitCode.INTERNAL_ERROR)
        except ChannelClosed:
            pass  # ciq is gone: nobody to answer; finish the session quietly.
        self.served_cleanly = True
        self._teardown_session(session)
        return True

    def _serve(self, session: Session) -> None:
        # Node ids are what `pytest --collect-only -q` prints, so ciq's batch and persistent
        # modes share one test list.
        items: dict[str, pytest.Item] = {}
        following: dict[str, pytest.Item] = {}
        for at, item in enumerate(session.items):
            if items.setdefault(item.nodeid, item) is item and at + 1 < len(session.items):
                following[item.nodeid] = session.items[at + 1]

        self.started = True
        self.channel.send(
            {
                "type": "ready",
                "protocol": PROTOCOL_VERSION,
                "framework": "pytest",
                "framework_version": pytest.__version__,
                "tests": len(session.items),
                # ciq may ask for the collected ids instead of collecting them again itself.
                "lists": True,
            }
        )
        while True:
            message = self.channel.receive()
            if message is None or message.get("type") == "shutdown":
                return
            if message.get("type") == "list":
                self.channel.send({"type": "list", "ids": [item.nodeid for item in session.items]})
                continue
            if message.get("type") == "settle":
                # No test follows for now: everything goes, session scope included, so a
                # failing session teardown errors the kept test, as plain pytest errors the
                # last test's teardown. A test that comes later sets the session up again.
                self.channel.send({"type": "settled", **self._settle(None)})
                continue
            if message.get("type") != "run":
                continue  # unknown types are ignored: a newer ciq may send more
            test_id = message.get("id")
            if not isinstance(test_id, str):
                raise ProtocolError(f"run message without a string id: {message!r}")
            item = items.get(test_id)
            if item is None:
                self.channel.send({**unknown_test(test_id, len(session.items)), **self._settle(session)})
                continue
            settled = self._settle(item)
            named = message.get("next")
            next_item = items.get(named) if isinstance(named, str) else None
            kept = False
            if next_item is None and message.get("keep") is True:
                # Keep what this test shares with the likely next one, and always the session:
                # every test shares it, and its teardown is charged to the kept test at settle.
                next_item = self._likely_next(item, following.get(item.nodeid))
                kept = True
            result = self._run(item, next_item or session)
            if kept:
                self.kept = item
                result["kept"] = True
            self.channel.send({**result, **settled})

    @staticmethod
    def _likely_next(item: pytest.Item, after: pytest.Item | None) -> pytest.Item | None:
        """The test after `item` in collection order, if it shares a package, module or class.

        ciq asked to keep what may be shared: it hands a module's tests out together, so the
        test it sends next is most likely this one, or one sharing the same scopes.
        """
        if after is None:
            return None
        # pytest >= 8 puts every test under directory nodes (Dir), which hold no fixtures of
        # their own: sharing one is sharing nothing to keep.
        directory = getattr(pytest, "Dir", ())
        shared = [
            node
            for node in set(item.listchain()[1:]) & set(after.listchain()[1:])
            if not isinstance(node, directory)
        ]
        return after if shared else None

    def _settle(self, upto: pytest.Item | Session | None) -> dict[str, Any]:
        """Tears down what the kept test left up and `upto` does not share (everything,
        session scope included, when `upto` is None).

        Returns the field that amends the kept test's result (``previous``) when that fails,
        as pytest would have failed that test's teardown phase; else nothing.
        """
        kept, self.kept = self.kept, None
        if kept is None:
            return {}
        try:
            kept.session._setupstate.teardown_exact(upto)
        # BaseException: several failing finalizers come as a BaseExceptionGroup.
        except BaseException:  # noqa: BLE001
            output = (
                f"ciq: tearing down what {kept.nodeid} left up (kept up for the test that might "
                f"follow it) failed:\n{traceback.format_exc()}"
            )
            return {"previous": {"id": kept.nodeid, "outcome": "errored", "output": output}}
        return {}

    def _run(self, item: pytest.Item, nextitem: pytest.Item | Session) -> dict[str, Any]:
        self.reports = []
        try:
            # The full hook rather than runner.runtestprotocol alone, as pytest's own loop
            # calls it: logstart/logfinish, warnings capture, faulthandler and other plugins'
            # wrappers (pytest-timeout, ...) all apply. Reports come back through
            # pytest_runtest_logreport.
            #
            # nextitem: the test ciq said it sends next in this batch, as pytest's own loop
            # passes the next item, so what both share (a module's or class's fixtures) stays
            # up between them; or, when ciq does not know it yet and lets us keep, the likely
            # next test (_likely_next). Without one, everything this test set up is torn down after it
            # (its class, module and package scopes, reported in its own teardown phase),
            # except the session, which every test shares: passing the session as "next" keeps
            # session-scoped fixtures alive across tests, as in a plain pytest run. They are
            # torn down at settle (with the kept test) or at shutdown (_teardown_session).
            item.ihook.pytest_runtest_protocol(item=item, nextitem=nextitem)
            return result_message(item.nodeid, self.reports)
        finally:
            self.reports = None

    @pytest.hookimpl(trylast=True)
    def pytest_runtest_logreport(self, report: TestReport) -> None:
        if self.reports is not None:
            self.reports.append(report)
            # Here, after every other plugin's logreport (trylast), so before pytest's runner
            # looks at the flags between the call and the teardown.
            self._ignore_stop_requests(report)

    def _ignore_stop_requests(self, report: TestReport) -> None:
        """Clear session.shouldfail/shouldstop, which a plugin may set to end the session.

        pytest's own sources of them are neutralized (maxfail) or refused (stepwise); this is
        for the rest. Serving goes on anyway (ciq decides what runs), but pytest >= 8 tears a
        test down with nextitem=None once either is set, session included: session-scoped
        fixtures would be rebuilt for every later test, and a failing session teardown charged
        to whichever test set it off. (At settle, when no test follows for now, the session is
        torn down on purpose, and its failure charged to the kept test.)
        """
        session = self.session
        if session is None:
            return
        for name in ("shouldfail", "shouldstop"):
            reason = getattr(session, name)
            if reason:
                sys.stderr.write(f"ciq: ignoring session.{name} set during {report.nodeid}: {reason}\n")
                # pytest >= 8 refuses to unset them through the property; 7 has plain attributes.
                setattr(session, f"_{name}" if hasattr(session, f"_{name}") else name, False)

    def _teardown_session(self, session: Session) -> None:
        """Tear down session-scoped fixtures, which no test's teardown did.

        Done here rather than by pytest's sessionfinish, where an error would escape as an
        internal error and skip other plugins' sessionfinish (JUnit XML, the summary). The
        tests' results were already sent, so a failure here is only printed and turns the
        exit status non-zero.
        """
        try:
            session._setupstate.teardown_exact(None)
        # BaseException: several failing finalizers come as a BaseExceptionGroup.
        except BaseException:  # noqa: BLE001
            self.session_teardown_failed = True
            sys.stderr.write("ciq: session teardown failed:\n" + traceback.format_exc())

    def _collection_error_message(self, errors: int) -> str:
        parts = [f"pytest could not collect the tests ({_errors(errors)}):"]
        for report in self.collection_errors:
            parts.append(f"ERROR collecting {report.nodeid or '.'}\n{report.longreprtext.rstrip()}")
        return "\n\n".join(parts)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: Session) -> None:
        # pytest would exit 1 if any test failed; in persistent mode results travel over the
        # protocol, and the exit status only says whether the process ended well.
        if self.served_cleanly:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED if self.session_teardown_failed else pytest.ExitCode.OK
        self.exitstatus = int(session.exitstatus)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        # pytest stopped before the end of collection (a usage error, a missing path, an
        # error in conftest.py, ...): say so on the channel rather than leave ciq to guess
        # from EOF. pytest printed the reason on stderr.
        if not self.started:
            if self.usage_error:
                message = f"pytest usage error: {self.usage_error}"
            else:
                status = "" if self.exitstatus is None else f" (exit status {self.exitstatus})"
                message = f"pytest stopped before collecting the tests{status}; its stderr says why"
            try:
                self.channel.send({"type": "fatal", "message": message})
            except ChannelClosed:
                pass
        self.channel.close()


def _errors(n: int) -> str:
    return f"{n} error" if n == 1 else f"{n} errors"
