//! Where a running build stands, for `ciq status`: [`Watcher::read`] reads the build once
//! (STATUS, a read-only script that does not grow with the suite) and says its phase, each
//! worker and what it holds since when against its usual time, the counts, the failures so far,
//! and an estimate of the time left from the timing history the leader ordered the queue by.
//!
//! Nothing here writes to Redis: watching a build never changes it.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::queue::QueueError;
use crate::queue::redis::connection::RedisConn;
use crate::queue::redis::election::STATE_GONE_RESULTS_LEFT;
use crate::queue::redis::keys::{BuildKeys, workers};
use crate::queue::redis::scripts::status::{Read, ReadStatus};
use crate::queue::redis::scripts::{self, summarize::Summarize};
use crate::queue::redis::state::BuildState;
use crate::report::{Summary, Verdict};

/// Failing tests named by a status.
pub const FAILING_NAMED: usize = 20;
/// Running entries read by a status: every worker's batch in builds of hundreds of workers.
const HELD_READ: usize = 5000;
/// How long a build is watched before its pace estimates the time left, in ms.
const PACE_AFTER_MS: u64 = 5000;
/// Ids checked per command when the estimates' tests are looked up among the processed ones.
const CHUNK: usize = 1000;

/// Which build to read.
#[derive(Debug, Clone)]
pub struct StatusSettings {
    /// `redis://` or `rediss://` URL.
    pub url: String,
    /// Optional namespace.
    pub namespace: String,
    /// The build id.
    pub build: String,
    /// How long to keep reconnecting to an unreachable Redis.
    pub redis_timeout: Duration,
}

/// Where the build is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Phase {
    /// Redis holds nothing of the build: not started, or expired.
    Absent,
    /// Workers announced themselves; no leader holds the election yet.
    Electing,
    /// A leader lists the tests and fills the queue.
    Filling {
        /// The leader's worker id.
        leader: String,
    },
    /// The queue is being worked.
    Running,
    /// Nothing is queued or running: every test has its outcome.
    Finished {
        /// The verdict, as the report gives it without a quarantine file.
        verdict: Verdict,
    },
}

/// What a worker session is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// It holds tests and was heard from within the heartbeat timeout.
    Running,
    /// It holds nothing and was heard from within the heartbeat timeout.
    Idle,
    /// Not heard from within the heartbeat timeout: its tests go to others.
    Silent,
    /// It said it left.
    Left,
}

/// A test a worker holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Held {
    /// The test id.
    pub id: String,
    /// Its estimate from the timing history; `None` without one.
    pub usual: Option<Duration>,
}

/// One worker session (process) of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerStatus {
    /// The worker id.
    pub worker: String,
    /// The session: two processes given one worker id are two sessions.
    pub session: String,
    /// What it does.
    pub activity: Activity,
    /// How long ago it was last heard from (or left).
    pub seen_ago: Duration,
    /// The tests it holds (its batch), in the order they were handed out.
    pub tests: Vec<Held>,
    /// How long it has held them: since its batch was handed out.
    pub held_for: Option<Duration>,
    /// Their estimates summed, when every one has one (the timing history's default counts).
    pub usual: Option<Duration>,
}

/// Where a build stands, read at one instant of Redis's clock.
#[derive(Debug, Clone)]
pub struct BuildStatus {
    /// Its phase.
    pub phase: Phase,
    /// Tests listed (0 before the commit).
    pub total: u64,
    /// Tests with an outcome.
    pub done: u64,
    /// Tests waiting in the queue.
    pub queued: u64,
    /// Tests being run.
    pub running: u64,
    /// Final outcomes so far: `passed`, `failed`, `errored`, `flaky`, `skipped`.
    pub counts: BTreeMap<&'static str, u64>,
    /// Requeues spent.
    pub requeued: u64,
    /// Tests taken over from a worker whose heartbeat lapsed.
    pub taken_over: u64,
    /// Every worker session, by worker id.
    pub workers: Vec<WorkerStatus>,
    /// The failed and errored tests so far, at most [`FAILING_NAMED`], with their outcome.
    pub failing: Vec<(String, String)>,
    /// The time left, and what it is estimated from; `None` without a live worker, or without
    /// history before the build's own pace shows.
    pub eta: Option<Eta>,
}

