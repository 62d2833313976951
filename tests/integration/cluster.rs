//! Redis Cluster: builds against a real local cluster of three primaries, including the faults
//! only a cluster has (the build's slot moved to another primary, the build's primary killed and
//! its replica promoted).

use std::time::Duration;

use ciq::exit_code::ExitCode;
use ciq::queue::redis::keys::BuildKeys;
use ciq_testkit::{
    Output, Proc, RedisCluster, Scratch, ids, replace_flag, report_args, results, spawn_workers,
    wait_until, with_command, worker_args,
};

const LONG: Duration = Duration::from_secs(120);

/// The slot every key of `build` lives in.
fn build_slot(cluster: &RedisCluster, build: &str) -> u16 {
    cluster.slot_of(&BuildKeys::new("", build).state())
}

/// Starts workers of `build` named `names` over `tests` (the fixture command) and a report.
fn start(
    cluster: &RedisCluster,
    scratch: &Scratch,
    build: &str,
    names: &[&str],
    tests: &[String],
) -> (Vec<Proc>, Proc) {
    let list = scratch.tests(tests);
    let report = Proc::spawn("report", scratch, &report_args(cluster, build));
    (spawn_workers(cluster, scratch, build, names, &list), report)
}

/// Makes user `ci` (password `secret`) with the ACL `rule` on every node.
fn create_user(cluster: &RedisCluster, rule: &str) {
    cluster.on_every_node(
        redis::cmd("ACL")
            .arg("SETUSER")
            .arg("ci")
            .arg("on")
            .arg(">secret")
            .arg(rule.split(' ').collect::<Vec<_>>()),
    );
}

/// Starts 3 workers of `build` over 90 tests of 100 ms (about 3 s of work) and a report, and
/// returns once ten tests ran: a fault injected then strikes mid-build.
fn start_and_run_ten(cluster: &RedisCluster, scratch: &Scratch, build: &str) -> (Vec<Proc>, Proc) {
    let tests: Vec<String> = ids("pass", 90)
        .into_iter()
        .map(|id| format!("{id}@100"))
        .collect();
    let started = start(cluster, scratch, build, &["w1", "w2", "w3"], &tests);
    wait_until("ten tests to run", LONG, || scratch.runs().len() >= 10);
    started
}

/// Every worker and the report end green, and the report counts `n` passing tests.
fn assert_green(workers: Vec<Proc>, report: Proc, n: usize) -> Output {
    for worker in workers {
        let out = worker.wait(LONG);
        assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    }
    let out = report.wait(LONG);
    assert_eq!(out.code, Some(ExitCode::Success.code()), "{}", out.both());
    assert!(
        out.stdout.contains(&format!("{n} tests: {n} passed")),
        "{}",
        out.both()
    );
    out
}

#[test]
fn a_build_runs_on_a_cluster_and_a_plain_node_url_finds_it() {
    let cluster = RedisCluster::start(0);
    let scratch = Scratch::new();
    let build = "on-a-cluster";
    let tests = ids("pass", 40);
    let (mut workers, report) = start(&cluster, &scratch, build, &["w1", "w2"], &tests);
    // A third worker is given one node's plain URL: it finds out the node is in a cluster.
    let list = scratch.path("tests.txt");
    let plain = replace_flag(
        with_command(worker_args(&cluster, build, "w3", &list)),
        "--queue",
        ["--queue".to_owned(), cluster.plain_url()],
    );
    workers.push(Proc::spawn("w3", &scratch, &plain));
    assert_green(workers, report, 40);
    scratch.assert_each_ran_once(40);
    assert_eq!(results(&cluster, build).len(), 40);
}

#[test]
fn a_leader_killed_during_listing_is_replaced_on_a_cluster() {
    ciq_testkit::leader_killed_during_its_list_command(
        &RedisCluster::start(0),
        "cluster-killed-leader",
    );
}

