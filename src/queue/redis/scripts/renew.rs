//! RENEW: extend the leader's setup lock, compare-and-set, with its staged queue
//! (`lua/renew.lua`).

use redis::Value;

use super::reply::int;
use super::step::Step;
use crate::queue::QueueError;
use crate::queue::redis::keys::BuildKeys;

pub(super) const SOURCE: &str = lua!("renew.lua");

/// RENEW of the lock `setup` over `generation`.
pub(in crate::queue::redis) struct Renew<'a> {
    pub keys: &'a BuildKeys,
    pub generation: &'a str,
    pub setup: &'a str,
    pub ready: &'a str,
    pub lock_ttl_ms: String,
    pub key_ttl_ms: String,
}

/// What became of the lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::queue::redis) enum Renewed {
    /// Still this leader's, extended.
    Held,
    /// Already this leader's commit.
    Committed,
    /// Someone else's, or gone.
    Lost,
}

impl Step for Renew<'_> {
    const NAME: &'static str = "renew";
    type Reply = Renewed;

    fn keys(&self) -> Vec<String> {
        vec![
            self.keys.state(),
            self.keys.generation(self.generation).queue,
        ]
    }

    fn args(&self) -> Vec<String> {
        vec![
            self.setup.to_owned(),
            self.ready.to_owned(),
            self.lock_ttl_ms.clone(),
            self.key_ttl_ms.clone(),
        ]
    }

    fn reply(raw: Value) -> Result<Renewed, QueueError> {
        match int(Self::NAME, raw)? {
            1 => Ok(Renewed::Held),
            2 => Ok(Renewed::Committed),
            0 => Ok(Renewed::Lost),
            other => Err(QueueError::Protocol(format!("renew answered {other}"))),
        }
    }
}
