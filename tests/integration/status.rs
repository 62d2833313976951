//! `ciq status`: where a running build stands, read from another process as a user would, with
//! real `ciq run` workers against a real redis-server.

use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq_testkit::{
    Proc, RedisServer, Scratch, TestRedis, report_args, wait_until, with_command, worker_args,
};

const LONG: Duration = Duration::from_secs(120);

/// `ciq status` arguments for `build`, and `extra` flags.
fn status_args(server: &RedisServer, build: &str, extra: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["status", "--queue", &server.queue_url(), "--build", build]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    args.extend(["--redis-timeout".to_owned(), "10s".to_owned()]);
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    args
}

/// Worker `worker` of `build`: one test per reservation, a failure final at once.
fn worker(server: &RedisServer, scratch: &Scratch, build: &str, name: &str) -> Proc {
    let list = scratch.path("tests.txt");
    let mut args = worker_args(server, build, name, &list);
    args.extend(
        ["--batch-size", "1", "--max-requeues", "0"]
            .iter()
            .map(|s| (*s).to_owned()),
    );
    Proc::spawn(name, scratch, &with_command(args))
}

fn json(out: &ciq_testkit::Output) -> serde_json::Value {
    serde_json::from_str(out.stdout.trim())
        .unwrap_or_else(|err| panic!("not one JSON document ({err}): {}", out.both()))
}

/// Two workers each stuck in a gated test of a build that has a failure: the status names each
/// worker and its test (held for a while, against its usual time from the build before), the
/// counts add up, the failure is listed, and a time left is estimated; piped, it is one line.
/// Once the build ends, `--watch` ends with it, with the verdict's exit code, and the counts are
/// the report's.
#[test]
fn status_shows_each_worker_its_test_the_counts_and_the_failures_so_far() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    // The history makes the longer tests go first: the gated ones come last.
    let tests = [
        "fail/one@300",
        "pass/1@300",
        "pass/2@300",
        "pass/3@300",
        "gated/a",
        "gated/b",
    ];
    std::fs::write(scratch.path("tests.txt"), tests.join("\n") + "\n").unwrap();
    // A first build with the gates open leaves a timing history for the second.
    for gate in ["open-w1", "open-w2"] {
        std::fs::write(scratch.path(gate), "").unwrap();
    }
    let first: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|name| worker(&server, &scratch, "first", name))
        .collect();
    for proc in first {
        proc.wait(LONG);
    }
    for gate in ["open-w1", "open-w2"] {
        std::fs::remove_file(scratch.path(gate)).unwrap();
    }
    let ran_before = scratch.runs().len();

    let build = "watched";
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|name| worker(&server, &scratch, build, name))
        .collect();
    wait_until("both gated tests to start", LONG, || {
        let runs = scratch.runs();
        let now = &runs[ran_before..];
        now.iter().any(|(_, t)| t == "gated/a") && now.iter().any(|(_, t)| t == "gated/b")
    });
    let watch = Proc::spawn(
        "watch",
        &scratch,
        &status_args(&server, build, &["--watch"]),
    );

    let out = Proc::spawn(
        "status",
        &scratch,
        &status_args(&server, build, &["--json"]),
    )
    .wait(LONG);
    assert_eq!(out.code, Some(0), "{}", out.both());
    let doc = json(&out);
    assert_eq!(doc["phase"], "running", "{doc}");
    let counts = &doc["counts"];
    assert_eq!(
        (
            &counts["total"],
            &counts["done"],
            &counts["running"],
            &counts["queued"],
            &counts["failed"],
            &counts["passed"]
        ),
        (
            &6.into(),
            &4.into(),
            &2.into(),
            &0.into(),
            &1.into(),
            &3.into()
        ),
        "{doc}"
    );
    assert_eq!(
        counts["done"].as_u64().unwrap() + counts["not_run"].as_u64().unwrap(),
        6,
        "{doc}"
    );
    let workers_seen = doc["workers"].as_array().unwrap();
    let mut held: Vec<(String, String)> = workers_seen
        .iter()
        .map(|w| {
            assert_eq!(w["activity"], "running", "{doc}");
            assert!(w["held_for_ms"].as_u64().is_some(), "{doc}");
            assert!(w["usual_ms"].as_u64().is_some(), "from history: {doc}");
            let tests = w["tests"].as_array().unwrap();
            assert_eq!(tests.len(), 1, "{doc}");
            (
                w["worker"].as_str().unwrap().to_owned(),
                tests[0]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    held.sort();
    let mut gated: Vec<&str> = held.iter().map(|(_, t)| t.as_str()).collect();
    gated.sort_unstable();
    assert_eq!(gated, ["gated/a", "gated/b"], "{doc}");
    assert_eq!(
        held.iter().map(|(w, _)| w.as_str()).collect::<Vec<_>>(),
        ["w1", "w2"],
        "{doc}"
    );
    assert_eq!(doc["failing"][0]["id"], "fail/one@300", "{doc}");
    assert!(doc["eta_ms"].as_u64().is_some(), "{doc}");
    assert_eq!(doc["eta_basis"], "history", "{doc}");

    let out = Proc::spawn("line", &scratch, &status_args(&server, build, &[])).wait(LONG);
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert_eq!(
        out.stdout.lines().count(),
        1,
        "piped, one line: {}",
        out.both()
    );
    assert!(
        out.stdout.contains("running: 4 of 6 tests done, 2 left (0 queued, 2 running), 1 failed; 2 worker(s) live; about"),
        "{}",
        out.both()
    );

    for gate in ["open-w1", "open-w2"] {
        std::fs::write(scratch.path(gate), "").unwrap();
    }
    for proc in workers {
        assert_eq!(proc.wait(LONG).code, Some(ExitCode::TestsFailed.code()));
    }
    let watched = watch.wait(LONG);
    assert_eq!(
        watched.code,
        Some(ExitCode::TestsFailed.code()),
        "--watch ends with the build's verdict: {}",
        watched.both()
    );
    assert!(
        watched
            .stdout
            .lines()
            .last()
            .is_some_and(|line| line.contains("finished, verdict failed")),
        "{}",
        watched.both()
    );

    let out = Proc::spawn("end", &scratch, &status_args(&server, build, &["--json"])).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    let status = json(&out);
    assert_eq!(
        (&status["phase"], &status["verdict"]),
        (&"finished".into(), &"failed".into()),
        "{status}"
    );
    let report_json = scratch.path("report.json");
    let mut report = report_args(&server, build);
    report.extend(["--json".to_owned(), report_json.display().to_string()]);
    let out = Proc::spawn("report", &scratch, &report).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report_json).unwrap()).unwrap();
    for count in [
        "total",
        "passed",
        "flaky",
        "skipped",
        "failed",
        "errored",
        "not_run",
        "requeued",
        "taken_over",
    ] {
        assert_eq!(
            status["counts"][count], report["counts"][count],
            "{count}: {status} vs {report}"
        );
    }
    assert_eq!(status["verdict"], report["verdict"]);
}

