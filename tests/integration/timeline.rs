//! A build's timeline read back from Redis after real `ciq` processes ran it: a lane per worker
//! process, an attempt per run, the take-over of a SIGKILLed worker's tests, the election,
//! listing, staging and commit, and how each worker left; records past their bound are a
//! lost part, never a wrong picture.

use std::collections::BTreeMap;
use std::time::Duration;

use nix::sys::signal::Signal;
use redis::Commands;

use ciq::queue::redis::keys::BuildKeys;
use ciq::queue::redis::supervisor::Supervisor;
use ciq::queue::{Queue, Want};
use ciq::timeline::{AttemptOutcome, ElectionResult, EventKind, Leave, Timeline};
use ciq_testkit::{Proc, RedisServer, Scratch, ids, ready_generation, report_args, wait_until};
use ciq_testkit::{with_command, worker_args};

use crate::election::{ack, list, report_settings, tests, worker};

const LONG: Duration = Duration::from_secs(120);

fn read(server: &RedisServer, build: &str) -> Timeline {
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(async {
            Supervisor::open(report_settings(server, build))
                .await?
                .timeline()
                .await
        })
        .unwrap()
}

/// Three workers, one SIGKILLed mid-test and one sent SIGTERM, a failure requeued: the timeline
/// has a lane per process (the leader's first), exactly one final attempt per test, the killed
/// worker's cut attempts lost and each named by a take-over that points at the run that
/// replaced it, the leader's election, listing, staging and commit, and how each one left.
#[test]
fn a_build_with_a_killed_worker_reads_back_as_its_timeline() {
    let server = RedisServer::start();
    let mut scratch = Scratch::new();
    scratch.set_env("SLOW_SECONDS", "0.3");
    let build = "timeline-killed";
    let mut names = ids("slow", 24);
    names.push("fail/0000".to_owned());
    let list_path = scratch.tests(&names);
    let args = |name: &str| with_command(worker_args(&server, build, name, &list_path));
    let report = Proc::spawn("report", &scratch, &report_args(&server, build));
    let procs: Vec<Proc> = ["w1", "w2", "w3"]
        .iter()
        .map(|name| Proc::spawn(name, &scratch, &args(name)))
        .collect();
    wait_until("w2 ran a test", LONG, || {
        scratch.runs().iter().filter(|(w, _)| w == "w2").count() >= 2
    });
    procs[1].signal(Signal::SIGKILL);
    let done = scratch.runs().len();
    wait_until("more tests ran", LONG, || scratch.runs().len() >= done + 4);
    procs[2].signal(Signal::SIGTERM);
    let [w1, _killed, w3] = <[Proc; 3]>::try_from(procs).ok().unwrap();
    let stopped = w3.wait(LONG);
    assert!(stopped.stderr.contains("w3"), "{}", stopped.both());
    for out in [w1.wait(LONG), report.wait(LONG)] {
        assert!(out.stdout.contains("25 tests"), "{}", out.both());
    }
    let timeline = read(&server, build);
    assert!(timeline.lost.is_empty(), "{:?}", timeline.lost);
    let ttl: i64 = server
        .conn()
        .pttl(BuildKeys::new("", build).timeline())
        .unwrap();
    assert!(ttl > 0, "the timeline has no TTL ({ttl})");

    let lanes: BTreeMap<&str, usize> = timeline
        .workers
        .iter()
        .enumerate()
        .map(|(n, lane)| (lane.worker.as_str(), n))
        .collect();
    assert_eq!(lanes.len(), 3, "{:?}", timeline.workers);
    assert!(timeline.workers[0].leader);
    assert_eq!(timeline.workers.iter().filter(|l| l.leader).count(), 1);
    let leave = |name: &str| timeline.workers[lanes[name]].leave;
    assert_eq!(leave("w1"), Some(Leave::Drained));
    assert_eq!(leave("w2"), Some(Leave::Silent));
    assert_eq!(leave("w3"), Some(Leave::Sigterm));

    let finals: BTreeMap<&str, usize> = timeline
        .attempts
        .iter()
        .filter(|a| {
            matches!(
                a.outcome,
                AttemptOutcome::Passed | AttemptOutcome::Failed | AttemptOutcome::Errored
            )
        })
        .fold(BTreeMap::new(), |mut counts, a| {
            *counts.entry(a.test.as_str()).or_insert(0) += 1;
            counts
        });
    assert_eq!(finals.len(), 25, "{finals:?}");
    assert!(finals.values().all(|n| *n == 1), "{finals:?}");
    let requeued = timeline
        .attempts
        .iter()
        .filter(|a| a.outcome == AttemptOutcome::Requeued)
        .count();
    assert!(requeued >= 1);
    assert!(timeline.attempts.iter().all(|a| a.test != "fail/0000"
        || matches!(
            a.outcome,
            AttemptOutcome::Requeued | AttemptOutcome::Failed | AttemptOutcome::Lost
        )));
    let lost: Vec<usize> = (0..timeline.attempts.len())
        .filter(|&n| timeline.attempts[n].outcome == AttemptOutcome::Lost)
        .collect();
    assert_eq!(
        timeline.attempts.len(),
        25 + requeued + lost.len(),
        "every attempt is a final one, a requeued one or a lost one"
    );
    assert!(
        lost.iter()
            .any(|&n| timeline.attempts[n].worker == lanes["w2"]),
        "{:?}",
        timeline.attempts
    );
    for &n in &lost {
        let cut = &timeline.attempts[n];
        assert!(
            cut.worker == lanes["w2"] || cut.worker == lanes["w3"],
            "{cut:?}"
        );
        assert_eq!(cut.end_ms, None);
        if cut.worker != lanes["w2"] {
            continue;
        }
        let next = timeline
            .events
            .iter()
            .find_map(|e| match &e.kind {
                EventKind::Takeover {
                    from,
                    attempt: Some(attempt),
                    next,
                    ..
                } if *attempt == n => {
                    assert_eq!(*from, lanes["w2"]);
                    Some(*next)
                }
                _ => None,
            })
            .unwrap_or_else(|| panic!("no take-over names {cut:?}"));
        let next = &timeline.attempts[next.unwrap()];
        assert_eq!(next.test, cut.test);
        assert_ne!(next.worker, lanes["w2"]);
    }
    // A lane's attempts never overlap: one worker runs one batch at a time.
    for lane in 0..3 {
        let mut ended: Vec<(u64, u64)> = timeline
            .attempts
            .iter()
            .filter(|a| a.worker == lane)
            .filter_map(|a| Some((a.start_ms, a.end_ms?)))
            .collect();
        ended.sort();
        for pair in ended.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "lane {lane}: {pair:?}");
        }
    }

    let on_leader = |wanted: &dyn Fn(&EventKind) -> bool| {
        timeline
            .events
            .iter()
            .filter(|e| e.worker == 0 && wanted(&e.kind))
            .count()
    };
    let won = |k: &EventKind| {
        matches!(
            k,
            EventKind::Election {
                result: ElectionResult::Won,
                ..
            }
        )
    };
    assert_eq!(on_leader(&won), 1);
    assert_eq!(
        timeline.events.iter().filter(|e| won(&e.kind)).count(),
        1,
        "one election won"
    );
    assert_eq!(
        on_leader(&|k| matches!(
            k,
            EventKind::Listing {
                end_ms: Some(_),
                count: Some(25)
            }
        )),
        1
    );
    assert_eq!(
        on_leader(&|k| matches!(
            k,
            EventKind::Staging {
                end_ms: Some(_),
                count: Some(25)
            }
        )),
        1
    );
    assert_eq!(on_leader(&|k| *k == EventKind::Commit { count: 25 }), 1);
    for lane in 0..3 {
        assert!(
            timeline
                .events
                .iter()
                .any(|e| e.worker == lane && e.kind == EventKind::Join)
        );
    }
    assert!(timeline.events.iter().any(|e| matches!(
        &e.kind,
        EventKind::Requeue { test, attempt: Some(_) } if test == "fail/0000"
    )));
    assert!(
        timeline
            .events
            .windows(2)
            .all(|pair| pair[0].at_ms <= pair[1].at_ms)
    );
}

