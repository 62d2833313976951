//! One suite, two queues: each scenario is written once against the `Queue` trait and runs
//! against the local queue and the Redis queue (a real redis-server). The queue rules live
//! twice (Rust in `queue/local.rs`, Lua in `queue/redis/lua/`): a rule changed in one and not
//! the other fails here.

use ciq::timeline::{AttemptOutcome, EventKind, Leave, Timeline};
use std::time::Duration;

use ciq::discovery::TestSource;
use ciq::outcome::{Outcome, TestResult};
use ciq::queue::budget::RequeueBudget;
use ciq::queue::local::{LocalQueue, LocalTiming};
use ciq::queue::redis::{RedisQueue, RedisSettings};
use ciq::queue::{Ack, Queue, Recorded, Reservation, Reserved, Timed, Want};
use ciq::test_id::{TestId, TestList};
use ciq::timings::{Scheduling, Stored};

use ciq_testkit::RedisServer;

const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);
const HEARTBEAT_TIMEOUT: Duration = Duration::from_millis(1500);
/// A failure waits this long for another worker before its own may retry it (both queues:
/// a sixth of the heartbeat timeout, at least a second).
const RETRY_GRACE: Duration = Duration::from_secs(1);

/// A queue of `tests` shared by `workers` handles, with `budget`.
trait Backend {
    type Q: Queue;
    async fn build(&self, tests: &[&str], workers: usize, budget: RequeueBudget) -> Vec<Self::Q> {
        self.build_ordered(tests, workers, budget, Scheduling::default())
            .await
    }
    /// The same, ordered by `scheduling` as a build orders its queue.
    async fn build_ordered(
        &self,
        tests: &[&str],
        workers: usize,
        budget: RequeueBudget,
        scheduling: Scheduling,
    ) -> Vec<Self::Q>;
    /// What the build's records say each run did, read through `queue`.
    async fn timeline(&self, queue: &Self::Q) -> Timeline;
}

struct Local;

impl Backend for Local {
    type Q = ciq::queue::local::LocalWorker;
    async fn build_ordered(
        &self,
        tests: &[&str],
        workers: usize,
        budget: RequeueBudget,
        scheduling: Scheduling,
    ) -> Vec<Self::Q> {
        let ids: Vec<TestId> = tests.iter().map(|t| TestId::new(*t).unwrap()).collect();
        let timing = LocalTiming {
            heartbeat_interval: HEARTBEAT_INTERVAL,
            heartbeat_timeout: HEARTBEAT_TIMEOUT,
        };
        let file = scheduling.read_file(&ids);
        let ordered = scheduling.order(&ids, Stored::default(), &file, &Default::default());
        let queue = LocalQueue::ordered(&ordered, budget, timing);
        (0..workers)
            .map(|n| queue.worker(format!("w{n}")))
            .collect()
    }
    async fn timeline(&self, queue: &Self::Q) -> Timeline {
        queue.timeline()
    }
}

struct Redis(RedisServer);

impl Backend for Redis {
    type Q = RedisQueue;
    async fn build_ordered(
        &self,
        tests: &[&str],
        workers: usize,
        budget: RequeueBudget,
        scheduling: Scheduling,
    ) -> Vec<Self::Q> {
        let source = TestSource::List(TestList::parse(tests.join("\n").as_bytes(), "t").unwrap());
        let settings = RedisSettings {
            url: self.0.url(),
            namespace: String::new(),
            build: "conformance".to_owned(),
            key_ttl: Duration::from_secs(3600),
            lock_ttl: Duration::from_secs(5),
            max_election_attempts: 3,
            queue_init_timeout: Duration::from_secs(60),
            heartbeat_interval: HEARTBEAT_INTERVAL,
            heartbeat_timeout: HEARTBEAT_TIMEOUT,
            budget,
            redis_timeout: Duration::from_secs(10),
            scheduling,
        };
        let mut queues = Vec::new();
        for n in 0..workers {
            let queue = RedisQueue::connect(settings.clone(), format!("w{n}"))
                .await
                .unwrap();
            queue.join(&source).await.unwrap();
            queues.push(queue);
        }
        queues
    }
    async fn timeline(&self, queue: &Self::Q) -> Timeline {
        queue.timeline().await.unwrap()
    }
}

