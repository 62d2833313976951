//! `ciq bisect`: every `ciq run` logs the order it ran its tests in; bisect replays what ran
//! before a failing test and finds the test that makes it fail.

use std::path::Path;
use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq_testkit::{Proc, Scratch, require_pytest};

const LONG: Duration = Duration::from_secs(120);

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|s| (*s).to_owned()).collect()
}

/// `ciq run` on one local worker, no retries, logging its order to `log`, then `rest`.
fn recorded_run(log: &str, rest: &[&str]) -> Vec<String> {
    let mut args = strings(&["run", "-j", "1", "--max-requeues", "0", "--order-log", log]);
    args.extend(strings(rest));
    args
}

/// Runs `ciq bisect` in `dir` with `args` after the common ones.
fn bisect(
    scratch: &Scratch,
    dir: &Path,
    log: &str,
    failing: &str,
    args: &[&str],
) -> ciq_testkit::Output {
    let mut all = strings(&["bisect", "--order-log", log, "--failing-test", failing]);
    all.extend(strings(args));
    Proc::spawn_in(
        &format!("bisect-{}", failing.replace('/', "_")),
        scratch,
        &all,
        &[],
        dir,
    )
    .wait(LONG)
}

/// A persistent pytest suite of 50 tests whose 13th sets a module global that the 41st asserts
/// on: the run fails the 41st, and bisect names the 13th.
#[test]
fn bisect_finds_the_test_that_leaks_a_module_global() {
    require_pytest();
    let scratch = Scratch::new();
    let dir = scratch.dir.path();
    std::fs::write(dir.join("state.py"), "LEAKED = False\n").unwrap();
    let mut suite = String::from("import state\n");
    for n in 0..50 {
        let body = match n {
            12 => "    state.LEAKED = True\n",
            40 => "    assert not state.LEAKED\n",
            _ => "    pass\n",
        };
        suite.push_str(&format!("\n\ndef test_{n:03}():\n{body}"));
    }
    std::fs::write(dir.join("test_suite.py"), suite).unwrap();
    let log = dir.join("order.log").to_string_lossy().into_owned();
    let args = recorded_run(&log, &["pytest"]);
    let out = Proc::spawn_in("run", &scratch, &args, &[], dir).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("FAILED test_suite.py::test_040"),
        "{}",
        out.both()
    );
    // A log named by --order-log is written and kept, without a word about it.
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("local-1\ttest_suite.py::test_040\n")
    );
    assert!(!out.stderr.contains("order"), "{}", out.both());

    let out = bisect(&scratch, dir, &log, "test_suite.py::test_040", &["pytest"]);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stdout
            .contains("`test_suite.py::test_040` fails after this test")
            && out.stdout.contains("\n    test_suite.py::test_012\n"),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("to reproduce:"), "{}", out.both());
}

