//! How the workers of one build get along: the same test list or none, one process per session
//! whatever their ids, a leader that stops gives its lock up, a finished build says so, and a
//! failure waits for another worker only as long as is fair.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use ciq::exit_code::ExitCode;
use ciq_testkit::{
    Output, Proc, RedisServer, Scratch, ids, ran, replace_flag, report_args, terminated,
    wait_until, with_command, with_list_command, worker_args,
};

const LONG: Duration = Duration::from_secs(120);
const LIST_MISMATCH: i32 = 6;

/// Writes a test list named `name` in `scratch`.
fn list_file(scratch: &Scratch, name: &str, ids: &[String]) -> String {
    let path = scratch.path(name);
    std::fs::write(&path, ids.join("\n") + "\n").unwrap();
    path.to_string_lossy().into_owned()
}

/// Regression: `--namespace a --build b` and `--build a:b` had the same keys, so the second
/// build, with a suite of its own, met the first one's list and exited 6.
#[test]
fn a_namespaced_build_and_a_build_id_holding_a_colon_never_meet() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let runs = [
        (vec!["--namespace", "a", "--build", "b"], ids("pass", 3)),
        (vec!["--build", "a:b"], ids("other", 2)),
        (vec!["--namespace", "a:b", "--build", "c"], ids("third", 4)),
        (vec!["--namespace", "a", "--build", "b:c"], ids("fourth", 5)),
    ];
    for (n, (flags, tests)) in runs.into_iter().enumerate() {
        let name = format!("w{n}");
        let list = list_file(&scratch, &format!("{name}.txt"), &tests);
        let mut args = replace_flag(
            worker_args(&server, "unused", &name, std::path::Path::new(&list)),
            "--build",
            [flags[0].to_owned(), flags[1].to_owned()],
        );
        args.extend(flags[2..].iter().map(|flag| (*flag).to_owned()));
        let out = Proc::spawn(&name, &scratch, &with_command(args)).wait(LONG);
        assert_eq!(
            out.code,
            Some(ExitCode::Success.code()),
            "{flags:?}: {}",
            out.both()
        );
        let count = tests.len();
        assert!(
            out.stdout
                .contains(&format!("{count} tests: {count} passed")),
            "{flags:?}: {}",
            out.both()
        );
    }
    scratch.assert_each_ran_once(14);
}

/// Regression: w1 with t1..t10 and w2 with t1..t5 and x1..x5 in one build: w2 ran w1's tests,
/// x1..x5 never ran, and every process said `10 tests: 10 passed`, exit 0.
#[test]
fn a_worker_with_another_list_runs_nothing_and_the_build_is_red() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "two-lists";
    let a = list_file(&scratch, "a.txt", &ids("pass", 10));
    let mut b_ids = ids("pass", 5);
    b_ids.extend(ids("extra", 5));
    let b = list_file(&scratch, "b.txt", &b_ids);
    let args = |worker: &str, list: &str| {
        with_command(replace_flag(
            worker_args(&server, build, worker, std::path::Path::new(list)),
            "--tests",
            ["--tests".to_owned(), list.to_owned()],
        ))
    };
    let report = Proc::spawn("report", &scratch, &report_args(&server, build));
    let w1 = Proc::spawn("w1", &scratch, &args("w1", &a));
    w1.wait_for_stderr("queued 10 tests", LONG);
    let w2 = Proc::spawn("w2", &scratch, &args("w2", &b)).wait(LONG);
    assert_eq!(w2.code, Some(LIST_MISMATCH), "{}", w2.both());
    assert!(
        w2.stderr.contains(&format!(
            "error: worker `w2` will not run tests of build `{build}`: its test list differs from the one the build was filled with (5 of its 10 ids are not in the build's list of 10, and 5 of the build's are not in its list"
        )),
        "{}",
        w2.both()
    );
    assert!(w2.stderr.contains("--namespace"), "{}", w2.both());
    assert!(
        !scratch.runs().iter().any(|(w, _)| w == "w2"),
        "w2 ran tests"
    );
    for out in [w1.wait(LONG), report.wait(LONG)] {
        assert_eq!(out.code, Some(LIST_MISMATCH), "{}", out.both());
        assert!(
            out.stdout.contains("WORKERS WITH ANOTHER TEST LIST (they ran nothing):\n    worker `w2`: 5 of its 10 ids"),
            "{}",
            out.both()
        );
        assert!(
            out.stdout
                .contains("10 tests: 10 passed\nverdict: failed (a worker had another test list)"),
            "{}",
            out.both()
        );
    }
    // The same lists in another order are the same list.
    let mut shuffled = ids("pass", 10);
    shuffled.reverse();
    let c = list_file(&scratch, "c.txt", &shuffled);
    let build = "one-list-two-orders";
    let args = |worker: &str, list: &str| {
        with_command(replace_flag(
            worker_args(&server, build, worker, std::path::Path::new(list)),
            "--tests",
            ["--tests".to_owned(), list.to_owned()],
        ))
    };
    let w1 = Proc::spawn("w1", &scratch, &args("w1", &a));
    w1.wait_for_stderr("queued 10 tests", LONG);
    let w2 = Proc::spawn("w2", &scratch, &args("w2", &c));
    for out in [w1.wait(LONG), w2.wait(LONG)] {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    }
}

