//! What a build's outcome looks like to a user: the [`Summary`] the queues produce, the
//! [`Findings`] every step composes from it once and prints, the [`Verdict`] taken from those,
//! the findings as the CI's own page shows them ([`markdown`], published by [`ci_pages`]), and
//! every test's [`TestRecord`] as one file for scripts ([`json`]; the CI's test view reads it as
//! JUnit, [`crate::junit::write`]).

pub mod ci_pages;
pub mod findings;
pub mod html;
pub mod json;
pub mod markdown;
pub mod output_file;
mod record;
pub mod summary;
pub mod trace;

pub use findings::{Findings, HistoryMarks};
pub use record::TestRecord;
pub use summary::{Summary, Verdict};
