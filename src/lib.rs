//! ciq: a distributed test queue.
//!
//! Workers on many CI machines elect a leader that fills a queue in Redis, then pull tests from
//! it until it is empty; tests held by a dead worker are taken over, failures are retried on
//! another worker to tell flaky from broken, and a report step gives the build one verdict.
//! Without Redis the same loop runs with N local workers.
//!
//! The data flows test list ([`test_id`], [`discovery`] over [`frameworks`] and [`listing`]) ->
//! queue ([`queue`]: election and per-test scripts) -> worker loop ([`worker`]) -> runner
//! ([`runner`], [`frameworks`]) -> result ([`outcome`]) -> report ([`report`]).

pub mod ansi;
pub mod batching;
pub mod ci;
pub mod cli;
pub mod config;
pub mod console;
pub mod discovery;
pub mod error;
pub mod exit_code;
pub mod frameworks;
pub mod grind;
pub mod guard;
pub mod human;
pub mod lines;
pub mod list_source;
pub mod listing;
pub mod order_log;
pub mod outcome;
pub mod pause_point;
pub mod process;
#[cfg(test)]
mod property_testing;
pub mod quarantine;
pub mod queue;
pub mod report;
pub mod runner;
pub mod signal;
pub mod test_id;
pub mod time_limits;
pub mod timings;
pub mod worker;