const GENEROUS: RequeueBudget = RequeueBudget {
    max_requeues: 1,
    tolerance: 1.0,
};

fn ack(reserved: &Reserved, outcome: Outcome) -> Ack {
    Ack {
        lease: reserved.lease.clone(),
        result: TestResult::new(
            reserved.id.clone(),
            outcome,
            Duration::from_millis(5),
            format!("{} output", reserved.id),
        ),
    }
}

fn held(reservation: Reservation) -> Vec<Reserved> {
    match reservation {
        Reservation::Tests(tests) => tests,
        other => panic!("expected tests, got {other:?}"),
    }
}

fn names(reserved: &[Reserved]) -> Vec<&str> {
    reserved.iter().map(|r| r.id.as_str()).collect()
}

/// Reserves (polling while the queue says empty) until tests come, within `within`.
async fn reserve_within(queue: &impl Queue, max: usize, within: Duration) -> Vec<Reserved> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match queue.reserve(Want::up_to(max)).await.unwrap() {
            Reservation::Tests(tests) => return tests,
            Reservation::Empty if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => panic!("expected tests within {within:?}, got {other:?}"),
        }
    }
}

/// The per-test budget binds: a test that keeps failing is requeued `--max-requeues` times,
/// then fails for good. Alone in the build, its worker retries its own failure at once.
async fn the_per_test_budget_binds<B: Backend>(backend: B) {
    let budget = RequeueBudget {
        max_requeues: 2,
        tolerance: 1.0,
    };
    let queues = backend.build(&["x", "y"], 2, budget).await;
    let (solo, gone) = (&queues[0], &queues[1]);
    gone.release(&[], Leave::Sigterm, None).await.unwrap();
    let mut recorded = Vec::new();
    let mut next = solo.reserve(Want::up_to(1)).await.unwrap();
    while let Reservation::Tests(tests) = next {
        let outcome = if tests[0].id.as_str() == "x" {
            Outcome::Failed
        } else {
            Outcome::Passed
        };
        let reply = solo
            .ack(vec![ack(&tests[0], outcome)], Want::up_to(1))
            .await
            .unwrap();
        recorded.extend(reply.recorded);
        next = reply.next;
    }
    assert_eq!(next, Reservation::Done);
    let x: Vec<Recorded> = recorded
        .iter()
        .filter(|(id, _)| id.as_str() == "x")
        .map(|(_, r)| *r)
        .collect();
    assert_eq!(
        x,
        [
            Recorded::Requeued,
            Recorded::Requeued,
            Recorded::Final(Outcome::Failed)
        ]
    );
    let summary = solo.summary().await.unwrap();
    assert_eq!(summary.failing[0].requeues, 2);
    assert_eq!(summary.count(Outcome::Passed), 1);
}

/// The build budget (half of two tests, rounded up: one) binds before the per-test budget
/// (two); every test ends with one outcome.
async fn requeue_budgets<B: Backend>(backend: B) {
    let budget = RequeueBudget {
        max_requeues: 2,
        tolerance: 0.5,
    };
    let queues = backend.build(&["x", "y"], 1, budget).await;
    let solo = &queues[0];
    let mut recorded = Vec::new();
    let mut next = solo.reserve(Want::up_to(1)).await.unwrap();
    while let Reservation::Tests(tests) = next {
        let reply = solo
            .ack(vec![ack(&tests[0], Outcome::Failed)], Want::up_to(1))
            .await
            .unwrap();
        recorded.extend(reply.recorded);
        next = reply.next;
    }
    assert_eq!(next, Reservation::Done);
    let requeued = recorded.iter().filter(|(_, r)| *r == Recorded::Requeued);
    assert_eq!(requeued.count(), 1, "{recorded:?}");
    let summary = solo.summary().await.unwrap();
    assert_eq!(summary.count(Outcome::Failed), 2);
    assert_eq!(summary.requeued, 1);
    assert_eq!(summary.not_run_count, 0);
}

