//! What a build's outcome looks like to a user: the [`Summary`] every step prints, the
//! [`Verdict`] that decides the exit code, the summary as the CI's own page shows it
//! ([`markdown`], published by [`ci_pages`]), and every test's [`TestRecord`] as one file for
//! the CI's test view or for scripts ([`junit`], [`json`]).

pub mod ci_pages;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod output_file;
pub mod summary;

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
