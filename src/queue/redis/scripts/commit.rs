//! COMMIT: make a staged generation the build's queue, compare-and-set (`lua/commit.lua`).

use redis::Value;

use super::reply::int;
use super::step::Step;
use crate::queue::QueueError;
use crate::queue::redis::keys::BuildKeys;

pub(super) const SOURCE: &str = lua!("commit.lua");

/// COMMIT of `generation`, with the build-wide settings the leader fixes.
pub(in crate::queue::redis) struct Commit<'a> {
    pub keys: &'a BuildKeys,
    pub generation: &'a str,
    pub setup: &'a str,
    pub ready: &'a str,
    pub key_ttl_ms: String,
    pub total: usize,
    pub max_requeues: u32,
    pub requeue_limit: u64,
    pub heartbeat_timeout_ms: String,
    pub digest: String,
    /// The order the tests were queued in, as `--order` names it (a random one with its seed).
    pub order: String,
    pub session: &'a str,
    /// Each resource group's name and limit (none without groups).
    pub groups: &'a std::collections::BTreeMap<String, u32>,
}

/// What the commit did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::queue::redis) enum Committed {
    /// The generation is the build's (now, or already by this leader).
    Yes,
    /// The lock is someone else's, or the build was aborted.
    LostLock,
    /// The staged queue does not hold the total (a bug).
    Miscounted,
}

impl Step for Commit<'_> {
    const NAME: &'static str = "commit";
    type Reply = Committed;

    fn keys(&self) -> Vec<String> {
        let generation = self.keys.generation(self.generation);
        vec![
            self.keys.state(),
            generation.meta,
            generation.queue,
            self.keys.aborted(),
            generation.running,
            self.keys.results(),
            self.keys.timeline(),
        ]
    }

    fn args(&self) -> Vec<String> {
        let mut args = vec![
            self.setup.to_owned(),
            self.ready.to_owned(),
            self.key_ttl_ms.clone(),
            self.total.to_string(),
            self.max_requeues.to_string(),
            self.requeue_limit.to_string(),
            self.heartbeat_timeout_ms.clone(),
            self.digest.clone(),
            self.order.clone(),
            self.session.to_owned(),
        ];
        for (group, limit) in self.groups {
            args.push(group.clone());
            args.push(limit.to_string());
        }
        args
    }

    fn reply(raw: Value) -> Result<Committed, QueueError> {
        match int(Self::NAME, raw)? {
            1 => Ok(Committed::Yes),
            0 => Ok(Committed::LostLock),
            -2 => Ok(Committed::Miscounted),
            other => Err(QueueError::Protocol(format!("commit answered {other}"))),
        }
    }
}
