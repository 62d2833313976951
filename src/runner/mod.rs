//! Runners turn a batch of test ids into per-test results.
//!
//! The [`Runner`] trait is what the worker loop calls; [`command::CommandRunner`] is the generic
//! runner that executes the command after `--` with the test ids as arguments, and reads JUnit
//! XML when the command writes it; [`persistent::PersistentRunner`] keeps one framework process
//! per worker. Framework adapters ([`crate::frameworks`]) build on these, and say which to use
//! as a [`launch::Launch`], which gives each worker an [`launch::AnyRunner`]. Leases stay with
//! the worker loop: a runner only sees test ids.

mod api;
pub mod command;
pub mod launch;
pub mod persistent;
mod stray;

pub use api::{Feed, Ran, Reported, Runner, RunnerError};
