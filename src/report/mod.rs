//! What a build's outcome looks like to a user: the [`Summary`] every step prints, the
//! [`Verdict`] that decides the exit code, the summary as the CI's own page shows it
//! ([`markdown`], published by [`ci_pages`]), and every test's [`TestRecord`] as one file for
//! scripts ([`json`]; the CI's test view reads it as JUnit, [`crate::junit::write`]).

pub mod ci_pages;
pub mod json;
pub mod markdown;
pub mod output_file;
mod record;
pub mod summary;

pub use record::TestRecord;
pub use summary::{Summary, Verdict};
