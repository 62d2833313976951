//! `--order`: a known failure first (from the namespace's history, or a local timing file's
//! failures), so a broken build goes red at once; a random order fixed by its seed, the leader's
//! for every worker, in the order log; bad input refused with the usage exit code.

use std::path::Path;
use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq_testkit::{Output, Proc, RedisServer, Scratch, report_args, with_command, worker_args};

const LONG: Duration = Duration::from_secs(120);

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| (*arg).to_owned()).collect()
}

/// Four tests of 200 ms, six of 50 ms, and `fail/x`, which fails at once, listed last: longest
/// first runs it last.
fn suite() -> Vec<String> {
    let mut tests: Vec<String> = (0..4).map(|n| format!("pass/long{n}@200")).collect();
    tests.extend((0..6).map(|n| format!("pass/short{n}@50")));
    tests.push("fail/x".to_owned());
    tests
}

/// The order log at `path`: its `# order: ` line, and the tests in the order they started.
fn order_log(path: &Path) -> (Option<String>, Vec<String>) {
    let text = std::fs::read_to_string(path).unwrap();
    let order = text
        .lines()
        .find_map(|line| line.strip_prefix("# order: "))
        .map(str::to_owned);
    let tests = text
        .lines()
        .filter_map(|line| line.split_once('\t'))
        .map(|(_, test)| test.to_owned())
        .collect();
    (order, tests)
}

/// One worker of `build` in namespace `ns`, with `extra` flags, logging its order to
/// `<build>.order`; then the build's report (which records its failures in the history).
fn build(server: &RedisServer, scratch: &Scratch, build: &str, extra: &[&str]) -> Output {
    let list = scratch.tests(&suite());
    let mut args = worker_args(server, build, "w1", &list);
    args.extend(strings(&["--namespace", "ns", "--order-log"]));
    args.push(
        scratch
            .path(&format!("{build}.order"))
            .display()
            .to_string(),
    );
    args.extend(strings(extra));
    let out = Proc::spawn(build, scratch, &with_command(args)).wait(LONG);
    let mut report = report_args(server, build);
    report.extend(strings(&["--namespace", "ns"]));
    Proc::spawn(&format!("{build}-report"), scratch, &report).wait(LONG);
    out
}

/// Build 1 records `fail/x` failing; build 2 ordered longest first runs it last, while build 3
/// ordered failed first runs it first and, with `--max-failures 1`, ends there, red, the rest
/// not run.
#[test]
fn a_known_failure_runs_first_and_max_failures_ends_the_build_there() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let out = build(&server, &scratch, "b1", &[]);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    let stop_at_first = ["--max-failures", "1", "--max-requeues", "0"];

    let mut longest_first = stop_at_first.to_vec();
    longest_first.extend(["--order", "longest-first"]);
    let out = build(&server, &scratch, "b2", &longest_first);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    let (order, tests) = order_log(&scratch.path("b2.order"));
    assert_eq!(order.as_deref(), Some("longest-first"));
    assert_eq!(tests.len(), 11, "longest first runs it last: {tests:?}");
    assert_eq!(tests.last().map(String::as_str), Some("fail/x"));

    // Failed first is the default.
    let out = build(&server, &scratch, "b3", &stop_at_first);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains(
            "ordered 11 tests failed first: 1 that failed or were flaky in recent builds"
        ),
        "{}",
        out.both()
    );
    let (order, tests) = order_log(&scratch.path("b3.order"));
    assert_eq!(order.as_deref(), Some("failed-first"));
    assert_eq!(tests[0], "fail/x", "it ran first: {tests:?}");
    assert!(tests.len() < 11, "the build ended there: {tests:?}");
    assert!(
        out.stderr
            .contains("stops taking tests: the build has 1 failed tests (--max-failures)"),
        "{}",
        out.both()
    );
}

