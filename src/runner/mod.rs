//! Runners turn a batch of reserved tests into per-test results.
//!
//! The [`Runner`] trait is what the worker loop calls; [`command::CommandRunner`] is the generic
//! runner that executes the command after `--` with the test ids as arguments, and reads JUnit
//! XML when the command writes it. The framework adapters are [`nextest`], [`pytest`] (batch
//! mode is the generic runner on a pytest command) and [`protocol`], the persistent runner.
//! [`AnyRunner`] is whichever the command line chose.

pub mod command;
pub mod junit;
pub mod nextest;
pub mod protocol;
pub mod pytest;

use std::future::Future;

use thiserror::Error;

use crate::discovery::DiscoveryError;
use crate::outcome::TestResult;
use crate::process::SpawnError;
use crate::queue::Reserved;

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
    Listing(#[source] DiscoveryError),
}

/// The runner the command line chose.
#[expect(
    clippy::large_enum_variant,
    reason = "one runner per worker, built once and never moved on a hot path"
)]
pub enum AnyRunner {
    /// A command per batch.
    Command(command::CommandRunner),
    /// cargo-nextest's binaries, one process per test.
    Nextest(nextest::NextestRunner),
    /// A persistent framework process.
    Persistent(protocol::PersistentRunner),
}

impl Runner for AnyRunner {
    async fn run(&self, batch: &[Reserved]) -> Result<Vec<TestResult>, RunnerError> {
        match self {
            AnyRunner::Command(runner) => runner.run(batch).await,
            AnyRunner::Nextest(runner) => runner.run(batch).await,
            AnyRunner::Persistent(runner) => runner.run(batch).await,
        }
    }

    async fn prepare(&self) -> Result<(), RunnerError> {
        match self {
            AnyRunner::Command(runner) => runner.prepare().await,
            AnyRunner::Nextest(runner) => runner.prepare().await,
            AnyRunner::Persistent(runner) => runner.prepare().await,
        }
    }

    async fn shutdown(&self) {
        match self {
            AnyRunner::Command(runner) => runner.shutdown().await,
            AnyRunner::Nextest(runner) => runner.shutdown().await,
            AnyRunner::Persistent(runner) => runner.shutdown().await,
        }
    }
}

/// Runs batches of tests.
pub trait Runner: Send + Sync {
    /// Runs `batch` and returns one result per test, in any order. A test that breaks the
    /// runner (crash, timeout) is an errored result, not an `Err`: `Err` is for failures that
    /// would repeat on every test.
    fn run(
        &self,
        batch: &[Reserved],
    ) -> impl Future<Output = Result<Vec<TestResult>, RunnerError>> + Send;

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
