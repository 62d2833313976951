//! What only the Redis queue has to show (the rules both queues share are in `conformance.rs`):
//! a late acknowledgement leaves the new holder's running entry in place, and a re-sent
//! request is answered, not applied twice; a late acknowledgement never frees a group's slot.

use std::time::Duration;

use ciq::groups::Groups;
use ciq::outcome::Outcome;
use ciq::queue::redis::RedisQueue;
use ciq::queue::redis::keys::BuildKeys;
use ciq::queue::{Queue, Recorded, Reservation, Want};
use ciq::timeline::Leave;
use redis::Commands;

use crate::election::{ack, list, tests, worker};
use ciq_testkit::RedisServer;

/// A worker whose test was taken over (its heartbeat lapsed) acknowledges late: the new
/// holder's entry stays, and no second outcome appears.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn late_acknowledgement_after_take_over_changes_nothing() {
    let server = RedisServer::start();
    let (a, b) = (
        worker(&server, "p1", "a").await,
        worker(&server, "p1", "b").await,
    );
    let joined = a.join(&list(&["t"])).await.unwrap();
    b.join(&list(&["t"])).await.unwrap();
    let held_by_a = tests(a.reserve(Want::up_to(1)).await.unwrap()).remove(0);
    // a goes silent; b waits, then takes the test over after the heartbeat timeout (1.5 s).
    let started = std::time::Instant::now();
    let held_by_b = loop {
        match b.reserve(Want::up_to(1)).await.unwrap() {
            Reservation::Tests(mut tests) => break tests.remove(0),
            Reservation::Empty => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("{other:?}"),
        }
    };
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "taken over before the heartbeat lapsed: {:?}",
        started.elapsed()
    );
    assert_eq!(held_by_b.id, held_by_a.id);
    assert_ne!(held_by_b.lease, held_by_a.lease);
    // a's heartbeat now learns it lost the test, and its late result is discarded.
    assert_eq!(
        a.heartbeat(std::slice::from_ref(&held_by_a)).await.unwrap(),
        std::slice::from_ref(&held_by_a.id)
    );
    let reply = a
        .ack(vec![ack(&held_by_a, Outcome::Failed)], Want::up_to(0))
        .await
        .unwrap();
    assert_eq!(reply.recorded[0].1, Recorded::Discarded);
    let running = BuildKeys::new("", "p1")
        .generation(&joined.generation)
        .running;
    let entry = format!("{}:t", held_by_b.lease);
    let still_running: Option<f64> = server.conn().zscore(&running, entry).unwrap();
    assert!(
        still_running.is_some(),
        "the new holder's entry was removed"
    );
    let reply = b
        .ack(vec![ack(&held_by_b, Outcome::Passed)], Want::up_to(1))
        .await
        .unwrap();
    assert_eq!(reply.recorded[0].1, Recorded::Final(Outcome::Passed));
    assert_eq!(reply.next, Reservation::Done);
    let summary = b.summary().await.unwrap();
    assert_eq!(summary.decided(), 1);
    assert_eq!(summary.count(Outcome::Passed), 1);
    assert_eq!(summary.taken_over, 1);
}