/// An estimate of the time left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Eta {
    /// The time left.
    pub left: Duration,
    /// What it is estimated from.
    pub basis: Basis,
}

/// What the time left is estimated from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Basis {
    /// The timing history the leader ordered the queue by.
    History,
    /// The build's own pace while it was watched (tests done per second), without history.
    Pace,
}

impl BuildStatus {
    /// Failed and errored tests so far.
    pub fn failed(&self) -> u64 {
        self.counts.get("failed").copied().unwrap_or(0)
            + self.counts.get("errored").copied().unwrap_or(0)
    }

    /// Tests without an outcome.
    pub fn left(&self) -> u64 {
        self.queued + self.running
    }

    /// Sessions heard from within the heartbeat timeout.
    pub fn live(&self) -> usize {
        self.workers
            .iter()
            .filter(|w| matches!(w.activity, Activity::Running | Activity::Idle))
            .count()
    }
}

/// Reads one build's status, poll after poll: it keeps what does not change within a
/// generation (the timing history's estimates) and which of those tests are still to run.
pub struct Watcher {
    conn: RedisConn,
    keys: BuildKeys,
    generation: Option<String>,
    history: Option<History>,
    /// The first poll of the generation that saw it running: Redis's time and tests done.
    first: Option<(u64, u64)>,
}

/// The estimates the leader ordered the generation by: its longest tests' and the default.
struct History {
    default: Duration,
    /// The tests with an estimate not yet seen processed, and their estimates.
    pending: HashMap<String, Duration>,
}

impl Watcher {
    /// Connects to the build's Redis.
    pub async fn open(settings: &StatusSettings) -> Result<Self, QueueError> {
        Ok(Self {
            conn: RedisConn::open(&settings.url, settings.redis_timeout).await?,
            keys: BuildKeys::new(&settings.namespace, &settings.build),
            generation: None,
            history: None,
            first: None,
        })
    }

    /// Where the build stands now. An aborted build, or one whose state Redis lost, is an error,
    /// as for the report.
    pub async fn read(&mut self) -> Result<BuildStatus, QueueError> {
        let read = loop {
            let read = scripts::run(
                &self.conn,
                &ReadStatus {
                    keys: &self.keys,
                    generation: self.generation.as_deref(),
                    failing: FAILING_NAMED,
                    held: HELD_READ,
                },
            )
            .await?;
            match &read.state {
                BuildState::Ready { generation }
                    if self.generation.as_ref() != Some(generation) =>
                {
                    self.generation = Some(generation.clone());
                    self.history = None;
                    self.first = None;
                }
                _ => break read,
            }
        };
        if let Some(abort) = read.abort.clone() {
            return Err(QueueError::Aborted(abort));
        }
        let phase = match &read.state {
            BuildState::Ready { generation } => {
                if read.total.is_none() {
                    return Err(QueueError::StateLost(
                        "its generation's metadata is gone".to_owned(),
                    ));
                }
                if read.queued == 0 && read.running == 0 {
                    let summary = self.summary(generation).await?;
                    Phase::Finished {
                        verdict: verdict(&summary),
                    }
                } else {
                    Phase::Running
                }
            }
            BuildState::Setup { leader, .. } => Phase::Filling {
                leader: leader.clone(),
            },
            BuildState::Absent if read.existed => {
                return Err(QueueError::StateLost(STATE_GONE_RESULTS_LEFT.to_owned()));
            }
            BuildState::Absent if read.workers.is_empty() => Phase::Absent,
            BuildState::Absent => Phase::Electing,
        };
        let workers = workers_of(&read);
        let eta = match phase {
            Phase::Running => match self.eta(&read, &workers).await? {
                Some(left) => Some(Eta {
                    left,
                    basis: Basis::History,
                }),
                None => self.pace(&read, &workers),
            },
            _ => None,
        };
        let mut counts = BTreeMap::new();
        let mut counted = 0;
        for name in ["failed", "errored", "flaky", "skipped"] {
            let n = read.counts.get(name).copied().unwrap_or(0);
            counted += n;
            counts.insert(name, n);
        }
        counts.insert("passed", read.processed.saturating_sub(counted));
        Ok(BuildStatus {
            phase,
            total: read.total.unwrap_or(0),
            done: read.processed,
            queued: read.queued,
            running: read.running,
            counts,
            requeued: read.requeued,
            taken_over: read.taken_over,
            workers,
            failing: read.failing,
            eta,
        })
    }

