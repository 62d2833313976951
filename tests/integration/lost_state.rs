//! When Redis forgets part of a build (a key expired, evicted or deleted, Redis restarted
//! empty), every worker and the report end with the infrastructure code and say so, never with
//! counts built on a partial state; a working build keeps every key it needs alive.

use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq_testkit::{
    Output, Proc, RedisServer, Scratch, ids, ready_generation, report_args, results, wait_until,
    with_command, worker_args,
};

const LONG: Duration = Duration::from_secs(120);

/// Regression: the queue list's TTL was set at staging and never refreshed, so with
/// `--redis-ttl` shorter than the build it expired mid-build and the workers reported its tests
/// as not run (exit 3). Every key of a working build now outlives its TTL.
#[test]
fn a_build_longer_than_its_redis_ttl_keeps_its_keys() {
    let server = RedisServer::start();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "0.4");
    let build = "short-ttl";
    let list = scratch.tests(&ids("slow", 16));
    let args = |worker: &str| {
        with_command(
            [
                worker_args(&server, build, worker, &list),
                vec!["--redis-ttl".to_owned(), "1500ms".to_owned()],
            ]
            .concat(),
        )
    };
    let report = Proc::spawn("report", &scratch, &report_args(&server, build));
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|w| Proc::spawn(w, &scratch, &args(w)))
        .collect();
    for out in workers
        .into_iter()
        .map(|w| w.wait(LONG))
        .chain([report.wait(LONG)])
    {
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
        assert!(out.stdout.contains("16 tests: 16 passed"), "{}", out.both());
    }
    scratch.assert_each_ran_once(16);
}

/// The keys whose loss must end the build as lost (exit 5): without them the counts would be
/// wrong. The others only steer scheduling, and the build ends with its true verdict.
const MUST_EXIST: [&str; 10] = [
    "state",
    "results",
    "failures",
    "queue",
    "running",
    "processed",
    "requeues",
    "meta",
    "failed",
    "flaky",
];
const MAY_VANISH: [&str; 3] = ["workers", "stats", "requeued-by"];

/// One build of 24 tests (2 failing, 2 flaky, then 20 passing) on two workers and a report,
/// with the key named `name` deleted once the failures are decided and 8 tests are done, as an
/// eviction would. Returns the workers' and the report's outputs.
fn build_losing(server: &RedisServer, name: &str) -> Vec<Output> {
    let scratch = Scratch::new();
    let build = format!("lose-{name}");
    // Ids of this build only: the builds share one Redis, whose store of durations would
    // otherwise order each build's queue by the others' runs.
    let mut tests = vec![
        format!("fail/a-{name}"),
        format!("flaky/a-{name}"),
        format!("fail/b-{name}"),
        format!("flaky/b-{name}"),
    ];
    tests.extend((0..20).map(|n| format!("pass/{name}-{n:02}@100")));
    let list = scratch.tests(&tests);
    let args = |worker: &str| {
        with_command(
            [
                worker_args(server, &build, worker, &list),
                vec!["--requeue-tolerance".to_owned(), "1".to_owned()],
            ]
            .concat(),
        )
    };
    let report = Proc::spawn("report", &scratch, &report_args(server, &build));
    let workers: Vec<Proc> = ["w1", "w2"]
        .iter()
        .map(|w| Proc::spawn(w, &scratch, &args(w)))
        .collect();
    wait_until("the failures and 8 tests decided", LONG, || {
        let decided = results(server, &build);
        decided.len() >= 8 && tests[..4].iter().all(|t| decided.contains_key(t))
    });
    let keys = ciq::queue::redis::keys::BuildKeys::new("", &build);
    let generation = ready_generation(server, &build).expect("ready");
    let generation = keys.generation(&generation);
    let key = match name {
        "state" => keys.state(),
        "workers" => keys.workers(),
        "results" => keys.results(),
        "failures" => keys.failures(),
        "stats" => keys.stats(),
        "queue" => generation.queue,
        "running" => generation.running,
        "processed" => generation.processed,
        "requeues" => generation.requeues,
        "requeued-by" => generation.requeued_by,
        "meta" => generation.meta,
        "failed" => generation.failed,
        "flaky" => generation.flaky,
        other => panic!("no key {other}"),
    };
    let deleted: i64 = redis::cmd("DEL")
        .arg(&key)
        .query(&mut server.conn())
        .expect("DEL");
    if MUST_EXIST.contains(&name) {
        assert_eq!(deleted, 1, "`{key}` existed when it was deleted");
    }
    workers
        .into_iter()
        .map(|w| w.wait(LONG))
        .chain([report.wait(LONG)])
        .collect()
}

