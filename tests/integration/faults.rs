//! Faults with real processes: leaders killed or paused in each phase of the election, workers
//! paused past their heartbeat, Redis restarted with and without its data, workers stopped by
//! SIGTERM, the generation replaced under running workers. After each, every listed test has
//! exactly one outcome, or the build fails loudly; never a silent loss.

use std::time::Duration;

use nix::sys::signal::Signal;

use ciq::exit_code::ExitCode;
use ciq::queue::redis::keys::BuildKeys;
use ciq_testkit::terminated;
use redis::Commands;

use ciq_testkit::{
    Output, Proc, RedisServer, Scratch, assert_late_result_changes_nothing,
    assert_one_final_line_each, generation_keys, ids, ran, ready_generation, replace_flag,
    replace_generation, report_args, results, setup_generation, spawn_workers, state, wait_until,
    with_command, with_list_command, worker_args,
};

const LONG: Duration = Duration::from_secs(180);

/// The leader stops itself at `point` (a pause point), is SIGKILLed there, and the others
/// finish the build. `lock_ttl` must cover the next leader's listing and staging on a busy
/// machine (a debug build stages 100,000 ids in seconds there).
fn leader_killed_at(point: &str, tests: usize, batch_size: &str, lock_ttl: &str) {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = format!("killed-at-{point}");
    let list = scratch.tests(&ids("pass", tests));
    let args = |worker: &str| {
        let mut args = replace_flag(
            worker_args(&server, &build, worker, &list),
            "--lock-ttl",
            ["--lock-ttl".to_owned(), lock_ttl.to_owned()],
        );
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
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    }
    let out = report.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stdout
            .contains(&format!("{tests} tests: {tests} passed")),
        "{}",
        out.both()
    );
    assert_eq!(results(&server, &build).len(), tests);
    scratch.assert_each_ran_once(tests);
}

#[test]
fn leader_killed_just_after_election() {
    leader_killed_at("elected", 50, "1", "900ms");
}

#[test]
fn leader_killed_in_the_middle_of_staging_100k_ids() {
    leader_killed_at("staging", 100_000, "1000", "5s");
}

#[test]
fn leader_killed_just_before_commit() {
    leader_killed_at("before-commit", 50, "1", "900ms");
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
    let stale_generation = setup_generation(&server, build).expect("the stale leader's lock");
    assert!(
        !generation_keys(&server, build, &stale_generation).is_empty(),
        "the paused leader has staged its queue"
    );
    let winner = Proc::spawn("winner", &scratch, &args("winner"));
    wait_until("the winner's commit", LONG, || {
        state(&server, build).is_some_and(|s| s.starts_with("ready:"))
    });
    let ready = state(&server, build).expect("ready state");
    assert!(!ready.contains(&stale_generation));
    stale.signal(Signal::SIGCONT);
    let stale_out = stale.wait(LONG);
    let winner_out = winner.wait(LONG);
    assert_eq!(
        stale_out.code,
        Some(ExitCode::Success.code()),
        "{}",
        stale_out.both()
    );
    assert_eq!(
        winner_out.code,
        Some(ExitCode::Success.code()),
        "{}",
        winner_out.both()
    );
    assert!(
        stale_out.stderr.contains("lost the setup lock"),
        "{}",
        stale_out.both()
    );
    assert!(
        scratch.runs().iter().any(|(worker, _)| worker == "stale"),
        "the resumed leader worked for the new generation"
    );
    let leftovers = generation_keys(&server, build, &stale_generation);
    assert!(
        leftovers.is_empty(),
        "stale staging left behind: {leftovers:?}"
    );
    assert_eq!(state(&server, build), Some(ready));
    assert_eq!(results(&server, build).len(), 30);
    scratch.assert_each_ran_once(30);
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
    assert_eq!(
        survivor.code,
        Some(ExitCode::NoLeader.code()),
        "{}",
        survivor.both()
    );
    assert!(
        survivor
            .stderr
            .contains("lost leader: 2 elected leader(s) died before filling the queue"),
        "{}",
        survivor.both()
    );
    let out = report.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::NoLeader.code()), "{}", out.both());
    assert!(out.stderr.contains("lost leader"), "{}", out.both());
}

