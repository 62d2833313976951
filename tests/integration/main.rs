//! ciq's integration tests: one binary (compiled once), every Redis test against its own real
//! redis-server, every process test with real `ciq` processes and signals.

#![expect(
    clippy::unwrap_used,
    clippy::expect_used,
    reason = "a test's set-up that fails should stop the test loudly"
)]

mod bad_input;
mod bisect;
mod cluster;
mod conformance;
mod e2e;
mod election;
mod faults;
mod files;
mod frameworks;
mod grind;
mod groups;
mod history;
mod html_build;
mod html_page;
mod lost_state;
mod network;
mod order;
mod per_test_scripts;
mod persistent;
mod processes;
mod quarantine;
mod redis_load;
mod retries;
mod ruby;
mod status;
mod timeline;
mod timings;
mod tls;
mod workers;
