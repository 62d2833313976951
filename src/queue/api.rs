//! The [`Queue`] trait every backend implements, and the values that cross it: leases,
//! reservations, acknowledgements and what the queue recorded of them.

use std::future::Future;
use std::time::Duration;

use crate::outcome::{Outcome, TestResult};
use crate::queue::error::QueueError;
use crate::queue::want::Want;
use crate::report::Summary;
use crate::test_id::TestId;
use crate::timeline::Leave;

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
/// Every method is safe to call again after a lost reply; the backends reconnect themselves
/// and only return errors that end the worker.
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

    /// Gives `held` back at once and marks this worker as gone (shutdown, fatal runner error):
    /// `how` it leaves and, when a breaker stopped it, `why` go into the build's timeline.
    fn release(
        &self,
        held: &[Reserved],
        how: Leave,
        why: Option<&str>,
    ) -> impl Future<Output = Result<(), QueueError>> + Send;

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