/// Two workers and a report run 60 short tests; Redis is restarted (with or without its data)
/// a third of the way through. Returns the scratch, the workers' outputs, then the report's.
fn restart_mid_build(server: &mut RedisServer, build: &str) -> (Scratch, Vec<Output>, Output) {
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "0.05");
    let list = scratch.tests(&ids("slow", 60));
    let report = Proc::spawn("report", &scratch, &report_args(server, build));
    let workers = spawn_workers(server, &scratch, build, &["w1", "w2"], &list);
    wait_until("a third of the build", LONG, || scratch.runs().len() >= 20);
    server.restart();
    let outs = workers.into_iter().map(|w| w.wait(LONG)).collect();
    let report = report.wait(LONG);
    (scratch, outs, report)
}

/// Redis restarted mid-build with its append-only file: workers reconnect and finish.
#[test]
fn redis_restarted_with_persistence_loses_nothing() {
    let mut server = RedisServer::start_persistent();
    let (_, workers, report) = restart_mid_build(&mut server, "restart-aof");
    for out in workers.iter().chain([&report]) {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    }
    assert!(
        report.stdout.contains("60 tests: 60 passed"),
        "{}",
        report.both()
    );
    assert_eq!(results(&server, "restart-aof").len(), 60);
}

/// Redis restarted mid-build without persistence: the build's state is gone, and every worker
/// and the report end with the infrastructure error, never green. Regression: a worker that
/// joined after that elected itself and ran the whole suite again alone; the workers that saw
/// the loss record it in the new Redis, and the late joiner ends the same way.
#[test]
fn redis_restarted_without_persistence_is_an_infrastructure_error() {
    let mut server = RedisServer::start();
    let build = "restart-empty";
    let (scratch, workers, report) = restart_mid_build(&mut server, build);
    for out in workers.iter().chain([&report]) {
        assert_eq!(
            out.code,
            Some(ExitCode::Infrastructure.code()),
            "{}",
            out.both()
        );
        assert!(
            out.stderr.contains("the build's state was lost from Redis"),
            "{}",
            out.both()
        );
        assert!(!out.stdout.contains("verdict: green"), "{}", out.both());
    }
    let ran_before = scratch.runs().len();
    let list = scratch.path("tests.txt");
    let late = Proc::spawn(
        "late",
        &scratch,
        &with_command(worker_args(&server, build, "late", &list)),
    )
    .wait(LONG);
    assert_eq!(
        late.code,
        Some(ExitCode::Infrastructure.code()),
        "{}",
        late.both()
    );
    assert!(
        late.stderr
            .contains("the build's state was lost from Redis"),
        "{}",
        late.both()
    );
    assert_eq!(
        scratch.runs().len(),
        ran_before,
        "the late worker ran tests"
    );
}

/// SIGTERM mid-test: the worker kills its test, gives it back at once (long before the
/// heartbeat timeout), and exits 143; another worker runs it.
#[test]
fn sigterm_gives_the_test_back_at_once() {
    stop_gives_the_test_back_at_once(Signal::SIGTERM, 143);
}

/// Ctrl-C (SIGINT) on a worker does the same, and exits 130.
#[test]
fn sigint_gives_the_test_back_at_once() {
    stop_gives_the_test_back_at_once(Signal::SIGINT, 130);
}

fn stop_gives_the_test_back_at_once(signal: Signal, code: i32) {
    let server = RedisServer::start();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "5");
    let build = signal.as_str();
    let list = scratch.tests(&["slow/victim".to_owned(), "pass/a".to_owned()]);
    let args = |worker: &str| {
        // A take-over would need 60 s: anything sooner is the release.
        with_command(replace_flag(
            worker_args(&server, build, worker, &list),
            "--heartbeat-timeout",
            ["--heartbeat-timeout".to_owned(), "60s".to_owned()],
        ))
    };
    let first = Proc::spawn("first", &scratch, &args("first"));
    wait_until("the victim to start", LONG, || {
        ran(&scratch, "first", "slow/victim")
    });
    let second = Proc::spawn("second", &scratch, &args("second"));
    let terminated_at = std::time::Instant::now();
    first.signal(signal);
    let out = first.wait(LONG);
    assert_eq!(out.code, Some(code), "{}", out.both());
    assert!(
        out.stderr.contains("gave 1 test(s) back to the queue"),
        "{}",
        out.both()
    );
    wait_until("the victim to run again", LONG, || {
        ran(&scratch, "second", "slow/victim")
    });
    assert!(
        terminated_at.elapsed() < Duration::from_secs(30),
        "released, not taken over after the heartbeat timeout"
    );
    let out = second.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("2 tests: 2 passed"), "{}", out.both());
}

