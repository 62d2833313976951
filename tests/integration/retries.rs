//! Job retries: a CI job retried after its build ended re-runs the build's failed tests only,
//! once across the retried jobs, and the report's verdict changes; `--retry-of` makes a new
//! build of an earlier one's failures.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ciq::exit_code::ExitCode;
use ciq_testkit::{
    Proc, RedisServer, Scratch, replace_flag, report_args, with_command, worker_args,
};

const LONG: Duration = Duration::from_secs(120);

/// How often each test ran since `from` runs were logged.
fn runs_since(scratch: &Scratch, from: usize) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (_, test) in scratch.runs().into_iter().skip(from) {
        *counts.entry(test).or_insert(0) += 1;
    }
    counts
}

/// Runs workers `names` of `build` with `extra` flags (and `env`) to the end; returns their
/// outputs.
fn workers(
    server: &RedisServer,
    scratch: &Scratch,
    build: &str,
    list: &std::path::Path,
    names: &[&str],
    extra: &[&str],
    env: &[(&str, &str)],
) -> Vec<ciq_testkit::Output> {
    let procs: Vec<Proc> = names
        .iter()
        .map(|name| {
            let mut args = worker_args(server, build, name, list);
            args.extend(["--max-requeues", "0"].map(str::to_owned));
            // A flag the fast defaults already set takes the value given here.
            let mut rest = extra.iter();
            while let Some(flag) = rest.next() {
                match rest.clone().next() {
                    Some(value) if args.iter().any(|a| a == flag) => {
                        rest.next();
                        args = replace_flag(args, flag, [(*flag).to_owned(), (*value).to_owned()]);
                    }
                    _ => args.push((*flag).to_owned()),
                }
            }
            Proc::spawn_with_env(
                &format!("{build}-{name}-{}", scratch.runs().len()),
                scratch,
                &with_command(args),
                env,
            )
        })
        .collect();
    procs.into_iter().map(|p| p.wait(LONG)).collect()
}

fn expected(ids: &[&str]) -> BTreeMap<String, usize> {
    ids.iter().map(|id| ((*id).to_owned(), 1)).collect()
}

/// The build fails with one broken and two flaky tests; a retry of its two jobs re-runs those
/// three only, each once across both jobs; the flaky ones now pass and are reported flaky, the
/// broken one still fails. The same retry started again runs nothing; a second retry re-runs
/// the broken test alone.
#[test]
fn a_retried_build_reruns_only_its_failed_tests_once_across_jobs() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "retried";
    let mut tests: Vec<String> = (0..20).map(|n| format!("pass/{n:02}")).collect();
    tests.extend(["fail/0", "flaky/0", "flaky/1"].map(str::to_owned));
    let list = scratch.tests(&tests);
    for out in workers(&server, &scratch, build, &list, &["w1", "w2"], &[], &[]) {
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
    }
    assert_eq!(scratch.runs().len(), 23);
    let out = Proc::spawn("report-1", &scratch, &report_args(&server, build)).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("23 tests: 20 passed, 3 failed"),
        "{}",
        out.both()
    );

    let before = scratch.runs().len();
    let outs = workers(
        &server,
        &scratch,
        build,
        &list,
        &["w1", "w2"],
        &["--retry"],
        &[],
    );
    assert_eq!(
        runs_since(&scratch, before),
        expected(&["fail/0", "flaky/0", "flaky/1"]),
        "a retry runs the failed tests, each once across its jobs"
    );
    let said: String = outs.iter().map(|o| o.both()).collect();
    assert!(
        said.contains("ciq: retry `1` of build `retried`: its 3 failed test(s) run again"),
        "{said}"
    );
    let out = Proc::spawn("report-2", &scratch, &report_args(&server, build)).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout
            .contains("23 tests: 20 passed, 2 flaky, 1 failed; 3 requeued"),
        "{}",
        out.both()
    );

    // The same retry started late runs nothing more.
    let before = scratch.runs().len();
    for out in workers(&server, &scratch, build, &list, &["w1"], &["--retry"], &[]) {
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
    }
    assert!(runs_since(&scratch, before).is_empty());

    // A second retry (its own round) re-runs what still fails.
    let before = scratch.runs().len();
    for out in workers(
        &server,
        &scratch,
        build,
        &list,
        &["w2"],
        &["--retry=2"],
        &[],
    ) {
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
    }
    assert_eq!(runs_since(&scratch, before), expected(&["fail/0"]));
    let out = Proc::spawn("report-3", &scratch, &report_args(&server, build)).wait(LONG);
    assert!(
        out.stdout
            .contains("23 tests: 20 passed, 2 flaky, 1 failed; 4 requeued"),
        "{}",
        out.both()
    );
}

