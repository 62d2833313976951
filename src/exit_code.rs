//! [`ExitCode`]: how every `ciq` command ends, and the one place each ending (an error, a
//! verdict, a worker that stopped, a signal) maps to its code.
//!
//! CI systems branch on these codes (retry on infrastructure errors, page on lost leaders), so
//! they are part of the interface and documented in the README's table, which a test holds to
//! this enum.

use crate::error::Error;
use crate::queue::QueueError;
use crate::queue::error::AbortKind;
use crate::report::Verdict;
use crate::worker::Stop;

/// How a `ciq` command ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitCode {
    /// 0: every test passed, was skipped, or was flaky (`ciq bisect`: the culprit is named).
    Success,
    /// 1: at least one test failed or errored.
    TestsFailed,
    /// 1, `ciq bisect` only: the failure does not reproduce (it passes after the tests before
    /// it, or fails alone).
    NotReproduced,
    /// 2: bad command line or input: flags, queue URL, test list, a test command that does not
    /// exist.
    Usage,
    /// 3: no test failed, but some never ran (workers gone, report timeout, `--max-duration`).
    TestsNotRun,
    /// 4: no leader filled the queue: every elected leader died, or none appeared in time.
    NoLeader,
    /// 5: Redis unreachable or refusing credentials, or the build's state lost.
    Infrastructure,
    /// 6: a worker's test list differs from the one its build was filled with: tests it meant
    /// to run may never have run.
    ListMismatch,
    /// 7, `ciq bisect` only: the failure did not repeat the same way on every run (after its
    /// suspected culprit, or alone), so it looks flaky and no test is named.
    BisectFlaky,
    /// 128 + the signal's number: a SIGINT (130) or SIGTERM (143) stopped ciq.
    Signal(i32),
}

impl ExitCode {
    /// The process's exit code.
    pub const fn code(self) -> i32 {
        match self {
            ExitCode::Success => 0,
            ExitCode::TestsFailed | ExitCode::NotReproduced => 1,
            ExitCode::Usage => 2,
            ExitCode::TestsNotRun => 3,
            ExitCode::NoLeader => 4,
            ExitCode::Infrastructure => 5,
            ExitCode::ListMismatch => 6,
            ExitCode::BisectFlaky => 7,
            ExitCode::Signal(signal) => 128 + signal,
        }
    }
}

/// The exit code of a finished build's verdict (a grind's included).
pub fn for_verdict(verdict: Verdict) -> ExitCode {
    match verdict {
        Verdict::Green => ExitCode::Success,
        Verdict::Failed => ExitCode::TestsFailed,
        Verdict::Incomplete => ExitCode::TestsNotRun,
        Verdict::ListMismatch => ExitCode::ListMismatch,
    }
}

/// The exit code of a worker that stopped taking tests: its breaker says the build is red, or
/// (out of time) that tests are left to run.
pub fn for_stop(stop: &Stop) -> ExitCode {
    match stop {
        Stop::Failures(_) | Stop::BuildFailing(_) => ExitCode::TestsFailed,
        Stop::OutOfTime(_) => ExitCode::TestsNotRun,
    }
}

/// The exit code for an error that ended ciq.
pub fn for_error(err: &Error) -> ExitCode {
    match err {
        Error::Queue(err) => for_queue_error(err),
        Error::Config(_)
        | Error::Discovery(_)
        | Error::Runner(_)
        | Error::Output(_)
        | Error::Quarantine(_)
        | Error::OrderLog(_) => ExitCode::Usage,
        Error::Panicked(_) | Error::Runtime(_) => ExitCode::Infrastructure,
    }
}