/// A worker stopped (SIGSTOP) mid-test is taken over once its heartbeat lapses; its test runs
/// again elsewhere. Resumed (SIGCONT) while the new holder still runs it, its late
/// acknowledgement is discarded: the new holder keeps its entry and decides the one outcome.
#[test]
fn stopped_worker_resumed_after_take_over_changes_nothing() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "stopped-worker";
    let mut tests = vec!["gated/victim".to_owned()];
    tests.extend(ids("pass", 5));
    let list = scratch.tests(&tests);
    let args = |worker: &str| with_command(worker_args(&server, build, worker, &list));
    // Alone, `late` leads and takes the first test in the list.
    let late = Proc::spawn("late", &scratch, &args("late"));
    wait_until("late to start the victim", LONG, || {
        ran(&scratch, "late", "gated/victim")
    });
    late.signal(Signal::SIGSTOP);
    // Its test finishes while it is stopped: the test has its own process group.
    std::fs::write(scratch.path("open-late"), "").unwrap();
    let taker = Proc::spawn("taker", &scratch, &args("taker"));
    wait_until("the take-over", LONG, || {
        ran(&scratch, "taker", "gated/victim")
    });
    late.signal(Signal::SIGCONT);
    assert_late_result_changes_nothing(&server, &scratch, build, late, taker);
}

/// The generation replaced under running workers, as an operator re-filling the queue would:
/// the workers see STALE, rejoin the new generation and finish it. Nothing is served from the
/// old generation afterwards, tests decided before are not run again, and nothing is counted
/// twice.
#[test]
fn generation_replaced_under_running_workers() {
    let server = RedisServer::start();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "0.1");
    let build = "replaced";
    let tests = ids("slow", 40);
    let list = scratch.tests(&tests);
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
    wait_until("a quarter of the build", LONG, || {
        scratch.runs().len() >= 10
    });
    let keys = BuildKeys::new("", build);
    let old = keys.generation(&ready_generation(&server, build).expect("a ready generation"));
    let ids: Vec<&str> = tests.iter().map(String::as_str).collect();
    assert!(replace_generation(&server, build, "replacement", &ids));
    let mut conn = server.conn();
    let left_behind: usize = conn.llen(&old.queue).unwrap();
    let outs: Vec<_> = workers.into_iter().map(|w| w.wait(LONG)).collect();
    for out in &outs {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(
            out.stderr
                .contains("the build moved to generation replacement; rejoining it"),
            "{}",
            out.both()
        );
        assert!(out.stdout.contains("40 tests: 40 passed"), "{}", out.both());
    }
    let out = report.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("40 tests: 40 passed"), "{}", out.both());
    let after: usize = conn.llen(&old.queue).unwrap();
    assert_eq!(after, left_behind, "served from the replaced generation");
    assert_eq!(results(&server, build).len(), 40);
    assert_one_final_line_each(outs.iter().map(|o| o.stderr.as_str()), 40);
    // Only the tests in flight at the switch run twice.
    let twice = scratch.run_counts().values().filter(|&&n| n > 1).count();
    assert!(twice <= 2, "{:?}", scratch.run_counts());
}

/// Regression: SIGTERM while the leader listed its tests killed ciq by the default action and
/// left the list command running; it now exits 143 and takes the list command with it.
#[test]
fn sigterm_while_listing_stops_the_list_command() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let list = scratch.tests(&ids("pass", 3));
    let pid_file = scratch.path("lister.pid");
    let args = with_list_command(
        worker_args(&server, "sigterm-listing", "leader", &list),
        format!("sh -c 'echo $$ > {}; sleep 60'", pid_file.display()),
    );
    let leader = Proc::spawn("leader", &scratch, &with_command(args));
    wait_until("the list command to start", LONG, || pid_file.exists());
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .expect("pid")
        .trim()
        .parse()
        .expect("a pid");
    leader.signal(Signal::SIGTERM);
    let out = leader.wait(LONG);
    assert_eq!(out.code, terminated(), "{}", out.both());
    wait_until("the list command to die", LONG, || {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
    });
}
