//! The report's side of the queue: [`supervise`] waits for a leader, then for the queue to
//! drain, and reads the build's summary.
//!
//! The report may start before any worker, so an absent state is only a dead leader once a
//! leader has been seen. Once the build was ready, an absent or re-elected state means the
//! build's state was lost, which is an error, never a green build; so does an absent state
//! beside the build's results, which only a ready build records (a report started after the
//! loss). Every wait is bounded.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::time::Duration;

use tokio::time::{Instant, sleep};

use crate::outcome::Outcome;
use crate::queue::QueueError;
use crate::queue::error::{Abort, AbortKind};
use crate::queue::redis::connection::RedisConn;
use crate::queue::redis::dead_leaders::DeadLeaders;
use crate::queue::redis::election::{STATE_GONE_RESULTS_LEFT, write_abort};
use crate::queue::redis::keys::BuildKeys;
use crate::queue::redis::scripts::abort::Rule;
use crate::queue::redis::scripts::progress::Progress;
use crate::queue::redis::scripts::{self, summarize};
use crate::queue::redis::state::BuildState;
use crate::report::{Summary, TestRecord};
use crate::test_id::TestId;
use crate::timings::Slower;

/// TTL of an abort record the report writes: it does not know the workers' --redis-ttl, so it
/// uses that flag's default.
const ABORT_TTL: Duration = Duration::from_secs(8 * 3600);

/// What the report needs to know to wait.
#[derive(Debug, Clone)]
pub struct ReportSettings {
    /// `redis://` or `rediss://` URL.
    pub url: String,
    /// Optional namespace.
    pub namespace: String,
    /// The build id.
    pub build: String,
    /// How long to wait for a (new) leader to appear.
    pub queue_init_timeout: Duration,
    /// How long to wait for the queue to drain, from the report's start.
    pub report_timeout: Duration,
    /// How many dead leaders the report accepts before saying no leader was elected.
    pub max_election_attempts: u32,
    /// How long to keep retrying an unreachable Redis.
    pub redis_timeout: Duration,
    /// How often to poll.
    pub poll_interval: Duration,
}

/// What the report is waiting for, for its progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// No leader yet.
    WaitingForLeader,
    /// A leader fills the queue.
    Filling {
        /// The leader's worker id.
        leader: String,
    },
    /// The queue is ready and being worked.
    Running {
        /// Tests listed.
        total: u64,
        /// Tests with an outcome.
        processed: u64,
        /// Tests being run.
        running: u64,
        /// Workers heard from recently.
        alive: u64,
    },
}

/// Why the report stopped waiting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Every test has its outcome.
    Drained,
    /// Every worker left or went silent with tests still to run.
    WorkersGone,
    /// The report timeout passed first.
    TimedOut,
}

/// Waits for the build to finish (or stall) and returns its summary.
pub async fn supervise(
    settings: &ReportSettings,
    mut on_status: impl FnMut(&Status),
) -> Result<(Summary, Ending), QueueError> {
    let conn = RedisConn::open(&settings.url, settings.redis_timeout).await?;
    let keys = BuildKeys::new(&settings.namespace, &settings.build);
    match watch(settings, &conn, &keys, &mut on_status).await {
        Err(QueueError::StateLost(reason)) => Err(state_lost(&conn, &keys, reason).await),
        watched => watched,
    }
}

/// Records the build as lost for everyone (best effort), as a worker that noticed would: a
/// worker joining later must not start the build again in a Redis that forgot it.
async fn state_lost(conn: &RedisConn, keys: &BuildKeys, reason: String) -> QueueError {
    let err = QueueError::StateLost(reason);
    let record = Abort {
        kind: AbortKind::StateLost,
        worker: "report".to_owned(),
        message: err.to_string(),
    };
    let _ = write_abort(conn, keys, ABORT_TTL, &record, Rule::Always).await;
    err
}

