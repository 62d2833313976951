//! The [`Queue`] trait every backend implements, and the values that cross it.
//!
//! A worker holds one queue handle: the in-memory [`local`] queue for `-j N` on one machine, or
//! the [`redis`] queue shared by a build's workers. The worker loop in [`crate::worker`] only
//! sees this trait, so both backends run the same loop with the same semantics.

pub mod budget;
pub mod error;
pub mod local;
pub mod redis;

use std::borrow::Cow;
use std::future::Future;
use std::time::Duration;

pub use error::QueueError;

use crate::outcome::{Outcome, TestResult};
use crate::report::Summary;
use crate::test_id::{TestId, TestList};

/// Why a list could not be produced, in the words of whatever produced it.
pub type ListFailure = Box<dyn std::error::Error + Send + Sync>;

/// Where a build's tests come from, as the queue sees them. Only the elected leader produces
/// the list (listing can be slow: a build, a collection), and the queue never needs to know
/// how; a worker that holds a list anyway (a file every worker reads) has it checked against
/// the build's.
pub trait ListSource: Sync {
    /// Produces the list, within `timeout`.
    fn produce(
        &self,
        timeout: Duration,
    ) -> impl Future<Output = Result<Cow<'_, TestList>, ListFailure>> + Send;

    /// The list this worker holds already, if any.
    fn held(&self) -> Option<&TestList>;

    /// The list a follower checks against its build's: the one it holds, or one its framework
    /// collected anyway to run the tests (persistent pytest), so a worker whose suite differs
    /// never lets the build go green without its own tests. `None` when the worker has none
    /// without a listing of its own, or its framework could not list (it then fails when it
    /// runs, and says why).
    fn to_check(&self, timeout: Duration)
    -> impl Future<Output = Option<Cow<'_, TestList>>> + Send;
}

/// How many tests a worker asks for: at most `max`, and for an auto batch ([`Timed`]) a bounded
/// amount of estimated time. The queue applies the bounds when it hands the tests out, not the
/// worker from what it saw a batch ago: the queue knows the estimates it was ordered by, how
/// many tests are left and how many workers share them then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    /// The most tests.
    pub max: usize,
    /// An auto batch's bounds, if any.
    pub timed: Option<Timed>,
}

/// An auto batch: tests from the head of the queue while their estimated time stays within
/// `budget` (a test estimated longer goes alone), and never more than a fair share of the tests
/// left, `1 / (live workers x` [`SHARE_PER_WORKER`]`)` of them, so batches shrink toward the end
/// and no worker sits on tests another could run; but never so few that their estimated time
/// falls below `floor`, the batch's own start: splitting such a batch would save less time at
/// the end than the extra start costs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timed {
    /// The most estimated test time in one batch.
    pub budget: Duration,
    /// What a test without an estimate is taken to take when the build has no estimates of its
    /// own (no history): this worker's typical test, or `None` before it ran one, when a batch is
    /// one test.
    pub typical: Option<Duration>,
    /// The batch's own cost (a process start, measured before its first result): the fewest
    /// estimated time a batch holds when the queue has as much.
    pub floor: Duration,
}

/// An auto batch takes at most 1/(live workers x this) of the tests left.
pub const SHARE_PER_WORKER: usize = 4;

impl Want {
    /// Up to `max` tests, whatever the queue holds.
    pub fn up_to(max: usize) -> Self {
        Self { max, timed: None }
    }

    /// How many tests to take from the head of a queue of `queued` tests shared by `live`
    /// workers, given the head's estimates in order (`None` for a test without one) and the
    /// build's `default` estimate. The Redis queue's `handout.lua` computes the same.
    pub fn take(
        self,
        queued: usize,
        live: usize,
        head: impl IntoIterator<Item = Option<Duration>>,
        default: Option<Duration>,
    ) -> usize {
        let Some(timed) = self.timed else {
            return self.max;
        };
        let share = queued.div_ceil(live.max(1) * SHARE_PER_WORKER).max(1);
        let Some(default) = default.or(timed.typical) else {
            return self.max.min(1);
        };
        let mut sum = Duration::ZERO;
        let mut taken = 0;
        for estimate in head.into_iter().take(self.max) {
            let estimate = estimate.unwrap_or(default);
            if taken > 0
                && (sum.saturating_add(estimate) > timed.budget
                    || (taken >= share && sum >= timed.floor))
            {
                break;
            }
            sum = sum.saturating_add(estimate);
            taken += 1;
        }
        taken.max(self.max.min(1))
    }
}

/// A fencing token, unique to one hand-out of one test: only that hand-out's holder can
/// acknowledge, heartbeat or release the test, so a worker whose test was taken over changes
/// nothing.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease(pub String);