#[test]
fn a_worker_killed_mid_test_is_taken_over_on_a_cluster() {
    ciq_testkit::worker_killed_mid_test_is_taken_over(
        &RedisCluster::start(0),
        "cluster-killed-worker",
    );
}

#[test]
fn the_builds_slot_moved_to_another_primary_mid_build_loses_and_doubles_nothing() {
    let cluster = RedisCluster::start(0);
    let scratch = Scratch::new();
    let build = "cluster-migrated";
    let (workers, report) = start_and_run_ten(&cluster, &scratch, build);
    let slot = build_slot(&cluster, build);
    let from = cluster.owner(slot);
    let to = cluster.other_primary(slot);
    // Key by key, with a pause between: workers meet ASK and TRYAGAIN while the slot moves.
    cluster.migrate_slot(slot, to, Duration::from_millis(50));
    assert_eq!(cluster.owner(slot), to, "the slot moved from {from}");
    assert!(
        scratch.runs().len() < 90,
        "tests still ran once the slot had moved"
    );
    assert_green(workers, report, 90);
    let outcomes = results(&cluster, build);
    assert_eq!(outcomes.len(), 90, "{outcomes:?}");
    assert!(outcomes.values().all(|o| o == "passed"), "{outcomes:?}");
    // Every test ran; a test run twice (a take-over while the slot moved) is counted once.
    assert_eq!(scratch.run_counts().len(), 90);
}

#[test]
fn the_builds_primary_killed_and_its_replica_promoted_never_ends_green_wrongly() {
    let mut cluster = RedisCluster::start(1);
    let scratch = Scratch::new();
    let build = "cluster-failover";
    let (workers, report) = start_and_run_ten(&cluster, &scratch, build);
    let slot = build_slot(&cluster, build);
    let primary = cluster.owner(slot);
    cluster.kill(primary);
    cluster.wait_failed_over(slot, primary);
    // Writes the old primary acknowledged may be lost: each worker either carries on to the
    // build's verdict or stops with the infrastructure code (5); never anything else.
    for worker in workers {
        let out = worker.wait(LONG);
        let ended = [ExitCode::Success, ExitCode::Infrastructure].map(|code| Some(code.code()));
        assert!(
            ended.contains(&out.code),
            "a worker ends green or with the infrastructure code\n{}",
            out.both()
        );
    }
    let out = report.wait(LONG);
    let outcomes = results(&cluster, build);
    match out.code {
        Some(code) if code == ExitCode::Success.code() => {
            // Green only when every test has its one outcome, each passing.
            assert!(out.stdout.contains("90 tests: 90 passed"), "{}", out.both());
            assert_eq!(outcomes.len(), 90, "{outcomes:?}");
            assert!(outcomes.values().all(|o| o == "passed"), "{outcomes:?}");
            assert_eq!(scratch.run_counts().len(), 90, "every test ran");
        }
        // Stopped on Redis's account: it says why.
        Some(code) if code == ExitCode::Infrastructure.code() => {
            assert!(out.stderr.contains("error: "), "{}", out.both());
        }
        other => panic!(
            "the report ends green or with the infrastructure code, not {other:?}\n{}",
            out.both()
        ),
    }
}

#[test]
fn a_user_with_only_the_documented_permissions_runs_a_build_on_a_cluster() {
    let cluster = RedisCluster::start(0);
    let rule = format!(
        "{} {}",
        ciq::queue::redis::ACL_RULE,
        ciq::queue::redis::CLUSTER_ACL_EXTRA
    );
    create_user(&cluster, &rule);
    // One node given, with the user's credentials: they hold for every node it finds.
    let url = cluster
        .plain_url()
        .replace("redis://", "redis+cluster://ci:secret@");
    ciq_testkit::least_privilege_build(&cluster, &url, "cluster-least");
}