/// A request re-sent after its reply was lost gets the first reply back: no second lease, no
/// test handed out twice.
#[test]
fn resent_reserve_is_answered_not_applied_twice() {
    let server = RedisServer::start();
    let keys = BuildKeys::new("", "p4");
    let generation = keys.generation("g");
    let mut conn = server.conn();
    let _: () = conn.set(keys.state(), "ready:g").unwrap();
    let _: () = conn.rpush(&generation.queue, &["t1", "t2"]).unwrap();
    let _: () = conn
        .hset_multiple(
            &generation.meta,
            &[("heartbeat-timeout-ms", 1500), ("total", 3)],
        )
        .unwrap();
    let _: () = conn.zadd(&generation.running, "", "+inf").unwrap();
    let reserve = redis::Script::new(concat!(
        include_str!("../../src/queue/redis/lua/lib.lua"),
        include_str!("../../src/queue/redis/lua/per_test.lua"),
        include_str!("../../src/queue/redis/lua/handout.lua"),
        include_str!("../../src/queue/redis/lua/reserve.lua")
    ));
    let call = |conn: &mut redis::Connection, seq: u64| -> String {
        let mut invocation = reserve.prepare_invoke();
        for key in keys.per_test(&generation) {
            invocation.key(key);
        }
        invocation
            .arg("g")
            .arg("w")
            .arg("session")
            .arg(seq)
            .arg(60_000)
            .arg(1)
            .arg(1)
            .invoke(conn)
            .unwrap()
    };
    let first = call(&mut conn, 7);
    let resent = call(&mut conn, 7);
    assert_eq!(first, resent);
    assert!(first.contains("\"t1\""), "{first}");
    let queued: Vec<String> = conn.lrange(&generation.queue, 0, -1).unwrap();
    assert_eq!(queued, ["t2"], "the re-sent reserve took nothing more");
    let next = call(&mut conn, 8);
    assert!(next.contains("\"t2\""), "{next}");
    // Regression: a copy of request 7 held by a blackholed connection and delivered after
    // request 8 was applied again, handing out a test its worker never heard of.
    let _: () = conn.rpush(&generation.queue, &["t3"]).unwrap();
    let late = call(&mut conn, 7);
    assert_eq!(late, r#"{"status":"superseded"}"#);
    let queued: Vec<String> = conn.lrange(&generation.queue, 0, -1).unwrap();
    assert_eq!(queued, ["t3"], "the late copy took nothing");
}

/// `settings` with group `db` of one slot holding `t1` and `t2`.
fn grouped(mut settings: ciq::queue::redis::RedisSettings) -> ciq::queue::redis::RedisSettings {
    settings.scheduling.groups = Groups::new(&["db=1".to_owned()], None).unwrap();
    settings.scheduling.groups.members = [("t1", "db"), ("t2", "db")]
        .into_iter()
        .map(|(test, group)| (test.to_owned(), group.to_owned()))
        .collect();
    settings
}

/// A worker that releases its grouped test (SIGTERM) frees its slot at once, and releasing
/// again frees nothing more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_test_frees_its_group_slot_once() {
    let server = RedisServer::start();
    let settings = grouped(crate::election::settings(&server, "p6"));
    let connect = |name: &str| RedisQueue::connect(settings.clone(), name.to_owned());
    let (a, b) = (connect("a").await.unwrap(), connect("b").await.unwrap());
    let joined = a.join(&list(&["t1", "t2"])).await.unwrap();
    b.join(&list(&["t1", "t2"])).await.unwrap();
    let held_by_a = tests(a.reserve(Want::up_to(2)).await.unwrap());
    assert_eq!(
        held_by_a.len(),
        1,
        "a batch takes only the group's free slot"
    );
    assert_eq!(b.reserve(Want::up_to(1)).await.unwrap(), Reservation::Empty);
    a.release(&held_by_a, Leave::Sigterm, None).await.unwrap();
    a.release(&held_by_a, Leave::Sigterm, None).await.unwrap();
    let meta = BuildKeys::new("", "p6").generation(&joined.generation).meta;
    let held: String = server.conn().hget(&meta, "group-held:db").unwrap();
    assert_eq!(held, "0");
    let next = tests(b.reserve(Want::up_to(2)).await.unwrap());
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].id, held_by_a[0].id, "it kept its place");
}

/// A group's slot is fenced by the lease: the test of a silent worker is taken over with its
/// slot, and the silent worker's late result frees nothing, so the group's other test still
/// waits until the new holder's result frees the slot. Meanwhile an ungrouped test goes ahead.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_result_never_frees_a_group_slot_twice() {
    let server = RedisServer::start();
    let settings = grouped(crate::election::settings(&server, "p5"));
    let connect = |name: &str| RedisQueue::connect(settings.clone(), name.to_owned());
    let (a, b) = (connect("a").await.unwrap(), connect("b").await.unwrap());
    let joined = a.join(&list(&["t1", "t2", "u"])).await.unwrap();
    b.join(&list(&["t1", "t2", "u"])).await.unwrap();
    let held_by_a = tests(a.reserve(Want::up_to(1)).await.unwrap()).remove(0);
    assert_eq!(held_by_a.id.as_str(), "t1");
    // The group is full: b gets the ungrouped test, t2 keeps its place.
    let ungrouped = tests(b.reserve(Want::up_to(2)).await.unwrap());
    assert_eq!(ungrouped.len(), 1);
    assert_eq!(ungrouped[0].id.as_str(), "u");
    b.ack(vec![ack(&ungrouped[0], Outcome::Passed)], Want::up_to(0))
        .await
        .unwrap();
    // a goes silent; b takes t1 over with its slot once a's heartbeat lapsed.
    let held_by_b = loop {
        match b.reserve(Want::up_to(1)).await.unwrap() {
            Reservation::Tests(mut tests) => break tests.remove(0),
            Reservation::Empty => tokio::time::sleep(Duration::from_millis(50)).await,
            other => panic!("{other:?}"),
        }
    };
    assert_eq!(held_by_b.id.as_str(), "t1");
    let reply = a
        .ack(vec![ack(&held_by_a, Outcome::Passed)], Want::up_to(1))
        .await
        .unwrap();
    assert_eq!(reply.recorded[0].1, Recorded::Discarded);
    assert_eq!(reply.next, Reservation::Empty, "t2 ran beside t1");
    let meta = BuildKeys::new("", "p5").generation(&joined.generation).meta;
    let held: String = server.conn().hget(&meta, "group-held:db").unwrap();
    assert_eq!(held, "1");
    let reply = b
        .ack(vec![ack(&held_by_b, Outcome::Passed)], Want::up_to(1))
        .await
        .unwrap();
    let last = tests(reply.next).remove(0);
    assert_eq!(last.id.as_str(), "t2");
    let reply = b
        .ack(vec![ack(&last, Outcome::Passed)], Want::up_to(1))
        .await
        .unwrap();
    assert_eq!(reply.next, Reservation::Done);
    let held: String = server.conn().hget(&meta, "group-held:db").unwrap();
    assert_eq!(held, "0");
}