/// A build Redis does not hold: one clear line and exit 4, as when no leader appeared; `--json`
/// still prints its document.
#[test]
fn an_unknown_build_says_so_and_exits_4() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let out = Proc::spawn("status", &scratch, &status_args(&server, "nope", &[])).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::NoLeader.code()), "{}", out.both());
    assert!(
        out.stderr.contains("no build `nope` in Redis"),
        "{}",
        out.both()
    );
    let out = Proc::spawn("json", &scratch, &status_args(&server, "nope", &["--json"])).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::NoLeader.code()), "{}", out.both());
    assert_eq!(json(&out)["phase"], "absent", "{}", out.both());
}

/// A worker killed mid-test shows as silent, still holding its test, once its heartbeat lapses;
/// the test is taken over when another worker is free, and the finished build says so.
#[test]
fn a_killed_worker_shows_as_silent_holding_its_test() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    std::fs::write(scratch.path("tests.txt"), "gated/victim\ngated/other\n").unwrap();
    let victim = worker(&server, &scratch, "killed", "w1");
    wait_until("w1 to start its test", LONG, || {
        scratch.runs().iter().any(|(w, _)| w == "w1")
    });
    let other = worker(&server, &scratch, "killed", "w2");
    wait_until("w2 to start its test", LONG, || {
        scratch.runs().iter().any(|(w, _)| w == "w2")
    });
    victim.signal(nix::sys::signal::Signal::SIGKILL);
    drop(victim);
    let mut doc = serde_json::Value::Null;
    wait_until("w1 to show as silent", LONG, || {
        let out = Proc::spawn(
            "status",
            &scratch,
            &status_args(&server, "killed", &["--json"]),
        )
        .wait(LONG);
        doc = json(&out);
        doc["workers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["worker"] == "w1" && w["activity"] == "silent")
    });
    let w1 = doc["workers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["worker"] == "w1")
        .unwrap();
    let held = &w1["tests"][0]["id"];
    assert!(held.as_str().unwrap().starts_with("gated/"), "{doc}");
    std::fs::write(scratch.path("open-w2"), "").unwrap();
    assert_eq!(other.wait(LONG).code, Some(0));
    let out = Proc::spawn("end", &scratch, &status_args(&server, "killed", &[])).wait(LONG);
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert!(
        out.stdout
            .contains("finished, verdict green: 2 of 2 tests done, 0 failed, 0 flaky, 0 not run"),
        "{}",
        out.both()
    );
}
