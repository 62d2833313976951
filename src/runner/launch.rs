//! [`Launch`]: how a build's tests run, as the command line or a framework adapter's pre-flight
//! checks chose it, and [`AnyRunner`], the runner it gives each worker.
//!
//! A runner's kind is chosen at run time, so the worker loop gets an [`AnyRunner`]: a
//! persistent framework process (kept apart because it may also list the suite it runs), or
//! any other runner behind a pointer ([`DynRunner`]), so a framework with a runner of its own
//! adds no variant here.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use crate::outcome::TestResult;
use crate::runner::command::{CommandRunner, Preflight};
use crate::runner::persistent::{Hints, PersistentRunner};
use crate::runner::{Feed, Ran, Runner, RunnerError};
use crate::test_id::TestId;

/// What every runner of a build is given, whatever its kind.
#[derive(Debug, Clone)]
pub struct Setup {
    /// The build id, given to the tests as `CIQ_BUILD`.
    pub build: String,
    /// A test's time limit when it has none of its own (a framework's start, a preflight).
    pub timeout: Option<Duration>,
    /// Most bytes of a failing run's output kept.
    pub output_limit: usize,
    /// Bound on a listing a worker makes for its runner (nextest's binaries).
    pub list_timeout: Duration,
}

impl Setup {
    /// The environment of worker `worker`'s tests: the build's and the worker's ids.
    pub fn env(&self, worker: &str) -> Vec<(String, String)> {
        vec![
            ("CIQ_BUILD".to_owned(), self.build.clone()),
            ("CIQ_WORKER".to_owned(), worker.to_owned()),
        ]
    }
}

/// Builds a runner of a framework's own for one worker, from the [`Setup`] and the worker's
/// test environment.
pub type MakeRunner =
    Arc<dyn Fn(&Setup, Vec<(String, String)>) -> Box<dyn DynRunner> + Send + Sync>;

/// How the tests run on every worker of this process.
#[derive(Clone)]
pub enum Launch {
    /// A command per batch: the ids at `{}` (or appended), a JUnit report at `{junit}`.
    Command {
        /// The command.
        argv: Vec<String>,
        /// A command that must succeed before a worker takes tests.
        check: Option<Preflight>,
    },
    /// One process per worker speaking the persistent protocol.
    Persistent {
        /// The command.
        argv: Vec<String>,
        /// What to say when it will not start.
        hints: Hints,
    },
    /// A runner of the framework's own.
    Own(MakeRunner),
}

impl Launch {
    /// Worker `worker`'s runner.
    pub fn runner(&self, setup: &Setup, worker: &str) -> AnyRunner {
        let env = setup.env(worker);
        match self {
            Launch::Command { argv, check } => AnyRunner::Other(Box::new(CommandRunner {
                command: argv.clone(),
                env,
                timeout: setup.timeout,
                output_limit: setup.output_limit,
                preflight: check.clone(),
            })),
            Launch::Persistent { argv, hints } => AnyRunner::Persistent(Box::new(
                PersistentRunner::new(argv.clone(), env, setup.timeout, setup.output_limit, *hints),
            )),
            Launch::Own(make) => AnyRunner::Other(make(setup, env)),
        }
    }
}

/// A future a [`DynRunner`] returns.
type Boxed<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A [`Runner`] behind a pointer: every runner is one, through the blanket implementation.
pub trait DynRunner: Send + Sync {
    /// [`Runner::run`].
    fn run_boxed<'a>(
        &'a self,
        batch: &'a [TestId],
        limits: &'a [Duration],
        feed: &'a Feed,
    ) -> Boxed<'a, Result<Ran, RunnerError>>;
    /// [`Runner::settle`].
    fn settle_boxed(&self) -> Boxed<'_, Option<TestResult>>;
    /// [`Runner::prepare`].
    fn prepare_boxed(&self) -> Boxed<'_, Result<(), RunnerError>>;
    /// [`Runner::shutdown`].
    fn shutdown_boxed(&self) -> Boxed<'_, ()>;
}

impl<R: Runner> DynRunner for R {
    fn run_boxed<'a>(
        &'a self,
        batch: &'a [TestId],
        limits: &'a [Duration],
        feed: &'a Feed,
    ) -> Boxed<'a, Result<Ran, RunnerError>> {
        Box::pin(self.run(batch, limits, feed))
    }

    fn settle_boxed(&self) -> Boxed<'_, Option<TestResult>> {
        Box::pin(self.settle())
    }

    fn prepare_boxed(&self) -> Boxed<'_, Result<(), RunnerError>> {
        Box::pin(self.prepare())
    }

    fn shutdown_boxed(&self) -> Boxed<'_, ()> {
        Box::pin(self.shutdown())
    }
}

/// One worker's runner.
pub enum AnyRunner {
    /// A framework process speaking the persistent protocol.
    Persistent(Box<PersistentRunner>),
    /// Any other runner: a command per batch, a framework's own.
    Other(Box<dyn DynRunner>),
}

impl AnyRunner {
    /// The framework process of a persistent runner, which may list the suite it runs.
    pub fn framework(&self) -> Option<&PersistentRunner> {
        match self {
            AnyRunner::Persistent(runner) => Some(runner),
            AnyRunner::Other(_) => None,
        }
    }
}

impl Runner for AnyRunner {
    async fn run(
        &self,
        batch: &[TestId],
        limits: &[Duration],
        feed: &Feed,
    ) -> Result<Ran, RunnerError> {
        match self {
            AnyRunner::Persistent(runner) => runner.run(batch, limits, feed).await,
            AnyRunner::Other(runner) => runner.run_boxed(batch, limits, feed).await,
        }
    }

    async fn settle(&self) -> Option<TestResult> {
        match self {
            AnyRunner::Persistent(runner) => runner.settle().await,
            AnyRunner::Other(runner) => runner.settle_boxed().await,
        }
    }

    async fn prepare(&self) -> Result<(), RunnerError> {
        match self {
            AnyRunner::Persistent(runner) => runner.prepare().await,
            AnyRunner::Other(runner) => runner.prepare_boxed().await,
        }
    }

    async fn shutdown(&self) {
        match self {
            AnyRunner::Persistent(runner) => runner.shutdown().await,
            AnyRunner::Other(runner) => runner.shutdown_boxed().await,
        }
    }
}