/// A failure goes to another worker; passing there makes it flaky, with the failing run's
/// output kept.
async fn flaky_after_a_retry_elsewhere<B: Backend>(backend: B) {
    let queues = backend.build(&["t"], 2, GENEROUS).await;
    let (a, b) = (&queues[0], &queues[1]);
    let first = held(a.reserve(Want::up_to(1)).await.unwrap());
    let reply = a
        .ack(vec![ack(&first[0], Outcome::Failed)], Want::up_to(1))
        .await
        .unwrap();
    assert_eq!(reply.recorded[0].1, Recorded::Requeued);
    assert_eq!(reply.next, Reservation::Empty, "a left its failure to b");
    let retry = held(b.reserve(Want::up_to(1)).await.unwrap());
    assert_eq!(names(&retry), ["t"]);
    let reply = b
        .ack(vec![ack(&retry[0], Outcome::Passed)], Want::up_to(1))
        .await
        .unwrap();
    assert_eq!(reply.recorded[0].1, Recorded::Final(Outcome::Flaky));
    assert_eq!(reply.next, Reservation::Done);
    let summary = b.summary().await.unwrap();
    assert_eq!(summary.count(Outcome::Flaky), 1);
    let flaky = &summary.flaky[0];
    assert_eq!(flaky.requeues, 1);
    assert_eq!(
        flaky.detail.as_ref().map(|d| d.output.as_str()),
        Some("t output")
    );
}

/// A retry that is skipped proves nothing: the failure stands, with its detail.
async fn a_skip_after_a_failure_stays_failed<B: Backend>(backend: B) {
    let queues = backend.build(&["t"], 2, GENEROUS).await;
    let (a, b) = (&queues[0], &queues[1]);
    let first = held(a.reserve(Want::up_to(1)).await.unwrap());
    a.ack(vec![ack(&first[0], Outcome::Failed)], Want::up_to(0))
        .await
        .unwrap();
    let retry = held(b.reserve(Want::up_to(1)).await.unwrap());
    let reply = b
        .ack(vec![ack(&retry[0], Outcome::Skipped)], Want::up_to(1))
        .await
        .unwrap();
    assert_eq!(reply.recorded[0].1, Recorded::Final(Outcome::Failed));
    let summary = b.summary().await.unwrap();
    assert_eq!(summary.count(Outcome::Failed), 1);
    assert!(summary.failing[0].detail.is_some());
}

/// A result under a lease given back (or acknowledged already) changes nothing: it is
/// discarded, and the current holder decides the one outcome.
async fn stale_leases_are_fenced<B: Backend>(backend: B) {
    let queues = backend.build(&["t", "u"], 2, GENEROUS).await;
    let (a, b) = (&queues[0], &queues[1]);
    let first = held(a.reserve(Want::up_to(1)).await.unwrap());
    a.release(&first, Leave::Sigterm, None).await.unwrap();
    let again = held(b.reserve(Want::up_to(1)).await.unwrap());
    assert_eq!(
        names(&again),
        ["t"],
        "a released test goes back to the head"
    );
    assert_ne!(again[0].lease, first[0].lease);
    let reply = a
        .ack(vec![ack(&first[0], Outcome::Failed)], Want::up_to(0))
        .await
        .unwrap();
    assert_eq!(reply.recorded[0].1, Recorded::Discarded);
    let reply = b
        .ack(vec![ack(&again[0], Outcome::Passed)], Want::up_to(0))
        .await
        .unwrap();
    assert_eq!(reply.recorded[0].1, Recorded::Final(Outcome::Passed));
    // The same acknowledgement again: the lease is spent.
    let reply = b
        .ack(vec![ack(&again[0], Outcome::Failed)], Want::up_to(0))
        .await
        .unwrap();
    assert_eq!(reply.recorded[0].1, Recorded::Discarded);
    let summary = b.summary().await.unwrap();
    assert_eq!(summary.decided(), 1);
    assert_eq!(summary.count(Outcome::Passed), 1);
}

