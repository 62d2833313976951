//! The persistent protocol's failure paths (docs/persistent-protocol.md), on ciq's side: real `ciq`
//! processes in local mode driving `tests/fixtures/protocol-framework`, made to misbehave by
//! `CIQ_FIXTURE_MODE`.

use std::path::Path;
use std::time::{Duration, Instant};

use ciq::exit_code::ExitCode;
use ciq_testkit::{Output, Proc, Scratch, wait_until};

/// Bound on any one run: generous, the runs themselves take about a second.
const LONG: Duration = Duration::from_secs(120);

const HINT: &str = "(hint: install ciq's pytest plugin where pytest runs";

/// `ciq run -j 1` over `tests` with the fixture framework in `mode`, `--test-timeout 2s` and no
/// requeues, waited for; also returns the scratch (its run and start logs).
fn run(mode: &str, tests: &[&str]) -> (Output, Scratch) {
    run_with(mode, tests, &[])
}

/// [`run`], with `extra` flags.
fn run_with(mode: &str, tests: &[&str], extra: &[&str]) -> (Output, Scratch) {
    let scratch = Scratch::new();
    let ids: Vec<String> = tests.iter().map(|t| (*t).to_owned()).collect();
    let list = scratch.tests(&ids);
    let framework = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protocol-framework");
    let args: Vec<String> = [
        "run",
        "-j",
        "1",
        "--max-requeues",
        "0",
        "--test-timeout",
        "2s",
        "--tests",
        &list.to_string_lossy(),
        "--persistent",
    ]
    .iter()
    .chain(extra)
    .chain(&["--", &framework.to_string_lossy()])
    .map(|s| (*s).to_owned())
    .collect();
    let out =
        Proc::spawn_with_env("local", &scratch, &args, &[("CIQ_FIXTURE_MODE", mode)]).wait(LONG);
    (out, scratch)
}

/// The pids of the framework processes ciq started, in order.
fn starts(scratch: &Scratch) -> Vec<i32> {
    std::fs::read_to_string(scratch.path("starts.log"))
        .unwrap_or_default()
        .lines()
        .map(|line| line.rsplit_once(' ').unwrap().1.parse().unwrap())
        .collect()
}

/// Waits until process `pid` is gone (or a zombie waiting for init to reap it).
fn assert_gone(pid: i32) {
    wait_until(&format!("framework process {pid} to be gone"), LONG, || {
        std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
            stat.rsplit_once(") ")
                .is_some_and(|(_, rest)| rest.starts_with('Z'))
        })
    });
}

/// The worker ended before running any test, with exit code 2 and `detail` in its error.
fn assert_refused(out: &Output, scratch: &Scratch, detail: &str) {
    assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
    let expected = format!("cannot run tests: {detail}");
    assert!(out.stderr.contains(&expected), "{}", out.both());
    assert!(scratch.runs().is_empty(), "{:?}", scratch.runs());
    assert!(!out.stdout.contains("passed"), "{}", out.both());
}

#[test]
fn a_framework_speaking_another_protocol_version_is_refused() {
    let (out, scratch) = run("v2", &["pass/1", "pass/2"]);
    assert_refused(
        &out,
        &scratch,
        "it speaks protocol version 2; this ciq speaks 1",
    );
    assert!(!out.stderr.contains(HINT), "{}", out.both());
    assert_gone(starts(&scratch)[0]);
}

