//! The Redis queue: one build's tests shared by workers on many machines.
//!
//! [`RedisQueue`] is one worker's handle: [`RedisQueue::join`] runs the election (the leader
//! fills a fresh generation, followers wait for it), then the [`crate::queue::Queue`] methods
//! run the per-test protocol. [`supervisor`] is the report's side. The protocol is written down
//! in `docs/queue-protocol.md`; each step is one Lua script under `lua/`.

mod acl;
pub mod connection;
mod dead_leaders;
mod election;
mod estimates;
pub mod history;
mod job_retry;
pub mod keys;
mod list_check;
mod liveness;
mod redis_queue;
mod scripts;
mod settings;
pub mod state;
pub mod status;
pub mod supervisor;
mod timeline;

/// The round a job retry belongs to, as [`RedisQueue::retry`] takes it.
pub use crate::ci::RetryRound;
pub use acl::{ACL_RULE, CLUSTER_ACL_EXTRA};
pub use election::Joined;
pub use job_retry::{FailedOf, Retrying};
pub use redis_queue::RedisQueue;
pub use settings::RedisSettings;