/// A worker that stops heartbeating loses its test once the heartbeat timeout passed, not
/// before; its heartbeat then says so and its late result changes nothing.
async fn takeover_after_the_heartbeat_timeout<B: Backend>(backend: B) {
    let queues = backend.build(&["t"], 2, GENEROUS).await;
    let (a, b) = (&queues[0], &queues[1]);
    let lost = held(a.reserve(Want::up_to(1)).await.unwrap());
    let started = tokio::time::Instant::now();
    let taken = reserve_within(b, 1, Duration::from_secs(30)).await;
    assert!(
        started.elapsed() >= HEARTBEAT_TIMEOUT - Duration::from_millis(300),
        "taken over after {:?}",
        started.elapsed()
    );
    assert_eq!(names(&taken), ["t"]);
    assert_eq!(a.heartbeat(&lost).await.unwrap(), [lost[0].id.clone()]);
    let reply = a
        .ack(vec![ack(&lost[0], Outcome::Passed)], Want::up_to(0))
        .await
        .unwrap();
    assert_eq!(reply.recorded[0].1, Recorded::Discarded);
    let reply = b
        .ack(vec![ack(&taken[0], Outcome::Passed)], Want::up_to(1))
        .await
        .unwrap();
    assert_eq!(reply.recorded[0].1, Recorded::Final(Outcome::Passed));
    assert_eq!(reply.next, Reservation::Done);
    assert_eq!(b.summary().await.unwrap().taken_over, 1);
}

/// The build's records read back as a timeline: a lane per worker, the first (the leader) first;
/// one attempt per run, a silent worker's cut attempt lost, its take-over naming the cut attempt
/// and the taker's; a requeued failure; the commit; how each worker left.
async fn the_timeline_records_runs_takeovers_and_requeues<B: Backend>(backend: B) {
    let queues = backend.build(&["a", "b", "f"], 2, GENEROUS).await;
    let (silent, live) = (&queues[0], &queues[1]);
    assert_eq!(
        names(&held(silent.reserve(Want::up_to(1)).await.unwrap())),
        ["a"]
    );
    let mut next = held(live.reserve(Want::up_to(1)).await.unwrap());
    let mut ran = Vec::new();
    while let Some(reserved) = next.first() {
        let outcome = if reserved.id.as_str() == "f" && !ran.contains(&"f".to_owned()) {
            Outcome::Failed
        } else {
            Outcome::Passed
        };
        ran.push(reserved.id.as_str().to_owned());
        let reply = live
            .ack(vec![ack(reserved, outcome)], Want::up_to(1))
            .await
            .unwrap();
        next = match reply.next {
            Reservation::Tests(tests) => tests,
            Reservation::Done => Vec::new(),
            _ => reserve_within(live, 1, Duration::from_secs(30)).await,
        };
    }
    live.release(&[], Leave::Drained, None).await.unwrap();
    let timeline = backend.timeline(live).await;
    assert!(timeline.lost.is_empty(), "{:?}", timeline.lost);
    let lanes: Vec<&str> = timeline.workers.iter().map(|l| l.worker.as_str()).collect();
    assert_eq!(lanes, ["w0", "w1"]);
    assert_eq!(timeline.workers[0].leave, Some(Leave::Silent));
    assert_eq!(timeline.workers[1].leave, Some(Leave::Drained));
    let attempts: Vec<(&str, usize, AttemptOutcome)> = timeline
        .attempts
        .iter()
        .map(|a| (a.test.as_str(), a.worker, a.outcome))
        .collect();
    assert_eq!(attempts.len(), 5, "{attempts:?}");
    for expected in [
        ("a", 0, AttemptOutcome::Lost),
        ("a", 1, AttemptOutcome::Passed),
        ("b", 1, AttemptOutcome::Passed),
        ("f", 1, AttemptOutcome::Requeued),
        ("f", 1, AttemptOutcome::Passed),
    ] {
        assert!(attempts.contains(&expected), "{expected:?} in {attempts:?}");
    }
    let cut = timeline
        .attempts
        .iter()
        .position(|a| a.outcome == AttemptOutcome::Lost);
    let taken = timeline
        .attempts
        .iter()
        .position(|a| a.test == "a" && a.outcome == AttemptOutcome::Passed);
    let takeovers: Vec<(usize, usize, Option<usize>, Option<usize>)> = timeline
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::Takeover {
                from,
                attempt,
                next,
                ..
            } => Some((e.worker, *from, *attempt, *next)),
            _ => None,
        })
        .collect();
    assert_eq!(takeovers, [(1, 0, cut, taken)]);
    let requeued = timeline
        .attempts
        .iter()
        .position(|a| a.outcome == AttemptOutcome::Requeued);
    assert!(timeline.events.iter().any(|e| e.kind
        == EventKind::Requeue {
            test: "f".to_owned(),
            attempt: requeued
        }));
    assert!(
        timeline
            .events
            .iter()
            .any(|e| e.worker == 0 && e.kind == EventKind::Commit { count: 3 })
    );
    for attempt in &timeline.attempts {
        if attempt.outcome != AttemptOutcome::Lost {
            assert!(attempt.end_ms >= Some(attempt.start_ms), "{attempt:?}");
        }
    }
}

