//! The report's side of the queue: a [`Supervisor`] holds the report's one connection to its
//! build. [`Supervisor::supervise`] waits for a leader, then for the queue to drain, and reads
//! the build's summary; [`Supervisor::settle`] then waits, only as long as something still needs
//! it, for the workers that may still write (a list mismatch, their measured durations); the
//! rest reads what the report's outputs show (records, timeline, history, usual times).
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
use crate::quarantine::Quarantine;
use crate::queue::QueueError;
use crate::queue::error::{Abort, AbortKind};
use crate::queue::redis::connection::RedisConn;
use crate::queue::redis::dead_leaders::DeadLeaders;
use crate::queue::redis::election::{STATE_GONE_RESULTS_LEFT, write_abort};
use crate::queue::redis::estimates::Estimates;
use crate::queue::redis::history::{self, History};
use crate::queue::redis::job_retry::{Retrying, reopen_for_report};
use crate::queue::redis::keys::{BuildKeys, meta};
use crate::queue::redis::liveness::Liveness;
use crate::queue::redis::scripts::abort::Rule;
use crate::queue::redis::scripts::keep::{Keep, Keeping};
use crate::queue::redis::scripts::progress::ReadProgress;
use crate::queue::redis::scripts::{self, summarize};
use crate::queue::redis::state::BuildState;
use crate::queue::redis::timeline::read_timeline;
use crate::report::{HistoryMarks, Summary, TestRecord};
use crate::test_id::{TestId, grind_base};
use crate::timeline::Timeline;
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
    /// How long to keep reconnecting to an unreachable Redis.
    pub redis_timeout: Duration,
    /// How often to poll.
    pub poll_interval: Duration,
    /// The retry round the report follows (`--retry`): only the sessions of the round are its
    /// workers, and re-opened tests that none of them re-ran keep their earlier outcome.
    pub retry_round: Option<String>,
    /// The report expects a grind (`--grind`): a build that is not one is refused.
    pub grind: bool,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// Every test has its outcome.
    Drained,
    /// Every worker left or went silent with tests still to run.
    WorkersGone,
    /// The report timeout passed first.
    TimedOut,
    /// Every test has its outcome, and there were none: the build re-runs the failed tests of
    /// build `of` (`--retry-of`), which had none.
    NothingToRetry {
        /// The earlier build.
        of: String,
    },
    /// No job of the retry round re-ran the `tests` tests it re-opened (`came`: whether any job
    /// of the round came at all): they keep the outcome they had before the round.
    Kept {
        /// How many tests kept their earlier outcome.
        tests: u64,
        /// Whether a job of the round came (and left without re-running them).
        came: bool,
    },
}

/// The report's side of one build, over one connection opened once: every read the report
/// makes of the queue goes through it, so the report itself only composes and writes.
pub struct Supervisor {
    settings: ReportSettings,
    conn: RedisConn,
    keys: BuildKeys,
}

impl Supervisor {
    /// Connects to the build's Redis.
    pub async fn open(settings: ReportSettings) -> Result<Self, QueueError> {
        let conn = RedisConn::open(&settings.url, settings.redis_timeout).await?;
        let keys = BuildKeys::new(&settings.namespace, &settings.build);
        Ok(Self {
            settings,
            conn,
            keys,
        })
    }

    /// What the report follows (its build changes when a job retry finds it aborted).
    pub fn settings(&self) -> &ReportSettings {
        &self.settings
    }

    /// The report of a job retry re-opens the finished build's failed tests when it comes
    /// before the retried workers; a build aborted for everyone is retried as a build of its
    /// own, which the supervisor then follows. `None` when the report follows no retry round.
    pub async fn reopen_for_retry(&mut self) -> Result<Option<Retrying>, QueueError> {
        let Some(round) = self.settings.retry_round.clone() else {
            return Ok(None);
        };
        let reopened =
            reopen_for_report(&self.conn, &self.keys, &self.settings.build, &round).await?;
        if let Retrying::Aborted { fresh, .. } = &reopened {
            self.keys = BuildKeys::new(&self.settings.namespace, fresh);
            self.settings.build = fresh.clone();
            self.settings.retry_round = None;
        }
        Ok(Some(reopened))
    }

    /// Waits for the build to finish (or stall) and returns its summary.
    pub async fn supervise(
        &self,
        mut on_status: impl FnMut(&Status),
    ) -> Result<(Summary, Ending), QueueError> {
        match watch(&self.settings, &self.conn, &self.keys, &mut on_status).await {
            Err(QueueError::StateLost(reason)) => {
                Err(state_lost(&self.conn, &self.keys, reason).await)
            }
            watched => watched,
        }
    }