/// Regression: with `maxmemory` and `allkeys-lru` (deleting one key is its deterministic stand
/// in), builds ended with wrong counts (`116 passed, 2 failed, 382 not run` when all ran and 4
/// failed) and exit 1 or 3, and a missing meta gave a raw Lua error.
#[test]
fn a_build_key_lost_mid_build_is_lost_state_never_wrong_counts() {
    let server = RedisServer::start();
    let names: Vec<&str> = MUST_EXIST.iter().chain(&MAY_VANISH).copied().collect();
    let outcomes: Vec<(&str, Vec<Output>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = names
            .chunks(5)
            .map(|group| {
                let server = &server;
                scope.spawn(move || {
                    group
                        .iter()
                        .map(|name| (*name, build_losing(server, name)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|handle| handle.join().expect("a build thread"))
            .collect()
    });
    for (name, outs) in outcomes {
        for out in &outs {
            assert!(!out.stderr.contains("attempt to"), "{name}: {}", out.both());
            if MUST_EXIST.contains(&name) {
                assert_eq!(
                    out.code,
                    Some(ExitCode::Infrastructure.code()),
                    "{name}: {}",
                    out.both()
                );
                assert!(
                    out.stderr.contains("the build's state was lost from Redis"),
                    "{name}: {}",
                    out.both()
                );
                assert!(!out.stdout.contains("verdict"), "{name}: {}", out.both());
            } else {
                assert_eq!(
                    out.code,
                    Some(ExitCode::TestsFailed.code()),
                    "{name}: {}",
                    out.both()
                );
                assert!(
                    out.stdout
                        .contains("24 tests: 20 passed, 2 flaky, 2 failed; 4 requeued"),
                    "{name}: {}",
                    out.both()
                );
            }
        }
    }
}

/// Redis with a memory limit and an evicting policy is pointed out when a worker starts.
#[test]
fn an_evicting_redis_is_warned_about() {
    let server = RedisServer::start();
    let mut conn = server.conn();
    for (name, value) in [("maxmemory", "100mb"), ("maxmemory-policy", "allkeys-lru")] {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .exec(&mut conn)
            .expect("CONFIG SET");
    }
    let scratch = Scratch::new();
    let list = scratch.tests(&ids("pass", 2));
    let out = Proc::spawn(
        "w1",
        &scratch,
        &with_command(worker_args(&server, "evicting", "w1", &list)),
    )
    .wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stderr
            .contains("has a memory limit and maxmemory-policy `allkeys-lru`"),
        "{}",
        out.both()
    );
}

/// Regression: a Redis out of memory (`maxmemory` reached under `noeviction`) printed its raw
/// answer, `Redis command failed: "OOM": command not allowed when used memory > 'maxmemory'.
/// script: 540dbd…, on @user_script:35.`: now one line says what happened, and a hint what to
/// do.
#[test]
fn a_redis_out_of_memory_says_so() {
    let server = RedisServer::start();
    let mut conn = server.conn();
    // A fresh server already uses about a megabyte: every write is refused.
    for (name, value) in [("maxmemory-policy", "noeviction"), ("maxmemory", "1mb")] {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg(name)
            .arg(value)
            .exec(&mut conn)
            .expect("CONFIG SET");
    }
    let scratch = Scratch::new();
    let list = scratch.tests(&ids("pass", 2));
    let out = Proc::spawn(
        "w1",
        &scratch,
        &with_command(worker_args(&server, "full", "w1", &list)),
    )
    .wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::Infrastructure.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains(&format!(
            "error: Redis at `{}` is out of memory: it reached its maxmemory limit and refuses writes",
            server.url()
        )),
        "{}",
        out.both()
    );
    assert!(
        out.stderr.contains("(hint: give Redis more memory"),
        "{}",
        out.both()
    );
    assert!(!out.stderr.contains("user_script"), "{}", out.both());
}

/// Regression: a finished build that lost only its `state` key (an eviction, a `DEL`) was
/// started again by a late worker, which elected itself and ran the suite as a new generation
/// (exit 0), and a report started then waited for a leader until `--queue-init-timeout`
/// (exit 4). The build's results show it was ready once: both end with the infrastructure code
/// and say its state was lost, and nothing runs again.
#[test]
fn a_finished_build_that_lost_only_its_state_is_lost_for_late_comers() {
    let server = RedisServer::start();
    for late in ["worker", "report"] {
        let scratch = Scratch::new();
        let build = format!("state-gone-{late}");
        let list = scratch.tests(&ids("pass", 3));
        let args = |worker: &str| with_command(worker_args(&server, &build, worker, &list));
        let first = Proc::spawn("w1", &scratch, &args("w1")).wait(LONG);
        assert_eq!(
            first.code,
            Some(ExitCode::Success.code()),
            "{}",
            first.both()
        );
        let state = ciq::queue::redis::keys::BuildKeys::new("", &build).state();
        let deleted: i64 = redis::cmd("DEL")
            .arg(&state)
            .query(&mut server.conn())
            .expect("DEL");
        assert_eq!(deleted, 1);
        let late_worker = || Proc::spawn("w2", &scratch, &args("w2")).wait(LONG);
        let report = || Proc::spawn("report", &scratch, &report_args(&server, &build)).wait(LONG);
        let outs = match late {
            "worker" => [late_worker(), report()],
            _ => [report(), late_worker()],
        };
        let [first_late, second_late] = &outs;
        assert!(
            first_late.stderr.contains(
                "the build's state was lost from Redis (its state key is gone while its results remain)"
            ),
            "{late}: {}",
            first_late.both()
        );
        for out in [first_late, second_late] {
            assert_eq!(
                out.code,
                Some(ExitCode::Infrastructure.code()),
                "{late}: {}",
                out.both()
            );
            assert!(
                out.stderr.contains("the build's state was lost from Redis"),
                "{late}: {}",
                out.both()
            );
        }
        scratch.assert_each_ran_once(3);
    }
}