    /// The finished generation's summary, for its verdict: the report's own reading.
    async fn summary(&self, generation: &str) -> Result<Summary, QueueError> {
        scripts::run(
            &self.conn,
            &Summarize {
                keys: &self.keys,
                generation,
            },
        )
        .await
    }

    /// The time left: the estimated time of what is queued and of what is left of each running
    /// test, shared by the live workers, and at least what is left of the longest running
    /// test. A test without an estimate of its own counts as the history's default. `None`
    /// when the generation has no history, or no worker is live.
    async fn eta(
        &mut self,
        read: &Read,
        workers: &[WorkerStatus],
    ) -> Result<Option<Duration>, QueueError> {
        let Ok(default) = u64::try_from(read.default_ms) else {
            return Ok(None);
        };
        let live = workers
            .iter()
            .filter(|w| matches!(w.activity, Activity::Running | Activity::Idle))
            .count();
        if live == 0 {
            return Ok(None);
        }
        self.load_history(Duration::from_millis(default)).await?;
        let Some(history) = self.history.as_mut() else {
            return Ok(None);
        };
        let processed = self
            .keys
            .generation(self.generation.as_deref().unwrap_or(""))
            .processed;
        let pending: Vec<String> = history.pending.keys().cloned().collect();
        for chunks in pending.chunks(CHUNK * 10) {
            let mut pipe = redis::pipe();
            for chunk in chunks.chunks(CHUNK) {
                pipe.cmd("SMISMEMBER").arg(&processed).arg(chunk);
            }
            let member: Vec<Vec<i64>> = self.conn.pipeline(&pipe).await?;
            for (id, member) in chunks.iter().zip(member.iter().flatten()) {
                if *member == 1 {
                    history.pending.remove(id);
                }
            }
        }
        Ok(Some(time_left(read, history, live)))
    }

    /// Without history, the time left at the pace the build kept since this watcher first saw
    /// it running (at least 5 s and one test ago): the tests left at that many per second.
    fn pace(&mut self, read: &Read, workers: &[WorkerStatus]) -> Option<Eta> {
        let first = *self.first.get_or_insert((read.now_ms, read.processed));
        let live = workers
            .iter()
            .any(|w| matches!(w.activity, Activity::Running | Activity::Idle));
        live.then(|| at_pace(first, read)).flatten()
    }

    /// Reads the generation's estimates once (a few thousand at most).
    async fn load_history(&mut self, default: Duration) -> Result<(), QueueError> {
        if self.history.is_some() {
            return Ok(());
        }
        let key = self
            .keys
            .generation(self.generation.as_deref().unwrap_or(""))
            .estimates;
        let all: HashMap<String, u64> = self.conn.query(redis::cmd("HGETALL").arg(key)).await?;
        let pending = all
            .into_iter()
            .filter(|(id, _)| !id.is_empty())
            .map(|(id, ms)| (id, Duration::from_millis(ms)))
            .collect();
        self.history = Some(History { default, pending });
        Ok(())
    }
}

/// The time left (see [`Watcher::eta`]) of what `read` saw, with `history`'s estimates of the
/// tests not yet processed, shared by `live` workers.
fn time_left(read: &Read, history: &History, live: usize) -> Duration {
    let ran: HashMap<&str, Duration> = read
        .held
        .iter()
        .filter_map(|(entry, _, _)| {
            let (lease, test) = entry.split_once(':')?;
            let since = read.now_ms.saturating_sub(handed_out(lease)?);
            Some((test, Duration::from_millis(since)))
        })
        .collect();
    let running: std::collections::HashSet<&str> = read
        .held
        .iter()
        .filter_map(|(entry, _, _)| Some(entry.split_once(':')?.1))
        .collect();
    let (mut known, mut left) = (0u64, Duration::ZERO);
    for (id, estimate) in &history.pending {
        if !running.contains(id.as_str()) {
            known += 1;
            left += *estimate;
        }
    }
    let unknown = read.queued.saturating_sub(known);
    left += history.default * u32::try_from(unknown).unwrap_or(u32::MAX);
    let mut longest = Duration::ZERO;
    for (entry, _, estimate) in &read.held {
        let usual = u64::try_from(*estimate).map_or(history.default, Duration::from_millis);
        let test = entry.split_once(':').map_or("", |(_, test)| test);
        let rest = usual.saturating_sub(ran.get(test).copied().unwrap_or_default());
        left += rest;
        longest = longest.max(rest);
    }
    (left / u32::try_from(live.max(1)).unwrap_or(u32::MAX)).max(longest)
}