    /// Records the build in its namespace's flakiness history, then marks the failures of
    /// tests that were flaky in other recent builds and names the quarantined tests that
    /// stopped failing.
    pub async fn history(
        &self,
        summary: &Summary,
        quarantine: &Quarantine,
    ) -> Result<HistoryMarks, QueueError> {
        let build = &self.settings.build;
        let history = History::new(&self.conn, &self.settings.namespace);
        history.record(build, summary).await?;
        let builds = history.builds().await?;
        let all = history.all().await?;
        let failing = summary
            .failing
            .iter()
            .map(|listed| &listed.id)
            .filter(|id| !quarantine.contains(id));
        Ok(HistoryMarks {
            flaky_elsewhere: history::marks(&builds, &all, build, failing),
            ready_to_leave: history::quiet(&builds, &all, quarantine.ids()),
            window: history::QUIET_BUILDS,
        })
    }

    /// What the workers recorded as they joined, read once the live ones did (see
    /// [`Until::Joined`]): the verdict's last input. A report that timed out does not wait for
    /// workers still running, and reads nothing more.
    pub async fn joined(
        &self,
        ending: &Ending,
        waiting: impl FnMut(u64, Duration),
    ) -> Result<Measured, QueueError> {
        if *ending == Ending::TimedOut {
            return Ok(Measured::default());
        }
        self.settle(Until::Joined, false, waiting).await
    }

    /// How the build's leader ordered `generation`'s queue (`--order`, with its seed).
    pub async fn order(&self, generation: &str) -> Result<Option<String>, QueueError> {
        let keys = self.keys.generation(generation);
        self.conn
            .query(redis::cmd("HGET").arg(keys.meta).arg(meta::ORDER))
            .await
    }

    /// The build's timeline, as far as its workers recorded it (attempts in progress are
    /// [`crate::timeline::AttemptOutcome::Running`]).
    pub async fn timeline(&self) -> Result<Timeline, QueueError> {
        read_timeline(&self.conn, &self.keys).await
    }
}