/// A retried job of a green build exits 0 at once, saying there is nothing to retry; the CI's
/// own retry counter (here Buildkite's) is enough to make a job a retry.
#[test]
fn nothing_to_retry_exits_zero_at_once() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "green";
    let tests: Vec<String> = (0..5).map(|n| format!("pass/{n}")).collect();
    let list = scratch.tests(&tests);
    for out in workers(&server, &scratch, build, &list, &["w1"], &[], &[]) {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    }
    scratch.assert_each_ran_once(5);
    let before = scratch.runs().len();
    let started = Instant::now();
    let env = [
        ("BUILDKITE", "true"),
        ("BUILDKITE_BUILD_ID", build),
        ("BUILDKITE_RETRY_COUNT", "1"),
    ];
    let outs = workers(&server, &scratch, build, &list, &["w1"], &[], &env);
    assert_eq!(
        outs[0].code,
        Some(ExitCode::Success.code()),
        "{}",
        outs[0].both()
    );
    assert!(
        outs[0].stderr.contains(
            "ciq: nothing to retry: no test of build `green` failed (retry `buildkite-1`)"
        ),
        "{}",
        outs[0].both()
    );
    assert!(runs_since(&scratch, before).is_empty());
    // Printed by a human-scale bound, not a tight one: it must not wait for anything.
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// On GitLab (which says nothing of retries), a job whose worker id already took part in the
/// finished build is a retry; a new worker id joining late is not, and runs nothing.
#[test]
fn a_gitlab_job_run_again_retries_its_build() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "gitlab";
    let tests: Vec<String> = ["pass/0", "pass/1", "flaky/0"].map(str::to_owned).to_vec();
    let list = scratch.tests(&tests);
    let gitlab = |node: &'static str| {
        [
            ("GITLAB_CI", "true"),
            ("CI_PIPELINE_ID", "77"),
            ("CI_NODE_INDEX", node),
        ]
    };
    let run = |node: &'static str| {
        let mut args = worker_args(&server, build, "unused", &list);
        // The worker and build ids come from GitLab's variables.
        args.drain(3..7);
        args.extend(["--max-requeues", "0"].map(str::to_owned));
        Proc::spawn_with_env(
            &format!("gitlab-{node}-{}", scratch.runs().len()),
            &scratch,
            &with_command(args),
            &gitlab(node),
        )
        .wait(LONG)
    };
    assert_eq!(run("1").code, Some(ExitCode::TestsFailed.code()));
    let before = scratch.runs().len();
    let late = run("2");
    assert_eq!(
        late.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        late.both()
    );
    assert!(runs_since(&scratch, before).is_empty(), "{}", late.both());
    let retried = run("1");
    assert_eq!(
        retried.code,
        Some(ExitCode::Success.code()),
        "{}",
        retried.both()
    );
    assert_eq!(runs_since(&scratch, before), expected(&["flaky/0"]));
}