/// Two suites given one build id: without `--namespace` the second suite's workers refuse to
/// run the first suite's tests and every process is red; with a namespace each, both are green.
#[test]
fn two_suites_sharing_a_build_id_need_a_namespace() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let suite_a = list_file(&scratch, "suite-a.txt", &ids("pass", 6));
    let suite_b = list_file(&scratch, "suite-b.txt", &ids("suite-b", 6));
    let run = |namespace: Option<&str>, worker: &str, list: &str| {
        let mut args = replace_flag(
            worker_args(&server, "shared", worker, std::path::Path::new(list)),
            "--tests",
            ["--tests".to_owned(), list.to_owned()],
        );
        if let Some(namespace) = namespace {
            args.extend(["--namespace".to_owned(), namespace.to_owned()]);
        }
        // Suite B's command passes whatever it is given: only the list check can tell.
        args.extend(["--".to_owned(), "true".to_owned()]);
        Proc::spawn(worker, &scratch, &args)
    };
    let a = run(None, "a1", &suite_a);
    a.wait_for_stderr("queued 6 tests", LONG);
    let b = run(None, "b1", &suite_b).wait(LONG);
    assert_eq!(b.code, Some(LIST_MISMATCH), "{}", b.both());
    let a = a.wait(LONG);
    assert_eq!(a.code, Some(LIST_MISMATCH), "{}", a.both());
    let a = run(Some("suite-a"), "a1", &suite_a);
    let b = run(Some("suite-b"), "b1", &suite_b);
    for out in [a.wait(LONG), b.wait(LONG)] {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(out.stdout.contains("6 tests: 6 passed"), "{}", out.both());
    }
}

/// Regression: three processes shared one worker id (a GitHub Actions matrix's default); one
/// was sent SIGTERM, its "left" marker covered the other two, and the report exited 3 at once
/// while they went on to run everything. Liveness is per process now.
#[test]
fn processes_sharing_a_worker_id_live_and_leave_on_their_own() {
    let server = RedisServer::start();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "0.3");
    let build = "shared-id";
    let list = scratch.tests(&ids("slow", 24));
    let args = with_command(worker_args(&server, build, "same", &list));
    let report = Proc::spawn("report", &scratch, &report_args(&server, build));
    let first = Proc::spawn("first", &scratch, &args);
    first.wait_for_stderr("queued 24 tests", LONG);
    let others: Vec<Proc> = ["second", "third"]
        .iter()
        .map(|name| Proc::spawn(name, &scratch, &args))
        .collect();
    for other in &others {
        other.wait_for_stderr("also call themselves worker `same`", LONG);
    }
    wait_until("a few tests done", LONG, || scratch.runs().len() >= 6);
    first.signal(Signal::SIGTERM);
    let first = first.wait(LONG);
    assert_eq!(first.code, terminated(), "{}", first.both());
    for out in others
        .into_iter()
        .map(|p| p.wait(LONG))
        .chain([report.wait(LONG)])
    {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(out.stdout.contains("24 tests: 24 passed"), "{}", out.both());
    }
    let counts = scratch.run_counts();
    assert_eq!(counts.len(), 24, "{counts:?}");
}