/// Records that reached their bound stop there: the timeline says the rest was lost instead of
/// drawing an attempt whose end it never saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_past_their_bound_are_a_lost_part() {
    let server = RedisServer::start();
    let build = "timeline-capped";
    let queue = worker(&server, build, "w").await;
    queue.join(&list(&["a", "b"])).await.unwrap();
    let generation = ready_generation(&server, build).unwrap();
    let meta = BuildKeys::new("", build).generation(&generation).meta;
    let mut conn = server.client().get_connection().unwrap();
    let () = conn.hset(&meta, "timeline-cap", 10).unwrap();
    let first = tests(queue.reserve(Want::up_to(1)).await.unwrap());
    let reply = queue
        .ack(
            vec![ack(&first[0], ciq::outcome::Outcome::Passed)],
            Want::up_to(1),
        )
        .await
        .unwrap();
    let second = tests(reply.next);
    queue
        .ack(
            vec![ack(&second[0], ciq::outcome::Outcome::Passed)],
            Want::up_to(1),
        )
        .await
        .unwrap();
    let timeline = queue.timeline().await.unwrap();
    assert_eq!(timeline.lost.len(), 1, "{:?}", timeline.lost);
    assert!(
        timeline.lost[0].detail.contains("bound"),
        "{:?}",
        timeline.lost
    );
    assert!(timeline.lost[0].from_ms.is_some());
    assert!(timeline.attempts.is_empty(), "{:?}", timeline.attempts);
    assert!(
        timeline
            .events
            .iter()
            .any(|e| e.kind == EventKind::Commit { count: 2 })
    );
}