#[test]
fn a_result_breaking_the_protocol_errors_its_test_and_restarts_the_framework() {
    for (mode, broken) in [
        (
            "wrong-id",
            r#"a result for another test, "pass/somebody-else""#,
        ),
        ("bad-outcome", r#"an unknown outcome, "exploded""#),
    ] {
        let (out, scratch) = run(mode, &["pass/1", "bad/1", "pass/2", "pass/3"]);
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
        assert!(
            out.stdout.contains("4 tests: 3 passed, 1 errored"),
            "{}",
            out.both()
        );
        let expected = format!(
            "[ciq: the framework broke the protocol ({broken}); process group killed, restarting it]"
        );
        assert!(out.stdout.contains(&expected), "{mode}: {}", out.both());
        assert_eq!(
            scratch
                .runs()
                .into_iter()
                .map(|(_, t)| t)
                .collect::<Vec<_>>(),
            ["pass/1", "bad/1", "pass/2", "pass/3"],
            "{mode}"
        );
        let pids = starts(&scratch);
        assert_eq!(pids.len(), 2, "{mode}: one restart after bad/1: {pids:?}");
        assert_gone(pids[0]);
        let order: Vec<(String, String)> = ciq_testkit::test_lines(&out.stderr)
            .into_iter()
            .map(|line| (line.status, line.test))
            .collect();
        let owned = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(s, t)| ((*s).to_owned(), (*t).to_owned()))
                .collect()
        };
        assert_eq!(
            order,
            owned(&[
                ("PASS", "pass/1"),
                ("ERROR", "bad/1"),
                ("PASS", "pass/2"),
                ("PASS", "pass/3"),
            ]),
            "{mode}: {}",
            out.both()
        );
    }
}

#[test]
fn no_ready_within_the_test_timeout_is_a_clear_error_not_a_hang() {
    let started = Instant::now();
    let (out, scratch) = run("no-ready", &["pass/1"]);
    assert_refused(&out, &scratch, "it was not ready within the test timeout");
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "refused before the timeout: {:?}",
        started.elapsed()
    );
    assert_gone(starts(&scratch)[0]);
}

#[test]
fn a_framework_failing_at_shutdown_is_a_warning_and_results_stand() {
    for (tests, code, summary) in [
        (
            &["pass/1", "pass/2"][..],
            ExitCode::Success,
            "2 tests: 2 passed",
        ),
        (
            &["pass/1", "fail/1"][..],
            ExitCode::TestsFailed,
            "2 tests: 1 passed, 1 failed",
        ),
    ] {
        let (out, scratch) = run("fail-shutdown", tests);
        assert_eq!(out.code, Some(code.code()), "{}", out.both());
        assert!(out.stdout.contains(summary), "{}", out.both());
        // The key line of its stderr, not the tail: the teardown's last line is not the error.
        let warning = out
            .stderr
            .lines()
            .find(|line| line.starts_with("ciq: warning: the test framework ended its session"))
            .unwrap_or_else(|| panic!("no warning: {}", out.both()));
        assert_eq!(
            warning,
            "ciq: warning: the test framework ended its session with exit code 1 (results \
             already sent stand): RuntimeError: database still locked"
        );
        assert_eq!(starts(&scratch).len(), 1);
        assert_eq!(scratch.runs().len(), 2);
    }
}

/// A held test (its framework kept what it set up) whose teardown kills the framework is
/// errored with what the framework said, not passed: the result was held until then.
#[test]
fn a_framework_dying_while_settling_errors_the_held_test() {
    let (out, _scratch) = run("keep-then-die", &["pass/1"]);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("ERRORED pass/1")
            && out.stdout.contains("the database would not close")
            && out.stdout.contains("tearing down what this test set up"),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("1 tests: 0 passed, 1 errored"),
        "{}",
        out.both()
    );
}

#[test]
fn a_fatal_before_ready_ends_the_worker_with_its_message() {
    let (out, scratch) = run("fatal", &["pass/1"]);
    assert_refused(
        &out,
        &scratch,
        "could not collect tests/test_db.py\n(its stderr: E   ModuleNotFoundError: No module \
         named 'dbdriver')",
    );
    assert!(!out.stderr.contains(HINT), "{}", out.both());
    assert_gone(starts(&scratch)[0]);
}

#[test]
fn a_framework_missing_the_pytest_plugin_gets_a_hint() {
    for (mode, ended) in [
        (
            "no-plugin",
            r#"(exit code 1): ImportError: Error importing plugin "ciq": No module named 'ciq'"#,
        ),
        (
            "no-option",
            "(exit code 4): pytest: error: unrecognized arguments: --ciq-persistent",
        ),
    ] {
        let (out, scratch) = run(mode, &["pass/1"]);
        assert_refused(
            &out,
            &scratch,
            &format!(
                "it exited before it was ready {ended}\n{HINT}: pip install ./integrations/pytest)"
            ),
        );
    }
}

