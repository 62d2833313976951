//! The election and generations, against a real redis-server: the seed's scenarios.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use ciq::discovery::{ListFormat, TestSource};
use ciq::outcome::{Outcome, TestResult};
use ciq::queue::budget::RequeueBudget;
use ciq::queue::error::AbortKind;
use ciq::queue::redis::keys::BuildKeys;
use ciq::queue::redis::supervisor::{Ending, ReportSettings, Status, supervise};
use ciq::queue::redis::{RedisQueue, RedisSettings};
use ciq::queue::{Ack, Queue, QueueError, Reservation, Reserved, Want};
use ciq::report::Summary;
use ciq::test_id::TestList;
use redis::Commands;

use ciq_testkit::{
    RedisServer, generation_keys, lose_build, replace_generation, setup_generation, state,
    wait_until,
};

pub fn settings(server: &RedisServer, build: &str) -> RedisSettings {
    RedisSettings {
        url: server.url(),
        namespace: String::new(),
        build: build.to_owned(),
        key_ttl: Duration::from_secs(3600),
        lock_ttl: Duration::from_millis(600),
        max_election_attempts: 3,
        queue_init_timeout: Duration::from_secs(60),
        heartbeat_interval: Duration::from_millis(200),
        heartbeat_timeout: Duration::from_millis(1500),
        budget: RequeueBudget {
            max_requeues: 1,
            tolerance: 0.5,
        },
        redis_timeout: Duration::from_secs(10),
        scheduling: ciq::timings::Scheduling::default(),
    }
}

pub fn list(names: &[&str]) -> TestSource {
    TestSource::List(TestList::parse(names.join("\n").as_bytes(), "test").unwrap())
}

/// A list command that never finishes: its leader can only die or lose the lock.
fn endless_listing() -> TestSource {
    TestSource::Command {
        argv: vec!["sleep".into(), "60".into()],
        format: ListFormat::Lines,
    }
}

pub fn report_settings(server: &RedisServer, build: &str) -> ReportSettings {
    ReportSettings {
        url: server.url(),
        namespace: String::new(),
        build: build.to_owned(),
        queue_init_timeout: Duration::from_secs(30),
        report_timeout: Duration::from_secs(60),
        max_election_attempts: 3,
        redis_timeout: Duration::from_secs(10),
        poll_interval: Duration::from_millis(50),
        retry_round: None,
        grind: false,
    }
}

pub async fn worker(server: &RedisServer, build: &str, name: &str) -> RedisQueue {
    RedisQueue::connect(settings(server, build), name.to_owned())
        .await
        .unwrap()
}

/// The acknowledgement of `reserved` with `outcome`.
pub fn ack(reserved: &Reserved, outcome: Outcome) -> Ack {
    Ack {
        lease: reserved.lease.clone(),
        result: TestResult::new(
            reserved.id.clone(),
            outcome,
            Duration::from_millis(3),
            format!("{outcome} output"),
        ),
    }
}

/// The tests of a reservation that must hold some.
pub fn tests(reservation: Reservation) -> Vec<Reserved> {
    match reservation {
        Reservation::Tests(tests) => tests,
        other => panic!("expected tests, got {other:?}"),
    }
}

/// A report running in the background, with every status it showed.
struct Report {
    task: tokio::task::JoinHandle<Result<(Summary, Ending), QueueError>>,
    statuses: Arc<Mutex<Vec<Status>>>,
}

