//! [`Timeline`]: what each run of a build did and when, across every worker, read back from
//! the records the queue's scripts keep (Redis) or the local queue keeps (local mode).
//!
//! The text summary says *what* happened to each test; the timeline says *who* ran it and
//! *when*, which is what a user needs to see why a build took 14 minutes instead of 9: a
//! worker idle, a worker dead and its tests taken over, a tail of long tests after the queue
//! emptied, a slow election or listing. The HTML report and the trace file draw it.
//!
//! Times are server time (the scripts' `TIME`, or the local clock in local mode), in
//! milliseconds since the Unix epoch; a drawing subtracts [`Timeline::origin_ms`].
//!
//! The records are lines of text ([`record`]'s format) the Redis scripts append to one key of
//! the build, read with `RedisQueue::timeline` or [`crate::queue::redis::supervisor::Supervisor::timeline`];
//! the local queue writes the same lines ([`crate::queue::local::LocalQueue::timeline`]).
//! [`parse`] resolves them into a [`Timeline`].

mod layout;
pub(crate) mod record;

pub use layout::parse;

/// Everything recorded of one build, resolved into attempts and events.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Timeline {
    /// `t = 0`: the first record of the build (its first election).
    pub origin_ms: u64,
    /// One lane per worker process (session), the leader of the committed generation first,
    /// then by join time.
    pub workers: Vec<Lane>,
    /// Every attempt at a test, in start order.
    pub attempts: Vec<Attempt>,
    /// The build's events, in time order.
    pub events: Vec<Event>,
    /// Parts of the records that were lost (evicted, trimmed at their bound): a drawing says
    /// so instead of drawing a wrong picture.
    pub lost: Vec<LostPart>,
}

/// One worker process of the build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lane {
    /// The worker id.
    pub worker: String,
    /// The machine it ran on, when known.
    pub host: Option<String>,
    /// Whether it led the committed generation.
    pub leader: bool,
    /// When it joined.
    pub joined_ms: u64,
    /// When it left (or was noticed gone), `None` while it is still in the build.
    pub left_ms: Option<u64>,
    /// How it left.
    pub leave: Option<Leave>,
    /// Its last heartbeat, when known.
    pub last_seen_ms: Option<u64>,
}

/// How a worker left the build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leave {
    /// The queue drained.
    Drained,
    /// It was sent SIGTERM (or SIGINT) and gave its tests back.
    Sigterm,
    /// A breaker (`--max-failures`, consecutive failures) stopped it.
    Breaker,
    /// `--max-duration` ran out.
    MaxDuration,
    /// It failed: its runner could not run tests, or it lost its queue.
    Failed,
    /// Its heartbeat lapsed: killed, hung or cut off; noticed at `left_ms`.
    Silent,
}

/// One run of one test on one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    /// The test id.
    pub test: String,
    /// Index into [`Timeline::workers`].
    pub worker: usize,
    /// When it started.
    pub start_ms: u64,
    /// When it ended; `None` when cut off ([`AttemptOutcome::Lost`]) or still running.
    pub end_ms: Option<u64>,
    /// How it ended.
    pub outcome: AttemptOutcome,
    /// The reservation it came in: attempts with the same number were handed out together.
    pub batch: u64,
}

/// How one attempt ended (not the test's final outcome: a requeued attempt's test may pass
/// later on another worker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// It passed.
    Passed,
    /// It failed, and that failure is the test's final outcome.
    Failed,
    /// It errored (crashed, timed out, could not run).
    Errored,
    /// It was skipped.
    Skipped,
    /// It failed and was put back in the queue for another worker.
    Requeued,
    /// Its worker was lost before acknowledging it.
    Lost,
    /// It was killed because another copy's result counted.
    Hedged,
    /// It is still running.
    Running,
}

/// Something that happened in the build at one moment, on one worker's lane.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// When.
    pub at_ms: u64,
    /// Index into [`Timeline::workers`].
    pub worker: usize,
    /// What.
    pub kind: EventKind,
}

/// The kinds of [`Event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventKind {
    /// An election took place on this worker.
    Election {
        /// Won, lost, or the previous leader's lock lapsed before a commit.
        result: ElectionResult,
        /// The generation it concerned.
        generation: String,
    },
    /// The leader listed the suite.
    Listing {
        /// When listing ended; `None` if it never did (the leader died).
        end_ms: Option<u64>,
        /// How many tests it listed, when it finished.
        count: Option<u64>,
    },
    /// The leader staged the listed tests under its generation.
    Staging {
        /// When staging ended; `None` if it never did.
        end_ms: Option<u64>,
        /// How many tests it staged.
        count: Option<u64>,
    },
    /// The leader committed its generation: the queue is open.
    Commit {
        /// How many tests were queued.
        count: u64,
    },
    /// The worker joined the build.
    Join,
    /// The worker left the build.
    Leave {
        /// How.
        how: Leave,
    },
    /// This worker took over a test from a worker whose heartbeat lapsed.
    Takeover {
        /// Index into [`Timeline::workers`] of the lost worker.
        from: usize,
        /// The test.
        test: String,
        /// Index into [`Timeline::attempts`] of the cut-off attempt, `None` for a test held
        /// but never started.
        attempt: Option<usize>,
        /// Index into [`Timeline::attempts`] of the taker's attempt, when it made one.
        next: Option<usize>,
    },
    /// A failed attempt was put back in the queue.
    Requeue {
        /// The test.
        test: String,
        /// Index into [`Timeline::attempts`] of the failing attempt.
        attempt: Option<usize>,
    },
    /// A breaker stopped this worker.
    Breaker {
        /// Why, in the summary's words.
        reason: String,
    },
}

/// The result of one election, as one worker saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElectionResult {
    /// This worker became the leader.
    Won,
    /// Another worker leads; this one follows.
    Lost,
    /// The leader's lock lapsed before it committed: a new election followed.
    LeaderDied,
}

/// A part of the records that was lost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LostPart {
    /// Which part: `attempts`, `events`, `outputs`, `workers` or `history`.
    pub part: &'static str,
    /// One line for a person: what was lost and, when known, why.
    pub detail: String,
    /// The worker whose records it concerns (index into [`Timeline::workers`]).
    pub worker: Option<usize>,
    /// The stretch of time it concerns, when known.
    pub from_ms: Option<u64>,
    /// The end of that stretch, when known.
    pub to_ms: Option<u64>,
}