/// Worker ids repeat across retried CI jobs. Three live processes calling themselves one
/// worker, one killed outright mid-test: only what that process held is taken over (a batch of
/// one test), the others' leases are untouched (neither is told it lost a test), and every
/// test ends with one outcome.
#[test]
fn processes_sharing_a_worker_id_keep_their_own_leases_when_one_is_killed() {
    let server = RedisServer::start();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "0.2");
    let build = "shared-id-killed";
    let list = scratch.tests(&ids("slow", 30));
    let args = with_command(worker_args(&server, build, "same", &list));
    let report = Proc::spawn("report", &scratch, &report_args(&server, build));
    let procs: Vec<Proc> = ["first", "second", "third"]
        .iter()
        .map(|name| Proc::spawn(name, &scratch, &args))
        .collect();
    wait_until("a few tests done", LONG, || scratch.runs().len() >= 8);
    procs[0].signal(Signal::SIGKILL);
    let mut procs = procs.into_iter();
    drop(procs.next());
    for out in procs.map(|p| p.wait(LONG)).chain([report.wait(LONG)]) {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(out.stdout.contains("30 tests: 30 passed"), "{}", out.both());
        assert!(
            !out.both().contains("lost test"),
            "a live twin lost a test: {}",
            out.both()
        );
        assert!(
            !out.stdout.contains("taken over") || out.stdout.contains("1 taken over"),
            "at most the killed process's one test is taken over: {}",
            out.both()
        );
    }
    let results = ciq_testkit::results(&server, build);
    assert_eq!(results.len(), 30, "{results:?}");
    assert!(
        results.values().all(|outcome| outcome == "passed"),
        "{results:?}"
    );
}

/// A list command that waits until `gate` exists, then prints `ids`.
fn gated_listing(scratch: &Scratch, gate: &str, ids: &[String]) -> String {
    let script = scratch.path("list.sh");
    let body = format!(
        "#!/bin/sh\nwhile [ ! -e '{}' ]; do sleep 0.05; done\nprintf '%s\\n' {}\n",
        scratch.path(gate).display(),
        ids.join(" ")
    );
    std::fs::write(&script, body).unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&script)
        .status()
        .unwrap();
    script.to_string_lossy().into_owned()
}

/// Regression: SIGTERM to the leader while it listed left its setup lock in place, so every
/// worker waited out the full lock TTL (30 s by default) before electing another.
#[test]
fn a_leader_stopped_while_listing_gives_its_lock_up() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "leader-stopped";
    let list = scratch.tests(&ids("pass", 1));
    let listing = gated_listing(&scratch, "gate", &ids("pass", 4));
    let args = |worker: &str| {
        with_command(replace_flag(
            with_list_command(worker_args(&server, build, worker, &list), listing.clone()),
            "--lock-ttl",
            ["--lock-ttl".to_owned(), "60s".to_owned()],
        ))
    };
    let leader = Proc::spawn("leader", &scratch, &args("leader"));
    leader.wait_for_stderr("is the leader", LONG);
    let follower = Proc::spawn("follower", &scratch, &args("follower"));
    follower.wait_for_stderr("waits for leader `leader`", LONG);
    let stopped = Instant::now();
    leader.signal(Signal::SIGTERM);
    let out = leader.wait(LONG);
    assert_eq!(out.code, terminated(), "{}", out.both());
    assert!(out.stderr.contains("gave up leading"), "{}", out.both());
    follower.wait_for_stderr("`follower` is the leader", LONG);
    assert!(
        stopped.elapsed() < Duration::from_secs(30),
        "the follower waited {:?}, as for a lapsed 60 s lock",
        stopped.elapsed()
    );
    std::fs::write(scratch.path("gate"), "").unwrap();
    let out = follower.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("4 tests: 4 passed"), "{}", out.both());
}

/// A follower starts its framework while the leader lists, not once the queue is filled: it
/// takes tests as soon as the queue is committed instead of paying its framework's start (a
/// pytest collection) then. The leader's listing here ends only once the follower's framework
/// has started.
#[test]
fn a_follower_starts_its_framework_while_the_leader_lists() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "early-framework";
    let list = scratch.tests(&ids("pass", 1));
    let listing = scratch.path("list.sh");
    std::fs::write(
        &listing,
        format!(
            "#!/bin/sh\nfor i in $(seq 600); do\n  grep -q '^follower ' '{}' 2>/dev/null && exec printf '%s\\n' {}\n  sleep 0.1\ndone\necho 'the follower framework never started' >&2\nexit 3\n",
            scratch.path("starts.log").display(),
            ids("pass", 6).join(" ")
        ),
    )
    .unwrap();
    std::process::Command::new("chmod")
        .arg("+x")
        .arg(&listing)
        .status()
        .unwrap();
    let framework = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/protocol-framework")
        .to_string_lossy()
        .into_owned();
    let args = |worker: &str| {
        let mut args = with_list_command(
            worker_args(&server, build, worker, &list),
            listing.to_string_lossy().into_owned(),
        );
        args.extend([
            "--persistent".to_owned(),
            "--".to_owned(),
            framework.clone(),
        ]);
        args
    };
    let leader = Proc::spawn("leader", &scratch, &args("leader"));
    leader.wait_for_stderr("is the leader", LONG);
    let follower = Proc::spawn("follower", &scratch, &args("follower"));
    for out in [leader.wait(LONG), follower.wait(LONG)] {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(out.stdout.contains("6 tests: 6 passed"), "{}", out.both());
    }
}