async fn watch(
    settings: &ReportSettings,
    conn: &RedisConn,
    keys: &BuildKeys,
    on_status: &mut impl FnMut(&Status),
) -> Result<(Summary, Ending), QueueError> {
    let started = Instant::now();
    let mut followed: Option<String> = None;
    let mut dead_leaders = DeadLeaders::default();
    let mut leaderless_since = started;
    let mut ready_since: Option<Instant> = None;
    // When the report first found every worker silent, by its own clock, while Redis answered.
    let mut silent_since: Option<Instant> = None;
    let ending = loop {
        let progress = Progress {
            keys,
            generation: followed.as_deref(),
        };
        let seen = scripts::run(conn, &progress).await?;
        if let Some(abort) = seen.abort {
            return Err(QueueError::Aborted(abort));
        }
        match (&seen.state, &followed) {
            (BuildState::Ready { generation }, _) if followed.as_ref() != Some(generation) => {
                // The generation followed so far must still exist: a replaced one does, but
                // after Redis lost the build a fresh election is a new build, not this one.
                if followed.is_some() && seen.total.is_none() {
                    return Err(QueueError::StateLost(
                        "a new election started after its state was gone".to_owned(),
                    ));
                }
                followed = Some(generation.clone());
                ready_since = None;
                silent_since = None;
                continue;
            }
            (BuildState::Ready { .. }, _) => {
                let Some(total) = seen.total else {
                    return Err(QueueError::StateLost(
                        "its generation's metadata is gone".to_owned(),
                    ));
                };
                on_status(&Status::Running {
                    total,
                    processed: seen.processed,
                    running: seen.running,
                    alive: seen.alive,
                });
                if seen.queued == 0 && seen.running == 0 {
                    break Ending::Drained;
                }
                // Workers may take a while after the commit to be heard (a build, a framework's
                // start): gone means silent for a whole heartbeat timeout since it was ready.
                // And silent as the report itself watched: right after Redis was unreachable
                // (a restart, a cluster's failover) every worker's last heartbeat is old until
                // they reconnect, which is not their death.
                let timeout = Duration::from_millis(seen.timeout_ms);
                let ready_for = ready_since.get_or_insert_with(Instant::now).elapsed();
                if seen.registered > 0 && seen.alive == 0 {
                    let silent_for = silent_since.get_or_insert_with(Instant::now).elapsed();
                    if ready_for >= timeout && silent_for >= timeout {
                        break Ending::WorkersGone;
                    }
                } else {
                    silent_since = None;
                }
            }
            (_, Some(_)) => {
                return Err(QueueError::StateLost("its state key is gone".to_owned()));
            }
            (BuildState::Setup { generation, leader }, None) => {
                dead_leaders.saw_setup(generation);
                on_status(&Status::Filling {
                    leader: leader.clone(),
                });
            }
            (BuildState::Absent, None) if seen.existed => {
                return Err(QueueError::StateLost(STATE_GONE_RESULTS_LEFT.to_owned()));
            }
            (BuildState::Absent, None) => {
                if dead_leaders.watching() {
                    dead_leaders.lapsed();
                    leaderless_since = Instant::now();
                }
                if leaderless_since.elapsed() >= settings.queue_init_timeout {
                    return Err(QueueError::NoLeader {
                        waited: leaderless_since.elapsed(),
                    });
                }
                on_status(&Status::WaitingForLeader);
            }
        }
        if let Some(err) = dead_leaders.over(settings.max_election_attempts) {
            return Err(err);
        }
        if started.elapsed() >= settings.report_timeout {
            if followed.is_none() {
                return Err(QueueError::NoLeader {
                    waited: started.elapsed(),
                });
            }
            break Ending::TimedOut;
        }
        sleep(settings.poll_interval).await;
    };
    let Some(generation) = followed else {
        return Err(QueueError::StateLost("it was never seen ready".to_owned()));
    };
    let summary = scripts::run(
        conn,
        &summarize::Summarize {
            keys,
            generation: &generation,
        },
    )
    .await?;
    Ok((summary, ending))
}

/// What the workers write as they leave: the durations they measured and their runs much
/// longer than usual.
#[derive(Debug, Default)]
pub struct Measured {
    /// Each test's last run in the build (when asked for).
    pub durations: Vec<(TestId, Duration)>,
    /// Runs much longer than the test's recent ones.
    pub slower: Vec<Slower>,
    /// The build's generation, once it was ready.
    pub generation: Option<String>,
    /// The build's list mismatches, read once its workers left: a worker that joined as the
    /// build ended (its listing slower than the build) may record one after the summary.
    pub mismatches: Vec<String>,
}

