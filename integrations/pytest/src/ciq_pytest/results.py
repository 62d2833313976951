"""One ciq result from the reports pytest made for one test (setup, call, teardown)."""

from __future__ import annotations

from typing import Any, Sequence

from _pytest.reports import TestReport

PHASES = ("setup", "call", "teardown")


def result_message(test_id: str, reports: Sequence[TestReport]) -> dict[str, Any]:
    # Reports of other outcomes (pytest-rerunfailures' "rerun") are earlier attempts; only
    # the final attempt counts, as in pytest's own summary.
    phases = [r for r in reports if r.when in PHASES and r.outcome in ("passed", "failed", "skipped")]
    if not phases:
        return _errored(test_id, "ciq: pytest made no report for this test (a plugin took over its run?)")
    outcome = _outcome(phases)
    return {
        "type": "result",
        "id": test_id,
        "outcome": outcome,
        # Setup + call + teardown, as pytest's JUnit XML counts it by default.
        "duration": sum(r.duration for r in phases),
        "output": _output(phases, outcome),
    }


def unknown_test(test_id: str, collected: int) -> dict[str, Any]:
    return _errored(
        test_id,
        f"ciq: unknown test id {test_id!r}: not among the {collected} tests this pytest "
        "process collected (renamed, deselected, or collected with other arguments?)",
    )


def _errored(test_id: str, output: str) -> dict[str, Any]:
    """A test that ciq asked for but pytest did not run properly, as a result."""
    return {"type": "result", "id": test_id, "outcome": "errored", "duration": 0.0, "output": output}


def _outcome(phases: list[TestReport]) -> str:
    """ciq's outcome: the test's own failure first, then fixture errors, then skips.

    A strict xpass is a failed call report, an xfail a skipped one (with ``wasxfail``), and a
    non-strict xpass a passed one, so they need no case of their own. A test whose call fails
    and whose teardown then errors is ``failed``: its own failure is the news.
    """
    if any(r.when == "call" and r.failed for r in phases):
        return "failed"
    if any(r.failed for r in phases):
        return "errored"
    if any(r.skipped for r in phases):
        return "skipped"
    return "passed"


def _output(phases: list[TestReport], outcome: str) -> str:
    if outcome == "passed":
        # Captured output of passes is not sent; an xpass says so, like pytest's summary.
        return "".join(_labelled("xpass", r.wasxfail) for r in phases if r.when == "call" and hasattr(r, "wasxfail"))
    if outcome == "skipped":
        return "\n".join(_skip_reason(r) for r in phases if r.skipped)

    parts = []
    for r in phases:
        if r.failed:
            text = r.longreprtext.rstrip("\n")
            # pytest's own heading for fixture errors; a failed call needs none.
            parts.append(text if r.when == "call" else f"ERROR at {r.when} of {r.head_line or r.nodeid}\n{text}")
    for title, content in _sections(phases):
        parts.append(f"----- {title} -----\n{content.rstrip(chr(10))}")
    return "\n".join(parts) + "\n"


def _skip_reason(report: TestReport) -> str:
    if hasattr(report, "wasxfail"):
        return _labelled("xfail", report.wasxfail)
    longrepr = report.longrepr
    # A skip's longrepr is (path, line, "Skipped: reason").
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        reason = str(longrepr[2])
        if reason.startswith("Skipped: "):
            reason = reason[len("Skipped: ") :]
        return _labelled("skipped", reason)
    return _labelled("skipped", report.longreprtext.strip())


def _labelled(label: str, reason: str) -> str:
    return f"{label}: {reason}" if reason else label


def _sections(phases: list[TestReport]) -> list[tuple[str, str]]:
    """Captured stdout, stderr and log of every phase, each once.

    Each phase's report repeats the sections of the phases before it, so they are deduplicated
    in order.
    """
    seen: list[tuple[str, str]] = []
    for r in phases:
        for title, content in r.sections:
            if (title, content) not in seen and content.strip():
                seen.append((title, content))
    return seen