/// Regression (a hostile trial): a leader sent SIGTERM while it listed gave its lock up, but its
/// session never said it left, so the report of the drained build waited about a heartbeat
/// timeout for it. It leaves as any worker does: with a 60 s heartbeat timeout, the report (its
/// JUnit report needs every live worker to have left) ends long before that.
#[test]
fn a_leader_stopped_while_listing_says_it_left() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "leader-left";
    let list = scratch.tests(&ids("pass", 1));
    let listing = gated_listing(&scratch, "gate", &ids("pass", 4));
    let slow = |args: Vec<String>| {
        replace_flag(
            args,
            "--heartbeat-timeout",
            ["--heartbeat-timeout".to_owned(), "60s".to_owned()],
        )
    };
    let args = |worker: &str| {
        with_command(slow(with_list_command(
            worker_args(&server, build, worker, &list),
            listing.clone(),
        )))
    };
    let junit = scratch.path("report.xml");
    let mut report = report_args(&server, build);
    report.extend(["--junit".to_owned(), junit.to_string_lossy().into_owned()]);
    let report = Proc::spawn("report", &scratch, &report);
    let leader = Proc::spawn("leader", &scratch, &args("leader"));
    leader.wait_for_stderr("is the leader", LONG);
    let follower = Proc::spawn("follower", &scratch, &args("follower"));
    follower.wait_for_stderr("waits for leader `leader`", LONG);
    leader.signal(Signal::SIGTERM);
    let out = leader.wait(LONG);
    assert_eq!(out.code, terminated(), "{}", out.both());
    let workers: std::collections::HashMap<String, String> =
        redis::Commands::hgetall(&mut server.conn(), format!("ciq:{{{build}}}:workers")).unwrap();
    assert!(
        workers
            .values()
            .any(|value| value.starts_with("left:") && value.ends_with(":leader")),
        "{workers:?}"
    );
    std::fs::write(scratch.path("gate"), "").unwrap();
    let out = follower.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    let finished = Instant::now();
    let out = report.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("4 tests: 4 passed"), "{}", out.both());
    assert!(
        finished.elapsed() < Duration::from_secs(30),
        "the report waited {:?} after the last worker, as for a live leader",
        finished.elapsed()
    );
    assert!(junit.exists());
}

/// Regression: a second `ciq run` of a finished build ran nothing in no time and printed the
/// old verdict as if it were its own.
#[test]
fn a_finished_build_run_again_says_so() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let list = scratch.tests(&["pass/a".to_owned(), "fail/b".to_owned()]);
    let args = with_command(worker_args(&server, "finished", "w1", &list));
    let first: Output = Proc::spawn("first", &scratch, &args).wait(LONG);
    assert_eq!(
        first.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        first.both()
    );
    assert!(
        !first.stderr.contains("had already finished"),
        "{}",
        first.both()
    );
    let again = Proc::spawn("again", &scratch, &args).wait(LONG);
    assert_eq!(
        again.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        again.both()
    );
    assert!(
        again.stderr.contains(
            "ciq: build `finished` had already finished when worker `w1` joined: it ran nothing, and the verdict below is the build's"
        ),
        "{}",
        again.both()
    );
    assert!(
        again.stdout.contains("2 tests: 1 passed, 1 failed"),
        "{}",
        again.both()
    );
    assert_eq!(scratch.runs().len(), 3, "the second run ran nothing");
}