/// With `--max-failures`, a worker learns of another's failure within about a second, not a
/// heartbeat interval (20 s here) later: the build of 40 tests of 300 ms ends long before it
/// would have run them all.
#[test]
fn another_workers_failure_stops_a_worker_within_about_a_second() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let mut tests = vec!["fail/x".to_owned()];
    tests.extend((0..40).map(|n| format!("pass/t{n:02}@300")));
    let list = scratch.tests(&tests);
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|worker| {
            let mut args = worker_args(&server, "stop", worker, &list);
            args = ciq_testkit::replace_flag(
                args,
                "--heartbeat-interval",
                ["--heartbeat-interval".to_owned(), "20s".to_owned()],
            );
            args = ciq_testkit::replace_flag(
                args,
                "--heartbeat-timeout",
                ["--heartbeat-timeout".to_owned(), "60s".to_owned()],
            );
            args.extend(strings(&["--max-failures", "1", "--max-requeues", "0"]));
            Proc::spawn(worker, &scratch, &with_command(args))
        })
        .collect();
    for worker in workers {
        let out = worker.wait(LONG);
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
    }
    let ran = scratch.runs().len();
    assert!(ran < 20, "{ran} of 41 tests ran");
}

/// Without any failure in the history, failed first is longest first: two builds in namespaces
/// of their own, ordered by one timing file alone.
#[test]
fn failed_first_without_failures_is_longest_first() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let tests: Vec<String> = (0..8).map(|n| format!("pass/t{n}")).collect();
    let list = scratch.tests(&tests);
    let timings = scratch.path("timings.tsv");
    let file: String = (0..8)
        .map(|n| format!("{}\tpass/t{n}\n", [5, 70, 10, 90, 30, 60, 20, 80][n]))
        .collect();
    std::fs::write(&timings, format!("# ciq timings v1\n{file}")).unwrap();
    let run = |build: &str, extra: &[&str]| {
        let mut args = worker_args(&server, build, "w1", &list);
        args.extend(strings(&["--namespace", build, "--timings"]));
        args.push(timings.display().to_string());
        args.push("--order-log".to_owned());
        args.push(
            scratch
                .path(&format!("{build}.order"))
                .display()
                .to_string(),
        );
        args.extend(strings(extra));
        let out = Proc::spawn(build, &scratch, &with_command(args)).wait(LONG);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        order_log(&scratch.path(&format!("{build}.order"))).1
    };
    let longest = run("longest", &["--order", "longest-first"]);
    assert_eq!(
        longest,
        [
            "pass/t3", "pass/t7", "pass/t1", "pass/t5", "pass/t4", "pass/t6", "pass/t2", "pass/t0"
        ]
    );
    assert_eq!(run("failed", &["--order", "failed-first"]), longest);
}

/// Local mode: `fail/x` fails in the first run, whose timing file says so; the next run ordered
/// failed first by that file starts with it.
#[test]
fn a_local_timing_file_puts_its_failures_first() {
    let scratch = Scratch::new();
    let list = scratch.tests(&suite());
    let timings = scratch.path("timings.tsv");
    let local = |name: &str, extra: &[&str]| {
        // One run each: a requeue would run it again at once on the only worker.
        let mut args = strings(&["run", "-j", "1", "--max-requeues", "0", "--tests"]);
        args.push(list.display().to_string());
        args.push("--order-log".to_owned());
        args.push(scratch.path(&format!("{name}.order")).display().to_string());
        args.extend(strings(extra));
        let out = Proc::spawn(name, &scratch, &with_command(args)).wait(LONG);
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
        order_log(&scratch.path(&format!("{name}.order"))).1
    };
    let path = timings.display().to_string();
    local("first", &["--timings-out", &path]);
    let text = std::fs::read_to_string(&timings).unwrap();
    assert!(text.contains("\n# failed\tfail/x\n"), "{text}");
    let longest = local("longest", &["--timings", &path, "--order", "longest-first"]);
    assert_eq!(longest.last().map(String::as_str), Some("fail/x"));
    let failed = local("failed", &["--timings", &path]);
    assert_eq!(failed[0], "fail/x");
    assert_eq!(failed[1..], longest[..longest.len() - 1]);
}

