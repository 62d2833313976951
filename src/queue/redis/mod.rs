//! The Redis queue: one build's tests shared by workers on many machines.
//!
//! [`RedisQueue`] is one worker's handle: [`RedisQueue::join`] runs the election (the leader
//! fills a fresh generation, followers wait for it), then the [`crate::queue::Queue`] methods
//! run the per-test protocol. [`supervisor`] is the report's side. The protocol is written down
//! in `docs/queue-protocol.md`; each step is one Lua script under `lua/`.

pub mod connection;
mod dead_leaders;
mod election;
mod estimates;
pub mod history;
pub mod keys;
mod list_check;
mod liveness;
mod redis_queue;
mod retry;
mod scripts;
pub mod state;
pub mod supervisor;

use std::time::Duration;

pub use election::Joined;
pub use redis_queue::RedisQueue;
pub use retry::{FailedOf, Retrying, reopen_for_report};

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
    /// How long to keep retrying an unreachable Redis before giving up.
    pub redis_timeout: Duration,
    /// How the leader orders the queue (with the namespace's store of durations).
    pub scheduling: Scheduling,
}

/// The ACL rule a Redis user needs to run ciq (README, "Redis permissions"): ciq's keys only,
/// and the commands ciq sends or its scripts call (`config|get` only for the eviction warning).
pub const ACL_RULE: &str = "resetkeys ~ciq:* resetchannels -@all +ping +evalsha +script|load +multi +exec +time +get +set +del +exists +pttl +pexpire +hget +hset +hmget +hsetnx +hgetall +hincrby +hexists +hlen +hscan +hdel +hvals +smismember +zmscore +llen +lpop +lpush +rpush +lrange +sadd +scard +sismember +srem +sscan +smembers +zadd +zcard +zrange +zrangebyscore +zrem +zremrangebyrank +zscore +info +config|get";

/// What a user of a Redis Cluster needs beyond [`ACL_RULE`], on every node: the client reads the
/// slot map (`CLUSTER SLOTS`) and follows a slot being moved (`ASKING`).
pub const CLUSTER_ACL_EXTRA: &str = "+cluster|slots +asking";

fn millis(duration: Duration) -> String {
    duration.as_millis().max(1).to_string()
}

#[cfg(test)]
mod tests {
    /// The README's least-privilege user must be the one the tests run a build with.
    #[test]
    fn readme_gives_the_acl_rule() {
        let readme = include_str!("../../../README.md");
        assert!(
            readme.contains(&format!(
                "ACL SETUSER ci on >PASSWORD {}\n",
                super::ACL_RULE
            )),
            "README lacks the ACL rule"
        );
        assert!(
            readme.contains(&format!("`{}`", super::CLUSTER_ACL_EXTRA)),
            "README lacks the cluster's ACL addition"
        );
    }
}
