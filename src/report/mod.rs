//! What a build's outcome looks like to a user: the [`Summary`] every step prints, the
//! [`Verdict`] that decides the exit code, the summary as the CI's own page shows it
//! ([`markdown`], published by [`ci_pages`]), and every test's [`TestRecord`] as one file for
//! the CI's test view or for scripts ([`junit`], [`json`]).

pub mod ci_pages;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod output_file;
mod record;
pub mod summary;

pub use record::TestRecord;
pub use summary::{Summary, Verdict};
