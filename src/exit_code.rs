//! The exit codes of `ciq run` and `ciq report`, and the one place errors map to them.
//!
//! CI systems branch on these codes (retry on infrastructure errors, page on lost leaders), so
//! they are part of the interface and documented in the README.

use crate::error::Error;
use crate::queue::QueueError;
use crate::queue::error::AbortKind;
use crate::report::Verdict;

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
/// `ciq bisect` only: the failure did not repeat the same way on every run (after its
/// suspected culprit, or alone), so it looks flaky and no test is named.
pub const BISECT_FLAKY: i32 = 7;
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

/// The exit code for an error that ended ciq.
pub fn for_error(err: &Error) -> i32 {
    match err {
        Error::Queue(err) => for_queue_error(err),
        Error::Config(_)
        | Error::Discovery(_)
        | Error::Runner(_)
        | Error::Output(_)
        | Error::Quarantine(_)
        | Error::OrderLog(_) => USAGE,
        Error::Panicked(_) | Error::Runtime(_) => INFRASTRUCTURE,
    }
}

fn for_queue_error(err: &QueueError) -> i32 {
    match err {
        QueueError::InvalidUrl { .. }
        | QueueError::NotACluster { .. }
        | QueueError::LateListing { .. }
        | QueueError::NotAGrind { .. } => USAGE,
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
        | QueueError::OldRedis { .. }
        | QueueError::OutOfMemory { .. }
        | QueueError::StateLost(_) => INFRASTRUCTURE,
        QueueError::ListMismatch { .. } => LIST_MISMATCH,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::process::SpawnError;
    use crate::queue::error::Abort;
    use crate::runner::RunnerError;
    use crate::worker::WorkerError;

    #[test]
    fn errors_map_to_documented_codes() {
        let code = |err: QueueError| for_error(&Error::Queue(err));
        assert_eq!(code(QueueError::LostLeader { attempts: 3 }), NO_LEADER);
        assert_eq!(code(QueueError::StateLost("x".into())), INFRASTRUCTURE);
        assert_eq!(
            code(QueueError::OutOfMemory { url: "u".into() }),
            INFRASTRUCTURE
        );
        assert_eq!(code(QueueError::NotACluster { url: "u".into() }), USAGE);
        assert_eq!(
            code(QueueError::Permission {
                url: "u".into(),
                detail: "NOPERM".into(),
                script_line: None,
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
            code(QueueError::LateListing {
                worker: "w".into(),
                build: "b".into(),
                detail: "d".into()
            }),
            USAGE
        );
        assert_eq!(code(QueueError::NotAGrind { build: "b".into() }), USAGE);
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
        let worker = WorkerError::Queue(QueueError::StateLost("x".into()));
        assert_eq!(for_error(&worker.into()), INFRASTRUCTURE);
        let runner = WorkerError::Runner(RunnerError::Spawn(SpawnError::NotFound("x".into())));
        assert_eq!(for_error(&runner.into()), USAGE);
        assert_eq!(for_verdict(Verdict::Incomplete), TESTS_NOT_RUN);
    }
}