/// A user who may not run INFO, given a plain URL of a node that does not hold the build's
/// slot: ciq cannot ask whether it is a cluster, learns it from the node's first MOVED answer,
/// and follows the cluster from then on.
#[test]
fn a_plain_url_is_found_to_be_a_cluster_by_its_moved_answer() {
    let cluster = RedisCluster::start(0);
    let build = "cluster-moved";
    let rule = format!(
        "{} {}",
        ciq::queue::redis::ACL_RULE.replace(" +info", ""),
        ciq::queue::redis::CLUSTER_ACL_EXTRA
    );
    create_user(&cluster, &rule);
    let elsewhere = cluster.other_primary(build_slot(&cluster, build));
    let url = format!("redis://ci:secret@127.0.0.1:{elsewhere}/0");
    let scratch = ciq_testkit::least_privilege_build(&cluster, &url, build);
    let workers = ["w1", "w2"]
        .map(|w| std::fs::read_to_string(scratch.path(&format!("{w}.stderr"))).unwrap_or_default());
    assert!(
        workers
            .iter()
            .any(|err| err.contains("is a cluster node; following the cluster")),
        "{workers:?}"
    );
}

/// A cluster user with the single node's rule only: one line naming what is missing, exit 5.
#[test]
fn a_cluster_user_without_the_cluster_permissions_is_told_which() {
    let cluster = RedisCluster::start(0);
    create_user(&cluster, ciq::queue::redis::ACL_RULE);
    let scratch = Scratch::new();
    let list = scratch.tests(&ids("pass", 2));
    let url = cluster.url().replace("cluster://", "cluster://ci:secret@");
    let args = replace_flag(
        with_command(worker_args(&cluster, "cluster-noperm", "w1", &list)),
        "--queue",
        ["--queue".to_owned(), url],
    );
    let out = Proc::spawn("w1", &scratch, &args).wait(LONG);
    assert_eq!(
        out.code,
        Some(ExitCode::Infrastructure.code()),
        "{}",
        out.both()
    );
    assert!(
        out.stderr
            .contains("refused a command: NOPERM this user has no permissions to run the 'cluster|slots' command"),
        "{}",
        out.both()
    );
    assert!(
        scratch.runs().is_empty(),
        "no test ran: {:?}",
        scratch.runs()
    );
}

/// The namespace's flakiness history (keys under its own hash tag, so maybe on another primary
/// than a build's) is recorded by reports and read by `ciq flaky` on a cluster as on one server.
#[test]
fn flakiness_history_and_ciq_flaky_work_on_a_cluster() {
    crate::history::flakiness_accumulates(&RedisCluster::start(0));
}

/// Regression: on a cluster whose build's primary died with no replica to take over, a worker
/// gave up 35 s after `--redis-timeout 10s` (the cluster client retries each request itself,
/// and each request waited the flag out again). The flag bounds the outage.
#[test]
fn a_worker_gives_up_on_a_dead_primary_within_its_redis_timeout() {
    let mut cluster = RedisCluster::start(0);
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "60");
    let build = "dead-primary";
    let list = scratch.tests(&ids("slow", 2));
    let args = replace_flag(
        with_command(worker_args(&cluster, build, "w", &list)),
        "--redis-timeout",
        ["--redis-timeout".to_owned(), "4s".to_owned()],
    );
    let worker = Proc::spawn("w", &scratch, &args);
    wait_until("the worker to run a test", LONG, || {
        !scratch.runs().is_empty()
    });
    let primary = cluster.owner(build_slot(&cluster, build));
    let cut_off = std::time::Instant::now();
    cluster.kill(primary);
    let out = worker.wait(LONG);
    let waited = cut_off.elapsed();
    assert_eq!(
        out.code,
        Some(ExitCode::Infrastructure.code()),
        "{}",
        out.both()
    );
    assert!(
        waited < Duration::from_secs(8),
        "the worker gave up {waited:?} after its primary died, for --redis-timeout 4s\n{}",
        out.both()
    );
}