/// A dead worker's whole batch goes back to the queue at once, so the live workers share it as
/// they take any queued tests, instead of one taking it over a test per scan (a SIGKILLed
/// worker's 50 tests came back one a second at the end of a build).
async fn a_dead_workers_batch_is_shared_at_once<B: Backend>(backend: B) {
    let tests: Vec<String> = (0..10).map(|n| format!("t{n}")).collect();
    let tests: Vec<&str> = tests.iter().map(String::as_str).collect();
    let queues = backend.build(&tests, 3, GENEROUS).await;
    let (dead, b, c) = (&queues[0], &queues[1], &queues[2]);
    assert_eq!(held(dead.reserve(Want::up_to(10)).await.unwrap()).len(), 10);
    let first = reserve_within(b, 4, Duration::from_secs(30)).await;
    assert_eq!(first.len(), 4, "{:?}", names(&first));
    let second = held(c.reserve(Want::up_to(4)).await.unwrap());
    assert_eq!(
        second.len(),
        4,
        "the rest is queued, not left for a later scan"
    );
    let third = held(b.reserve(Want::up_to(4)).await.unwrap());
    assert_eq!(third.len(), 2);
    let batches = [first, second, third];
    let mut all: Vec<&str> = batches.iter().flat_map(|batch| names(batch)).collect();
    all.sort_unstable();
    assert_eq!(all, tests, "each once");
    assert_eq!(b.summary().await.unwrap().taken_over, 10);
}

/// Heartbeats keep a long test with its holder, however long it runs; meanwhile another
/// worker hears `empty`, and `done` once it is acknowledged.
async fn heartbeats_keep_a_test_and_empty_turns_done<B: Backend>(backend: B) {
    let queues = backend.build(&["long"], 2, GENEROUS).await;
    let (a, b) = (&queues[0], &queues[1]);
    let long = held(a.reserve(Want::up_to(1)).await.unwrap());
    let until = tokio::time::Instant::now() + HEARTBEAT_TIMEOUT * 2;
    while tokio::time::Instant::now() < until {
        tokio::time::sleep(HEARTBEAT_INTERVAL).await;
        assert!(a.heartbeat(&long).await.unwrap().is_empty());
        assert_eq!(b.reserve(Want::up_to(1)).await.unwrap(), Reservation::Empty);
    }
    a.ack(vec![ack(&long[0], Outcome::Passed)], Want::up_to(0))
        .await
        .unwrap();
    assert_eq!(b.reserve(Want::up_to(1)).await.unwrap(), Reservation::Done);
    assert_eq!(b.summary().await.unwrap().taken_over, 0);
}

