//! `ciq run --grind N`: each test queued N times across the build's workers, with the same
//! leases and take-over as a build; `ciq report --grind` gives pass rates and percentiles.

use std::time::Duration;

use nix::sys::signal::Signal;

use ciq::exit_code::ExitCode;
use ciq_testkit::{Proc, RedisServer, Scratch, report_args, wait_until, with_command, worker_args};

const LONG: Duration = Duration::from_secs(120);

/// Three workers grind two tests six times each; one is SIGKILLed mid-grind (it starts first,
/// so it surely holds a test when killed): the others take its copy over and every copy is
/// recorded exactly once.
#[test]
fn grind_runs_each_test_n_times_across_workers_and_survives_a_kill() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "grind";
    let list = scratch.tests(&["pass/a@300".to_owned(), "pass/b@300".to_owned()]);
    let spawn = |worker: &str| {
        let mut args = worker_args(&server, build, worker, &list);
        args.extend(["--grind", "6"].map(str::to_owned));
        Proc::spawn(worker, &scratch, &with_command(args))
    };
    let w3 = spawn("w3");
    wait_until("w3 runs a test", LONG, || {
        scratch.runs().iter().any(|(worker, _)| worker == "w3")
    });
    let w1 = spawn("w1");
    let w2 = spawn("w2");
    w3.signal(Signal::SIGKILL);
    for worker in [w1, w2] {
        let out = worker.wait(LONG);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    }
    let counts = scratch.run_counts();
    for test in ["pass/a@300", "pass/b@300"] {
        let runs = counts.get(test).copied().unwrap_or(0);
        // Six recorded runs each; the killed worker's unfinished run adds one start.
        assert!(
            (6..=7).contains(&runs),
            "{test} ran {runs} times: {counts:?}"
        );
    }
    let mut args = report_args(&server, build);
    args.push("--grind".to_owned());
    let out = Proc::spawn("report", &scratch, &args).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    // Every copy once, whether or not the killed worker held one at that moment.
    assert!(out.stdout.contains("12 tests: 12 passed"), "{}", out.both());
    let a = row(&out.stdout, "pass/a@300");
    assert_eq!(a[0], "6/6", "{}", out.stdout);
    let p50: u64 = a[1].trim_end_matches("ms").parse().unwrap();
    assert!(p50 >= 300, "{}", out.stdout);
}

/// The words of the grind table's row of `test`.
fn row(stdout: &str, test: &str) -> Vec<String> {
    stdout
        .lines()
        .find(|l| l.trim_end().ends_with(test))
        .map(|l| l.split_whitespace().map(str::to_owned).collect())
        .unwrap_or_default()
}

/// A test failing one run in six passes 5/6: green at --grind-min-pass-rate 0.8, red (and
/// named) at 0.9.
#[test]
fn the_grind_report_judges_pass_rates() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "pass-rates";
    let list = scratch.tests(&["pass/a".to_owned(), "flaky/c".to_owned()]);
    let mut args = worker_args(&server, build, "w1", &list);
    args.extend(["--grind", "6"].map(str::to_owned));
    let out = Proc::spawn("w1", &scratch, &with_command(args)).wait(LONG);
    // flaky/c failed its first run: the worker's own verdict is a plain build's.
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    let grind_report = |rate: &str| {
        let mut args = report_args(&server, build);
        args.extend(["--grind", "--grind-min-pass-rate", rate].map(str::to_owned));
        Proc::spawn(&format!("report-{rate}"), &scratch, &args).wait(LONG)
    };
    let out = grind_report("0.8");
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stdout.contains("12 tests: 11 passed, 1 failed"),
        "{}",
        out.both()
    );
    assert_eq!(row(&out.stdout, "flaky/c")[0], "5/6", "{}", out.stdout);
    // Regression: the build's own verdict ("failed": a copy failed) followed the grind's.
    assert_eq!(
        verdicts(&out.stdout),
        ["grind verdict: green (every test kept the limits)"],
        "{}",
        out.both()
    );
    let out = grind_report("0.9");
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("flaky/c  <- passes too rarely"),
        "{}",
        out.both()
    );
    assert_eq!(verdicts(&out.stdout).len(), 1, "{}", out.both());
    assert!(
        verdicts(&out.stdout)[0].starts_with("grind verdict: failed"),
        "{}",
        out.both()
    );
}

/// The lines of `stdout` that give a verdict.
fn verdicts(stdout: &str) -> Vec<&str> {
    stdout
        .lines()
        .filter(|line| line.contains("verdict:"))
        .collect()
}

/// Regression (a hostile trial): `ciq report --grind` of a build that is not a grind judged
/// single runs as if they were a grind's. It is bad input: one line, exit 2.
#[test]
fn the_grind_report_of_a_plain_build_is_refused() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "plain";
    let list = scratch.tests(&["pass/a".to_owned(), "pass/b".to_owned()]);
    let args = worker_args(&server, build, "w1", &list);
    let out = Proc::spawn("w1", &scratch, &with_command(args)).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    let mut args = report_args(&server, build);
    args.push("--grind".to_owned());
    let out = Proc::spawn("report", &scratch, &args).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
    assert!(out.stdout.is_empty(), "{}", out.both());
    let errors: Vec<&str> = out
        .stderr
        .lines()
        .filter(|line| line.starts_with("error:"))
        .collect();
    assert_eq!(errors.len(), 1, "{}", out.both());
    assert!(
        errors[0].contains("build `plain` is not a grind"),
        "{}",
        out.both()
    );
}

/// Regression: a grind cut short (here by --max-duration) reported "green" when the runs that
/// did finish kept the limits; copies that never ran make it incomplete, never green.
#[test]
fn a_grind_cut_short_is_incomplete() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "short-grind";
    let list = scratch.tests(&["pass/a@300".to_owned(), "fail/b".to_owned()]);
    let mut args = worker_args(&server, build, "w1", &list);
    args.extend(["--grind", "10", "--max-duration", "1s"].map(str::to_owned));
    let out = Proc::spawn("w1", &scratch, &with_command(args)).wait(LONG);
    assert_ne!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    let mut report = report_args(&server, build);
    report.extend(["--grind", "--grind-min-pass-rate", "0"].map(str::to_owned));
    let out = Proc::spawn("report", &scratch, &report).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsNotRun.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("grind verdict: incomplete"),
        "{}",
        out.both()
    );
}
