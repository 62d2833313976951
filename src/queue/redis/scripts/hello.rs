//! HELLO: a worker session announces itself (`lua/hello.lua`).

use redis::Value;

use super::reply::int;
use super::step::Step;
use crate::queue::QueueError;
use crate::queue::redis::keys::BuildKeys;

pub(super) const SOURCE: &str = lua!("hello.lua");

/// HELLO from `session` of `worker`.
pub(in crate::queue::redis) struct Hello<'a> {
    pub keys: &'a BuildKeys,
    pub session: &'a str,
    pub worker: &'a str,
    pub key_ttl_ms: String,
    pub heartbeat_timeout_ms: String,
}

impl Step for Hello<'_> {
    const NAME: &'static str = "hello";
    /// How many other live sessions use this worker id.
    type Reply = u64;

    fn keys(&self) -> Vec<String> {
        vec![self.keys.workers(), self.keys.timeline()]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.session.to_owned(),
            self.worker.to_owned(),
            self.key_ttl_ms.clone(),
            self.heartbeat_timeout_ms.clone(),
        ]
    }

    fn reply(raw: Value) -> Result<u64, QueueError> {
        let twins = int(Self::NAME, raw)?;
        u64::try_from(twins).map_err(|_| QueueError::Protocol(format!("hello answered {twins}")))
    }
}
