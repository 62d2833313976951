//! Faults with real processes: leaders killed or paused in each phase of the election, Redis
//! restarted with and without its data, workers stopped by SIGTERM. After each, every listed
//! test has exactly one outcome, or the build fails loudly; never a silent loss.

use std::time::Duration;

use nix::sys::signal::Signal;

use crate::support::{
    Proc, RedisServer, Scratch, ids, report_args, results, state, wait_until, with_command,
    worker_args,
};

const LONG: Duration = Duration::from_secs(180);

fn assert_each_ran_once(scratch: &Scratch, expected: usize) {
    let counts = scratch.run_counts();
    assert_eq!(counts.len(), expected, "every test ran");
    let twice: Vec<_> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "tests run more than once: {twice:?}");
}

/// The leader stops itself at `point` (a pause point), is SIGKILLed there, and the others
/// finish the build.
fn leader_killed_at(point: &str, tests: usize, batch_size: &str) {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = format!("killed-at-{point}");
    let list = scratch.tests(&ids("pass", tests));
    let args = |worker: &str| {
        let mut args = worker_args(&server, &build, worker, &list);
        args.extend(["--batch-size".to_owned(), batch_size.to_owned()]);
        with_command(args)
    };
    let leader = Proc::spawn_with_env(
        "leader",
        &scratch,
        &args("leader"),
        &[("CIQ_PAUSE_AT", point)],
    );
    leader.wait_for_stderr(&format!("paused at {point}"), LONG);
    let report = Proc::spawn("report", &scratch, &report_args(&server, &build));
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|w| Proc::spawn(w, &scratch, &args(w)))
        .collect();
    leader.signal(Signal::SIGKILL);
    let _ = leader.wait(LONG);
    for worker in workers {
        let out = worker.wait(LONG);
        assert_eq!(out.code, Some(0), "{}", out.both());
    }
    let out = report.wait(LONG);
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert!(
        out.stdout
            .contains(&format!("{tests} tests: {tests} passed")),
        "{}",
        out.both()
    );
    assert_eq!(results(&server, &build).len(), tests);
    assert_each_ran_once(&scratch, tests);
}

#[test]
fn leader_killed_just_after_election() {
    leader_killed_at("elected", 50, "1");
}

#[test]
fn leader_killed_in_the_middle_of_staging_100k_ids() {
    leader_killed_at("staging", 100_000, "1000");
}

#[test]
fn leader_killed_just_before_commit() {
    leader_killed_at("before-commit", 50, "1");
}

/// The leader is paused past its lock TTL before committing; another worker is elected and
/// commits; the old leader, resumed, finds its lock gone, drops its staging and works for the
/// winner's generation.
#[test]
fn paused_leader_resumes_into_the_committed_generation() {
    let server = RedisServer::start();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "0.2");
    let build = "paused-leader";
    let list = scratch.tests(&ids("slow", 30));
    let args = |worker: &str| with_command(worker_args(&server, build, worker, &list));
    let stale = Proc::spawn_with_env(
        "stale",
        &scratch,
        &args("stale"),
        &[("CIQ_PAUSE_AT", "before-commit")],
    );
    stale.wait_for_stderr("paused at before-commit", LONG);
    let setup = state(&server, build).expect("the stale leader's lock");
    let stale_generation = setup
        .split(':')
        .nth(1)
        .expect("setup:<gen>:<worker>")
        .to_owned();
    let winner = Proc::spawn("winner", &scratch, &args("winner"));
    wait_until("the winner's commit", LONG, || {
        state(&server, build).is_some_and(|s| s.starts_with("ready:"))
    });
    let ready = state(&server, build).expect("ready state");
    assert!(!ready.contains(&stale_generation));
    stale.signal(Signal::SIGCONT);
    let stale_out = stale.wait(LONG);
    let winner_out = winner.wait(LONG);
    assert_eq!(stale_out.code, Some(0), "{}", stale_out.both());
    assert_eq!(winner_out.code, Some(0), "{}", winner_out.both());
    assert!(
        stale_out.stderr.contains("lost the setup lock"),
        "{}",
        stale_out.both()
    );
    assert!(
        scratch.runs().iter().any(|(worker, _)| worker == "stale"),
        "the resumed leader worked for the new generation"
    );
    let leftovers: Vec<String> = redis::cmd("KEYS")
        .arg(format!("ciq:{{{build}}}:g:{stale_generation}:*"))
        .query(&mut server.conn())
        .expect("KEYS");
    assert!(
        leftovers.is_empty(),
        "stale staging left behind: {leftovers:?}"
    );
    assert_eq!(state(&server, build), Some(ready));
    assert_eq!(results(&server, build).len(), 30);
    assert_each_ran_once(&scratch, 30);
}