impl Report {
    fn spawn(settings: ReportSettings) -> Self {
        let statuses = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&statuses);
        let task = tokio::spawn(async move {
            supervise(&settings, |status| {
                seen.lock().unwrap().push(status.clone())
            })
            .await
        });
        Self { task, statuses }
    }

    /// Waits (without blocking the runtime) until the report has shown a status `wanted`.
    async fn saw(&self, what: &str, wanted: impl Fn(&Status) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while !self.statuses.lock().unwrap().iter().any(&wanted) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the report never showed {what}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Starts `name` as a leader whose listing never ends, waits until it holds the lock (and,
/// given a `report`, until the report has seen it filling the queue), then kills it: its task
/// is dropped mid-discovery, so it never renews, commits or cleans up.
async fn leader_dies(server: &RedisServer, build: &str, name: &str, report: Option<&Report>) {
    let queue = worker(server, build, name).await;
    let task = tokio::spawn(async move { queue.join(&endless_listing()).await });
    let suffix = format!(":{name}");
    wait_until(
        "the doomed leader's election",
        Duration::from_secs(10),
        || state(server, build).is_some_and(|s| s.starts_with("setup:") && s.ends_with(&suffix)),
    );
    if let Some(report) = report {
        report
            .saw(
                "the doomed leader filling the queue",
                |status| matches!(status, Status::Filling { leader } if leader == name),
            )
            .await;
    }
    task.abort();
    let _ = task.await;
}

/// Drains the queue with `queue`, passing every test.
async fn pass_all(queue: &RedisQueue) -> usize {
    let mut ran = 0;
    let mut next = queue.reserve(Want::up_to(1)).await.unwrap();
    loop {
        match next {
            Reservation::Tests(tests) => {
                ran += tests.len();
                let acks = tests
                    .iter()
                    .map(|reserved| ack(reserved, Outcome::Passed))
                    .collect();
                next = queue.ack(acks, Want::up_to(1)).await.unwrap().next;
            }
            Reservation::Empty => {
                tokio::time::sleep(Duration::from_millis(20)).await;
                next = queue.reserve(Want::up_to(1)).await.unwrap();
            }
            Reservation::Done => return ran,
            Reservation::Stale => panic!("unexpected stale generation"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn normal_election_uses_generation_scoped_keys() {
    let server = RedisServer::start();
    let (a, b) = (
        worker(&server, "b1", "a").await,
        worker(&server, "b1", "b").await,
    );
    let source = list(&["t1", "t2", "t3"]);
    let joined_a = a.join(&source).await.unwrap();
    let joined_b = b.join(&source).await.unwrap();
    assert!(joined_a.led && !joined_b.led);
    assert_eq!(joined_a.generation, joined_b.generation);
    let keys = BuildKeys::new("", "b1");
    let generation = keys.generation(&joined_a.generation);
    let mut conn = server.conn();
    assert_eq!(
        state(&server, "b1"),
        Some(format!("ready:{}", joined_a.generation))
    );
    let queued: Vec<String> = conn.lrange(&generation.queue, 0, -1).unwrap();
    assert_eq!(queued, ["t1", "t2", "t3"]);
    assert!(generation.queue.starts_with("ciq:{b1}:g:"));
    let total: String = conn.hget(&generation.meta, "total").unwrap();
    assert_eq!(total, "3");
    for key in [
        keys.state(),
        generation.queue.clone(),
        generation.meta.clone(),
    ] {
        let ttl: i64 = conn.pttl(&key).unwrap();
        assert!(ttl > 0, "{key} has no TTL");
    }
    assert_eq!(pass_all(&a).await + pass_all(&b).await, 3);
}

/// Regression (the seed's bug): a test acknowledged long ago, whose entry still lingers in
/// the running set after its heartbeat deadline, must never be taken over as lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_test_is_not_taken_over_after_its_deadline() {
    let server = RedisServer::start();
    let (a, b) = (
        worker(&server, "b2", "a").await,
        worker(&server, "b2", "b").await,
    );
    let joined = a.join(&list(&["done", "other"])).await.unwrap();
    b.join(&list(&["other", "done"])).await.unwrap();
    let held = tests(a.reserve(Want::up_to(1)).await.unwrap());
    let reply = a
        .ack(vec![ack(&held[0], Outcome::Passed)], Want::up_to(0))
        .await
        .unwrap();
    assert_eq!(
        reply.recorded[0].1,
        ciq::queue::Recorded::Final(Outcome::Passed)
    );
    // Put the acknowledged test back into `running` with an ancient heartbeat, as a crash
    // between two writes of a non-atomic acknowledgement would have left it.
    let generation = BuildKeys::new("", "b2").generation(&joined.generation);
    let mut conn = server.conn();
    let _: () = conn
        .zadd(&generation.running, "ancient-lease:done", 1)
        .unwrap();
    // Lost tests are looked for at most every tenth of the heartbeat timeout.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = tests(b.reserve(Want::up_to(5)).await.unwrap());
    let got: Vec<_> = got.iter().map(|r| r.id.as_str().to_owned()).collect();
    assert_eq!(got, ["other"], "the acknowledged test was taken over");
    let lingering: Option<f64> = conn
        .zscore(&generation.running, "ancient-lease:done")
        .unwrap();
    assert_eq!(lingering, None, "the stale entry is cleaned up");
    let summary = b.summary().await.unwrap();
    assert_eq!(summary.decided(), 1);
    assert_eq!(summary.taken_over, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follower_and_report_detect_a_dead_leader() {
    let server = RedisServer::start();
    let report = Report::spawn(report_settings(&server, "b3"));
    leader_dies(&server, "b3", "doomed", Some(&report)).await;
    let follower = worker(&server, "b3", "follower").await;
    let joined = follower.join(&list(&["t1", "t2"])).await.unwrap();
    assert!(joined.led, "the follower saw the lock lapse and took over");
    assert_eq!(pass_all(&follower).await, 2);
    // The report watched the doomed leader, then followed its successor's generation to the end.
    let (summary, ending) = report.task.await.unwrap().unwrap();
    assert_eq!(ending, Ending::Drained);
    assert_eq!(summary.total, 2);
    assert_eq!(summary.count(Outcome::Passed), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn election_is_retried_after_a_lapsed_lock_and_succeeds() {
    let server = RedisServer::start();
    leader_dies(&server, "b4", "first", None).await;
    // A follower that was waiting on the dead leader counts one dead leader and re-elects.
    let waiting = worker(&server, "b4", "waiting").await;
    let late = worker(&server, "b4", "late").await;
    let source = list(&["t1", "t2", "t3"]);
    let (joined_waiting, joined_late) = tokio::join!(waiting.join(&source), late.join(&source));
    let (joined_waiting, joined_late) = (joined_waiting.unwrap(), joined_late.unwrap());
    assert_eq!(joined_waiting.generation, joined_late.generation);
    assert!(
        joined_waiting.led ^ joined_late.led,
        "exactly one new leader"
    );
    let (ran_a, ran_b) = tokio::join!(pass_all(&waiting), pass_all(&late));
    assert_eq!(ran_a + ran_b, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_that_lost_its_lock_drops_its_staging_and_leads_again() {
    let server = RedisServer::start();
    let keys = BuildKeys::new("", "b5");
    let slow = worker(&server, "b5", "slow").await;
    // Its listing ends only once the gate opens, after its lock is taken.
    let dir = tempfile::tempdir().unwrap();
    let gate = dir.path().join("gate");
    let slow_source = TestSource::Command {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "while [ ! -e \"$1\" ]; do sleep 0.05; done; printf 'x1\\nx2\\n'".into(),
            "sh".into(),
            gate.to_string_lossy().into_owned(),
        ],
        format: ListFormat::Lines,
    };
    let task = tokio::spawn(async move {
        let joined = slow.join(&slow_source).await;
        (slow, joined)
    });
    wait_until(
        "the slow leader's election",
        Duration::from_secs(10),
        || state(&server, "b5").is_some_and(|s| s.ends_with(":slow")),
    );
    let first_generation = setup_generation(&server, "b5").expect("the slow leader's lock");
    // While it lists, its lock is taken (as if it had been paused past the TTL and another
    // worker elected, which then died too).
    let mut conn = server.conn();
    let _: () = redis::cmd("SET")
        .arg(keys.state())
        .arg("setup:thief-generation:thief")
        .arg("PX")
        .arg(1500)
        .query(&mut conn)
        .unwrap();
    std::fs::write(&gate, "").unwrap();
    let (slow, joined) = task.await.unwrap();
    let joined = joined.unwrap_or_else(|err| panic!("{err}"));
    assert!(joined.led, "it leads the next election");
    assert_ne!(joined.generation, first_generation);
    let leftovers = generation_keys(&server, "b5", &first_generation);
    assert!(
        leftovers.is_empty(),
        "the lost generation left keys: {leftovers:?}"
    );
    assert_eq!(pass_all(&slow).await, 2);
}

/// The commit script itself: a compare-and-set that refuses a generation whose lock moved.
#[test]
fn commit_is_rejected_after_another_worker_took_the_lock() {
    let server = RedisServer::start();
    let mut conn = server.conn();
    let commit = redis::Script::new(concat!(
        include_str!("../../src/queue/redis/lua/lib.lua"),
        include_str!("../../src/queue/redis/lua/commit.lua")
    ));
    let stage = redis::Script::new(concat!(
        include_str!("../../src/queue/redis/lua/lib.lua"),
        include_str!("../../src/queue/redis/lua/stage.lua")
    ));
    let _: () = conn.set("s", "setup:g1:a").unwrap();
    let stage_batch = |conn: &mut redis::Connection| -> i64 {
        stage
            .key("s")
            .key("q1")
            .key("tl")
            .arg("setup:g1:a")
            .arg(0)
            .arg(1000)
            .arg(60_000)
            .arg("session-a")
            .arg(2)
            .arg("t1")
            .arg("t2")
            .invoke(conn)
            .unwrap()
    };
    assert_eq!(stage_batch(&mut conn), 2);
    // Re-sent after a lost reply: recognised, not pushed twice.
    assert_eq!(stage_batch(&mut conn), 2);
    let queued: Vec<String> = conn.lrange("q1", 0, -1).unwrap();
    assert_eq!(queued, ["t1", "t2"]);
    let _: () = conn.set("s", "setup:g2:b").unwrap();
    let invoke = |conn: &mut redis::Connection, setup: &str, ready: &str| -> i64 {
        commit
            .key("s")
            .key("m1")
            .key("q1")
            .key("aborted")
            .key("r1")
            .key("results")
            .key("tl")
            .arg(setup)
            .arg(ready)
            .arg(60_000)
            .arg(2)
            .arg(1)
            .arg(1)
            .arg(1000)
            .arg("digest")
            .arg("failed-first")
            .arg("session-a")
            .invoke(conn)
            .unwrap()
    };
    assert_eq!(invoke(&mut conn, "setup:g1:a", "ready:g1"), 0);
    let state: String = conn.get("s").unwrap();
    assert_eq!(state, "setup:g2:b", "the winner's lock is untouched");
    // A build aborted for everyone is not committed, even by the lock's holder.
    let _: () = conn.set("s", "setup:g1:a").unwrap();
    let _: () = conn.set("aborted", "{}").unwrap();
    assert_eq!(invoke(&mut conn, "setup:g1:a", "ready:g1"), 0);
    let _: () = conn.del("aborted").unwrap();
    // The rightful owner commits, and a re-sent commit is recognised.
    assert_eq!(invoke(&mut conn, "setup:g1:a", "ready:g1"), 1);
    assert_eq!(invoke(&mut conn, "setup:g1:a", "ready:g1"), 1);
    let state: String = conn.get("s").unwrap();
    assert_eq!(state, "ready:g1");
    // The timeline holds one staging and one commit: re-sent calls record nothing again.
    let timeline: String = conn.get("tl").unwrap();
    let records: Vec<&str> = timeline.lines().filter(|l| !l.starts_with('@')).collect();
    assert_eq!(records, ["S 2", "C 2"], "{timeline}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staleness_is_noticed_after_the_generation_changed() {
    let server = RedisServer::start();
    let keys = BuildKeys::new("", "b6");
    let a = worker(&server, "b6", "a").await;
    let first = a.join(&list(&["t1", "t2"])).await.unwrap();
    // Replace the generation under the running worker, as an operator re-filling the queue
    // would.
    assert!(replace_generation(
        &server,
        "b6",
        "g-replacement",
        &["r1", "r2", "r3"]
    ));
    let mut conn = server.conn();
    assert_eq!(a.reserve(Want::up_to(1)).await.unwrap(), Reservation::Stale);
    a.rejoin().await.unwrap();
    assert_eq!(pass_all(&a).await, 3, "works the new generation");
    let old_queue: Vec<String> = conn
        .lrange(&keys.generation(&first.generation).queue, 0, -1)
        .unwrap();
    assert_eq!(
        old_queue,
        ["t1", "t2"],
        "nothing served from the old generation"
    );
}

/// A worker still running a test of a replaced generation heartbeats into it and gets STALE;
/// those heartbeats did not count as a sign of life, so a report with no other worker alive
/// gave up ("every worker left or went silent") while the worker was about to rejoin.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_heartbeat_keeps_the_worker_alive_for_the_report() {
    let server = RedisServer::start();
    let a = worker(&server, "b9", "a").await;
    a.join(&list(&["long", "t2"])).await.unwrap();
    let held = tests(a.reserve(Want::up_to(1)).await.unwrap());
    assert!(replace_generation(
        &server,
        "b9",
        "g-replacement",
        &["long", "t2"]
    ));
    let settings = report_settings(&server, "b9");
    let report = tokio::spawn(async move { supervise(&settings, |_| {}).await });
    // `long` runs for twice the heartbeat timeout, heartbeated all along.
    for _ in 0..15 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(a.heartbeat(&held).await.unwrap().is_empty());
        assert!(
            !report.is_finished(),
            "the report took a live worker for gone"
        );
    }
    assert_eq!(a.reserve(Want::up_to(1)).await.unwrap(), Reservation::Stale);
    a.rejoin().await.unwrap();
    assert_eq!(pass_all(&a).await, 2);
    let (summary, ending) = report.await.unwrap().unwrap();
    assert_eq!(ending, Ending::Drained);
    assert_eq!(summary.count(Outcome::Passed), 2);
}

/// Redis lost the build's state while the report had only seen the leader's setup (it polls
/// slower than a small build commits): the report took the empty state for a dead leader and
/// waited for a new one until its init timeout, then said "no leader elected" (exit 4) instead
/// of the infrastructure error the workers ended with.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_that_missed_the_commit_learns_the_state_was_lost() {
    let server = RedisServer::start();
    let keys = BuildKeys::new("", "b10");
    let mut conn = server.conn();
    // Someone is filling the queue when the report first looks.
    let _: () = conn.set(keys.state(), "setup:g-first:x").unwrap();
    let mut settings = report_settings(&server, "b10");
    settings.poll_interval = Duration::from_secs(5);
    let report = Report::spawn(settings);
    report.saw("its first look", |_| true).await;
    // Between two of its looks: the build is set up and starts, then Redis loses everything.
    let _: () = conn.del(keys.state()).unwrap();
    let a = worker(&server, "b10", "a").await;
    a.join(&list(&["t1", "t2"])).await.unwrap();
    assert!(matches!(
        a.reserve(Want::up_to(1)).await.unwrap(),
        Reservation::Tests(_)
    ));
    lose_build(&server, "b10");
    assert_eq!(a.reserve(Want::up_to(1)).await.unwrap(), Reservation::Stale);
    assert!(matches!(a.rejoin().await, Err(QueueError::StateLost(_))));
    let ended = tokio::time::timeout(Duration::from_secs(20), report.task)
        .await
        .expect("the report ends at its next look")
        .unwrap();
    match ended {
        Err(QueueError::Aborted(abort)) => assert_eq!(abort.kind, AbortKind::StateLost),
        other => panic!("report: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_reads_the_total_under_its_generation() {
    let server = RedisServer::start();
    let keys = BuildKeys::new("", "b7");
    // An abandoned attempt left a generation with a different total behind.
    let mut conn = server.conn();
    let abandoned = keys.generation("g-abandoned");
    let _: () = conn.rpush(&abandoned.queue, &["a1"]).unwrap();
    let _: () = conn.hset(&abandoned.meta, "total", 1).unwrap();
    let a = worker(&server, "b7", "a").await;
    a.join(&list(&["t1", "t2", "t3", "t4"])).await.unwrap();
    assert_eq!(pass_all(&a).await, 4);
    let (summary, _) = supervise(&report_settings(&server, "b7"), |_| {})
        .await
        .unwrap();
    assert_eq!(summary.total, 4);
    assert_eq!(summary.count(Outcome::Passed), 4);
    assert!(summary.not_run.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exhausted_election_budget_ends_in_lost_leader() {
    let server = RedisServer::start();
    // Three workers whose listing never ends; every elected one is killed. With a budget of
    // two, the last survivor has seen two leaders die and gives up for everyone.
    let mut tasks = std::collections::HashMap::new();
    for name in ["w1", "w2", "w3"] {
        let mut budgeted = settings(&server, "b8");
        budgeted.max_election_attempts = 2;
        let queue = RedisQueue::connect(budgeted, name.to_owned())
            .await
            .unwrap();
        tasks.insert(
            name,
            tokio::spawn(async move { queue.join(&endless_listing()).await }),
        );
    }
    let mut killed = Vec::new();
    while killed.len() < 2 {
        wait_until("a new leader", Duration::from_secs(10), || {
            state(&server, "b8").is_some_and(|s| {
                s.starts_with("setup:") && !killed.iter().any(|k| s.ends_with(&format!(":{k}")))
            })
        });
        let leader = state(&server, "b8").unwrap();
        let name = *tasks
            .keys()
            .find(|name| leader.ends_with(&format!(":{name}")))
            .unwrap();
        let task = tasks.remove(name).unwrap();
        task.abort();
        let _ = task.await;
        killed.push(name);
    }
    let (_, survivor) = tasks.into_iter().next().unwrap();
    let result = tokio::time::timeout(Duration::from_secs(20), survivor)
        .await
        .expect("the survivor gives up in time")
        .unwrap();
    match result {
        Err(QueueError::LostLeader { attempts: 2 }) => {}
        other => panic!("survivor: {other:?}"),
    }
    // Everyone else now ends the same way at once.
    let late = worker(&server, "b8", "late").await;
    match late.join(&list(&["t"])).await {
        Err(QueueError::Aborted(abort)) => assert_eq!(abort.kind, AbortKind::LostLeader),
        other => panic!("late worker: {other:?}"),
    }
    match supervise(&report_settings(&server, "b8"), |_| {}).await {
        Err(QueueError::Aborted(abort)) => assert_eq!(abort.kind, AbortKind::LostLeader),
        other => panic!("report: {other:?}"),
    }
}

/// Regression: after Redis lost the build (restarted empty), a late worker elected itself and
/// committed a fresh generation; stale workers and the report followed it like a replaced
/// generation, ran the suite again, and could call a failing build green.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_election_after_lost_state_is_not_followed() {
    let mut server = RedisServer::start();
    let a = worker(&server, "b10", "a").await;
    a.join(&list(&["t1", "t2"])).await.unwrap();
    let held = tests(a.reserve(Want::up_to(1)).await.unwrap());
    let report = Report::spawn(report_settings(&server, "b10"));
    report
        .saw("the first generation running", |status| {
            matches!(status, Status::Running { .. })
        })
        .await;
    server.restart();
    let late = worker(&server, "b10", "late").await;
    match late.join(&list(&["t1", "t2"])).await {
        Ok(joined) => assert!(joined.led, "the late worker starts a fresh build"),
        // The report may have seen the loss first and recorded it for everyone: the late
        // worker is then told so instead of starting afresh.
        Err(QueueError::Aborted(abort)) => assert_eq!(abort.kind, AbortKind::StateLost),
        Err(other) => panic!("late worker: {other:?}"),
    }
    match a
        .ack(vec![ack(&held[0], Outcome::Failed)], Want::up_to(1))
        .await
    {
        Ok(acked) => assert_eq!(acked.next, Reservation::Stale),
        Err(QueueError::Aborted(abort)) => assert_eq!(abort.kind, AbortKind::StateLost),
        Err(other) => panic!("the stale worker's ack: {other:?}"),
    }
    match a.rejoin().await {
        Err(QueueError::StateLost(_)) => {}
        // The report may have seen the loss first and recorded it for everyone.
        Err(QueueError::Aborted(abort)) => assert_eq!(abort.kind, AbortKind::StateLost),
        other => panic!("the stale worker must not follow the fresh generation: {other:?}"),
    }
    match report.task.await.unwrap() {
        Err(QueueError::StateLost(_)) => {}
        Err(QueueError::Aborted(abort)) => assert_eq!(abort.kind, AbortKind::StateLost),
        other => panic!("report: {other:?}"),
    }
}
