//! The [`Runner`] trait the worker loop calls, what a runner gives back for a batch ([`Ran`]),
//! where it reports results before the batch ends ([`Feed`]), and the failures that stop a
//! worker ([`RunnerError`]).

use std::future::Future;
use std::time::Duration;

use thiserror::Error;
use tokio::sync::mpsc;

use crate::listing::ListingError;
use crate::outcome::TestResult;
use crate::process::SpawnError;
use crate::test_id::TestId;

/// A runner failure that stops the worker: running more tests would fail the same way.
#[derive(Debug, Error)]
pub enum RunnerError {
    /// The test command cannot be started (missing, not executable).
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    /// A persistent framework process cannot serve tests (collection failed, wrong protocol).
    #[error("the test framework (`{command}`) cannot run tests: {detail}")]
    Framework {
        /// The framework command.
        command: String,
        /// What it said, or how it ended.
        detail: String,
    },
    /// The framework could not list its tests on this worker.
    #[error("this worker cannot list its tests")]
    Listing(#[source] ListingError),
}

/// What a runner gives back for a batch.
#[derive(Debug, Default)]
pub struct Ran {
    /// One result per test of the batch, in any order.
    pub results: Vec<TestResult>,
    /// A test of the batch (its last) whose result may still change: its framework kept some
    /// of what it set up (a module's fixtures) for a test that may follow, as a plain run of
    /// the suite would, and tearing that down may fail it; or a line its run wrote (a second
    /// result) may still come. Its result is final only once the next [`Runner::run`] or
    /// [`Runner::settle`] hands it back as `settled`.
    pub provisional: Option<TestId>,
    /// The final result of the previous batch's provisional test.
    pub settled: Option<TestResult>,
    /// Tests of the batch whose own outcome is unknown: the batch ran in one process that was
    /// killed at its time limit before it said how they went (their results are errors of the
    /// batch). The worker runs them again one per batch, so a hanging test errors alone.
    pub cut_short: Vec<TestId>,
}

impl From<Vec<TestResult>> for Ran {
    fn from(results: Vec<TestResult>) -> Self {
        Ran {
            results,
            ..Ran::default()
        }
    }
}

/// Where a runner that learns each test's result as it finishes (a process per test, a
/// persistent framework) says so before its batch ends, so the worker can print and record it
/// while the batch runs on: a long batch does not leave the log silent, and a worker that dies
/// mid-batch has its finished tests counted. Every reported result is also in the batch's
/// [`Ran`]; a runner that reports nothing (a batch command read through JUnit at its end) is
/// handled as a whole at the end.
#[derive(Debug, Clone, Default)]
pub struct Feed {
    sender: Option<mpsc::UnboundedSender<Reported>>,
}

/// A result a runner reported before its batch ended.
#[derive(Debug)]
pub enum Reported {
    /// The final result of a test of the batch.
    Result(TestResult),
    /// The final result of the previous batch's provisional test ([`Ran::settled`]).
    Settled(TestResult),
}

impl Feed {
    /// A feed nobody follows.
    pub fn none() -> Self {
        Self::default()
    }

    /// A feed, and where its reports arrive.
    pub fn channel() -> (Self, mpsc::UnboundedReceiver<Reported>) {
        let (sender, receiver) = mpsc::unbounded_channel();
        (
            Self {
                sender: Some(sender),
            },
            receiver,
        )
    }

    /// `result` is final.
    pub fn result(&self, result: &TestResult) {
        self.send(|| Reported::Result(result.clone()));
    }

    /// `result` is the final result of the previous batch's provisional test.
    pub fn settled(&self, result: &TestResult) {
        self.send(|| Reported::Settled(result.clone()));
    }

    fn send(&self, reported: impl FnOnce() -> Reported) {
        if let Some(sender) = &self.sender {
            // A worker that stopped listening has its batch's results from `Ran` anyway.
            let _ = sender.send(reported());
        }
    }
}

/// Runs batches of tests.
pub trait Runner: Send + Sync {
    /// Runs `batch`, each test within its `limits` (one per test: a runner that runs the batch
    /// in one process allows their sum), and returns one result per test, reporting those it
    /// knows before the batch ends to `feed`. A test that breaks the runner (crash,
    /// timeout) is an errored result, not an `Err`: `Err` is for failures that would repeat on
    /// every test.
    fn run(
        &self,
        batch: &[TestId],
        limits: &[Duration],
        feed: &Feed,
    ) -> impl Future<Output = Result<Ran, RunnerError>> + Send;

    /// The final result of the last batch's provisional test ([`Ran::provisional`]), once the
    /// framework tore down what it kept for it; `None` when there is none. Called when no
    /// batch follows (the queue is empty for now, or the worker must rejoin).
    fn settle(&self) -> impl Future<Output = Option<TestResult>> + Send {
        async { None }
    }

    /// Does the slow set-up (a build and listing, a framework's start) before the worker takes
    /// any test, so no test's heartbeat budget is spent on it.
    fn prepare(&self) -> impl Future<Output = Result<(), RunnerError>> + Send {
        async { Ok(()) }
    }

    /// Stops whatever the runner keeps alive between batches (a persistent framework process),
    /// letting it tear down cleanly.
    fn shutdown(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}