/// A test's line comes when its result does, not when its batch ends: a batch whose last test
/// runs long leaves neither the log silent nor its finished tests unrecorded meanwhile.
#[test]
fn each_line_comes_while_the_batch_runs_on() {
    let scratch = Scratch::new();
    let list = scratch.tests(&["pass/a".into(), "pass/b".into(), "gated/c".into()]);
    let framework = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/protocol-framework");
    let args: Vec<String> = [
        "run",
        "-j",
        "1",
        "--batch-size",
        "3",
        "--tests",
        &list.to_string_lossy(),
        "--persistent",
        "--",
        &framework.to_string_lossy(),
    ]
    .iter()
    .map(|s| (*s).to_owned())
    .collect();
    let run = Proc::spawn("local", &scratch, &args);
    // gated/c passes only once this test opens its gate, after the line of a test before it
    // in the batch: printed at the batch's end, it would never come. (pass/b's result is final
    // only once the framework answers gated/c: a second `result` pass/b's run wrote would come
    // before that answer.)
    run.wait_for_stderr("local-1: pass/a", Duration::from_secs(30));
    assert!(
        !run.stderr_so_far().contains("gated/c"),
        "{}",
        run.stderr_so_far()
    );
    std::fs::write(scratch.path("open-local-1"), "").unwrap();
    let out = run.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("3 tests: 3 passed"), "{}", out.both());
}

/// Regression (issue 22): a second `result` line after a passing test was read while ciq waited
/// for the next test, which was errored though it never ran, while the test whose run wrote
/// the line passed. That test is errored, saying why; the next one runs again in a new process
/// and passes: in one batch, across batches (ciq holds a batch's last result until the
/// framework answers again), for a framework that keeps fixtures up, and when the line comes
/// while it tears them down (`settle`).
#[test]
fn a_second_result_errors_the_test_that_wrote_it_not_the_next() {
    let blamed = "[ciq: after this test's result the framework sent another `result` for it (line ";
    for (mode, extra, tests) in [
        (
            "stray-result",
            &[][..],
            &["pass/1", "stray/2", "pass/3", "pass/4"][..],
        ),
        (
            "stray-result",
            &["--batch-size", "4"],
            &["pass/1", "stray/2", "pass/3", "pass/4"],
        ),
        (
            "stray-result,keep",
            &[],
            &["pass/1", "stray/2", "pass/3", "pass/4"],
        ),
        (
            "stray-result,keep",
            &["--batch-size", "4"],
            &["pass/1", "pass/3", "pass/4", "stray/2"],
        ),
    ] {
        let (out, scratch) = run_with(mode, tests, extra);
        let case = format!("{mode} {extra:?} {tests:?}");
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{case}: {}",
            out.both()
        );
        assert!(
            out.stdout.contains("4 tests: 3 passed, 1 errored")
                && out.stdout.contains("ERRORED stray/2"),
            "{case}: {}",
            out.both()
        );
        let settled = tests.last() == Some(&"stray/2");
        let said = if settled {
            "[ciq: the framework broke the protocol (another `result` for this test, line "
        } else {
            blamed
        };
        assert!(out.stdout.contains(said), "{case}: {}", out.both());
        let finals: Vec<(String, String)> = ciq_testkit::test_lines(&out.stderr)
            .into_iter()
            .filter(|line| line.is_final())
            .map(|line| (line.test, line.status))
            .collect();
        for test in tests {
            let status = if *test == "stray/2" { "ERROR" } else { "PASS" };
            let expected = ((*test).to_owned(), status.to_owned());
            assert!(
                finals.contains(&expected),
                "{case}: {expected:?} in {finals:?}"
            );
        }
        assert_eq!(finals.len(), 4, "{case}: {finals:?}");
        assert_eq!(scratch.run_counts()["stray/2"], 1, "{case}");
        if !settled {
            assert_eq!(starts(&scratch).len(), 2, "{case}: one restart");
        }
    }
}
