//! `--quarantine FILE`: a quarantined test still runs and is reported, but its failure does not
//! make the build red; a failure outside the quarantine still does.

use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq_testkit::{
    Proc, RedisServer, Scratch, record_test, report_args, with_command, worker_args,
};

const LONG: Duration = Duration::from_secs(120);

#[test]
fn a_quarantined_failure_is_reported_and_the_build_stays_green() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "quarantined";
    let tests: Vec<String> = ["pass/0", "pass/1", "fail/known"]
        .map(str::to_owned)
        .to_vec();
    let list = scratch.tests(&tests);
    let quarantine = scratch.path("quarantine.txt");
    std::fs::write(
        &quarantine,
        "# broken since the upgrade\nfail/known\nfail/renamed\n",
    )
    .unwrap();
    let flag = [
        "--quarantine".to_owned(),
        quarantine.to_string_lossy().into_owned(),
    ];
    let mut args = worker_args(&server, build, "w1", &list);
    args.extend(flag.clone());
    let out = Proc::spawn("w1", &scratch, &with_command(args)).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stderr.contains(
            "warning: 1 quarantined test(s) are not in the test list (renamed or deleted?): fail/renamed"
        ),
        "{}",
        out.both()
    );
    // Quarantined, it still runs, and is still retried like any failure.
    let counts = scratch.run_counts();
    assert_eq!(counts.get("fail/known"), Some(&2), "{counts:?}");
    assert_eq!(counts.len(), 3, "{counts:?}");

    let mut report = report_args(&server, build);
    report.extend(flag);
    let json = scratch.path("build.json");
    report.extend(["--json".to_owned(), json.to_string_lossy().into_owned()]);
    let page = scratch.path("step-summary.md");
    let page_var = page.to_string_lossy().into_owned();
    let env = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_STEP_SUMMARY", page_var.as_str()),
    ];
    let out = Proc::spawn_with_env("report", &scratch, &report, &env).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    // The JSON report and the CI's page say it too.
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(json["verdict"], "green", "{json}");
    assert_eq!(
        json["quarantined"],
        serde_json::json!(["fail/known"]),
        "{json}"
    );
    let page = std::fs::read_to_string(&page).unwrap();
    assert!(
        page.contains(
            "#### Quarantined (failed, not counted against the build)\n\n- `fail/known` (failed)"
        ),
        "{page}"
    );
    for expected in [
        "QUARANTINED (failed, not counted against the build):\n    failed fail/known",
        "| fail/known failed on w1",
        "3 tests: 2 passed, 1 failed; 1 requeued; 1 of the failures quarantined",
        "verdict: green",
    ] {
        assert!(out.stdout.contains(expected), "{expected}\n{}", out.both());
    }

    // Without the quarantine the same build is red.
    let out = Proc::spawn("plain", &scratch, &report_args(&server, build)).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
}

/// Regression (a hostile trial): every test failing and every one quarantined printed "4 tests:
/// 0 passed, 4 failed ... verdict: green" without a word. Green only because of the quarantine
/// is said loudly: in the summary (the worker's and the report's), the JSON report's warnings
/// and the CI's page.
#[test]
fn a_build_green_only_by_its_quarantine_says_so() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "all-quarantined";
    let tests: Vec<String> = (0..4).map(|n| format!("fail/{n}")).collect();
    let list = scratch.tests(&tests);
    let quarantine = scratch.path("quarantine.txt");
    std::fs::write(&quarantine, tests.join("\n")).unwrap();
    let flag = [
        "--quarantine".to_owned(),
        quarantine.to_string_lossy().into_owned(),
    ];
    let warning = "WARNING: every failure was quarantined (4 of 4 tests failed, none passed): the verdict is green only because of --quarantine\nverdict: green";
    let mut args = worker_args(&server, build, "w1", &list);
    args.extend(flag.clone());
    args.extend(["--max-requeues", "0"].map(str::to_owned));
    let out = Proc::spawn("w1", &scratch, &with_command(args)).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains(warning), "{}", out.both());

    let mut report = report_args(&server, build);
    report.extend(flag);
    let json = scratch.path("build.json");
    report.extend(["--json".to_owned(), json.to_string_lossy().into_owned()]);
    let page = scratch.path("step-summary.md");
    let page_var = page.to_string_lossy().into_owned();
    let env = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_STEP_SUMMARY", page_var.as_str()),
    ];
    let out = Proc::spawn_with_env("report", &scratch, &report, &env).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains(warning), "{}", out.both());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let warnings = json["warnings"].as_array().cloned().unwrap_or_default();
    assert!(
        warnings.len() == 1
            && warnings[0]
                .as_str()
                .is_some_and(|w| w.starts_with("WARNING: every failure was quarantined")),
        "{json}"
    );
    let page = std::fs::read_to_string(&page).unwrap();
    assert!(
        page.contains(
            "> **WARNING: every failure was quarantined (4 of 4 tests failed, none passed)"
        ),
        "{page}"
    );
}

/// Locally too, and a failure the file does not name keeps the build red.
#[test]
fn only_the_quarantined_failures_are_forgiven() {
    let scratch = Scratch::new();
    let list = scratch.tests(&["fail/known".to_owned(), "fail/new".to_owned()]);
    let quarantine = scratch.path("quarantine.txt");
    std::fs::write(&quarantine, "fail/known\n").unwrap();
    let args: Vec<String> = [
        "run",
        "-j",
        "2",
        "--tests",
        &list.to_string_lossy(),
        "--quarantine",
        &quarantine.to_string_lossy(),
        "--",
        &record_test(),
    ]
    .map(str::to_owned)
    .to_vec();
    let out = Proc::spawn("local", &scratch, &args).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        !out.stderr.contains("not in the test list"),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("FAILED fail/new"), "{}", out.both());
    assert!(
        out.stdout.contains(
            "QUARANTINED (failed, not counted against the build):\n    failed fail/known"
        ),
        "{}",
        out.both()
    );

    std::fs::write(&quarantine, "fail/known\nbad\0line\n").unwrap();
    let out = Proc::spawn("bad", &scratch, &args).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
    assert!(out.stderr.contains("line 2"), "{}", out.both());
}

/// A list produced by a command (here the leader's `--list-command`) is checked too.
#[test]
fn quarantined_ids_missing_from_a_listed_suite_are_warned_about() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let list = scratch.tests(&["pass/0".to_owned()]);
    let quarantine = scratch.path("quarantine.txt");
    std::fs::write(&quarantine, "pass/0\ngone/1\n").unwrap();
    let mut args = worker_args(&server, "listed", "w1", &list);
    let at = args.iter().position(|a| a == "--tests").unwrap();
    args[at] = "--list-command".to_owned();
    args[at + 1] = format!("cat {}", list.display());
    args.extend([
        "--quarantine".to_owned(),
        quarantine.to_string_lossy().into_owned(),
    ]);
    let out = Proc::spawn("w1", &scratch, &with_command(args)).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    scratch.assert_each_ran_once(1);
    assert!(
        out.stderr.contains(
            "1 quarantined test(s) are not in the test list (renamed or deleted?): gone/1"
        ),
        "{}",
        out.both()
    );
}