/// A failure waits for another live worker for the grace period only: then its own worker
/// retries it rather than idle while the others stay busy.
async fn a_failure_waits_for_others_only_a_while<B: Backend>(backend: B) {
    let queues = backend.build(&["busy", "t"], 2, GENEROUS).await;
    let (a, b) = (&queues[0], &queues[1]);
    let busy = held(b.reserve(Want::up_to(1)).await.unwrap());
    assert_eq!(names(&busy), ["busy"]);
    let first = held(a.reserve(Want::up_to(1)).await.unwrap());
    let failed_at = tokio::time::Instant::now();
    let reply = a
        .ack(vec![ack(&first[0], Outcome::Failed)], Want::up_to(1))
        .await
        .unwrap();
    assert_eq!(reply.next, Reservation::Empty, "left to b at first");
    b.heartbeat(&busy).await.unwrap();
    let retry = reserve_within(a, 1, Duration::from_secs(30)).await;
    assert_eq!(names(&retry), ["t"]);
    assert!(
        failed_at.elapsed() >= RETRY_GRACE - Duration::from_millis(200),
        "retried after {:?}",
        failed_at.elapsed()
    );
}

/// Batches: several tests per reservation and per acknowledgement, each with its own lease
/// and outcome.
async fn batches_hand_out_and_record_each_test<B: Backend>(backend: B) {
    let queues = backend.build(&["a", "b", "c", "d", "e"], 1, GENEROUS).await;
    let solo = &queues[0];
    let first = held(solo.reserve(Want::up_to(3)).await.unwrap());
    assert_eq!(names(&first), ["a", "b", "c"]);
    let acks = vec![
        ack(&first[0], Outcome::Passed),
        ack(&first[1], Outcome::Skipped),
        ack(&first[2], Outcome::Errored),
    ];
    let reply = solo.ack(acks, Want::up_to(3)).await.unwrap();
    let recorded: Vec<_> = reply.recorded.iter().map(|(_, r)| *r).collect();
    assert_eq!(
        recorded,
        [
            Recorded::Final(Outcome::Passed),
            Recorded::Final(Outcome::Skipped),
            Recorded::Requeued
        ]
    );
    let rest = held(reply.next);
    assert_eq!(names(&rest), ["c", "d", "e"], "the requeued test first");
    let acks = rest.iter().map(|r| ack(r, Outcome::Passed)).collect();
    let reply = solo.ack(acks, Want::up_to(3)).await.unwrap();
    assert_eq!(reply.recorded[0].1, Recorded::Final(Outcome::Flaky));
    assert_eq!(reply.next, Reservation::Done);
    let summary = solo.summary().await.unwrap();
    let counts: Vec<usize> = [Outcome::Passed, Outcome::Skipped, Outcome::Flaky]
        .iter()
        .map(|o| summary.count(*o))
        .collect();
    assert_eq!(counts, [3, 1, 1]);
}