impl std::fmt::Display for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A test handed to one worker, with the fencing token of this hand-out.
///
/// Only the holder of the current lease may acknowledge, requeue, heartbeat or release the test;
/// a worker whose test was taken over holds a stale lease and changes nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reserved {
    /// The test.
    pub id: TestId,
    /// The lease of this reservation.
    pub lease: Lease,
}

/// What a reserve call handed out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reservation {
    /// Tests to run now.
    Tests(Vec<Reserved>),
    /// The queue is empty but tests still run elsewhere; one may yet be lost, so wait and ask
    /// again.
    Empty,
    /// Every test has its outcome.
    Done,
    /// The worker's generation is no longer the build's queue: rejoin before anything else.
    Stale,
}

/// The result of one run, to acknowledge under the lease it ran with.
#[derive(Debug, Clone)]
pub struct Ack {
    /// The lease the test was run under.
    pub lease: Lease,
    /// What the run produced.
    pub result: TestResult,
}

impl Ack {
    /// The reservation this acknowledges.
    pub fn reserved(&self) -> Reserved {
        Reserved {
            id: self.result.id.clone(),
            lease: self.lease.clone(),
        }
    }
}

/// What the queue did with one acknowledged result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// The result decided the test's final outcome.
    Final(Outcome),
    /// The run failed within the requeue budgets: another worker will run it again.
    Requeued,
    /// The lease was no longer this worker's (the test was taken over): nothing changed.
    Discarded,
    /// The test already had its outcome; this result was not counted again.
    Duplicate,
}

/// The reply to an acknowledgement: what was recorded, and the next reservation.
#[derive(Debug, Clone)]
pub struct AckReply {
    /// One entry per acknowledged result, in order.
    pub recorded: Vec<(TestId, Recorded)>,
    /// The tests reserved in the same call.
    pub next: Reservation,
}

/// Timings a worker needs from its queue.
#[derive(Debug, Clone, Copy)]
pub struct Pacing {
    /// How often held tests are heartbeated.
    pub heartbeat_interval: Duration,
    /// Longest pause between reserve calls while the queue is empty but not done.
    pub max_poll_interval: Duration,
}

/// One worker's handle on a build's queue.
///
/// Every method is safe to call again after an error the backend reported as retryable; the
/// backends retry lost connections themselves and only return errors that end the worker.
pub trait Queue: Send + Sync {
    /// Reserves the tests `want` asks for.
    fn reserve(&self, want: Want) -> impl Future<Output = Result<Reservation, QueueError>> + Send;

    /// Acknowledges results, then reserves what `want` asks for in the same step (one round
    /// trip per batch in steady state).
    fn ack(
        &self,
        acks: Vec<Ack>,
        want: Want,
    ) -> impl Future<Output = Result<AckReply, QueueError>> + Send;

    /// Tells the queue this worker is alive and still running `held`; returns the tests whose
    /// lease this worker lost (taken over while it could not be heard).
    fn heartbeat(
        &self,
        held: &[Reserved],
    ) -> impl Future<Output = Result<Vec<TestId>, QueueError>> + Send;

    /// Gives `held` back at once and marks this worker as gone (shutdown, fatal runner error).
    fn release(&self, held: &[Reserved]) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// After [`Reservation::Stale`]: follows the build's current generation, or fails when
    /// there is none to follow.
    fn rejoin(&self) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// The slowest recent run of each of `ids` in earlier builds, when known: what
    /// `--test-timeout auto` limits each test by. Best effort: history only narrows a limit.
    fn slowest_runs(&self, ids: &[TestId]) -> impl Future<Output = Vec<Option<Duration>>> + Send;

    /// Keeps what this worker measured (each test's last run) for the build's timing file and
    /// for ordering later builds. Estimates only: losing them costs speed, never a verdict.
    fn record_durations(
        &self,
        durations: &[(TestId, Duration)],
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// How many tests of the build finally failed or errored so far (for `--max-failures`).
    fn failures(&self) -> impl Future<Output = Result<usize, QueueError>> + Send;

    /// Records that this worker stops taking tests, and `why` (a breaker tripped), for the
    /// build's summary: the others take its tests over.
    fn record_stop(&self, why: &str) -> impl Future<Output = Result<(), QueueError>> + Send;

    /// The build's outcomes so far (final once a reserve answered [`Reservation::Done`]).
    fn summary(&self) -> impl Future<Output = Result<Summary, QueueError>> + Send;

    /// The worker's name, for log lines.
    fn worker_id(&self) -> &str;

    /// Timings for this queue.
    fn pacing(&self) -> Pacing;
}
