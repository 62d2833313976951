//! `ciq run --grind N`: each test queued N times across the build's workers, with the same
//! leases and take-over as a build; `ciq report --grind` gives pass rates and percentiles.

use std::time::Duration;

use nix::sys::signal::Signal;

use ciq_testkit::{Proc, RedisServer, Scratch, report_args, wait_until, with_command, worker_args};

const LONG: Duration = Duration::from_secs(120);

#[test]
fn grind_runs_each_test_n_times_across_workers_and_survives_a_kill() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "grind";
    let tests: Vec<String> = ["pass/a@300", "pass/b@300", "flaky/c"]
        .map(str::to_owned)
        .to_vec();
    let list = scratch.tests(&tests);
    let spawn = |worker: &str| {
        let mut args = worker_args(&server, build, worker, &list);
        args.extend(["--grind", "6"].map(str::to_owned));
        Proc::spawn(worker, &scratch, &with_command(args))
    };
    let w1 = spawn("w1");
    let w2 = spawn("w2");
    let w3 = spawn("w3");
    // Killed while it runs a long test (not flaky/c's one failing run, whose failure would
    // then be lost with it, and its take-over pass).
    wait_until("w3 runs a long test", LONG, || {
        scratch
            .runs()
            .last()
            .is_some_and(|(worker, test)| worker == "w3" && test.starts_with("pass/"))
    });
    w3.signal(Signal::SIGKILL);
    for worker in [w1, w2] {
        let out = worker.wait(LONG);
        // flaky/c failed its first run: the workers' own verdict is the plain build's.
        assert_eq!(out.code, Some(1), "{}", out.both());
    }
    let counts = scratch.run_counts();
    for test in ["pass/a@300", "pass/b@300", "flaky/c"] {
        let runs = counts.get(test).copied().unwrap_or(0);
        // Six recorded runs each; the killed worker's unfinished run may add one start.
        assert!(
            (6..=7).contains(&runs),
            "{test} ran {runs} times: {counts:?}"
        );
    }

    let grind_report = |extra: &[&str]| {
        let mut args = report_args(&server, build);
        args.push("--grind".to_owned());
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Proc::spawn("report", &scratch, &args).wait(LONG)
    };
    let out = grind_report(&["--grind-min-pass-rate", "0.8"]);
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert!(
        out.stdout.contains("18 tests: 17 passed, 1 failed"),
        "{}",
        out.both()
    );
    let row = |test: &str| -> Vec<String> {
        out.stdout
            .lines()
            .find(|l| l.trim_end().ends_with(test))
            .map(|l| l.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default()
    };
    assert_eq!(row("flaky/c")[0], "5/6", "{}", out.stdout);
    let a = row("pass/a@300");
    assert_eq!(a[0], "6/6", "{}", out.stdout);
    let p50: u64 = a[1].trim_end_matches("ms").parse().unwrap();
    assert!(p50 >= 300, "{}", out.stdout);
    assert!(
        out.stdout.contains("grind verdict: green"),
        "{}",
        out.both()
    );

    let out = grind_report(&["--grind-min-pass-rate", "0.9"]);
    assert_eq!(out.code, Some(1), "{}", out.both());
    assert!(
        out.stdout.contains("flaky/c  <- passes too rarely"),
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
    assert_ne!(out.code, Some(0), "{}", out.both());
    let mut report = report_args(&server, build);
    report.extend(["--grind", "--grind-min-pass-rate", "0"].map(str::to_owned));
    let out = Proc::spawn("report", &scratch, &report).wait(LONG);
    assert_eq!(out.code, Some(3), "{}", out.both());
    assert!(
        out.stdout.contains("grind verdict: incomplete"),
        "{}",
        out.both()
    );
}