/// `--retry-of`: a new build (CircleCI's rerun of failed tests is a new workflow) runs the
/// failed tests of an earlier one; an unknown earlier build is an error, not a green run.
#[test]
fn retry_of_runs_an_earlier_builds_failures() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let tests: Vec<String> = ["pass/0", "pass/1", "fail/0", "flaky/0"]
        .map(str::to_owned)
        .to_vec();
    let list = scratch.tests(&tests);
    for out in workers(&server, &scratch, "first", &list, &["w1"], &[], &[]) {
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
    }
    let before = scratch.runs().len();
    let rerun = |build: &str, of: &str| {
        let mut args = worker_args(&server, build, "w1", &list);
        // No list of its own: the earlier build's failures are the list.
        args.drain(7..9);
        args.extend(["--retry-of", of, "--max-requeues", "0"].map(str::to_owned));
        Proc::spawn(&format!("rerun-{build}"), &scratch, &with_command(args)).wait(LONG)
    };
    let out = rerun("second", "first");
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert_eq!(
        runs_since(&scratch, before),
        expected(&["fail/0", "flaky/0"])
    );
    let out = Proc::spawn("report-second", &scratch, &report_args(&server, "second")).wait(LONG);
    assert!(
        out.stdout.contains("2 tests: 1 passed, 1 failed"),
        "{}",
        out.both()
    );
    let out = rerun("third", "no-such-build");
    assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
    assert!(
        out.stderr
            .contains("--retry-of: build `no-such-build` is not in this Redis"),
        "{}",
        out.both()
    );
}

/// A job retried while its build still runs (an agent lost mid-build, retried at once) joins
/// the build as any worker: it takes tests from the queue, and every test runs once.
#[test]
fn a_job_retried_mid_build_joins_it() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "mid-build";
    // Long enough (6 s for one worker) that the retried job starts before the build ends.
    let tests: Vec<String> = (0..30).map(|n| format!("pass/{n:02}@200")).collect();
    let list = scratch.tests(&tests);
    let args = |worker: &str, extra: &[&str]| {
        let mut args = worker_args(&server, build, worker, &list);
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        with_command(args)
    };
    let first = Proc::spawn("first", &scratch, &args("w1", &[]));
    ciq_testkit::wait_until("the build runs", LONG, || !scratch.runs().is_empty());
    let retried = Proc::spawn("retried", &scratch, &args("w2", &["--retry"]));
    for out in [first.wait(LONG), retried.wait(LONG)] {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    }
    scratch.assert_each_ran_once(30);
    assert!(
        scratch.runs().iter().any(|(worker, _)| worker == "w2"),
        "the retried job took tests: {:?}",
        scratch.runs()
    );
}

/// Regression: with thousands of failed tests, RETRY unpacked them all at once (Lua refuses
/// about 8,000) after recording the round, so the retry could never run. Every failure of a
/// build where all 9,000 tests failed is queued again, each once, and a pass makes it flaky.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_reopens_thousands_of_failures() {
    use ciq::outcome::Outcome;
    use ciq::queue::redis::{RetryRound, Retrying};
    use ciq::queue::{Queue, Reservation, Want};

    use crate::election::{ack, worker};

    let server = RedisServer::start();
    let names: Vec<String> = (0..9000).map(|n| format!("t/{n:05}")).collect();
    let source = ciq::discovery::TestSource::List(
        ciq::test_id::TestList::parse(names.join("\n").as_bytes(), "test").unwrap(),
    );
    let drain = |queue: ciq::queue::redis::RedisQueue, outcome: Outcome| async move {
        let mut acked = 0;
        let mut reservation = queue.reserve(Want::up_to(1000)).await.unwrap();
        loop {
            match reservation {
                Reservation::Tests(tests) => {
                    acked += tests.len();
                    let acks = tests.iter().map(|t| ack(t, outcome)).collect();
                    reservation = queue.ack(acks, Want::up_to(1000)).await.unwrap().next;
                }
                Reservation::Done => return (queue, acked),
                other => panic!("{other:?}"),
            }
        }
    };
    let first = worker(&server, "many", "w1").await;
    first.join(&source).await.unwrap();
    let (first, _) = drain(first, Outcome::Failed).await;
    assert_eq!(first.summary().await.unwrap().failed_count(), 9000);

    let retried = worker(&server, "many", "w1").await;
    let round = RetryRound::Named("1".to_owned());
    assert_eq!(
        retried.retry(&round).await.unwrap(),
        Retrying::Reopened {
            round: "1".to_owned(),
            tests: 9000
        }
    );
    let joined = retried.join(&source).await.unwrap();
    // The sets RETRY emptied, made again by the next acknowledgement, expire like the rest.
    let Reservation::Tests(some) = retried.reserve(Want::up_to(10)).await.unwrap() else {
        panic!("the failures are queued");
    };
    let acks = some.iter().map(|t| ack(t, Outcome::Passed)).collect();
    let first_ten = retried.ack(acks, Want::up_to(0)).await.unwrap();
    assert_eq!(first_ten.recorded.len(), 10);
    let keys = ciq::queue::redis::keys::BuildKeys::new("", "many");
    let generation = keys.generation(&joined.generation);
    let mut conn = server.conn();
    for key in [keys.results(), generation.processed, generation.flaky] {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
        assert!(ttl > 0, "{key} has no TTL ({ttl})");
    }
    let (retried, acked) = drain(retried, Outcome::Passed).await;
    assert_eq!(acked + 10, 9000, "each failure runs once more");
    let summary = retried.summary().await.unwrap();
    assert_eq!(summary.failed_count(), 0);
    assert_eq!(summary.counts.get(&Outcome::Flaky).copied(), Some(9000));
}

