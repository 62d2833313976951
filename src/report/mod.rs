//! What a build's outcome looks like to a user: the [`Summary`] the queues produce, the
//! [`Findings`] every step composes from it once and prints, the [`Verdict`] taken from those,
//! the findings as the CI's own page shows them ([`markdown`], published by [`ci_pages`]), and
//! every test's [`TestRecord`] as one file for the CI's test view or for scripts ([`junit`],
//! [`json`]).

pub mod ci_pages;
pub mod findings;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod output_file;
pub mod summary;

pub use findings::{Findings, HistoryMarks};
pub use summary::{Summary, Verdict};

use std::time::Duration;

use crate::outcome::{FailureDetail, Outcome};

/// One test of a finished build, as the queue holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestRecord {
    /// The test.
    pub id: String,
    /// Its final outcome.
    pub outcome: Outcome,
    /// Its last run, as its worker measured it (when the worker could keep it).
    pub duration: Option<Duration>,
    /// Its last failing run.
    pub failure: Option<FailureDetail>,
    /// How often it was requeued.
    pub requeues: u32,
}
