//! The exit codes of `ciq run` and `ciq report`, and the one place errors map to them.
//!
//! CI systems branch on these codes (retry on infrastructure errors, page on lost leaders), so
//! they are part of the interface and documented in the README.

use crate::discovery::DiscoveryError;
use crate::process::SpawnError;
use crate::queue::QueueError;
use crate::queue::error::AbortKind;
use crate::report::Verdict;
use crate::runner::RunnerError;
use crate::test_id::TestListError;
use crate::worker::WorkerError;

/// Every test passed, was skipped, or was flaky.
pub const SUCCESS: i32 = 0;
/// At least one test failed or errored.
pub const TESTS_FAILED: i32 = 1;
/// Bad command line or input: flags, queue URL, test list, a test command that does not exist.
pub const USAGE: i32 = 2;
/// No test failed, but some never ran (workers gone, report timeout).
pub const TESTS_NOT_RUN: i32 = 3;
/// No leader filled the queue: every elected leader died, or none appeared in time.
pub const NO_LEADER: i32 = 4;
/// Redis unreachable or refusing credentials, or the build's state lost.
pub const INFRASTRUCTURE: i32 = 5;
/// This worker's test list differs from the one its build was filled with, or (for the report
/// and the other workers) some worker's did: tests it meant to run may never have run.
pub const LIST_MISMATCH: i32 = 6;
/// Added to the signal number when a SIGINT (130) or SIGTERM (143) stopped ciq.
pub const SIGNAL_BASE: i32 = 128;

/// The exit code of a finished build's verdict.
pub fn for_verdict(verdict: Verdict) -> i32 {
    match verdict {
        Verdict::Green => SUCCESS,
        Verdict::Failed => TESTS_FAILED,
        Verdict::Incomplete => TESTS_NOT_RUN,
        Verdict::ListMismatch => LIST_MISMATCH,
    }
}

/// The exit code for an error that ended ciq, from the first cause ciq knows.
pub fn for_error(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if let Some(err) = cause.downcast_ref::<QueueError>() {
            return for_queue_error(err);
        }
        if let Some(WorkerError::Queue(err)) = cause.downcast_ref::<WorkerError>() {
            return for_queue_error(err);
        }
        if cause.is::<WorkerError>()
            || cause.is::<RunnerError>()
            || cause.is::<SpawnError>()
            || cause.is::<DiscoveryError>()
            || cause.is::<TestListError>()
            || cause.is::<crate::config::ConfigError>()
        {
            return USAGE;
        }
    }
    INFRASTRUCTURE
}

fn for_queue_error(err: &QueueError) -> i32 {
    match err {
        QueueError::InvalidUrl { .. } => USAGE,
        QueueError::LostLeader { .. } | QueueError::NoLeader { .. } => NO_LEADER,
        QueueError::Aborted(abort) => match abort.kind {
            AbortKind::BadInput => USAGE,
            AbortKind::LostLeader => NO_LEADER,
            AbortKind::StateLost => INFRASTRUCTURE,
        },
        QueueError::Unreachable { .. }
        | QueueError::Auth { .. }
        | QueueError::Command(_)
        | QueueError::Protocol(_)
        | QueueError::Permission { .. }
        | QueueError::StateLost(_) => INFRASTRUCTURE,
        QueueError::ListMismatch { .. } => LIST_MISMATCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::error::Abort;

    #[test]
    fn errors_map_to_documented_codes() {
        let code = |err: QueueError| for_error(&anyhow::Error::new(err));
        assert_eq!(code(QueueError::LostLeader { attempts: 3 }), NO_LEADER);
        assert_eq!(code(QueueError::StateLost("x".into())), INFRASTRUCTURE);
        assert_eq!(
            code(QueueError::Permission {
                url: "u".into(),
                detail: "NOPERM".into()
            }),
            INFRASTRUCTURE
        );
        assert_eq!(
            code(QueueError::ListMismatch {
                worker: "w".into(),
                build: "b".into(),
                detail: "d".into()
            }),
            LIST_MISMATCH
        );
        assert_eq!(for_verdict(Verdict::ListMismatch), LIST_MISMATCH);
        assert_eq!(
            code(QueueError::InvalidUrl {
                url: "x".into(),
                reason: "y".into()
            }),
            USAGE
        );
        assert_eq!(
            code(QueueError::Aborted(Abort {
                kind: AbortKind::BadInput,
                worker: "w".into(),
                message: "m".into()
            })),
            USAGE
        );
        assert_eq!(
            code(QueueError::Aborted(Abort {
                kind: AbortKind::StateLost,
                worker: "w".into(),
                message: "m".into()
            })),
            INFRASTRUCTURE
        );
        let wrapped = anyhow::Error::new(WorkerError::Queue(QueueError::StateLost("x".into())))
            .context("worker `w1` stopped");
        assert_eq!(for_error(&wrapped), INFRASTRUCTURE);
        let runner = WorkerError::Runner(RunnerError::Spawn(SpawnError::NotFound("x".into())));
        assert_eq!(for_error(&anyhow::Error::new(runner)), USAGE);
        assert_eq!(for_verdict(Verdict::Incomplete), TESTS_NOT_RUN);
    }
}
