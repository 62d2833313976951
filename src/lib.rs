//! ciq: a distributed test queue.
//!
//! Workers on many CI machines elect a leader that fills a queue in Redis, then pull tests from
//! it until it is empty; tests held by a dead worker are taken over, failures are requeued for
//! another worker to tell flaky from broken, and a report step gives the build one verdict.
//! Without Redis the same loop runs with N local workers.
//!
//! The data flows test list ([`test_id`], [`frameworks`] over [`discovery`] and [`listing`]) ->
//! queue ([`queue`]: election and per-test scripts) -> worker loop ([`worker`]) -> runner
//! ([`runner`], [`frameworks`]) -> result ([`outcome`]) -> report ([`report`]).
//!
//! # Glossary
//!
//! One word, one meaning, in the code as in `docs/`:
//!
//! - **build**: one CI run of the suite, named by a build id (the CI's, or `--build`) under an
//!   optional namespace; every key of a build shares one hash tag.
//! - **worker**: a `ciq run` under a worker id unique within the build; **session**: one such
//!   process (a UUID it draws), so two processes given one id are two sessions.
//! - **leader**: the worker that won the election and fills the queue; the others follow.
//! - **generation**: one attempt at filling the queue (a UUID); only a committed one is read.
//! - **lease**: the fencing token of one hand-out of one test; only its holder can acknowledge,
//!   heartbeat or release the test.
//! - **batch**: the tests handed out and run together; **feed**: where a runner reports results
//!   before its batch ends ([`runner::Feed`]).
//! - **outcome**: passed, failed, skipped, flaky or errored; a test's first final outcome
//!   stands.
//! - **requeue**: a failed run put back in the queue for another worker within the build
//!   (printed `RETRY`); a pass after it makes the test flaky.
//! - **take-over**: a running test handed to another worker once its holder's heartbeat lapsed.
//! - **job retry**: the CI retrying a job of a finished build, which re-runs the build's failed
//!   tests once per **round** ([`ci::RetryRound`]); `--retry-of` re-runs another build's.
//! - **reconnect**: a Redis call sent again on a fresh connection after a drop or a timeout,
//!   within `--redis-timeout`.
//! - **grind**: each test queued N times as copies (`<id>#grind-<k>`), to measure flakiness.

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
pub mod groups;
pub mod human;
pub mod junit;
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
pub mod reaper;
pub mod report;
pub mod runner;
pub mod signal;
pub mod test_id;
pub mod time_limits;
pub mod timeline;
pub mod timings;
pub mod worker;
