//! [`TestRecord`]: one test of a finished build as the queue holds it, what every file the
//! report writes (JUnit, JSON, the HTML page) has one of per test.

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