/// Every elected leader dies: the survivors give up with "lost leader", and so does the report.
#[test]
fn every_leader_dies_until_the_budget_is_spent() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "doomed";
    let list = scratch.tests(&ids("pass", 5));
    let budget = ["--max-election-attempts".to_owned(), "2".to_owned()];
    let mut report_args = report_args(&server, build);
    report_args.extend(budget.clone());
    let report = Proc::spawn("report", &scratch, &report_args);
    let mut workers: Vec<Proc> = ["w1", "w2", "w3"]
        .iter()
        .map(|w| {
            let mut args = worker_args(&server, build, w, &list);
            args.extend(budget.clone());
            Proc::spawn_with_env(
                w,
                &scratch,
                &with_command(args),
                &[("CIQ_PAUSE_AT", "elected")],
            )
        })
        .collect();
    for _ in 0..2 {
        wait_until("a leader to pause", LONG, || {
            workers
                .iter()
                .any(|w| w.stderr_so_far().contains("paused at elected"))
        });
        let at = workers
            .iter()
            .position(|w| w.stderr_so_far().contains("paused at elected"))
            .expect("paused worker");
        let leader = workers.remove(at);
        leader.signal(Signal::SIGKILL);
        let _ = leader.wait(LONG);
    }
    let survivor = workers.remove(0).wait(LONG);
    assert_eq!(survivor.code, Some(4), "{}", survivor.both());
    assert!(
        survivor
            .stderr
            .contains("lost leader: 2 elected leader(s) died before filling the queue"),
        "{}",
        survivor.both()
    );
    let out = report.wait(LONG);
    assert_eq!(out.code, Some(4), "{}", out.both());
    assert!(out.stderr.contains("lost leader"), "{}", out.both());
}

/// Redis restarted mid-build with its append-only file: workers reconnect and finish.
#[test]
fn redis_restarted_with_persistence_loses_nothing() {
    let mut server = RedisServer::start_persistent();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "0.05");
    let build = "restart-aof";
    let list = scratch.tests(&ids("slow", 60));
    let report = Proc::spawn("report", &scratch, &report_args(&server, build));
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|w| {
            Proc::spawn(
                w,
                &scratch,
                &with_command(worker_args(&server, build, w, &list)),
            )
        })
        .collect();
    wait_until("a third of the build", LONG, || scratch.runs().len() >= 20);
    server.restart();
    for worker in workers {
        let out = worker.wait(LONG);
        assert_eq!(out.code, Some(0), "{}", out.both());
    }
    let out = report.wait(LONG);
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert!(out.stdout.contains("60 tests: 60 passed"), "{}", out.both());
    assert_eq!(results(&server, build).len(), 60);
}

/// Redis restarted mid-build without persistence: the build's state is gone, and every worker
/// and the report end with the infrastructure error, never green.
#[test]
fn redis_restarted_without_persistence_is_an_infrastructure_error() {
    let mut server = RedisServer::start();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "0.05");
    let build = "restart-empty";
    let list = scratch.tests(&ids("slow", 60));
    let report = Proc::spawn("report", &scratch, &report_args(&server, build));
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|w| {
            Proc::spawn(
                w,
                &scratch,
                &with_command(worker_args(&server, build, w, &list)),
            )
        })
        .collect();
    wait_until("a third of the build", LONG, || scratch.runs().len() >= 20);
    server.restart();
    for out in workers
        .into_iter()
        .map(|w| w.wait(LONG))
        .chain([report.wait(LONG)])
    {
        assert_eq!(out.code, Some(5), "{}", out.both());
        assert!(
            out.stderr.contains("the build's state was lost from Redis"),
            "{}",
            out.both()
        );
        assert!(!out.stdout.contains("verdict: green"), "{}", out.both());
    }
}

/// SIGTERM mid-test: the worker kills its test, gives it back at once (long before the
/// heartbeat timeout), and exits 143; another worker runs it.
#[test]
fn sigterm_gives_the_test_back_at_once() {
    let server = RedisServer::start();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "5");
    let build = "sigterm";
    let list = scratch.tests(&["slow/victim".to_owned(), "pass/a".to_owned()]);
    let args = |worker: &str| {
        let mut args = worker_args(&server, build, worker, &list);
        // A take-over would need 60 s: anything sooner is the release.
        let at = args
            .iter()
            .position(|a| a == "--heartbeat-timeout")
            .expect("flag");
        args[at + 1] = "60s".to_owned();
        with_command(args)
    };
    let first = Proc::spawn("first", &scratch, &args("first"));
    wait_until("the victim to start", LONG, || {
        scratch.runs().iter().any(|(_, t)| t == "slow/victim")
    });
    let holder_is_first = scratch
        .runs()
        .iter()
        .any(|(w, t)| w == "first" && t == "slow/victim");
    assert!(holder_is_first, "the only worker runs it");
    let second = Proc::spawn("second", &scratch, &args("second"));
    let terminated_at = std::time::Instant::now();
    first.signal(Signal::SIGTERM);
    let out = first.wait(LONG);
    assert_eq!(out.code, Some(143), "{}", out.both());
    assert!(
        out.stderr.contains("gave 1 test(s) back to the queue"),
        "{}",
        out.both()
    );
    wait_until("the victim to run again", LONG, || {
        scratch
            .runs()
            .iter()
            .any(|(w, t)| w == "second" && t == "slow/victim")
    });
    assert!(
        terminated_at.elapsed() < Duration::from_secs(30),
        "released, not taken over after the heartbeat timeout"
    );
    let out = second.wait(LONG);
    assert_eq!(out.code, Some(0), "{}", out.both());
    assert!(out.stdout.contains("2 tests: 2 passed"), "{}", out.both());
}