/// The report of a retry may start before the retried workers (GitHub re-runs a failed report
/// job with the failed test jobs): it re-opens the failures itself, then waits for their re-run
/// and gives the new verdict, never the old one read too early.
#[test]
fn the_report_of_a_retry_waits_for_the_rerun() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "report-first";
    let tests: Vec<String> = ["pass/0", "pass/1", "flaky/0"].map(str::to_owned).to_vec();
    let list = scratch.tests(&tests);
    // The report waits a heartbeat timeout for silent workers: long enough here for the
    // retried worker to start on a loaded machine.
    let slow = ["--heartbeat-timeout", "10s"];
    for out in workers(&server, &scratch, build, &list, &["w1"], &slow, &[]) {
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
    }
    let env = [("GITHUB_ACTIONS", "true"), ("GITHUB_RUN_ATTEMPT", "2")];
    let report = Proc::spawn_with_env("report", &scratch, &report_args(&server, build), &env);
    report.wait_for_stderr("its 1 failed test(s) run again", LONG);
    let before = scratch.runs().len();
    for out in workers(&server, &scratch, build, &list, &["w1"], &[], &env) {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(
            out.stderr
                .contains("retry `attempt-2` of build `report-first`: worker `w1` joins"),
            "{}",
            out.both()
        );
    }
    assert_eq!(runs_since(&scratch, before), expected(&["flaky/0"]));
    let out = report.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stdout.contains("3 tests: 2 passed, 1 flaky"),
        "{}",
        out.both()
    );
}

/// A build aborted for everyone (here its list command failed) keeps its abort record for
/// hours; its retry runs the whole suite as a fresh build that its jobs and report share.
#[test]
fn a_retry_of_an_aborted_build_runs_the_suite_afresh() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "aborted";
    let tests: Vec<String> = (0..4).map(|n| format!("pass/{n}")).collect();
    let list = scratch.tests(&tests);
    let mut args = worker_args(&server, build, "w1", &list);
    args.drain(7..9);
    args.extend(["--list-command", "exit 3"].map(str::to_owned));
    let out = Proc::spawn("broken", &scratch, &with_command(args)).wait(LONG);
    assert_ne!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(scratch.runs().is_empty());

    let outs = workers(&server, &scratch, build, &list, &["w1"], &["--retry"], &[]);
    assert_eq!(
        outs[0].code,
        Some(ExitCode::Success.code()),
        "{}",
        outs[0].both()
    );
    assert!(
        outs[0]
            .stderr
            .contains("retry `1` runs the whole suite as build `aborted-retry-1`"),
        "{}",
        outs[0].both()
    );
    scratch.assert_each_ran_once(4);
    let mut report = report_args(&server, build);
    report.push("--retry".to_owned());
    let out = Proc::spawn("report", &scratch, &report).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("4 tests: 4 passed"), "{}", out.both());
}