/// Every test of `generation` that has an outcome, once, a page at a time to `visit`, so a
/// million-test build is read in little memory (a 64-bit hash per test, to drop the repeats
/// HSCAN may return while Redis resizes the hash).
pub async fn each_recorded<E>(
    settings: &ReportSettings,
    generation: &str,
    mut visit: impl FnMut(Vec<TestRecord>) -> Result<(), E>,
) -> Result<Result<(), E>, QueueError> {
    const PAGE: usize = 1000;
    let conn = RedisConn::open(&settings.url, settings.redis_timeout).await?;
    let build = BuildKeys::new(&settings.namespace, &settings.build);
    let keys = build.generation(generation);
    let mut seen = HashSet::new();
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<(String, String)>) = conn
            .query(
                redis::cmd("HSCAN")
                    .arg(build.results())
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(PAGE),
            )
            .await?;
        let page: Vec<(String, String)> = page
            .into_iter()
            .filter(|(id, _)| {
                let mut hasher = DefaultHasher::new();
                id.hash(&mut hasher);
                seen.insert(hasher.finish())
            })
            .collect();
        if !page.is_empty() {
            let ids: Vec<&str> = page.iter().map(|(id, _)| id.as_str()).collect();
            let mut pipe = redis::pipe();
            pipe.cmd("HMGET").arg(&keys.durations).arg(&ids);
            pipe.cmd("HMGET").arg(build.failures()).arg(&ids);
            pipe.cmd("HMGET").arg(&keys.requeues).arg(&ids);
            type Columns = (Vec<Option<u64>>, Vec<Option<String>>, Vec<Option<u32>>);
            let (durations, failures, requeues): Columns = conn.pipeline(&pipe).await?;
            let mut records = Vec::with_capacity(page.len());
            for (at, (id, outcome)) in page.into_iter().enumerate() {
                let outcome = outcome.parse::<Outcome>().map_err(|err| {
                    QueueError::Protocol(format!("test `{id}` has an unknown outcome: {err}"))
                })?;
                records.push(TestRecord {
                    id,
                    outcome,
                    duration: durations
                        .get(at)
                        .copied()
                        .flatten()
                        .map(Duration::from_millis),
                    failure: failures
                        .get(at)
                        .and_then(Option::as_deref)
                        .and_then(|json| serde_json::from_str(json).ok()),
                    requeues: requeues.get(at).copied().flatten().unwrap_or(0),
                });
            }
            if let Err(err) = visit(records) {
                return Ok(Err(err));
            }
        }
        if next == 0 {
            return Ok(Ok(()));
        }
        cursor = next;
    }
}

/// What the build's workers measured, once they left: it first waits until no worker of the
/// build is alive, at most one heartbeat timeout (a worker still running then is a stalled
/// build, and what was written so far is what there is). Every test's duration is read only
/// when `durations` is set: a big build has many.
pub async fn measured(settings: &ReportSettings, durations: bool) -> Result<Measured, QueueError> {
    let conn = RedisConn::open(&settings.url, settings.redis_timeout).await?;
    let keys = BuildKeys::new(&settings.namespace, &settings.build);
    let started = Instant::now();
    let mut generation = None;
    loop {
        let progress = Progress {
            keys: &keys,
            generation: generation.as_deref(),
        };
        let seen = scripts::run(&conn, &progress).await?;
        let BuildState::Ready { generation: ready } = seen.state else {
            return Ok(Measured::default());
        };
        if generation.as_ref() != Some(&ready) {
            generation = Some(ready);
            continue;
        }
        if seen.alive == 0 || started.elapsed() >= Duration::from_millis(seen.timeout_ms) {
            break;
        }
        sleep(settings.poll_interval).await;
    }
    let mismatches: Vec<String> = conn
        .query(redis::cmd("HVALS").arg(keys.mismatched()))
        .await?;
    let keys = keys.generation(generation.as_deref().unwrap_or_default());
    let slower: Vec<(String, String)> = conn.query(redis::cmd("HGETALL").arg(&keys.slower)).await?;
    let mut measured = Measured {
        mismatches,
        generation: generation.clone(),
        durations: Vec::new(),
        slower: slower
            .into_iter()
            .filter_map(|(id, times)| {
                let (took, usual) = times.split_once(':')?;
                Some(Slower {
                    id: TestId::new(id).ok()?,
                    took: Duration::from_millis(took.parse().ok()?),
                    usual: Duration::from_millis(usual.parse().ok()?),
                })
            })
            .collect(),
    };
    if !durations {
        return Ok(measured);
    }
    let mut cursor = 0u64;
    loop {
        let (next, page): (u64, Vec<(String, u64)>) = conn
            .query(
                redis::cmd("HSCAN")
                    .arg(&keys.durations)
                    .arg(cursor)
                    .arg("COUNT")
                    .arg(1000),
            )
            .await?;
        measured.durations.extend(
            page.into_iter()
                .filter_map(|(id, ms)| Some((TestId::new(id).ok()?, Duration::from_millis(ms)))),
        );
        if next == 0 {
            break;
        }
        cursor = next;
    }
    measured.durations.sort();
    Ok(measured)
}
