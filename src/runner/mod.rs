//! Runners turn a batch of reserved tests into per-test results.
//!
//! The [`Runner`] trait is what the worker loop calls; [`command::CommandRunner`] is the generic
//! runner that executes the command after `--` with the test ids as arguments.

pub mod command;
pub mod junit;

use std::future::Future;

use thiserror::Error;

use crate::outcome::TestResult;
use crate::process::SpawnError;
use crate::queue::Reserved;

/// A runner failure that stops the worker: running more tests would fail the same way.
#[derive(Debug, Error)]
pub enum RunnerError {
    /// The test command cannot be started (missing, not executable).
    #[error(transparent)]
    Spawn(#[from] SpawnError),
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
}