/// Waits for the build to finish (or stall) and returns its summary, over a connection of its
/// own: for a caller that reads nothing else of the build.
pub async fn supervise(
    settings: &ReportSettings,
    on_status: impl FnMut(&Status),
) -> Result<(Summary, Ending), QueueError> {
    Supervisor::open(settings.clone())
        .await?
        .supervise(on_status)
        .await
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
    let mut liveness = Liveness::default();
    let ending = loop {
        let progress = ReadProgress {
            keys,
            generation: followed.as_deref(),
            round: settings.retry_round.as_deref(),
        };
        let asked = Instant::now();
        let seen = scripts::run(conn, &progress).await?;
        let took = asked.elapsed();
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
                if settings.grind && !is_grind(conn, keys, generation).await? {
                    return Err(QueueError::NotAGrind {
                        build: settings.build.clone(),
                    });
                }
                followed = Some(generation.clone());
                liveness = Liveness::default();
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
                    break match seen.nothing_to_retry {
                        Some(of) if total == 0 => Ending::NothingToRetry { of },
                        _ => Ending::Drained,
                    };
                }
                if liveness.gone(Instant::now(), took, &seen) {
                    break Ending::WorkersGone;
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
    let ending = match (&ending, &settings.retry_round) {
        (Ending::WorkersGone, Some(round)) => {
            match keep_earlier(conn, keys, &generation, round).await? {
                Some(tests) => Ending::Kept {
                    tests,
                    came: liveness.came(),
                },
                None => ending,
            }
        }
        _ => ending,
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

/// Gives the tests retry round `round` re-opened their earlier outcome back when none of them
/// was re-run; returns how many, or `None` when something of the round ran.
async fn keep_earlier(
    conn: &RedisConn,
    keys: &BuildKeys,
    generation: &str,
    round: &str,
) -> Result<Option<u64>, QueueError> {
    let keep = Keep {
        keys: &keys.per_test(&keys.generation(generation)),
        generation,
        round,
    };
    match scripts::run(conn, &keep).await? {
        Keeping::Kept { tests } => Ok(Some(tests)),
        Keeping::Ran | Keeping::Stale => Ok(None),
        Keeping::Unknown { why: test } => Err(QueueError::StateLost(format!(
            "re-opened test `{test}` has no earlier failure"
        ))),
    }
}

/// Whether `generation` holds a grind's copies (`<id>#grind-<k>`): its first queued test, or
/// else one with an outcome, says.
async fn is_grind(
    conn: &RedisConn,
    keys: &BuildKeys,
    generation: &str,
) -> Result<bool, QueueError> {
    let keys = keys.generation(generation);
    let queued: Vec<String> = conn
        .query(redis::cmd("LRANGE").arg(&keys.queue).arg(0).arg(0))
        .await?;
    let mut one = queued.into_iter().next();
    if one.is_none() {
        let (_, page): (u64, Vec<String>) = conn
            .query(
                redis::cmd("SSCAN")
                    .arg(&keys.processed)
                    .arg(0)
                    .arg("COUNT")
                    .arg(10),
            )
            .await?;
        one = page.into_iter().next();
    }
    // A build with no test in either (all running) cannot be told apart: it is not refused.
    Ok(one.is_none_or(|id| grind_base(&id).1.is_some()))
}

/// What the workers write after the summary: a list mismatch as they join, the durations they
/// measured and their runs much longer than usual as they leave (see [`settle`]).
#[derive(Debug, Default)]
pub struct Measured {
    /// Each test's last run in the build (when asked for).
    pub durations: Vec<(TestId, Duration)>,
    /// Runs much longer than the test's recent ones.
    pub slower: Vec<Slower>,
    /// The build's generation, once it was ready.
    pub generation: Option<String>,
    /// The build's list mismatches, read once its live workers joined: a worker that joined as
    /// the build ended (its listing slower than the build) may record one after the summary.
    pub mismatches: Vec<String>,
}

/// What the report waits for once every test has its outcome (or the workers are gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Until {
    /// Every live worker joined: compared its own list with the build's. One that finds
    /// another list records a mismatch, which makes the build red, so the verdict waits for it;
    /// a worker that joined and then died changes nothing, and is not waited for.
    Joined,
    /// Every live worker left, having written the durations it measured (the timing file's,
    /// the JUnit and JSON reports' and a grind's percentiles) and its runs much longer than
    /// usual.
    Left,
}

impl Supervisor {
    /// The heartbeat timeout `generation` was committed with (the leader's), in milliseconds:
    /// why a take-over came when it did.
    pub async fn heartbeat_timeout_ms(&self, generation: &str) -> Result<Option<u64>, QueueError> {
        let keys = self.keys.generation(generation);
        self.conn
            .query(
                redis::cmd("HGET")
                    .arg(&keys.meta)
                    .arg(meta::HEARTBEAT_TIMEOUT_MS),
            )
            .await
    }

    /// The usual duration in milliseconds of each of `ids` (tests `timeline` ran) that the
    /// namespace's timing store knows, as it was before the build started: what the HTML report
    /// holds the build's slowest tests to.
    pub async fn usual_ms(
        &self,
        ids: &[&str],
        timeline: &Timeline,
    ) -> Result<std::collections::HashMap<String, u64>, QueueError> {
        let ids: Vec<TestId> = ids.iter().filter_map(|id| TestId::new(*id).ok()).collect();
        let store = Estimates::new(&self.conn, &self.settings.namespace);
        let usual = store.usual(&ids, timeline.origin_ms / 1000).await?;
        Ok(ids
            .iter()
            .zip(usual)
            .filter_map(|(id, usual)| {
                Some((
                    id.as_str().to_owned(),
                    u64::try_from(usual?.as_millis()).unwrap_or(u64::MAX),
                ))
            })
            .collect())
    }

    /// Every test of `generation` that has an outcome, once, a page at a time to `visit`, so a
    /// million-test build is read in little memory (a 64-bit hash per test, to drop the repeats
    /// HSCAN may return while Redis resizes the hash).
    pub async fn each_recorded<E>(
        &self,
        generation: &str,
        mut visit: impl FnMut(Vec<TestRecord>) -> Result<(), E>,
    ) -> Result<Result<(), E>, QueueError> {
        const PAGE: usize = 1000;
        let conn = &self.conn;
        let build = &self.keys;
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

    /// What the build's workers wrote, once `until` holds for them: it waits while a live worker
    /// (heard from within the heartbeat timeout, and not left) does not meet it, at most one
    /// heartbeat timeout (a worker still running then is a stalled build, and what was written so
    /// far is what there is); `waiting` hears how many it waits for and for how long at most, once,
    /// when it must wait. Every test's duration is read only when `durations` is set: a big build
    /// has many.
    pub async fn settle(
        &self,
        until: Until,
        durations: bool,
        mut waiting: impl FnMut(u64, Duration),
    ) -> Result<Measured, QueueError> {
        let (conn, keys, settings) = (&self.conn, &self.keys, &self.settings);
        let started = Instant::now();
        let mut generation = None;
        let mut told = false;
        loop {
            let progress = ReadProgress {
                keys,
                generation: generation.as_deref(),
                round: settings.retry_round.as_deref(),
            };
            let seen = scripts::run(conn, &progress).await?;
            let BuildState::Ready { generation: ready } = seen.state else {
                return Ok(Measured::default());
            };
            if generation.as_ref() != Some(&ready) {
                generation = Some(ready);
                continue;
            }
            let pending = match until {
                Until::Joined => seen.joining,
                Until::Left => seen.alive,
            };
            let timeout = Duration::from_millis(seen.timeout_ms);
            if pending == 0 || started.elapsed() >= timeout {
                break;
            }
            if !std::mem::replace(&mut told, true) {
                waiting(pending, timeout);
            }
            sleep(settings.poll_interval).await;
        }
        let mismatches: Vec<String> = conn
            .query(redis::cmd("HVALS").arg(keys.mismatched()))
            .await?;
        let keys = keys.generation(generation.as_deref().unwrap_or_default());
        let slower: Vec<(String, String)> =
            conn.query(redis::cmd("HGETALL").arg(&keys.slower)).await?;
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
                page.into_iter().filter_map(|(id, ms)| {
                    Some((TestId::new(id).ok()?, Duration::from_millis(ms)))
                }),
            );
            if next == 0 {
                break;
            }
            cursor = next;
        }
        measured.durations.sort();
        Ok(measured)
    }
}