/// A plain command suite whose `leak/07` leaves a file that `victim/30` trips on (and removes):
/// bisect names `leak/07`. A test that fails alone does not reproduce as an order dependency.
#[test]
fn bisect_finds_the_test_that_leaves_a_file_and_says_when_it_does_not_reproduce() {
    let scratch = Scratch::new();
    let dir = scratch.dir.path();
    let command = scratch.script(
        "suite",
        "#!/bin/sh\nset -e\nleft=\"$(dirname \"$0\")/left-behind\"\ncase \"$1\" in\n  leak/*) touch \"$left\" ;;\n  victim/*) if [ -e \"$left\" ]; then rm \"$left\"; echo 'found a file left behind'; exit 1; fi ;;\n  broken/*) exit 1 ;;\nesac\n",
    );
    let mut tests: Vec<String> = (0..50).map(|n| format!("pass/{n:02}")).collect();
    tests[7] = "leak/07".to_owned();
    tests[30] = "victim/30".to_owned();
    tests[40] = "broken/40".to_owned();
    let list = scratch.tests(&tests);
    let log = dir.join("order.log").to_string_lossy().into_owned();
    let command = command.to_string_lossy().into_owned();
    let list = list.to_string_lossy().into_owned();
    let args = recorded_run(&log, &["--tests", &list, "--", &command, "{}"]);
    let out = Proc::spawn_in("run", &scratch, &args, &[], dir).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("FAILED victim/30"), "{}", out.both());

    // The log named by CIQ_ORDER_LOG: the command printed to reproduce names the minimal one.
    let args = strings(&[
        "bisect",
        "--failing-test",
        "victim/30",
        "--",
        &command,
        "{}",
    ]);
    let out = Proc::spawn_in(
        "bisect-env",
        &scratch,
        &args,
        &[("CIQ_ORDER_LOG", &log)],
        dir,
    )
    .wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    let minimal = dir.join("order.bisect.log");
    assert!(
        out.stdout.contains(&format!(
            "bisect --order-log {} --failing-test victim/30",
            minimal.display()
        )),
        "{}",
        out.both()
    );
    assert_eq!(
        std::fs::read_to_string(&minimal).unwrap(),
        "local-1\tleak/07\nlocal-1\tvictim/30\n"
    );
    assert!(
        out.stdout.contains("`victim/30` fails after this test")
            && out
                .stdout
                .contains("confirmed: it failed 3 runs of 3 after it, and passed 3 of 3 alone")
            && out.stdout.contains("\n    leak/07\n"),
        "{}",
        out.both()
    );

    let out = bisect(&scratch, dir, &log, "broken/40", &["--", &command, "{}"]);
    assert_eq!(
        out.code,
        Some(ExitCode::NotReproduced.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains(
            "does not reproduce as an order dependency: `broken/40` fails when run alone"
        ),
        "{}",
        out.both()
    );
    let out = bisect(&scratch, dir, &log, "pass/03", &["--", &command, "{}"]);
    assert_eq!(
        out.code,
        Some(ExitCode::NotReproduced.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains("does not reproduce: `pass/03` passed"),
        "{}",
        out.both()
    );
    // A test the log never ran is bad input, said as an error (it was an `Ok` exit 2).
    let out = bisect(&scratch, dir, &log, "never/99", &["--", &command, "{}"]);
    assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
    assert!(
        out.stderr.contains(&format!(
            "error: --failing-test: `never/99` never ran in the order log `{log}`"
        )),
        "{}",
        out.both()
    );
}

/// Regression (issue 22): a test failing on every other run, whatever ran before it, got a
/// culprit named (exit 0) whose printed reproduce command then failed once and passed once.
/// A culprit is confirmed first; this one is not, so the failure looks flaky and no test is
/// named, with a code of its own.
#[test]
fn bisect_calls_a_flaky_failure_flaky_and_names_no_culprit() {
    let scratch = Scratch::new();
    let dir = scratch.dir.path();
    // flip/* fails when the marker is there and takes it away, passes and leaves it otherwise.
    let command = scratch.script(
        "suite",
        "#!/bin/sh\nmarker=\"$(dirname \"$0\")/flip\"\ncase \"$1\" in\n  flip/*) if [ -e \"$marker\" ]; then rm \"$marker\"; echo 'failed this time'; exit 1; fi; touch \"$marker\" ;;\nesac\n",
    );
    let mut tests: Vec<String> = (0..20).map(|n| format!("pass/{n:02}")).collect();
    tests[12] = "flip/12".to_owned();
    let list = scratch.tests(&tests);
    let log = dir.join("order.log").to_string_lossy().into_owned();
    let command = command.to_string_lossy().into_owned();
    let list = list.to_string_lossy().into_owned();
    let marker = dir.join("flip");
    std::fs::write(&marker, "").unwrap();
    let args = recorded_run(&log, &["--tests", &list, "--", &command, "{}"]);
    let out = Proc::spawn_in("run", &scratch, &args, &[], dir).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("FAILED flip/12"), "{}", out.both());

    // Its next run fails (after everything), the one after passes (alone): it gets past the
    // first checks, and the narrowing names some test, which the confirmation refutes.
    std::fs::write(&marker, "").unwrap();
    let out = bisect(&scratch, dir, &log, "flip/12", &["--", &command, "{}"]);
    assert_eq!(
        out.code,
        Some(ExitCode::BisectFlaky.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stderr
            .contains("ciq bisect: `flip/12` looks flaky, not order-dependent: after ")
            && out.stderr.contains("no test is named"),
        "{}",
        out.both()
    );
    assert!(!out.stdout.contains("fails after"), "{}", out.both());
    assert!(!out.stdout.contains("to reproduce"), "{}", out.both());
    assert!(!dir.join("order.bisect.log").exists());
}