/// A random order: the leader's seed (printed, in every worker's order log) orders the build,
/// whatever the others' own; the same seed gives the same order locally and through Redis, and
/// another seed another order.
#[test]
fn a_random_order_is_the_seeds_on_every_worker_and_in_every_run() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let tests: Vec<String> = (0..30).map(|n| format!("pass/t{n:02}")).collect();
    let list = scratch.tests(&tests);
    let local = |name: &str, seed: &str| {
        let mut args = strings(&["run", "-j", "1", "--order", "random", "--seed", seed]);
        args.extend(strings(&[
            "--tests",
            &list.display().to_string(),
            "--order-log",
        ]));
        args.push(scratch.path(&format!("{name}.order")).display().to_string());
        let out = Proc::spawn(name, &scratch, &with_command(args)).wait(LONG);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(
            out.stderr.contains(&format!(
                "ordered 30 tests at random, seed {seed} (`--order random --seed {seed}` repeats the order)"
            )),
            "{}",
            out.both()
        );
        order_log(&scratch.path(&format!("{name}.order")))
    };
    let (order, seven) = local("seven", "7");
    assert_eq!(order.as_deref(), Some("random --seed 7"));
    assert_ne!(seven, tests, "shuffled");
    assert_eq!(
        local("again", "7").1,
        seven,
        "the same seed, the same order"
    );
    assert_ne!(local("eight", "8").1, seven, "another seed, another order");

    // Two workers of one build, each with a seed of its own making: the leader's orders the
    // queue, and both say it.
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|worker| {
            let mut args = worker_args(&server, "random", worker, &list);
            args.extend(strings(&[
                "--order",
                "random",
                "--batch-size",
                "1",
                "--order-log",
            ]));
            args.push(
                scratch
                    .path(&format!("{worker}.order"))
                    .display()
                    .to_string(),
            );
            Proc::spawn(worker, &scratch, &with_command(args))
        })
        .collect();
    let report = Proc::spawn("report", &scratch, &report_args(&server, "random"));
    let outs: Vec<Output> = workers.into_iter().map(|w| w.wait(LONG)).collect();
    let report = report.wait(LONG);
    let leader = outs
        .iter()
        .find(|out| out.stderr.contains("ordered 30 tests at random, seed "))
        .expect("one worker ordered the queue");
    let seed: String = leader
        .stderr
        .split("ordered 30 tests at random, seed ")
        .nth(1)
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    for (worker, out) in ["w1", "w2"].iter().zip(&outs) {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(
            out.stderr.contains(&format!(
                "runs its tests in a random order: `--order random --seed {seed}` repeats it"
            )),
            "{}",
            out.both()
        );
        let (order, _) = order_log(&scratch.path(&format!("{worker}.order")));
        assert_eq!(order, Some(format!("random --seed {seed}")));
    }
    assert!(
        report.stderr.contains(&format!(
            "ciq report: build `random` ran its tests in a random order: `--order random --seed {seed}` repeats it"
        )),
        "{}",
        report.both()
    );
    // The build's queue is the seed's local order: each worker took its tests from its head,
    // so in that order, and between them they ran them all.
    let (_, local_order) = local("same", &seed);
    let mut ran = 0;
    for worker in ["w1", "w2"] {
        let (_, took) = order_log(&scratch.path(&format!("{worker}.order")));
        let at: Vec<Option<usize>> = took
            .iter()
            .map(|test| local_order.iter().position(|t| t == test))
            .collect();
        assert!(
            at.windows(2).all(|w| w[0] < w[1]),
            "{worker}: {took:?} of {local_order:?}"
        );
        ran += took.len();
    }
    assert_eq!(ran, 30);
}

/// A bad `--order` or `--seed`: one line naming the flag, exit 2.
#[test]
fn a_bad_order_or_seed_is_refused() {
    let scratch = Scratch::new();
    let list = scratch.tests(&suite());
    let list = list.display().to_string();
    let run = |extra: &[&str]| {
        let mut args = strings(&["run", "-j", "1", "--tests", &list]);
        args.extend(strings(extra));
        Proc::spawn("bad", &scratch, &with_command(args)).wait(LONG)
    };
    for (extra, says) in [
        (
            &["--order", "nonsense"][..],
            "error: invalid value 'nonsense' for '--order <ORDER>'",
        ),
        (
            &["--order", "random", "--seed", "x1"][..],
            "error: invalid value 'x1' for '--seed <S>'",
        ),
        (
            &["--seed", "5"][..],
            "error: --seed (CIQ_SEED) is for --order random, and the order is failed-first",
        ),
    ] {
        let out = run(extra);
        assert_eq!(out.code, Some(ExitCode::Usage.code()), "{}", out.both());
        assert!(
            out.stderr
                .lines()
                .next()
                .is_some_and(|l| l.starts_with(says)),
            "{extra:?}: {}",
            out.both()
        );
        assert!(scratch.runs().is_empty(), "no test ran: {}", out.both());
    }
}
