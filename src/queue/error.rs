//! [`QueueError`]: everything that ends a worker's or a report's conversation with its queue.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a build was aborted, stored in Redis so every worker and the report end the same way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Abort {
    /// The class of cause, which decides the exit code.
    pub kind: AbortKind,
    /// The worker that aborted the build.
    pub worker: String,
    /// The error it met, one line.
    pub message: String,
}

/// The class of cause behind an [`Abort`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AbortKind {
    /// The leader could not produce a usable test list.
    BadInput,
    /// Leaders kept dying until the election budget was spent.
    LostLeader,
    /// The build's state vanished from Redis after it was set up: recorded so that a report
    /// which never saw the commit does not wait for a new leader that will never come.
    StateLost,
}

/// An error from a queue backend that the worker cannot recover from by reconnecting.
#[derive(Debug, Error)]
pub enum QueueError {
    /// The queue URL does not parse.
    #[error(
        "invalid queue URL `{url}`: {reason}\n(hint: use redis://HOST:PORT/DB, rediss://HOST:PORT/DB for TLS, redis://:PASSWORD@HOST:PORT/DB for a password)"
    )]
    InvalidUrl {
        /// The URL as given, password hidden.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis could not be reached (at start, or for longer than the reconnect budget).
    #[error("cannot reach Redis at `{url}` (tried for {})\n(hint: check the host and port in --queue, and that Redis is up and reachable from this machine; --redis-timeout sets how long an outage is waited out)", crate::human::duration(*.waited))]
    Unreachable {
        /// The URL, password hidden.
        url: String,
        /// How long ciq kept trying.
        waited: Duration,
        /// The last error.
        #[source]
        source: redis::RedisError,
    },
    /// Redis refused the credentials.
    #[error(
        "Redis at `{url}` refused the credentials\n(hint: put the password in the URL, redis://:PASSWORD@HOST:PORT/DB, or user and password, redis://USER:PASSWORD@HOST:PORT/DB)"
    )]
    Auth {
        /// The URL, password hidden.
        url: String,
        /// The server's answer.
        #[source]
        source: redis::RedisError,
    },
    /// Redis reached its memory limit and refuses writes.
    #[error(
        "Redis at `{url}` is out of memory: it reached its maxmemory limit and refuses writes, so the build cannot record anything\n(hint: give Redis more memory (maxmemory) or free some; each build's keys expire --redis-ttl after it stops, so fewer builds at once, or a shorter --redis-ttl, need less)"
    )]
    OutOfMemory {
        /// The URL, password hidden.
        url: String,
    },
    /// A `+cluster` URL names a server that is not part of a Redis Cluster.
    #[error(
        "`{url}` names a Redis Cluster (redis+cluster://), but the server has cluster support disabled\n(hint: for a single Redis server use redis://HOST:PORT/DB, or rediss:// for TLS)"
    )]
    NotACluster {
        /// The URL, password hidden.
        url: String,
    },
    /// Redis answered with an error ciq did not expect (a bug, or a server that is not Redis).
    #[error("Redis command failed")]
    Command(#[source] redis::RedisError),
    /// A script answered something this version does not understand.
    #[error("unexpected reply from Redis: {0}")]
    Protocol(String),
    /// Every elected leader died before filling the queue.
    #[error(
        "lost leader: {attempts} elected leader(s) died before filling the queue; giving up\n(hint: look at the leader's log; raise --max-election-attempts or --lock-ttl if its test discovery is slow or the machine pauses)"
    )]
    LostLeader {
        /// How many dead leaders this process saw.
        attempts: u32,
    },
    /// No leader appeared within the init timeout.
    #[error("no leader elected: no worker filled the queue within {}\n(hint: check that workers started and can reach Redis; raise --queue-init-timeout)", crate::human::duration(*.waited))]
    NoLeader {
        /// How long the wait lasted.
        waited: Duration,
    },
    /// A process of this build ended it for everyone: a leader whose test discovery failed, or
    /// a worker that spent the election budget.
    #[error("build aborted by worker `{}`: {}", .0.worker, .0.message)]
    Aborted(Abort),
    /// The build's state vanished after it was set up, in part or whole.
    #[error(
        "the build's state was lost from Redis ({0}); its results cannot be trusted\n(hint: Redis was restarted without persistence, flushed, or evicted or expired the build's keys: give it persistence (appendonly yes), enough memory, maxmemory-policy noeviction and a --redis-ttl longer than the build, then rerun the build)"
    )]
    StateLost(String),
    /// The Redis user lacks a permission ciq needs.
    #[error(
        "Redis at `{url}` refused a command: {detail}\n(hint: the Redis user needs the commands and key pattern listed in ciq's README, section \"Redis permissions\")"
    )]
    Permission {
        /// The URL, password hidden.
        url: String,
        /// Redis's own words, naming the command or key.
        detail: String,
        /// Where in a script it was refused (the script's SHA-1 and line), when it was.
        script_line: Option<(String, usize)>,
    },
    /// The Redis server is older than ciq needs.
    #[error(
        "Redis at `{url}` is version {version}; ciq needs 6.2 or later (its scripts use LPOP with a count, ZMSCORE and SMISMEMBER)"
    )]
    OldRedis {
        /// The URL, password hidden.
        url: String,
        /// What the server says it is.
        version: String,
    },
    /// This worker's test list is not the one the build was filled with.
    #[error(
        "worker `{worker}` will not run tests of build `{build}`: its test list differs from the one the build was filled with ({detail})\n(hint: every worker of a build must list the same tests; two suites sharing one build id need a --namespace each)"
    )]
    ListMismatch {
        /// This worker.
        worker: String,
        /// The build.
        build: String,
        /// How many ids differ, which way.
        detail: String,
    },
    /// A worker that joined its build after it finished could not list the suite, so cannot
    /// vouch that the verdict is its suite's.
    #[error(
        "worker `{worker}` joined build `{build}` after it finished and could not list its own tests to check them against the build's: {detail}"
    )]
    LateListing {
        /// This worker.
        worker: String,
        /// The build.
        build: String,
        /// Why the listing failed.
        detail: String,
    },
    /// `ciq report --grind` of a build whose tests were not queued as a grind's copies: pass
    /// rates and percentiles over single runs would judge nothing.
    #[error(
        "build `{build}` is not a grind: its tests were not queued by `ciq run --grind N`; drop --grind to report it"
    )]
    NotAGrind {
        /// The build.
        build: String,
    },
}