/// Regression (a hostile probe): a worker that listed its tests with `--list-command` and found
/// its build finished took the build's verdict without a look at its own suite, so a build id
/// reused after the suite changed (here: a new test) stayed green. It now lists before it
/// takes the verdict: the same suite gets it, another is a list mismatch (exit 6, the build
/// red), a listing that fails is bad input (exit 2).
#[test]
fn a_worker_joining_a_finished_build_lists_its_suite_first() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let list = scratch.tests(&["pass/a".to_owned(), "pass/b".to_owned()]);
    let grown = scratch.path("grown.txt");
    std::fs::write(&grown, "pass/a\npass/b\nfail/new\n").unwrap();
    let listing = |worker: &str, command: String| {
        let args = with_command(with_list_command(
            worker_args(&server, "reused", worker, &list),
            command,
        ));
        Proc::spawn(worker, &scratch, &args).wait(LONG)
    };
    let first = listing("w1", format!("cat '{}'", list.display()));
    assert_eq!(
        first.code,
        Some(ExitCode::Success.code()),
        "{}",
        first.both()
    );
    let same = listing("w2", format!("cat '{}'", list.display()));
    assert_eq!(same.code, Some(ExitCode::Success.code()), "{}", same.both());
    assert!(
        same.stderr.contains("had already finished"),
        "{}",
        same.both()
    );
    let failing = listing("w3", "false".to_owned());
    assert_eq!(
        failing.code,
        Some(ExitCode::Usage.code()),
        "{}",
        failing.both()
    );
    assert!(
        failing
            .stderr
            .contains("joined build `reused` after it finished and could not list its own tests"),
        "{}",
        failing.both()
    );
    let other = listing("w4", format!("cat '{}'", grown.display()));
    assert_eq!(
        other.code,
        Some(ExitCode::ListMismatch.code()),
        "{}",
        other.both()
    );
    assert!(
        other
            .stderr
            .contains("1 of its 3 ids are not in the build's list of 2"),
        "{}",
        other.both()
    );
    let mut runs = scratch.runs();
    runs.sort();
    assert_eq!(
        runs,
        [
            ("w1".to_owned(), "pass/a".to_owned()),
            ("w1".to_owned(), "pass/b".to_owned())
        ],
        "only the first worker ran tests, each once"
    );
    let report = Proc::spawn("report", &scratch, &report_args(&server, "reused")).wait(LONG);
    assert_eq!(
        report.code,
        Some(ExitCode::ListMismatch.code()),
        "{}",
        report.both()
    );
}

/// Regression: a requeued failure waited for another live worker even while that worker was
/// busy with a long test, and the failing worker idled through it. After a grace period it
/// retries the failure itself.
#[test]
fn a_failure_is_retried_by_its_own_worker_when_the_others_stay_busy() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "busy-peer";
    let list = scratch.tests(&["gated/long".to_owned(), "flaky/one".to_owned()]);
    let args = |worker: &str| with_command(worker_args(&server, build, worker, &list));
    let busy = Proc::spawn("busy", &scratch, &args("busy"));
    wait_until("the long test to start", LONG, || {
        ran(&scratch, "busy", "gated/long")
    });
    let failing = Proc::spawn("failing", &scratch, &args("failing"));
    wait_until("the retry, while the long test still runs", LONG, || {
        scratch
            .runs()
            .iter()
            .filter(|(w, t)| w == "failing" && t == "flaky/one")
            .count()
            == 2
    });
    assert!(
        !scratch
            .runs()
            .iter()
            .any(|(w, t)| w == "busy" && t == "flaky/one"),
        "the busy worker took the retry"
    );
    std::fs::write(scratch.path("open-busy"), "").unwrap();
    for out in [failing.wait(LONG), busy.wait(LONG)] {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(
            out.stdout
                .contains("2 tests: 1 passed, 1 flaky; 1 requeued"),
            "{}",
            out.both()
        );
    }
}

