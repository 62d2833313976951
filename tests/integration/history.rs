//! A namespace's flakiness history: each build's report records its failing and flaky tests,
//! `ciq flaky` ranks them over the recent builds, and a report marks the failure of a test that
//! was flaky in earlier builds.

use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq_testkit::{Proc, RedisServer, Scratch, TestRedis, report_args, with_command, worker_args};

const LONG: Duration = Duration::from_secs(120);

/// Runs build `build` of namespace `ns` (its own scratch directory, so `flaky/*` fails its
/// first run again) to the end, then its report; returns the report's output.
fn build_and_report(
    server: &impl TestRedis,
    build: &str,
    tests: &[&str],
    extra: &[&str],
) -> ciq_testkit::Output {
    let scratch = Scratch::new();
    let list = scratch.tests(&tests.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>());
    let mut args = worker_args(server, build, "w1", &list);
    args.extend(["--namespace", "ns"].map(str::to_owned));
    args.extend(extra.iter().map(|s| (*s).to_owned()));
    Proc::spawn("w1", &scratch, &with_command(args)).wait(LONG);
    let mut report = report_args(server, build);
    report.extend(["--namespace", "ns"].map(str::to_owned));
    Proc::spawn("report", &scratch, &report).wait(LONG)
}

#[test]
fn flakiness_accumulates_across_builds_and_marks_failures() {
    flakiness_accumulates(&RedisServer::start());
}

/// Three builds of namespace `ns`, a test flaky in two of them, its failure in the third
/// marked as often flaky, and `ciq flaky` ranking the namespace's tests (also run on a
/// cluster, whose history keys hash to their own slot).
pub(crate) fn flakiness_accumulates(server: &impl TestRedis) {
    let tests = ["pass/0", "flaky/net", "fail/disk"];
    for build in ["b1", "b2"] {
        let out = build_and_report(server, build, &tests, &[]);
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
    }
    // Without a retry, the flaky test fails for good this time: the report says it is often
    // flaky, which a plain failure is not.
    let out = build_and_report(server, "b3", &tests, &["--max-requeues", "0"]);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("FAILED flaky/net (worker w1, ")
            && out
                .stdout
                .contains("[often flaky: flaky in 2 of the last 3 builds]"),
        "{}",
        out.both()
    );
    let plain = out
        .stdout
        .lines()
        .find(|l| l.starts_with("FAILED fail/disk"));
    assert!(
        plain.is_some_and(|l| !l.contains("often flaky")),
        "{}",
        out.both()
    );

    // Another namespace's history is its own.
    let scratch = Scratch::new();
    let flaky = |namespace: &str| {
        let args: Vec<String> = [
            "flaky",
            "--queue",
            &server.queue_url(),
            "--namespace",
            namespace,
        ]
        .map(str::to_owned)
        .to_vec();
        Proc::spawn(&format!("flaky-{namespace}"), &scratch, &args).wait(LONG)
    };
    let out = flaky("ns");
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(
        lines[0],
        "the flakiest tests of the last 3 build(s) of namespace `ns`:"
    );
    let row = |test: &str| {
        lines
            .iter()
            .find(|l| l.ends_with(test))
            .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>())
    };
    assert_eq!(
        row("flaky/net"),
        Some(vec!["2/3", "1/3", "b3"]),
        "{}",
        out.stdout
    );
    assert_eq!(
        row("fail/disk"),
        Some(vec!["0/3", "3/3", "b3"]),
        "{}",
        out.stdout
    );
    assert!(
        lines[2].ends_with("flaky/net"),
        "flakiest first: {}",
        out.stdout
    );
    let out = flaky("other");
    assert!(
        out.stdout
            .contains("no test failed or was flaky in the 0 recorded build(s)"),
        "{}",
        out.both()
    );
}

/// A build recorded again (the report of its retry) replaces its own events; the history keeps
/// the last 50 builds and forgets the events of older ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_recorded_again_replaces_its_events_and_old_builds_leave() {
    use ciq::outcome::Outcome;
    use ciq::queue::redis::connection::RedisConn;
    use ciq::queue::redis::history::{Event, History, WINDOW};
    use ciq::report::Summary;
    use ciq::report::summary::Listed;
    use ciq::test_id::TestId;

    let server = RedisServer::start();
    let conn = RedisConn::open(&server.url(), Duration::from_secs(10))
        .await
        .unwrap();
    let history = History::new(&conn, "");
    let listed = |id: &str, outcome| Listed {
        id: TestId::new(id).unwrap(),
        outcome,
        detail: None,
        requeues: 0,
    };
    let failing = Summary {
        failing: vec![listed("net", Outcome::Failed)],
        ..Summary::default()
    };
    history.record("b;=0", &failing).await.unwrap();
    let retried = Summary {
        flaky: vec![listed("net", Outcome::Flaky)],
        ..Summary::default()
    };
    history.record("b;=0", &retried).await.unwrap();
    assert_eq!(
        history.all().await.unwrap()["net"],
        [("b;=0".to_owned(), Event::Flaky)]
    );
    for n in 1..=WINDOW + 2 {
        history.record(&format!("b{n}"), &failing).await.unwrap();
    }
    let builds = history.builds().await.unwrap();
    assert_eq!(builds.len(), WINDOW);
    assert_eq!(builds.first().map(String::as_str), Some("b3"));
    let events = &history.all().await.unwrap()["net"];
    assert_eq!(events.len(), WINDOW, "{events:?}");
    assert!(events.iter().all(|(build, _)| builds.contains(build)));
}
