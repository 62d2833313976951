//! [`Summary`]: a build's outcomes as the queue holds them, and the [`Verdict`] rule.
//!
//! Both backends produce the same summary, so `ciq run -j N`, a distributed worker that saw
//! the queue drain, and `ciq report` read one shape; what each prints is composed from it
//! ([`crate::report::findings`]). Its size does not grow with the suite: counts for every
//! outcome, and the failing, flaky and unfinished tests by name up to [`LISTED`] each, so a
//! million-test build summarises in the memory of a small one.

use std::collections::BTreeMap;

use crate::outcome::{FailureDetail, Outcome};
use crate::report::TestRecord;
use crate::test_id::TestId;

/// Most failing (and most flaky) tests a summary names; the rest are counted.
pub const LISTED: usize = 200;
/// Most unfinished tests a summary names.
pub const NOT_RUN_LISTED: usize = 20;

/// What a queue knows of a build's tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// How many tests the leader listed.
    pub total: usize,
    /// How many tests ended with each outcome.
    pub counts: BTreeMap<Outcome, usize>,
    /// Failed and errored tests (at most [`LISTED`]), by id.
    pub failing: Vec<Listed>,
    /// Flaky tests (at most [`LISTED`]), by id.
    pub flaky: Vec<Listed>,
    /// Requeues in all.
    pub requeued: u64,
    /// Tests without an outcome (at most [`NOT_RUN_LISTED`]): still queued or running when
    /// the summary was taken.
    pub not_run: Vec<TestId>,
    /// How many tests have no outcome.
    pub not_run_count: usize,
    /// How many reservations took a test over from a worker whose heartbeat lapsed.
    pub taken_over: u64,
    /// Workers that refused to run because their test list was not the build's.
    pub mismatches: Vec<String>,
    /// Workers that stopped taking tests (a breaker tripped), and why.
    pub stopped: Vec<String>,
}

/// A failing or flaky test, named in the summary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The test.
    pub id: TestId,
    /// Its final outcome.
    pub outcome: Outcome,
    /// Its last failing run, when kept.
    pub detail: Option<FailureDetail>,
    /// How often it was requeued.
    pub requeues: u32,
}

/// The build's verdict, from which exit codes follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every test passed, was skipped, or was flaky.
    Green,
    /// At least one test failed or errored.
    Failed,
    /// No test failed, but some never got an outcome.
    Incomplete,
    /// A worker of the build had another test list: tests of the suite it meant to run may
    /// never have run at all.
    ListMismatch,
}

impl Verdict {
    /// The one rule, whatever decides what failed (the counts, or a grind's limits): a
    /// foreign list first, then failures, then completeness.
    pub fn of(mismatched: bool, failed: bool, missing: bool) -> Verdict {
        if mismatched {
            Verdict::ListMismatch
        } else if failed {
            Verdict::Failed
        } else if missing {
            Verdict::Incomplete
        } else {
            Verdict::Green
        }
    }

    /// The verdict as the summary's last line says it.
    pub fn describe(self) -> &'static str {
        match self {
            Verdict::Green => "green",
            Verdict::Failed => "failed",
            Verdict::Incomplete => "incomplete (tests not run)",
            Verdict::ListMismatch => "failed (a worker had another test list)",
        }
    }
}

impl Summary {
    /// The summary of `records`, the tests whose outcome one worker recorded (its `--junit`
    /// file's head).
    pub fn of_records(records: &[TestRecord]) -> Self {
        let mut counts = BTreeMap::new();
        for record in records {
            *counts.entry(record.outcome).or_insert(0) += 1;
        }
        Summary {
            total: records.len(),
            counts,
            ..Summary::default()
        }
    }

    /// How many tests ended with `outcome`.
    pub fn count(&self, outcome: Outcome) -> usize {
        self.counts.get(&outcome).copied().unwrap_or(0)
    }

    /// How many tests failed or errored.
    pub fn failed_count(&self) -> usize {
        self.count(Outcome::Failed) + self.count(Outcome::Errored)
    }

    /// How many tests have an outcome.
    pub fn decided(&self) -> usize {
        self.counts.values().sum()
    }

    /// Tests missing from the outcomes: those not run, or never counted.
    pub fn missing(&self) -> usize {
        self.total.saturating_sub(self.decided())
    }
}

impl Listed {
    pub(crate) fn suffix(&self) -> String {
        let mut parts = Vec::new();
        if let Some(detail) = &self.detail {
            let seconds = detail.duration_ms as f64 / 1000.0;
            if self.outcome == Outcome::Flaky {
                parts.push(format!(
                    "failed on worker {} in {seconds:.2}s",
                    detail.worker
                ));
            } else {
                parts.push(format!("worker {}", detail.worker));
                parts.push(format!("{seconds:.2}s"));
            }
        }
        if self.requeues > 0 {
            parts.push(format!("requeued {}x", self.requeues));
        }
        if parts.is_empty() {
            String::new()
        } else {
            format!(" ({})", parts.join(", "))
        }
    }
}