/// The time left of what `read` saw at the pace kept since `first` (Redis's time and tests
/// done then), once it shows: [`PACE_AFTER_MS`] and a test later.
fn at_pace((since, done): (u64, u64), read: &Read) -> Option<Eta> {
    let watched = read.now_ms.saturating_sub(since);
    let finished = read.processed.saturating_sub(done);
    if watched < PACE_AFTER_MS || finished == 0 {
        return None;
    }
    let left = (read.queued + read.running).saturating_mul(watched) / finished;
    Some(Eta {
        left: Duration::from_millis(left),
        basis: Basis::Pace,
    })
}

/// The verdict of a finished build's summary: a foreign list, then failures, then tests left.
fn verdict(summary: &Summary) -> Verdict {
    Verdict::of(
        !summary.mismatches.is_empty(),
        summary.failed_count() > 0,
        summary.missing() > 0,
    )
}

/// When a lease was handed out, in server ms: its last part (`<session>.<request>.<n>.<ms>`).
fn handed_out(lease: &str) -> Option<u64> {
    let mut parts = lease.split('.');
    let ms = parts.nth(3)?;
    ms.parse().ok()
}

/// Each worker session of the workers hash, with what it holds: a running entry's lease starts
/// with the first 12 characters of its holder's session.
fn workers_of(read: &Read) -> Vec<WorkerStatus> {
    let mut out: Vec<WorkerStatus> = Vec::new();
    for (session, value) in &read.workers {
        let (left, rest) = match value.strip_prefix(workers::LEFT) {
            Some(rest) => (true, rest),
            None => (false, value.as_str()),
        };
        let Some((at, worker)) = rest.split_once(':') else {
            continue;
        };
        let at: u64 = at.parse().unwrap_or(0);
        let seen_ago = Duration::from_millis(read.now_ms.saturating_sub(at));
        let prefix: String = session.chars().take(12).collect();
        let mut tests = Vec::new();
        let mut since: Option<u64> = None;
        let mut usual = Some(Duration::ZERO);
        for (entry, _, estimate) in &read.held {
            let Some((lease, test)) = entry.split_once(':') else {
                continue;
            };
            if lease.split('.').next() != Some(prefix.as_str()) {
                continue;
            }
            let own = u64::try_from(*estimate).ok().map(Duration::from_millis);
            let counted = own.or_else(|| {
                u64::try_from(read.default_ms)
                    .ok()
                    .map(Duration::from_millis)
            });
            usual = usual.zip(counted).map(|(sum, one)| sum + one);
            tests.push(Held {
                id: test.to_owned(),
                usual: own,
            });
            if let Some(ms) = handed_out(lease) {
                since = Some(since.map_or(ms, |s| s.min(ms)));
            }
        }
        let timeout = Duration::from_millis(read.timeout_ms);
        let activity = if left {
            Activity::Left
        } else if read.timeout_ms > 0 && seen_ago >= timeout {
            Activity::Silent
        } else if tests.is_empty() {
            Activity::Idle
        } else {
            Activity::Running
        };
        out.push(WorkerStatus {
            worker: worker.to_owned(),
            session: session.clone(),
            activity,
            seen_ago,
            held_for: since.map(|ms| Duration::from_millis(read.now_ms.saturating_sub(ms))),
            usual: usual.filter(|_| !tests.is_empty()),
            tests,
        });
    }
    out.sort_by(|a, b| (&a.worker, &a.session).cmp(&(&b.worker, &b.session)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const S1: &str = "aaaaaaaaaaaa0000000000000000000a";
    const S2: &str = "bbbbbbbbbbbb0000000000000000000b";

    /// At 100 s on Redis's clock, with a 10 s heartbeat timeout: w1 holds two tests handed out
    /// at 94 s, w2 nothing, w3 went silent, w4 left.
    fn read() -> Read {
        Read {
            now_ms: 100_000,
            state: BuildState::Ready {
                generation: "g".to_owned(),
            },
            abort: None,
            total: Some(10),
            timeout_ms: 10_000,
            requeued: 0,
            taken_over: 0,
            counts: BTreeMap::new(),
            queued: 5,
            processed: 3,
            running: 2,
            workers: vec![
                (S1.to_owned(), "99000:w1".to_owned()),
                (S2.to_owned(), "99500:w2".to_owned()),
                ("c".repeat(32), "80000:w3".to_owned()),
                ("d".repeat(32), "left:90000:w4".to_owned()),
            ],
            held: vec![
                ("aaaaaaaaaaaa.7.1.94000:t/long".to_owned(), 99_000, 8000),
                ("aaaaaaaaaaaa.7.2.94000:t/new".to_owned(), 99_000, -1),
            ],
            default_ms: 1000,
            failing: Vec::new(),
            existed: false,
        }
    }

    #[test]
    fn each_session_holds_its_leases_since_their_hand_out() {
        let workers = workers_of(&read());
        let by = |name: &str| workers.iter().find(|w| w.worker == name).unwrap();
        let w1 = by("w1");
        assert_eq!(w1.activity, Activity::Running);
        assert_eq!(w1.held_for, Some(Duration::from_secs(6)));
        assert_eq!(
            w1.tests.iter().map(|t| t.id.as_str()).collect::<Vec<_>>(),
            ["t/long", "t/new"]
        );
        assert_eq!(w1.tests[1].usual, None, "no estimate of its own");
        assert_eq!(
            w1.usual,
            Some(Duration::from_secs(9)),
            "8 s and the default"
        );
        assert_eq!(by("w2").activity, Activity::Idle);
        assert_eq!(by("w3").activity, Activity::Silent);
        assert_eq!(by("w3").seen_ago, Duration::from_secs(20));
        assert_eq!(by("w4").activity, Activity::Left);
    }

    #[test]
    fn without_history_the_pace_estimates_once_it_shows() {
        // 7 left; 3 tests done in the 20 s since the watch began (at 80 s, with none done).
        assert_eq!(
            at_pace((80_000, 0), &read()),
            Some(Eta {
                left: Duration::from_millis(7 * 20_000 / 3),
                basis: Basis::Pace,
            })
        );
        assert_eq!(at_pace((97_000, 0), &read()), None, "watched 3 s only");
        assert_eq!(at_pace((80_000, 3), &read()), None, "nothing done since");
    }

    #[test]
    fn a_lease_of_an_older_ciq_has_no_hand_out_time() {
        assert_eq!(handed_out("aaaaaaaaaaaa.7.1.94000"), Some(94_000));
        assert_eq!(handed_out("aaaaaaaaaaaa.7.1"), None);
    }

    #[test]
    fn the_time_left_is_what_is_left_shared_by_the_live_workers() {
        let history = History {
            default: Duration::from_secs(1),
            pending: [
                ("t/long".to_owned(), Duration::from_secs(8)),
                ("q/known".to_owned(), Duration::from_secs(4)),
            ]
            .into_iter()
            .collect(),
        };
        // Queued: q/known (4 s) and four others at the default (4 s); running for 6 s: 2 s
        // left of t/long (8 s), nothing of t/new (the default, 1 s).
        assert_eq!(time_left(&read(), &history, 2), Duration::from_secs(10) / 2);
        // One worker: all of it; and never less than the longest running test's rest.
        assert_eq!(time_left(&read(), &history, 1), Duration::from_secs(10));
        let mut alone = read();
        alone.queued = 0;
        alone.held[0].2 = 60_000;
        let history = History {
            default: Duration::from_secs(1),
            pending: HashMap::new(),
        };
        assert_eq!(time_left(&alone, &history, 4), Duration::from_secs(54));
    }
}