/// Auto batches are handed out by the estimates the queue was ordered by: tests from the head
/// while their estimated time stays within the budget (a longer test goes alone), never more
/// than a fair share of what is left among the live workers, so batches shrink as the queue
/// empties.
async fn auto_batches_follow_the_estimates<B: Backend>(backend: B) {
    let dir = tempfile::tempdir().unwrap();
    let timings = dir.path().join("timings.tsv");
    let mut tests = vec!["long".to_owned(), "mid1".to_owned(), "mid2".to_owned()];
    tests.extend((0..40).map(|n| format!("s{n:02}")));
    let mut file = String::from("3000\tlong\n900\tmid1\n900\tmid2\n");
    for test in &tests[3..] {
        file.push_str(&format!("100\t{test}\n"));
    }
    std::fs::write(&timings, file).unwrap();
    let tests: Vec<&str> = tests.iter().map(String::as_str).collect();
    let scheduling = Scheduling {
        timings_file: Some(timings),
        ..Scheduling::default()
    };
    let queues = backend.build_ordered(&tests, 2, GENEROUS, scheduling).await;
    let want = Want {
        max: 1000,
        timed: Some(Timed {
            budget: Duration::from_secs(2),
            typical: None,
            floor: Duration::ZERO,
        }),
    };
    let first = held(queues[0].reserve(want).await.unwrap());
    assert_eq!(names(&first), ["long"], "a test over the budget goes alone");
    let second = held(queues[1].reserve(want).await.unwrap());
    assert_eq!(
        names(&second),
        ["mid1", "mid2", "s00", "s01"],
        "2 s of estimated time"
    );
    let mut queued = 38;
    let mut sizes = Vec::new();
    let mut next = queues[0]
        .ack(
            first.iter().map(|r| ack(r, Outcome::Passed)).collect(),
            want,
        )
        .await
        .unwrap()
        .next;
    while let Reservation::Tests(batch) = next {
        assert!(
            batch.len() <= usize::div_ceil(queued, 8),
            "{} of {queued} among 2 workers",
            batch.len()
        );
        queued -= batch.len();
        sizes.push(batch.len());
        let acks = batch.iter().map(|r| ack(r, Outcome::Passed)).collect();
        next = queues[0].ack(acks, want).await.unwrap().next;
    }
    assert_eq!(queued, 0);
    assert_eq!(sizes[0], 5, "a fair share of 38: {sizes:?}");
    assert!(sizes.ends_with(&[1, 1, 1]), "{sizes:?}");
}

/// A batch's tests are never estimated at less than its own start (`floor`), even past the
/// fair share: splitting it would save less time at the end than another start costs.
async fn a_batch_holds_at_least_its_start<B: Backend>(backend: B) {
    let dir = tempfile::tempdir().unwrap();
    let timings = dir.path().join("timings.tsv");
    let tests: Vec<String> = (0..20).map(|n| format!("t{n:02}")).collect();
    let file: String = tests.iter().map(|t| format!("100\t{t}\n")).collect();
    std::fs::write(&timings, file).unwrap();
    let tests: Vec<&str> = tests.iter().map(String::as_str).collect();
    let scheduling = Scheduling {
        timings_file: Some(timings),
        ..Scheduling::default()
    };
    let queues = backend.build_ordered(&tests, 2, GENEROUS, scheduling).await;
    let want = Want {
        max: 1000,
        timed: Some(Timed {
            budget: Duration::from_secs(2),
            typical: None,
            floor: Duration::from_secs(1),
        }),
    };
    let first = held(queues[0].reserve(want).await.unwrap());
    assert_eq!(
        first.len(),
        10,
        "a second of 100 ms tests, past a share of 3"
    );
    let second = held(queues[1].reserve(want).await.unwrap());
    assert_eq!(second.len(), 10);
}

macro_rules! both_queues {
    ($($scenario:ident),+ $(,)?) => {
        mod local {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Local).await;
                }
            )+
        }
        mod redis {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $scenario() {
                    super::$scenario(super::Redis(ciq_testkit::RedisServer::start())).await;
                }
            )+
        }
    };
}

both_queues!(
    the_per_test_budget_binds,
    requeue_budgets,
    flaky_after_a_retry_elsewhere,
    a_skip_after_a_failure_stays_failed,
    stale_leases_are_fenced,
    takeover_after_the_heartbeat_timeout,
    a_dead_workers_batch_is_shared_at_once,
    heartbeats_keep_a_test_and_empty_turns_done,
    a_failure_waits_for_others_only_a_while,
    batches_hand_out_and_record_each_test,
    auto_batches_follow_the_estimates,
    a_batch_holds_at_least_its_start,
    the_timeline_records_runs_takeovers_and_requeues,
);