/// Regression (a hostile trial): the workers of `--retry-of` a green build said "nothing to
/// retry" and exited 0 without electing anyone, while the report of the new build waited for a
/// leader until --queue-init-timeout, then exited 4: a green build made red by its own retry.
/// The workers now fill the build with no test, so the report, started before them here, ends
/// at once with their verdict.
#[test]
fn the_report_of_a_retry_of_a_green_build_ends_green_at_once() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let list = scratch.tests(&["pass/0".to_owned(), "pass/1".to_owned()]);
    for out in workers(&server, &scratch, "green", &list, &["w1"], &[], &[]) {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    }
    let started = Instant::now();
    let mut report = report_args(&server, "green-rerun");
    let junit = scratch.path("rerun.xml");
    report.extend(["--junit".to_owned(), junit.to_string_lossy().into_owned()]);
    let report = Proc::spawn("report", &scratch, &report);
    report.wait_for_stderr("waiting for a worker to be elected leader", LONG);
    let mut args = worker_args(&server, "green-rerun", "w1", &list);
    args.drain(7..9);
    args.extend(["--retry-of", "green"].map(str::to_owned));
    let out = Proc::spawn("rerun", &scratch, &with_command(args)).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stderr.contains("nothing to retry"), "{}", out.both());
    let out = report.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stderr.contains(
            "build `green-rerun` re-runs the failed tests of build `green`, which had none"
        ),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("verdict: green"), "{}", out.both());
    // Far below the report's 60 s --queue-init-timeout, which it waited out before.
    assert!(
        started.elapsed() < Duration::from_secs(45),
        "{:?}",
        started.elapsed()
    );
    let xml = std::fs::read_to_string(&junit).unwrap();
    assert!(xml.contains("tests=\"0\""), "{xml}");
    // The build of no test is a real one: its id given to a run of the suite is refused.
    let args = worker_args(&server, "green-rerun", "w2", &list);
    let out = Proc::spawn("reused", &scratch, &with_command(args)).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::ListMismatch.code()),
        "{}",
        out.both()
    );
}

/// Regression (a hostile trial): the report of a retry that no retried job came to (the jobs
/// were not re-run, only the report) re-opened the failed test, then counted it "not run" (exit
/// 3) after a heartbeat timeout. It says no retried job came and the test keeps its earlier
/// outcome: failed, exit 1; a retried job that comes later finds the build finished.
#[test]
fn a_retry_no_job_came_to_keeps_its_earlier_failures() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "no-job-came";
    let list = scratch.tests(&["pass/0".to_owned(), "fail/0".to_owned()]);
    for out in workers(&server, &scratch, build, &list, &["w1"], &[], &[]) {
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
    }
    let before = scratch.runs().len();
    let mut args = report_args(&server, build);
    args.push("--retry".to_owned());
    let out = Proc::spawn("report", &scratch, &args).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains(
            "no retried job came (within a heartbeat timeout) to retry `1` of build `no-job-came`: its 1 re-opened test(s) keep the outcome they had before it"
        ),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("FAILED fail/0")
            && out.stdout.contains("2 tests: 1 passed, 1 failed\n"),
        "{}",
        out.both()
    );
    assert!(!out.stdout.contains("NOT RUN"), "{}", out.both());
    // A retried job of the round that comes late runs nothing: the build is finished.
    for out in workers(&server, &scratch, build, &list, &["w1"], &["--retry"], &[]) {
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
    }
    assert!(runs_since(&scratch, before).is_empty());
    let out = Proc::spawn("report-again", &scratch, &report_args(&server, build)).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains("2 tests: 1 passed, 1 failed\n"),
        "{}",
        out.both()
    );
}