fn for_queue_error(err: &QueueError) -> ExitCode {
    match err {
        QueueError::InvalidUrl { .. }
        | QueueError::NotACluster { .. }
        | QueueError::LateListing { .. }
        | QueueError::NotAGrind { .. } => ExitCode::Usage,
        QueueError::LostLeader { .. } | QueueError::NoLeader { .. } => ExitCode::NoLeader,
        QueueError::Aborted(abort) => match abort.kind {
            AbortKind::BadInput => ExitCode::Usage,
            AbortKind::LostLeader => ExitCode::NoLeader,
            AbortKind::StateLost => ExitCode::Infrastructure,
        },
        QueueError::Unreachable { .. }
        | QueueError::Auth { .. }
        | QueueError::Command(_)
        | QueueError::Protocol(_)
        | QueueError::Permission { .. }
        | QueueError::OldRedis { .. }
        | QueueError::OutOfMemory { .. }
        | QueueError::StateLost(_) => ExitCode::Infrastructure,
        QueueError::ListMismatch { .. } => ExitCode::ListMismatch,
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
        assert_eq!(
            code(QueueError::LostLeader { attempts: 3 }),
            ExitCode::NoLeader
        );
        assert_eq!(
            code(QueueError::StateLost("x".into())),
            ExitCode::Infrastructure
        );
        assert_eq!(
            code(QueueError::OutOfMemory { url: "u".into() }),
            ExitCode::Infrastructure
        );
        assert_eq!(
            code(QueueError::NotACluster { url: "u".into() }),
            ExitCode::Usage
        );
        assert_eq!(
            code(QueueError::Permission {
                url: "u".into(),
                detail: "NOPERM".into(),
                script_line: None,
            }),
            ExitCode::Infrastructure
        );
        assert_eq!(
            code(QueueError::ListMismatch {
                worker: "w".into(),
                build: "b".into(),
                detail: "d".into()
            }),
            ExitCode::ListMismatch
        );
        assert_eq!(for_verdict(Verdict::ListMismatch), ExitCode::ListMismatch);
        assert_eq!(
            code(QueueError::LateListing {
                worker: "w".into(),
                build: "b".into(),
                detail: "d".into()
            }),
            ExitCode::Usage
        );
        assert_eq!(
            code(QueueError::NotAGrind { build: "b".into() }),
            ExitCode::Usage
        );
        assert_eq!(
            code(QueueError::InvalidUrl {
                url: "x".into(),
                reason: "y".into()
            }),
            ExitCode::Usage
        );
        assert_eq!(
            code(QueueError::Aborted(Abort {
                kind: AbortKind::BadInput,
                worker: "w".into(),
                message: "m".into()
            })),
            ExitCode::Usage
        );
        assert_eq!(
            code(QueueError::Aborted(Abort {
                kind: AbortKind::StateLost,
                worker: "w".into(),
                message: "m".into()
            })),
            ExitCode::Infrastructure
        );
        let worker = WorkerError::Queue(QueueError::StateLost("x".into()));
        assert_eq!(for_error(&worker.into()), ExitCode::Infrastructure);
        let runner = WorkerError::Runner(RunnerError::Spawn(SpawnError::NotFound("x".into())));
        assert_eq!(for_error(&runner.into()), ExitCode::Usage);
        assert_eq!(for_verdict(Verdict::Incomplete), ExitCode::TestsNotRun);
    }

    #[test]
    fn stopped_workers_and_signals_map_to_documented_codes() {
        use std::time::Duration;
        assert_eq!(for_stop(&Stop::Failures(3)), ExitCode::TestsFailed);
        assert_eq!(for_stop(&Stop::BuildFailing(9)), ExitCode::TestsFailed);
        assert_eq!(
            for_stop(&Stop::OutOfTime(Duration::from_secs(1))),
            ExitCode::TestsNotRun
        );
        assert_eq!(ExitCode::Signal(15).code(), 143);
        assert_eq!(ExitCode::NotReproduced.code(), ExitCode::TestsFailed.code());
    }

    /// The README's table of exit codes has a row for every code, and none other.
    #[test]
    fn readme_lists_every_code() {
        let readme = include_str!("../README.md");
        let table = readme
            .split("### Exit codes\n")
            .nth(1)
            .and_then(|rest| rest.trim_start().split("\n\n").next())
            .unwrap_or_default();
        let rows: Vec<&str> = table
            .lines()
            .skip(2)
            .filter_map(|row| row.split('|').nth(1))
            .map(str::trim)
            .collect();
        let codes = [
            ExitCode::Success,
            ExitCode::TestsFailed,
            ExitCode::NotReproduced,
            ExitCode::Usage,
            ExitCode::TestsNotRun,
            ExitCode::NoLeader,
            ExitCode::Infrastructure,
            ExitCode::ListMismatch,
            ExitCode::BisectFlaky,
        ];
        let mut expected: Vec<String> = codes.iter().map(|code| code.code().to_string()).collect();
        expected.dedup();
        expected.push(format!(
            "{}, {}",
            ExitCode::Signal(2).code(),
            ExitCode::Signal(15).code()
        ));
        assert_eq!(rows, expected, "{table}");
    }
}
