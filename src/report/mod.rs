//! What a build's outcome looks like to a user: the [`Summary`] every step prints, the
//! [`Verdict`] that decides the exit code, and the summary as the CI's own page shows it
//! ([`markdown`], published by [`ci_pages`]).

pub mod ci_pages;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod output_file;
pub mod summary;

pub use summary::{Summary, Verdict};
