//! [`Error`]: everything that can end a `ciq` command, one variant per library error type, so
//! the exit code of each ([`crate::exit_code::for_error`]) is an exhaustive match: a new error
//! cannot end up with an exit code by accident.

use thiserror::Error;

use crate::config::ConfigError;
use crate::discovery::DiscoveryError;
use crate::order_log::OrderLogError;
use crate::quarantine::QuarantineError;
use crate::queue::QueueError;
use crate::report::output_file::OutputError;
use crate::runner::RunnerError;
use crate::worker::WorkerError;

/// An error that ends `ciq run` or `ciq report`.
#[derive(Debug, Error)]
pub enum Error {
    /// The command line cannot be used.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The test list could not be read or produced (local mode, or a list file).
    #[error(transparent)]
    Discovery(#[from] DiscoveryError),
    /// The queue failed: Redis, the election, lost state, a foreign list.
    #[error(transparent)]
    Queue(#[from] QueueError),
    /// The runner cannot run tests at all.
    #[error(transparent)]
    Runner(#[from] RunnerError),
    /// An output (`--junit`, `--json`, `--timings-out`, `--order-log`) cannot be written
    /// (checked before the build).
    #[error(transparent)]
    Output(#[from] OutputError),
    /// The order log cannot be written or read.
    #[error(transparent)]
    OrderLog(#[from] OrderLogError),
    /// The quarantine file cannot be used.
    #[error(transparent)]
    Quarantine(#[from] QuarantineError),
    /// A local worker task panicked (a bug).
    #[error("a local worker panicked")]
    Panicked(#[source] tokio::task::JoinError),
    /// The async runtime could not start.
    #[error("cannot start the async runtime")]
    Runtime(#[source] std::io::Error),
}

impl From<WorkerError> for Error {
    fn from(err: WorkerError) -> Self {
        match err {
            WorkerError::Queue(err) => Error::Queue(err),
            WorkerError::Runner(err) => Error::Runner(err),
        }
    }
}
