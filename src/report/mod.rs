//! What a build's outcome looks like to a user: the [`Summary`] every step prints, and the
//! [`Verdict`] that decides the exit code.

pub mod summary;

pub use summary::{Summary, Verdict};
