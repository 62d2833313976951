//! Network faults between workers and Redis, through a real TCP proxy per worker: every
//! connection dropped at once, and one worker blackholed past its heartbeat timeout. Requests
//! whose replies were lost are re-sent and answered, never applied twice; a worker cut off
//! long enough loses its tests, and its late results change nothing. A Redis that stays away
//! (paused or killed) is waited for `--redis-timeout` in all.

use std::time::{Duration, Instant};

use ciq::exit_code::ExitCode;
use ciq::queue::redis::keys::BuildKeys;
use redis::Commands;

use ciq_testkit::{
    FaultProxy, Proc, RedisServer, Scratch, assert_late_result_changes_nothing,
    assert_one_final_line_each, ids, ran, replace_flag, report_args, results, through, wait_until,
    with_command, worker_args,
};

const LONG: Duration = Duration::from_secs(120);

/// Every worker's connections dropped at once, twice, mid-build (a network reset, a proxy
/// failing over): the workers reconnect with backoff and finish, and each test has exactly one
/// outcome.
#[test]
fn all_connections_dropped_at_once_mid_build() {
    let server = RedisServer::start();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "0.05");
    let build = "dropped";
    let list = scratch.tests(&ids("slow", 60));
    let report = Proc::spawn("report", &scratch, &report_args(&server, build));
    let proxies: Vec<FaultProxy> = (0..3).map(|_| FaultProxy::start(server.port)).collect();
    let workers: Vec<Proc> = proxies
        .iter()
        .enumerate()
        .map(|(n, proxy)| {
            let name = format!("w{n}");
            let args = with_command(worker_args(&server, build, &name, &list));
            Proc::spawn(&name, &scratch, &through(args, proxy))
        })
        .collect();
    for ran in [20, 40] {
        wait_until("the build to advance", LONG, || scratch.runs().len() >= ran);
        let dropped: usize = proxies.iter().map(FaultProxy::drop_connections).sum();
        assert!(dropped >= 3, "each worker had a connection: {dropped}");
    }
    let outs: Vec<_> = workers.into_iter().map(|w| w.wait(LONG)).collect();
    for out in &outs {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(
            out.stderr.contains("reconnected to Redis"),
            "{}",
            out.both()
        );
        assert!(out.stdout.contains("60 tests: 60 passed"), "{}", out.both());
    }
    let out = report.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(out.stdout.contains("60 tests: 60 passed"), "{}", out.both());
    assert_eq!(results(&server, build).len(), 60);
    assert_one_final_line_each(outs.iter().map(|o| o.stderr.as_str()), 60);
}

/// One worker's traffic blackholed mid-test for longer than the heartbeat timeout, and longer
/// than its client's 5 s response timeout (so it also reconnects into the blackhole and re-sends
/// its acknowledgement): its test is taken over and run again. When the network comes back, the
/// acknowledgement is discarded (its lease is stale), and its other copy is never applied
/// again: the new holder keeps its entry and decides the test's one outcome.
#[test]
fn blackholed_worker_is_taken_over_and_its_late_results_change_nothing() {
    let server = RedisServer::start();
    let scratch = Scratch::new();
    let build = "blackholed";
    let mut tests = vec!["gated/victim".to_owned()];
    tests.extend(ids("pass", 5));
    let list = scratch.tests(&tests);
    let (cut_proxy, other_proxy) = (
        FaultProxy::start(server.port),
        FaultProxy::start(server.port),
    );
    let args = |worker: &str, proxy: &FaultProxy| {
        through(
            with_command(worker_args(&server, build, worker, &list)),
            proxy,
        )
    };
    // Alone, `cut` leads and takes the first test in the list.
    let cut = Proc::spawn("cut", &scratch, &args("cut", &cut_proxy));
    wait_until("cut to start the victim", LONG, || {
        ran(&scratch, "cut", "gated/victim")
    });
    let other = Proc::spawn("other", &scratch, &args("other", &other_proxy));
    wait_until("the other worker to join", LONG, || {
        scratch.runs().iter().any(|(w, _)| w == "other")
    });
    cut_proxy.blackhole();
    let cut_off = Instant::now();
    // Its test finishes; the acknowledgement goes into the blackhole.
    std::fs::write(scratch.path("open-cut"), "").unwrap();
    wait_until("the take-over", LONG, || {
        ran(&scratch, "other", "gated/victim")
    });
    let held_for = Duration::from_secs(6).saturating_sub(cut_off.elapsed());
    std::thread::sleep(held_for);
    cut.wait_for_stderr("is unavailable", LONG);
    cut_proxy.resume();
    let (cut_out, _) = assert_late_result_changes_nothing(&server, &scratch, build, cut, other);
    assert!(
        cut_out.stderr.contains("reconnected to Redis"),
        "{}",
        cut_out.both()
    );
    let discarded: u64 = server
        .conn()
        .hget(BuildKeys::new("", build).stats(), "discarded")
        .unwrap();
    assert!(discarded >= 1, "the late acknowledgement was discarded");
}

/// Regression: `--redis-timeout` bounded each request, not the outage: with Redis paused, a
/// worker gave up 16 s after a 4 s flag (a reply's 4 s timeout first, then 4 s of retries, then
/// as long again to give its tests back), saying "retrying for up to 4s" each time; with Redis
/// killed, 9 s. The flag is now what a worker waits for Redis in all, once per outage.
#[test]
fn a_worker_gives_up_on_redis_within_its_redis_timeout() {
    const FLAG: Duration = Duration::from_secs(4);
    for fault in ["paused", "killed"] {
        let mut server = RedisServer::start();
        let mut scratch = Scratch::new();
        scratch.set_env("SLOW_SECONDS", "60");
        let list = scratch.tests(&ids("slow", 2));
        let args = replace_flag(
            with_command(worker_args(&server, fault, "w", &list)),
            "--redis-timeout",
            ["--redis-timeout".to_owned(), "4s".to_owned()],
        );
        let worker = Proc::spawn("w", &scratch, &args);
        wait_until("the worker to run a test", LONG, || {
            !scratch.runs().is_empty()
        });
        let cut_off = Instant::now();
        match fault {
            "paused" => server.pause(),
            _ => server.kill(),
        }
        let out = worker.wait(LONG);
        let waited = cut_off.elapsed();
        assert_eq!(
            out.code,
            Some(ExitCode::Infrastructure.code()),
            "{fault}: {}",
            out.both()
        );
        assert!(
            waited < FLAG * 2,
            "{fault}: the worker gave up {waited:?} after Redis went away, for --redis-timeout 4s\n{}",
            out.both()
        );
        assert_eq!(
            out.stderr.matches("retrying for up to").count(),
            1,
            "{fault}: one outage, one line\n{}",
            out.both()
        );
        assert!(
            out.stderr.contains("cannot reach Redis at"),
            "{fault}: {}",
            out.both()
        );
    }
}