/// `--max-consecutive-failures`: a worker on a broken machine (every run fails) stops after
/// that many failures in a row and gives its tests back; the healthy workers retry what it
/// failed, every test ends with one outcome, and the summary names the worker that stopped.
#[test]
fn a_worker_failing_in_a_row_stops_and_the_others_take_over() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "breaker";
    let wrapper = scratch.script(
        "broken-on-one-machine",
        &format!(
            "#!/bin/sh\nif [ \"$CIQ_WORKER\" = broken ]; then echo 'No space left on device'; exit 1; fi\nexec {} \"$@\"\n",
            ciq_testkit::record_test()
        ),
    );
    let tests: Vec<String> = (0..30).map(|n| format!("pass/{n:02}@100")).collect();
    let list = scratch.tests(&tests);
    let args = |worker: &str| {
        let mut args = worker_args(&server, build, worker, &list);
        args.extend(
            [
                "--max-consecutive-failures",
                "3",
                "--requeue-tolerance",
                "0.5",
                "--",
            ]
            .map(str::to_owned),
        );
        args.push(wrapper.display().to_string());
        args
    };
    // The healthy workers first: a failure is retried by another live worker.
    let healthy: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|w| Proc::spawn(w, &scratch, &args(w)))
        .collect();
    wait_until("the queue to be filled", LONG, || scratch.runs().len() >= 2);
    let broken = Proc::spawn("broken", &scratch, &args("broken"));
    let out = broken.wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stderr
            .contains("worker `broken` stops taking tests: 3 tests failed in a row"),
        "{}",
        out.both()
    );
    for proc in healthy {
        let out = proc.wait(LONG);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    }
    let out = Proc::spawn("report", &scratch, &report_args(&server, build)).wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stdout
            .contains("30 tests: 27 passed, 3 flaky; 3 requeued"),
        "the broken machine's failures were retried elsewhere: {}",
        out.both()
    );
    assert!(
        out.stdout.contains(
            "WORKERS THAT STOPPED TAKING TESTS:\n    worker `broken`: 3 tests failed in a row"
        ),
        "{}",
        out.both()
    );
    let results = ciq_testkit::results(&server, build);
    assert_eq!(results.len(), 30, "{results:?}");
}

/// `--max-duration`: a worker stops taking tests once its time is up; the tests left are
/// reported as not run, by name, and the build is incomplete (exit 3), never green.
#[test]
fn a_worker_out_of_time_stops_and_the_rest_are_not_run() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "out-of-time";
    let tests: Vec<String> = (0..20).map(|n| format!("pass/{n:02}@200")).collect();
    let list = scratch.tests(&tests);
    let mut args = worker_args(&server, build, "w", &list);
    args.extend(["--max-duration".to_owned(), "1s".to_owned()]);
    let out = Proc::spawn("w", &scratch, &with_command(args)).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsNotRun.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stderr
            .contains("worker `w` stops taking tests: --max-duration 1s passed"),
        "{}",
        out.both()
    );
    let ran = scratch.runs().len();
    assert!((2..20).contains(&ran), "it ran {ran} tests");
    let out = Proc::spawn("report", &scratch, &report_args(&server, build)).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsNotRun.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stdout
            .contains(&format!("20 tests: {ran} passed, {} not run", 20 - ran)),
        "{}",
        out.both()
    );
    assert!(
        out.stdout.contains(
            "WORKERS THAT STOPPED TAKING TESTS:\n    worker `w`: --max-duration 1s passed"
        ),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("verdict: incomplete"), "{}", out.both());
}

/// `--max-failures`: once the build has that many failed tests, every worker stops taking
/// tests; the rest are reported as not run, the build is red, and nothing is counted twice.
#[test]
fn the_build_stops_at_max_failures() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "max-failures";
    let mut tests: Vec<String> = (0..4).map(|n| format!("fail/{n}")).collect();
    tests.extend((0..40).map(|n| format!("pass/{n:02}@100")));
    let list = scratch.tests(&tests);
    let args = |worker: &str| {
        let mut args = worker_args(&server, build, worker, &list);
        args.extend(["--max-failures", "3", "--max-requeues", "0"].map(str::to_owned));
        with_command(args)
    };
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|w| Proc::spawn(w, &scratch, &args(w)))
        .collect();
    for worker in workers {
        let out = worker.wait(LONG);
        assert_eq!(
            out.code,
            Some(ExitCode::TestsFailed.code()),
            "{}",
            out.both()
        );
        assert!(
            out.stderr
                .contains("failed tests (--max-failures); the tests left are not run"),
            "{}",
            out.both()
        );
    }
    let out = Proc::spawn("report", &scratch, &report_args(&server, build)).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::TestsFailed.code()),
        "{}",
        out.both()
    );
    assert!(out.stdout.contains("not run"), "{}", out.both());
    assert!(
        out.stdout.contains("WORKERS THAT STOPPED TAKING TESTS:"),
        "{}",
        out.both()
    );
    let results = ciq_testkit::results(&server, build);
    assert!(
        results.len() < 20,
        "the build stopped early: {} outcomes",
        results.len()
    );
    let failed = results.values().filter(|o| *o == "failed").count();
    assert!(failed >= 3, "{results:?}");
    let counts = scratch.run_counts();
    assert!(counts.values().all(|&n| n == 1), "{counts:?}");
}
