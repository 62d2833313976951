//! [`RedisSettings`]: where a build lives and how its election and heartbeats are timed, and
//! how those durations travel to the scripts ([`millis`]).

use std::time::Duration;

use crate::queue::budget::RequeueBudget;
use crate::timings::Scheduling;

/// Where a build lives and how its election and heartbeats are timed.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL.
    pub url: String,
    /// Optional namespace, so several suites can share a build id.
    pub namespace: String,
    /// The build id.
    pub build: String,
    /// TTL of every key, from its first write.
    pub key_ttl: Duration,
    /// TTL of the setup lock; the leader renews it every third of it.
    pub lock_ttl: Duration,
    /// How many dead leaders a worker accepts before failing with "lost leader".
    pub max_election_attempts: u32,
    /// Bound on the leader's discovery, and on the report's wait for a first leader.
    pub queue_init_timeout: Duration,
    /// How often a worker heartbeats the tests it holds.
    pub heartbeat_interval: Duration,
    /// How long a silent worker keeps its tests before others take them over.
    pub heartbeat_timeout: Duration,
    /// Requeue limits, fixed for the build by its leader.
    pub budget: RequeueBudget,
    /// How long to keep reconnecting to an unreachable Redis before giving up.
    pub redis_timeout: Duration,
    /// How the leader orders the queue (with the namespace's store of durations).
    pub scheduling: Scheduling,
}

/// A duration as a script's ARGV: whole milliseconds, at least 1 (a TTL of 0 would delete).
pub(super) fn millis(duration: Duration) -> String {
    duration.as_millis().max(1).to_string()
}
